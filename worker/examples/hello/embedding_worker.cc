// Learns a value per 64-bit id (no vocabulary) in a sparse table, with a
// training loop of its own.
#include <cstdio>

#include "worker/fulcrum_worker.h"

int main(int argc, char** argv) {
  fulcrum::ConnectionOptions options;
  if (argc > 1) options.coordinator = argv[1];
  auto opened = fulcrum::Session::Open(options);
  if (!opened.ok()) return std::fprintf(stderr, "%s\n", opened.status().ToString().c_str()), 1;
  fulcrum::Session& session = **opened;
  const uint64_t ids[3] = {7, 0xFEEDFACECAFEBEEF, uint64_t{1} << 63};  // any 64-bit keys
  const float target[3] = {1, -2, 3};  // what each id's row (dim 1) should learn
  float rows[3], g[3];
  const fulcrum::Buffers params{{}, {{"bias", ids, absl::MakeSpan(rows)}}};
  const fulcrum::Buffers grads{{}, {{"bias", ids, absl::MakeSpan(g)}}};
  for (auto task = session.NextTask(); task.ok(); task = session.NextTask()) {
    if (task->kind == fulcrum::Task::kDone) {
      return std::printf("rows=%.3f %.3f %.3f\n", rows[0], rows[1], rows[2]), 0;
    }
    if (task->kind == fulcrum::Task::kWait) absl::SleepFor(task->retry_after);
    if (task->kind != fulcrum::Task::kTrain || !session.Pull(params).ok()) continue;
    for (int step = 0; step < 20; ++step) {
      for (int i = 0; i < 3; ++i) g[i] = rows[i] - target[i];  // of (row - target)^2 / 2
      if (step < 19) session.PushPull(grads, 3, -1, params).IgnoreError();
      if (step == 19) session.Push(grads, 3, -1).IgnoreError();
    }
    session.Complete(*task).IgnoreError();
  }
  return 1;
}
