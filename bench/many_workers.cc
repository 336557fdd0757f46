// many_workers: W simulated workers (threads in this process, each with its
// own connections, the real worker client and a tiny compute step) pushing
// and pulling a 1M-parameter model against 1 or 2 real ps_server processes
// on 127.0.0.1, in async and sync modes. Prints per run: steps/s over all
// workers, p50/p99/p999 step latency (compute + push-pull), and fairness: the
// fewest and most steps any worker took.
//
//   bazel build -c opt //server:ps_server //bench:many_workers
//   bazel-bin/bench/many_workers --workers=64 --shards=1,2 --modes=async,sync --seconds=10
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/ps_process.h"
#include "common/base/process.h"
#include "common/model_spec.h"
#include "common/rpc/channel.h"
#include "worker/grpc_coordinator_client.h"
#include "worker/grpc_ps_client.h"

ABSL_FLAG(std::string, ps_server, "bazel-bin/server/ps_server", "ps_server binary.");
ABSL_FLAG(int, workers, 64, "Simulated workers (threads).");
ABSL_FLAG(std::string, shards, "1,2", "ps_server processes per run, comma-separated.");
ABSL_FLAG(std::string, modes, "async,sync", "Consistency modes, comma-separated.");
ABSL_FLAG(double, seconds, 10, "Seconds of measured training per run (after all start).");

namespace fulcrum {
namespace {

struct WorkerResult {
  int64_t steps = 0;
  std::vector<double> step_seconds;
  std::string error;
};

// One simulated worker: register, take a training lease, then pull a whole
// model, "compute" (a gradient of the right size), push, until `stop`.
void RunWorker(const std::string& coordinator_address, int index, ConsistencyMode mode,
               const std::atomic<bool>* go, const std::atomic<bool>* stop, WorkerResult* out) {
  std::shared_ptr<grpc::Channel> channel =
      *OpenChannel(coordinator_address, ClientSecurityOptions{});
  GrpcCoordinatorClient coordinator(channel, absl::Seconds(30));
  GrpcPsClient ps(channel, absl::Seconds(5));
  RegisterWorkerRequest request;
  request.set_worker_name(absl::StrCat("sim-", index));
  absl::StatusOr<RegisterWorkerResponse> registered;
  for (int attempt = 0; attempt < 600; ++attempt) {
    registered = coordinator.RegisterWorker(request);
    if (registered.ok() || !absl::IsUnavailable(registered.status())) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  if (!registered.ok()) {
    out->error = registered.status().ToString();
    return;
  }
  absl::Status connected =
      ps.Connect({registered->shard_addresses().begin(), registered->shard_addresses().end()},
                 {registered->backup_addresses().begin(), registered->backup_addresses().end()});
  if (!connected.ok()) {
    out->error = connected.ToString();
    return;
  }
  AcquirePartitionRequest acquire;
  const WorkerIdentity worker{registered->worker_id(), registered->incarnation()};
  SetSender(worker, &acquire);
  absl::StatusOr<AcquirePartitionResponse> lease;
  while (true) {
    lease = coordinator.AcquirePartition(acquire);
    if (!lease.ok() && !absl::IsUnavailable(lease.status())) {
      out->error = lease.status().ToString();
      return;
    }
    if (lease.ok() && lease->kind() == AcquirePartitionResponse::TRAIN) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  ParameterBatch params;
  params.tensors = {registered->job().tensors().begin(), registered->job().tensors().end()};
  ParameterBatch grads = params;
  grads.dense.resize(grads.tensors.size());
  for (size_t i = 0; i < grads.tensors.size(); ++i) {
    grads.dense[i].assign(ElementCount(grads.tensors[i]), 1e-6f);
  }
  const size_t shards = ps.num_shards();
  std::vector<int64_t> clocks(shards, -1), rounds;
  uint64_t request_id = 1;
  int unavailable = 0;
  while (!go->load()) absl::SleepFor(absl::Milliseconds(1));
  // As the real worker: one pull, then per step the compute and one
  // PushPull (this step's gradient out, the next step's parameters back).
  bool have_params = false;
  while (!stop->load()) {
    const absl::Time start = absl::Now();
    absl::StatusOr<ServerVersion> v = ServerVersion();
    if (!have_params) {
      v = ps.Pull(worker, clocks, &params);
      if (v.ok() && rounds.empty()) rounds = v->rounds;
    }
    if (v.ok()) {
      // The tiny compute: a gradient from the first value read.
      grads.dense[0][0] = params.dense[0][0] * 1e-3f;
      std::vector<int64_t> push_clocks = mode == SYNC ? rounds : clocks;
      std::vector<int64_t> pull_clocks = push_clocks;
      if (mode == SYNC) {
        for (int64_t& r : pull_clocks) ++r;
      }
      v = ps.PushPull(worker, push_clocks, request_id++, grads, 1, pull_clocks, &params);
    }
    have_params = v.ok();
    if (!v.ok()) {
      if (stop->load()) return;
      // As a real worker does: a connection not up yet is retried.
      if (absl::IsUnavailable(v.status()) && ++unavailable <= 50) {
        absl::SleepFor(absl::Milliseconds(50));
        continue;
      }
      out->error = v.status().ToString();
      return;
    }
    unavailable = 0;
    if (mode == SYNC) {
      for (int64_t& r : rounds) ++r;
      clocks = rounds;
    }
    out->step_seconds.push_back(absl::ToDoubleSeconds(absl::Now() - start));
    ++out->steps;
  }
}

double Percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))];
}

int Run(int num_shards, const std::string& mode_name) {
  const int workers = absl::GetFlag(FLAGS_workers);
  absl::StatusOr<Consistency> mode = ParseConsistency(mode_name);
  if (!mode.ok()) {
    std::fprintf(stderr, "many_workers: --modes: %s\n", mode.status().ToString().c_str());
    return 2;
  }
  std::vector<std::unique_ptr<Subprocess>> servers;
  servers.push_back(std::make_unique<Subprocess>());
  const absl::StatusOr<std::string> coordinator = StartPsServer(
      absl::GetFlag(FLAGS_ps_server),
      {"--model=bench_1m", absl::StrCat("--mode=", mode_name),
       absl::StrCat("--num_workers=", workers), absl::StrCat("--num_shards=", num_shards),
       "--worker_timeout=100000", "--heartbeat_interval=1000", "--partitions_per_worker=4"},
      servers.back().get());
  if (!coordinator.ok()) {
    std::fprintf(stderr, "many_workers: %s\n", coordinator.status().ToString().c_str());
    return 1;
  }
  for (int i = 1; i < num_shards; ++i) {
    servers.push_back(std::make_unique<Subprocess>());
    absl::StatusOr<std::string> shard =
        StartPsServer(absl::GetFlag(FLAGS_ps_server),
                      {absl::StrCat("--num_shards=", num_shards), absl::StrCat("--shard_index=", i),
                       "--coordinator=" + *coordinator},
                      servers.back().get());
    if (!shard.ok()) {
      std::fprintf(stderr, "many_workers: shard %d: %s\n", i, shard.status().ToString().c_str());
      return 1;
    }
  }
  std::atomic<bool> go{false}, stop{false};
  std::vector<WorkerResult> results(workers);
  std::vector<std::thread> threads;
  for (int i = 0; i < workers; ++i) {
    threads.emplace_back(RunWorker, *coordinator, i, mode->mode, &go, &stop, &results[i]);
  }
  // Everyone registered and holding a lease: the job has started.
  absl::SleepFor(absl::Seconds(2));
  go = true;
  const absl::Time start = absl::Now();
  absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_seconds)));
  stop = true;
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  // Sync workers may be waiting for a round nobody will finish: end the
  // servers, which fails their calls.
  absl::SleepFor(absl::Milliseconds(200));
  servers.clear();  // SIGKILLs them
  for (std::thread& t : threads) t.join();

  int64_t total = 0, min_steps = INT64_MAX, max_steps = 0;
  std::vector<double> latencies;
  std::string error;
  for (const WorkerResult& r : results) {
    total += r.steps;
    min_steps = std::min(min_steps, r.steps);
    max_steps = std::max(max_steps, r.steps);
    latencies.insert(latencies.end(), r.step_seconds.begin(), r.step_seconds.end());
    if (error.empty()) error = r.error;
  }
  std::printf(
      "mode=%-5s ps=%d workers=%d  %8.1f steps/s  %7.1f MB/s  step p50=%7.1fms "
      "p99=%7.1fms p999=%7.1fms  steps/worker min=%lld max=%lld (max/min %.2f)%s\n",
      mode_name.c_str(), num_shards, workers, total / seconds,
      total * 2.0 * 4 * (1 << 20) / seconds / 1e6, Percentile(latencies, 0.5) * 1e3,
      Percentile(latencies, 0.99) * 1e3, Percentile(latencies, 0.999) * 1e3,
      static_cast<long long>(min_steps), static_cast<long long>(max_steps),
      min_steps > 0 ? double(max_steps) / min_steps : 0.0,
      error.empty() ? "" : absl::StrCat("  (a worker failed: ", error, ")").c_str());
  std::fflush(stdout);
  return 0;
}

}  // namespace
}  // namespace fulcrum

int main(int argc, char** argv) {
  fulcrum::TuneMutexes();
  fulcrum::KeepFreedMemory();
  absl::ParseCommandLine(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  for (absl::string_view mode : absl::StrSplit(absl::GetFlag(FLAGS_modes), ',')) {
    for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_shards), ',')) {
      int shards = 0;
      if (!absl::SimpleAtoi(s, &shards) || shards < 1) {
        std::fprintf(stderr, "many_workers: --shards: bad value '%s'\n", std::string(s).c_str());
        return 2;
      }
      const int rc = fulcrum::Run(shards, std::string(mode));
      if (rc != 0) return rc;
    }
  }
  return 0;
}
