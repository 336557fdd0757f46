// Server-side optimizers: the update rule a shard applies to a parameter
// range given its gradient.
#ifndef FULCRUM_SERVER_STORE_OPTIMIZER_H_
#define FULCRUM_SERVER_STORE_OPTIMIZER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "proto/job.pb.h"

namespace fulcrum {

// Applies one gradient step to a contiguous range of parameters.
//
// Each optimizer keeps `num_slots()` float arrays beside the values
// (momentum's velocity, Adagrad's accumulator, Adam's two moments); the caller
// owns them, sizes them like the values and zero-fills them (Adagrad's
// initial accumulator is set by InitSlots).
//
// Thread-safety: an Optimizer is immutable after construction; Apply may run
// concurrently on disjoint ranges.
class Optimizer {
 public:
  virtual ~Optimizer() = default;

  // Name for status and logs ("adam(lr=0.001)").
  virtual std::string Describe() const = 0;

  virtual int num_slots() const = 0;

  // Sets a fresh range's slots to their starting values.
  virtual void InitSlots(absl::Span<float* const> slots, size_t n) const;

  // Updates values[0, n) in place with gradient grad[0, n). `slots` has
  // num_slots() arrays of n floats. `step` is the 1-based count of updates
  // this range has received, this one included (Adam's bias correction).
  virtual void Apply(float* values, const float* grad, absl::Span<float* const> slots, size_t n,
                     int64_t step) const = 0;
};

// Builds the optimizer `config` describes, filling unset hyper-parameters with
// their defaults (learning rate 0.01 SGD/momentum/Adagrad/FTRL alpha, 0.001
// Adam; momentum 0.9; beta1 0.9, beta2 0.999, epsilon 1e-8 Adam / 1e-10
// Adagrad; Adagrad initial accumulator 0.1; FTRL beta 1, l1 = l2 = 0).
// INVALID_ARGUMENT for an unknown kind or a hyper-parameter out of range.
absl::StatusOr<std::unique_ptr<Optimizer>> CreateOptimizer(const OptimizerConfig& config);

// Parses "sgd", "momentum", "adagrad", "adam" or "ftrl" (INVALID_ARGUMENT
// otherwise).
absl::StatusOr<OptimizerKind> ParseOptimizerKind(absl::string_view name);

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_STORE_OPTIMIZER_H_
