// memory: a ps_server's resident memory against what its model needs.
//   1. Dense: ps_server --model=bench_100m (100M float32) with an optimizer
//      of S slots; expected = 4 bytes x 100M x (1 + S).
//   2. Sparse: ps_server --model=bench (a dim-8 table) filled with R rows by
//      pulls of new keys; expected = R x (8 floats x 4 bytes x (1 + S)),
//      plus the hash index (reported apart: status's bytes_per_row).
//   3. Worker: one worker training the MLP for --worker_epochs against a
//      ps_server; its resident memory sampled through the run (it must not
//      grow with the number of steps).
// Prints resident memory (VmRSS) before and after, the expected bytes, and
// the ratio of the growth to the expected bytes.
//
//   bazel build -c opt //server:ps_server //bench:memory
//   bazel-bin/bench/memory [--dense_optimizer=adam] [--sparse_rows=10000000]
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/ps_process.h"
#include "common/rpc/channel.h"
#include "grpcpp/client_context.h"
#include "proto/coordinator.grpc.pb.h"
#include "proto/parameter_service.grpc.pb.h"

ABSL_FLAG(std::string, ps_server, "bazel-bin/server/ps_server", "ps_server binary.");
ABSL_FLAG(std::string, dense_optimizer, "adam",
          "Optimizer of the dense run (its slots count): sgd 0, adagrad 1, adam 2.");
ABSL_FLAG(int64_t, sparse_rows, 10000000, "Rows the sparse run creates (0: skip it).");
ABSL_FLAG(std::string, sparse_optimizer, "adagrad", "Optimizer of the sparse run.");
ABSL_FLAG(std::string, worker, "bazel-bin/worker/worker", "worker binary.");
ABSL_FLAG(int, worker_epochs, 4, "Epochs of the worker run (0: skip it).");

namespace fulcrum {
namespace {

int64_t ResidentBytes(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      int64_t kb = 0;
      std::string digits;
      for (char c : line) {
        if (c >= '0' && c <= '9') digits += c;
      }
      absl::SimpleAtoi(digits, &kb);
      return kb * 1024;
    }
  }
  return -1;
}

int Slots(const std::string& optimizer) {
  if (optimizer == "adam" || optimizer == "ftrl") return 2;
  if (optimizer == "adagrad" || optimizer == "momentum") return 1;
  return 0;
}

// Starts ps_server with `flags` (one worker, which never times out) in
// `server`; its address, or "" (with a message) if it did not serve.
std::string Start(const std::vector<std::string>& flags, Subprocess* server) {
  std::vector<std::string> all = {"--num_workers=1", "--worker_timeout=100000",
                                  "--heartbeat_interval=1000"};
  all.insert(all.end(), flags.begin(), flags.end());
  absl::StatusOr<std::string> address = StartPsServer(absl::GetFlag(FLAGS_ps_server), all, server);
  if (!address.ok()) {
    std::fprintf(stderr, "memory: %s\n", address.status().ToString().c_str());
    return "";
  }
  return *address;
}

void Report(const char* what, int64_t before, int64_t after, double expected) {
  std::printf(
      "%-44s rss_before=%8.1f MB rss_after=%8.1f MB expected=%8.1f MB "
      "growth/expected=%.2f\n",
      what, before / 1e6, after / 1e6, expected / 1e6, (after - before) / expected);
  std::fflush(stdout);
}

int Dense() {
  const std::string optimizer = absl::GetFlag(FLAGS_dense_optimizer);
  // The smallest model first: the process's base.
  int64_t base = 0, rss = 0;
  {
    Subprocess server;
    if (Start({"--model=bench_1m", "--optimizer=" + optimizer}, &server).empty()) return 1;
    base = ResidentBytes(server.pid());
  }
  {
    Subprocess server;
    if (Start({"--model=bench_100m", "--optimizer=" + optimizer}, &server).empty()) return 1;
    rss = ResidentBytes(server.pid());
  }
  const double per_value = 4.0 * (1 + Slots(optimizer));
  // The 1M model's own bytes are part of the base's measurement.
  Report(absl::StrCat("dense 100M values, ", optimizer).c_str(),
         base - static_cast<int64_t>(per_value * (1 << 20)), rss, per_value * 1e8);
  return 0;
}

int Sparse() {
  const int64_t rows = absl::GetFlag(FLAGS_sparse_rows);
  if (rows <= 0) return 0;
  const std::string optimizer = absl::GetFlag(FLAGS_sparse_optimizer);
  Subprocess server;
  const std::string address = Start({"--model=bench", "--mode=async", "--optimizer=" + optimizer,
                                     absl::StrCat("--max_sparse_rows=", rows + 1)},
                                    &server);
  if (address.empty()) return 1;
  auto channel = *OpenChannel(address, ClientSecurityOptions{});
  auto coordinator = Coordinator::NewStub(channel);
  auto ps = ParameterService::NewStub(channel);
  RegisterWorkerResponse registered;
  {
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    RegisterWorkerRequest r;
    r.set_worker_name("memory");
    if (!coordinator->RegisterWorker(&c, r, &registered).ok()) return 1;
  }
  const int64_t before = ResidentBytes(server.pid());
  constexpr int kBatch = 100000;
  for (int64_t first = 0; first < rows; first += kBatch) {
    PullRequest pull;
    pull.mutable_header()->set_worker_id(registered.worker_id());
    pull.mutable_header()->set_coordinator_incarnation(registered.incarnation());
    pull.mutable_header()->set_clock(-1);
    SparseKeys* keys = pull.add_sparse();
    keys->set_table("bench/emb");
    for (int64_t k = first; k < std::min(rows, first + kBatch); ++k)
      keys->add_keys(k * 2654435761u);
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    PullResponse response;
    grpc::Status s = ps->Pull(&c, pull, &response);
    if (!s.ok()) {
      std::fprintf(stderr, "memory: pull failed: %s\n", s.error_message().c_str());
      return 1;
    }
  }
  const int64_t after = ResidentBytes(server.pid());
  JobStatus status;
  {
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    coordinator->GetStatus(&c, GetStatusRequest(), &status);
  }
  server.Signal(SIGKILL);
  const double row_bytes = 8 * 4.0 * (1 + Slots(optimizer));
  Report(absl::StrCat("sparse ", rows, " rows dim 8, ", optimizer).c_str(), before, after,
         row_bytes * rows);
  for (const SparseTableStatus& t : status.sparse_tables()) {
    std::printf(
        "  table %s: %llu rows, %.1f bytes/row by status (values+slots %.0f, index the rest)\n",
        t.name().c_str(), static_cast<unsigned long long>(t.rows()), t.bytes_per_row(), row_bytes);
  }
  return 0;
}

int Worker() {
  const int epochs = absl::GetFlag(FLAGS_worker_epochs);
  if (epochs <= 0) return 0;
  Subprocess server;
  const std::string address =
      Start({"--model=mlp", "--mode=async", absl::StrCat("--epochs=", epochs), "--exit_when_done"},
            &server);
  if (address.empty()) return 1;
  Subprocess worker;
  absl::Status started = worker.Start({absl::GetFlag(FLAGS_worker), "--coordinator=" + address},
                                      "/dev/null", "/dev/null");
  if (!started.ok()) {
    std::fprintf(stderr, "memory: worker: %s\n", started.ToString().c_str());
    return 1;
  }
  // Samples until the worker exits: the first after its data is loaded and
  // it trains, then every half second.
  std::vector<int64_t> samples;
  const pid_t worker_pid = worker.pid();
  while (absl::IsDeadlineExceeded(worker.Wait(absl::ZeroDuration()).status())) {
    const int64_t rss = ResidentBytes(worker_pid);
    if (rss > 0) samples.push_back(rss);
    absl::SleepFor(absl::Milliseconds(500));
  }
  if (samples.size() < 8) {
    std::fprintf(stderr, "memory: the worker run was too short to sample\n");
    return 1;
  }
  // Skip the first quarter (loading data, first epoch); then compare.
  const size_t from = samples.size() / 4;
  int64_t low = samples[from], high = samples[from];
  for (size_t i = from; i < samples.size(); ++i) {
    low = std::min(low, samples[i]);
    high = std::max(high, samples[i]);
  }
  std::printf(
      "worker mlp %d epochs: %zu samples, rss after the first quarter %.1f MB, "
      "at the end %.1f MB, range %.1f-%.1f MB\n",
      epochs, samples.size(), samples[from] / 1e6, samples.back() / 1e6, low / 1e6, high / 1e6);
  return 0;
}

}  // namespace
}  // namespace fulcrum

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (int rc = fulcrum::Dense(); rc != 0) {
    std::fprintf(stderr, "memory: the dense run failed\n");
    return rc;
  }
  if (int rc = fulcrum::Sparse(); rc != 0) {
    std::fprintf(stderr, "memory: the sparse run failed\n");
    return rc;
  }
  if (int rc = fulcrum::Worker(); rc != 0) {
    std::fprintf(stderr, "memory: the worker run failed\n");
    return rc;
  }
  return 0;
}
