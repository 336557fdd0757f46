// LocalCluster: a real ps_server and worker processes on 127.0.0.1 for
// process-level tests, with the job's status read over gRPC.
#ifndef FULCRUM_TESTS_CLUSTER_H_
#define FULCRUM_TESTS_CLUSTER_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/coordinator.grpc.pb.h"
#include "tests/subprocess.h"

namespace fulcrum {

// Where a process of a LocalCluster runs: on this machine's loopback by
// default, or on a Netlab host (tests/netlab.h).
struct Placement {
  // argv prefix that starts a program there ("ip netns exec NS"); empty: here.
  std::vector<std::string> launcher;
  // The address a server there listens on and is dialled at.
  std::string host = "127.0.0.1";
};

// Not thread-safe. Processes still running are killed on destruction.
class LocalCluster {
 public:
  // `name` names the folder (under TEST_TMPDIR) for logs.
  explicit LocalCluster(const std::string& name);
  ~LocalCluster();

  // Starts ps_server on an ephemeral port with `flags` (plus --host,
  // --port=0, --port_file, --status_interval=0) and waits for the port.
  // Placed elsewhere than here, the server also serves a unix socket, which
  // Status() uses: the test need not reach the host's network.
  absl::Status StartServer(const std::vector<std::string>& flags, const Placement& placement = {});
  // SIGKILLs the server and starts it again on the same port with `flags`.
  absl::Status RestartServer(const std::vector<std::string>& flags);
  // Starts ps_server shard `index` (>= 1) of `num_shards`, registering with
  // the coordinator started by StartServer, on an ephemeral port with
  // `flags`; waits for its port. Returns `index`.
  absl::StatusOr<int> StartShard(int index, int num_shards,
                                 const std::vector<std::string>& flags = {},
                                 const Placement& placement = {});
  // Starts a second ps_server for shard `index` (>= 1) once its primary
  // serves: it becomes that shard's backup. Returns the process's id for
  // shard(), ShardLog() and shard_address(): kBackupId + index.
  static constexpr int kBackupId = 100;
  absl::StatusOr<int> StartBackup(int index, int num_shards,
                                  const std::vector<std::string>& flags = {},
                                  const Placement& placement = {});
  // Starts a second ps_server for shard 0 (--coordinator naming the
  // server): the coordinator's backup. Status() asks it when the server does
  // not answer. Returns its id for shard(), ShardLog() and shard_address():
  // kBackupId.
  absl::StatusOr<int> StartCoordinatorBackup(int num_shards, const std::vector<std::string>& flags,
                                             const Placement& placement = {});
  // SIGKILLs shard `index` and starts it again on the same port with the
  // flags it was started with plus `extra_flags`.
  absl::Status RestartShard(int index, const std::vector<std::string>& extra_flags = {});
  // A shard process by id (its index, or what StartBackup returned).
  Subprocess& shard(int index) { return *shards_.at(index).process; }
  std::string ShardLog(int index) const;
  std::string shard_address(int index) const;

  // Starts a worker named `name` (dialling the server's TCP port unless
  // `flags` hold a --coordinator of their own); returns its index.
  absl::StatusOr<int> StartWorker(const std::string& name,
                                  const std::vector<std::string>& flags = {},
                                  const Placement& placement = {});

  // The same for any worker program (a runfile path: "worker/examples/
  // kmeans/kmeans_worker"); StartWorker runs "worker/worker" with
  // --worker_name.
  absl::StatusOr<int> StartWorkerProgram(const std::string& program,
                                         const std::vector<std::string>& flags = {},
                                         const Placement& placement = {});

  // A whole job: ps_server --job=`job_file` (a runfile path) --exit_when_done
  // plus `server_flags`, and `workers` copies of `program` with `flags`.
  // Returns the server's stdout (its "result:" line) once every process
  // exited 0; otherwise an error with the failing process's log.
  absl::StatusOr<std::string> RunJob(const std::string& job_file,
                                     const std::vector<std::string>& server_flags,
                                     const std::string& program,
                                     const std::vector<std::string>& flags, int workers,
                                     absl::Duration timeout);

  absl::StatusOr<JobStatus> Status() const;
  // Polls Status until `done` holds for it, or the timeout.
  absl::StatusOr<JobStatus> WaitFor(const std::function<bool(const JobStatus&)>& done,
                                    absl::Duration timeout) const;

  // Waits (up to `timeout` each) for `workers` to exit 0, then for the job to
  // be FINISHED; returns the final status (records test failures).
  JobStatus FinishJob(const std::vector<int>& workers, absl::Duration timeout);

  // Waits for worker i to exit and returns its exit code.
  absl::StatusOr<int> WaitWorker(int i, absl::Duration timeout);
  Subprocess& worker(int i) { return *workers_[i]; }
  Subprocess& server() { return server_; }
  std::string WorkerLog(int i) const;
  std::string ServerLog() const;
  std::string ServerOut() const;
  std::string address() const;
  const std::string& dir() const { return dir_; }

 private:
  // A unix socket path short enough for sun_path, under /tmp.
  static std::string ShortSocketPath();
  absl::StatusOr<int> StartShardProcess(int id, int index, int num_shards,
                                        const std::vector<std::string>& flags,
                                        const Placement& placement);

  std::string dir_;
  Subprocess server_;
  Placement server_placement_;
  std::string status_socket_;         // when the server is placed elsewhere
  std::string backup_status_socket_;  // when the coordinator's backup is
  std::vector<std::unique_ptr<Subprocess>> workers_;
  struct Shard {
    std::unique_ptr<Subprocess> process;
    std::vector<std::string> argv;  // with the launcher, without the port flags
    std::string host;
    int port = 0;
    int restarts = 0;
  };
  std::map<int, Shard> shards_;
  int port_ = 0;
  int restarts_ = 0;
  std::unique_ptr<Coordinator::Stub> stub_;
  // The coordinator's backup, asked for status when the server is not.
  std::unique_ptr<Coordinator::Stub> backup_stub_;
};

// Field `name` (test_accuracy, inertia, ...) of ps_server's "result:" line;
// -1 if there is none.
double ResultMetric(const std::string& server_out, const std::string& name);
double ResultAccuracy(const std::string& server_out);

// The port of the first "metrics at http://HOST:PORT/metrics" in a
// process's `log`; 0 if none yet.
int MetricsPort(const std::string& log);

// Runs tools/gen_click_data into `out_dir` with `flags` (its logs beside
// it); an error carries the generator's stderr.
absl::Status GenerateClickData(const std::string& out_dir, const std::vector<std::string>& flags);

// The last worker of `status` named `name` (with `live_only`, not DEAD or
// LEFT); null if none.
const WorkerStatus* FindWorker(const JobStatus& status, const std::string& name,
                               bool live_only = false);

// Every (epoch, partition) of `status` completed exactly once, for all
// epochs: empty if so, else a description of what is wrong.
std::string CheckEachPartitionOncePerEpoch(const JobStatus& status);

}  // namespace fulcrum

#endif  // FULCRUM_TESTS_CLUSTER_H_
