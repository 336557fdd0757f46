// worker: registers with the coordinator, trains its partition of the data
// and exits when the job is done.
//
//   worker --coordinator=HOST:PORT [--data_dir=/usr/share/datasets/fashion-mnist]
#include <algorithm>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/base/process.h"
#include "common/data/idx_dataset.h"
#include "common/data/libsvm.h"
#include "common/rpc/security_flags.h"
#include "worker/fulcrum_worker.h"
#include "worker/workload.h"

ABSL_FLAG(std::string, coordinator, "127.0.0.1:50051",
          "host:port of the coordinating ps_server (comma-separated: the coordinator and its "
          "backup).");
ABSL_FLAG(std::string, data_dir, std::string(fulcrum::kDefaultFashionMnistDir),
          "Folder with the Fashion-MNIST IDX files "
          "({train,t10k}-{images-idx3,labels-idx1}-ubyte.gz).");
ABSL_FLAG(std::string, train_file, "",
          "sparse_lr jobs: the training set in libsvm format (partitions are "
          "byte ranges of it).");
ABSL_FLAG(std::string, test_file, "",
          "sparse_lr jobs: the held-out set in libsvm format (for evaluation).");
ABSL_FLAG(std::string, worker_name, "",
          "Name shown in status; default host:pid. A worker registering with "
          "the name of a live worker replaces it.");
ABSL_FLAG(double, rpc_timeout, 60,
          "Deadline of each RPC, seconds. Sync pulls wait up to this long "
          "for a round and are then retried.");
ABSL_FLAG(int, metrics_port, -1,
          "Serve Prometheus metrics at http://0.0.0.0:PORT/metrics; -1: off, "
          "0: a free port (logged).");
ABSL_FLAG(int, debug_step_delay_ms, 0,
          "Sleep this long after every training step: makes a straggler for "
          "tests and demonstrations.");
ABSL_FLAG(int, max_retries, 10,
          "Attempts per RPC while the server is unavailable (a restart), with "
          "exponential backoff and jitter between them.");
ABSL_FLAG(double, max_backoff, 5.0,
          "Longest wait between two attempts, seconds (backoff starts at "
          "0.1 s and doubles).");

namespace fulcrum {
namespace {

int Fail(const std::string& what, const absl::Status& status) {
  // The code too ("UNAUTHENTICATED: wrong bearer token"), for operators.
  std::fprintf(stderr, "worker: %s: %s\n", what.c_str(), status.ToString().c_str());
  return 1;
}

int Run() {
  WorkerOptions options;
  ConnectionOptions& connection = options.connection;
  connection.coordinator = absl::GetFlag(FLAGS_coordinator);
  connection.worker_name = absl::GetFlag(FLAGS_worker_name);
  connection.rpc_timeout = absl::Seconds(absl::GetFlag(FLAGS_rpc_timeout));
  absl::StatusOr<ClientSecurityOptions> security = ClientSecurityFromFlags();
  if (!security.ok()) {
    std::fprintf(stderr, "worker: %s\n", std::string(security.status().message()).c_str());
    return 1;
  }
  connection.tls_ca = security->tls_ca;
  connection.tls_cert = security->tls_cert;
  connection.tls_key = security->tls_key;
  connection.tls_server_name = security->tls_server_name;
  connection.auth_token = security->auth_token;
  connection.max_attempts = absl::GetFlag(FLAGS_max_retries);
  connection.max_backoff = absl::Seconds(absl::GetFlag(FLAGS_max_backoff));
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  options.step_delay = absl::Milliseconds(std::max(0, absl::GetFlag(FLAGS_debug_step_delay_ms)));

  // Data problems stop the worker before it registers: a sparse_lr worker
  // (--train_file) checks its files, an image worker loads Fashion-MNIST.
  const std::string train_file = absl::GetFlag(FLAGS_train_file);
  const std::string test_file = absl::GetFlag(FLAGS_test_file);
  absl::StatusOr<ImageDataset> train = absl::UnavailableError("not loaded");
  absl::StatusOr<ImageDataset> test = absl::UnavailableError("not loaded");
  if (!train_file.empty()) {
    for (const std::string& file : {train_file, test_file}) {
      if (file.empty()) continue;
      absl::StatusOr<uint64_t> size = FileSize(file);
      if (!size.ok()) return Fail("cannot read data", size.status());
    }
  } else {
    const std::string dir = absl::GetFlag(FLAGS_data_dir);
    train = ReadFashionMnist(dir, "train");
    if (!train.ok()) return Fail("cannot load training data", train.status());
    test = ReadFashionMnist(dir, "t10k");
    if (!test.ok()) return Fail("cannot load test data", test.status());
    // Both sets are standardised with the training set's statistics.
    absl::Status standardized = StandardizeFeatures(*train, &*test);
    if (standardized.ok()) standardized = StandardizeFeatures(*train, &*train);
    if (!standardized.ok()) return Fail("cannot standardise data", standardized);
  }
  auto workloads = [&](const JobSpec& job) -> absl::StatusOr<std::unique_ptr<Workload>> {
    if (job.model() == "sparse_lr") {
      if (train_file.empty()) {
        return absl::FailedPreconditionError("sparse_lr jobs need --train_file");
      }
      return MakeSparseLrWorkload(train_file, test_file);
    }
    if (!train.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("model ", job.model(),
                       " trains on Fashion-MNIST; this worker was started "
                       "with --train_file for sparse_lr"));
    }
    return MakeImageWorkload(&*train, &*test);
  };
  absl::Status trained = RunWorker(options, workloads);
  if (!trained.ok()) {
    return Fail(absl::StrCat("training against coordinator ", connection.coordinator, " failed"),
                trained);
  }
  return 0;
}

}  // namespace
}  // namespace fulcrum

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Fulcrum worker: trains its partition of the data against the "
      "parameter servers.");
  fulcrum::TuneMutexes();
  fulcrum::KeepFreedMemory();
  fulcrum::ListSecurityFlagsInHelp(__FILE__);
  absl::ParseCommandLine(argc, argv);
  return fulcrum::Run();
}
