// Workload: what a worker trains — its data, its model, and what one step
// pulls and pushes. The Trainer drives leases, retries and clocks; a
// Workload knows the data and the maths.
#ifndef FULCRUM_WORKER_WORKLOAD_H_
#define FULCRUM_WORKER_WORKLOAD_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/data/idx_dataset.h"
#include "proto/coordinator.pb.h"
#include "proto/job.pb.h"
#include "worker/model.h"
#include "worker/ps_client.h"

namespace fulcrum {

// Not thread-safe: one training thread.
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
  // gradient written to `grads` (shaped like `params`).
  virtual double ComputeGradients(absl::Span<const int64_t> examples, const ParameterBatch& params,
                                  ParameterBatch* grads) = 0;

  // Evaluates the current model on held-out data, reading parameters with
  // `pull` (which fills the batch it is given). `epoch` and `final` are
  // copied into the result.
  using PullFn = std::function<absl::Status(ParameterBatch*)>;
  virtual absl::StatusOr<EvalResult> Evaluate(const PullFn& pull) = 0;
};

// Builds the workload for the job's model ("softmax", "mlp", "sparse_lr").
using WorkloadFactory = std::function<absl::StatusOr<std::unique_ptr<Workload>>(const JobSpec&)>;

// Image classification on Fashion-MNIST-style data (models "softmax" and
// "mlp"). The data sets are not owned; `test` may be null (then it cannot
// evaluate).
std::unique_ptr<Workload> MakeImageWorkload(const ImageDataset* train, const ImageDataset* test,
                                            int64_t eval_chunk = 2000);

// Sparse logistic regression ("sparse_lr") on libsvm files: partitions are
// byte ranges of `train_file`; `test_file` (may be empty: cannot evaluate)
// is read once. Errors reading either name the file.
std::unique_ptr<Workload> MakeSparseLrWorkload(const std::string& train_file,
                                               const std::string& test_file,
                                               int64_t eval_chunk = 10000);

}  // namespace fulcrum

#endif  // FULCRUM_WORKER_WORKLOAD_H_
