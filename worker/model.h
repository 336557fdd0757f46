// Models a worker trains: forward pass, loss and gradients on the worker's
// CPU with Eigen. Parameters live on the parameter servers; a model only
// computes with the copy it is handed.
#ifndef FULCRUM_WORKER_MODEL_H_
#define FULCRUM_WORKER_MODEL_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/job.pb.h"
#include "worker/parameter_batch.h"

namespace fulcrum {

// A mini-batch: `size` examples of `num_features` floats (row-major) and
// their class labels. Not owned.
struct Batch {
  const float* features = nullptr;
  const uint8_t* labels = nullptr;
  int64_t size = 0;
  int64_t num_features = 0;
};

// A classifier trained with softmax cross-entropy.
//
// Not thread-safe: a model keeps scratch buffers between calls. Use one per
// thread.
class Model {
 public:
  virtual ~Model() = default;

  // The tensors this model reads, as ps_server creates them.
  virtual const std::vector<TensorSpec>& tensors() const = 0;

  // Returns the mean cross-entropy over `batch` and writes its gradient with
  // respect to every parameter (the mean over the batch) into `grads`, sized
  // like `params`. Labels must be < the number of classes.
  virtual double ComputeGradients(const ParameterSet& params, const Batch& batch,
                                  ParameterSet* grads) = 0;

  // Adds to *correct the number of examples whose arg-max prediction equals
  // the label and to *loss_sum their summed cross-entropy.
  virtual void Evaluate(const ParameterSet& params, const Batch& batch, int64_t* correct,
                        double* loss_sum) = 0;
};

// "softmax" (784->10 softmax regression) or "mlp" (784->256 ReLU->10);
// NOT_FOUND otherwise.
absl::StatusOr<std::unique_ptr<Model>> CreateModel(absl::string_view name);

// Zero-filled storage shaped like `tensors`.
ParameterSet ZerosLike(const std::vector<TensorSpec>& tensors);

}  // namespace fulcrum

#endif  // FULCRUM_WORKER_MODEL_H_
