// The Fulcrum worker library: the one header a program includes to train its
// own model against Fulcrum's parameter servers (`ps_server`). Link
// //worker:fulcrum_worker.
//
// Two levels:
//
//  * Implement a Workload (the data and the maths) and call RunWorker: the
//    library registers, heartbeats, takes leases, keeps the clocks of the
//    job's consistency mode, retries, answers evaluation tasks, compresses
//    pushes when the job says so and overlaps communication with compute in
//    async jobs. Fulcrum's own `worker` binary is such a program.
//
//  * Keep your own loop with a Session: NextTask, then Pull / PushPull / Push
//    parameters by tensor name and sparse keys into and out of your buffers,
//    Complete or ReportEval. Heartbeats run in the background; every call has
//    a deadline and bounded retries.
//
// The job (tensors, tables, optimizer, mode, schedule) is the server's: a
// worker learns it when it registers (JobSpec, proto/job.proto).
#ifndef FULCRUM_WORKER_FULCRUM_WORKER_H_
#define FULCRUM_WORKER_FULCRUM_WORKER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "proto/coordinator.pb.h"
#include "proto/job.pb.h"
#include "worker/parameter_batch.h"

namespace fulcrum {

// What a worker trains: its data, its model, what one step reads and how it
// computes a gradient. RunWorker drives it from one thread (not necessarily
// the caller's: the library may compute a step while the previous one's
// push is in flight, but never two calls at once).
class Workload {
 public:
  virtual ~Workload() = default;

  // Adopts the job the coordinator sent (after each registration):
  // FAILED_PRECONDITION if this workload cannot train it (another model,
  // data that does not fit).
  virtual absl::Status Configure(const JobSpec& job) = 0;

  // Loads the partition's examples; returns how many. Steps then name
  // examples by position in it.
  virtual absl::StatusOr<int64_t> LoadPartition(const DataPartition& partition) = 0;

  // What a step on `examples` reads: fills batch->tensors and the keys of
  // batch->sparse.
  virtual void PlanStep(absl::Span<const int64_t> examples, ParameterBatch* batch) = 0;

  // From the pulled `params`, the mean loss over `examples`, with the
  // gradient written to `grads` (shaped like `params`). An error ends the
  // task before the step's push, and RunWorker returns it.
  virtual absl::StatusOr<double> ComputeGradients(absl::Span<const int64_t> examples,
                                                  const ParameterBatch& params,
                                                  ParameterBatch* grads) = 0;

  // Evaluates the current model on held-out data, reading parameters with
  // `pull` (which fills the batch it is given: tensors and keys set as in
  // PlanStep).
  using PullFn = std::function<absl::Status(ParameterBatch*)>;
  virtual absl::StatusOr<EvalResult> Evaluate(const PullFn& pull) = 0;
};

// Builds the workload for a job (called once the job is known, and again if
// a re-registration brings another model).
using WorkloadFactory = std::function<absl::StatusOr<std::unique_ptr<Workload>>(const JobSpec&)>;

// How to reach and authenticate to the servers, and how patient to be.
struct ConnectionOptions {
  // host:port of the coordinating ps_server (the other shards' addresses
  // come with the registration).
  std::string coordinator = "127.0.0.1:50051";
  // Shown in status; "" means host:pid. A worker registering with the name
  // of a live worker replaces it.
  std::string worker_name;
  // Bearer token the servers require ("" when they require none).
  std::string auth_token;
  // TLS: a PEM CA bundle to verify the servers with ("" = plaintext), a
  // client certificate and key for mutual TLS, and the name the servers'
  // certificates carry if not the host dialled. Paths.
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  // Deadline of each RPC. A pull waiting for a sync round or a slower ssp
  // worker longer than this is asked again, up to `start_timeout` in all.
  absl::Duration rpc_timeout = absl::Seconds(60);
  absl::Duration start_timeout = absl::Minutes(10);
  // Attempts per call while a server is unavailable (restarting), with
  // exponential backoff from 0.1 s up to max_backoff, jittered.
  int max_attempts = 10;
  absl::Duration max_backoff = absl::Seconds(5);
};

// RunWorker's settings.
struct WorkerOptions {
  ConnectionOptions connection;
  // Serve Prometheus metrics at http://0.0.0.0:PORT/metrics; -1: off, 0: a
  // free port (logged).
  int metrics_port = -1;
  // Sleep after every training step (makes a straggler for tests and demos).
  absl::Duration step_delay = absl::ZeroDuration();
  // Times in a row the coordinator may declare this worker dead (it
  // registers again each time) before RunWorker gives up.
  int max_reregistrations = 10;
};

// Trains whatever the coordinator leases to this worker with the workloads
// `factory` builds, until the job is over. OK when it finished or was
// stopped; otherwise the error that ended it (an RPC status that retries
// could not cure, or the workload's own). Blocks the calling thread.
absl::Status RunWorker(const WorkerOptions& options, const WorkloadFactory& factory);

// The order a partition's `num_examples` examples are trained in: fixed by
// the job's seed and the partition, so a partition retrained after its
// worker died is trained the same way. RunWorker uses it; Session loops
// should too.
std::vector<int64_t> ExampleOrder(const JobSpec& job, const DataPartition& partition,
                                  int64_t num_examples);

// A piece of work from the coordinator (Session::NextTask).
struct Task {
  enum Kind {
    kTrain,     // train `partition` to its end, then Complete
    kEvaluate,  // evaluate the current model, then ReportEval
    kWait,      // nothing to hand out now: ask again after `retry_after`
    kDone,      // the job is over (finished or stopped)
  };
  Kind kind = kDone;
  uint64_t lease_id = 0;
  DataPartition partition;                            // kTrain
  int64_t eval_epoch = 0;                             // kEvaluate: the epoch just finished
  bool eval_final = false;                            // kEvaluate: the last evaluation of the job
  absl::Duration retry_after = absl::ZeroDuration();  // kWait
};

// A dense tensor by name and the caller's buffer for it (its element count,
// row-major): written by pulls, read by pushes. Not owned.
struct DenseBuffer {
  std::string name;
  absl::Span<float> values;
};

// Rows of a sparse table by key and the caller's buffer for them
// (keys.size() * dim floats): written by pulls, read by pushes. Not owned.
struct SparseBuffer {
  std::string table;
  absl::Span<const uint64_t> keys;
  absl::Span<float> values;
  // Pull only: do not create missing rows (read their initial values).
  bool read_only = false;
};

// Buffers for one call: any of the job's dense tensors and sparse tables.
struct Buffers {
  std::vector<DenseBuffer> dense;
  std::vector<SparseBuffer> sparse;
};

// A low-level connection to a job for programs with their own loop.
//
// A training task's steps: Pull (the first step's parameters), then for each
// step compute a gradient and PushPull it (the gradient out, the next step's
// parameters back in one round trip), Push on the last step, then Complete.
// The session keeps the clocks these calls carry under the job's mode (sync
// rounds, the ssp clock of the lease), so the same loop serves every mode.
//
// Errors any call may return: INVALID_ARGUMENT for a tensor or table the
// job does not have, or a buffer of the wrong size (nothing is sent);
// FAILED_PRECONDITION when the coordinator declared this worker dead (the
// task is lost; NextTask registers again); ABORTED when a shard restarted
// from a checkpoint (the step's parameters are stale: Pull again and redo
// the step); DEADLINE_EXCEEDED when a wait outlasted start_timeout;
// UNAVAILABLE when retries ran out; the server's status otherwise.
//
// Thread-compatible: one thread makes the calls (heartbeats run on the
// session's own thread).
class Session {
 public:
  // Connects and registers. Errors: the TLS or token settings, or the
  // registration's.
  static absl::StatusOr<std::unique_ptr<Session>> Open(const ConnectionOptions& options);
  virtual ~Session() = default;

  // The job of the last registration.
  virtual const JobSpec& job() const = 0;
  // This worker's id in the coordinator's status (changes when it registers
  // again).
  virtual int64_t worker_id() const = 0;

  // The next task (kWait: sleep `retry_after` and ask again).
  virtual absl::StatusOr<Task> NextTask() = 0;

  // Reads parameters into `params`' buffers.
  virtual absl::Status Pull(const Buffers& params) = 0;
  // Sends the gradient of a step on `examples` examples whose mean loss was
  // `loss` (< 0: not known; shown in status), then reads the next step's
  // parameters into `params`. A retry applies the push at most once.
  virtual absl::Status PushPull(const Buffers& grads, int64_t examples, double loss,
                                const Buffers& params) = 0;
  // Sends the gradient of the task's last step.
  virtual absl::Status Push(const Buffers& grads, int64_t examples, double loss) = 0;
  // Reads the current parameters for an evaluation (no clocks to wait for).
  virtual absl::Status PullForEval(const Buffers& params) = 0;

  // The training task was trained to its end.
  virtual absl::Status Complete(const Task& task) = 0;
  // The evaluation task's result (epoch and final are taken from the task).
  virtual absl::Status ReportEval(const Task& task, const EvalResult& eval) = 0;
};

}  // namespace fulcrum

#endif  // FULCRUM_WORKER_FULCRUM_WORKER_H_
