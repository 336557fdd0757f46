// Learns y = 2x + 1 through Fulcrum, with a training loop of its own.
#include <cstdio>

#include "worker/fulcrum_worker.h"

int main(int argc, char** argv) {
  fulcrum::ConnectionOptions options;
  if (argc > 1) options.coordinator = argv[1];
  auto opened = fulcrum::Session::Open(options);
  if (!opened.ok()) return std::fprintf(stderr, "%s\n", opened.status().ToString().c_str()), 1;
  fulcrum::Session& session = **opened;
  float w[2], g[2];  // y = w[0] * x + w[1]; g: its gradient
  const fulcrum::Buffers params{{{"line", absl::MakeSpan(w)}}};
  const fulcrum::Buffers grads{{{"line", absl::MakeSpan(g)}}};
  for (auto task = session.NextTask(); task.ok(); task = session.NextTask()) {
    if (task->kind == fulcrum::Task::kDone) return std::printf("w=%.3f b=%.3f\n", w[0], w[1]), 0;
    if (task->kind == fulcrum::Task::kWait) absl::SleepFor(task->retry_after);
    if (task->kind != fulcrum::Task::kTrain || !session.Pull(params).ok()) continue;
    for (int step = 0; step < 100; ++step) {
      const float x = (step % 20) / 10.0f - 1, error = w[0] * x + w[1] - (2 * x + 1);
      g[0] = error * x, g[1] = error;
      const float loss = error * error / 2;
      if (step < 99) session.PushPull(grads, 1, loss, params).IgnoreError();
      if (step == 99) session.Push(grads, 1, loss).IgnoreError();
    }
    session.Complete(*task).IgnoreError();
  }
  return 1;
}
