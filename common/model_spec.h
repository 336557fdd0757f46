// The parameter tensors of the models the worker has code for (the server
// learns them from job files: server/jobs/), and consistency-mode names.
#ifndef FULCRUM_COMMON_MODEL_SPEC_H_
#define FULCRUM_COMMON_MODEL_SPEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/job.pb.h"

namespace fulcrum {

// Fashion-MNIST geometry.
inline constexpr int64_t kImageFeatures = 28 * 28;
inline constexpr int64_t kImageClasses = 10;
// Hidden width of the "mlp" model.
inline constexpr int64_t kMlpHidden = 256;

// The dense tensors of `model` ("softmax": 784->10 softmax regression,
// "mlp": 784->256->10 with ReLU, "sparse_lr": logistic regression's bias,
// "bench": one 4M-element tensor for bench/pushpull; "bench_1m": one 1M-element
// tensor for bench/many_workers; "bench_100m": one 100M-element tensor for
// bench/memory).
// NOT_FOUND for any other name.
absl::StatusOr<std::vector<TensorSpec>> ModelTensors(absl::string_view model);

// The sparse tables of `model` ("sparse_lr": "lr/w", one weight per feature
// id; "bench": "bench/emb" of dim 8); none for the others.
std::vector<SparseTableSpec> ModelSparseTables(absl::string_view model);

// "sync", "async" or "ssp" for a mode; "unspecified" otherwise.
std::string ConsistencyModeName(ConsistencyMode mode);

// A consistency mode with its SSP staleness bound (0 otherwise).
struct Consistency {
  ConsistencyMode mode = CONSISTENCY_UNSPECIFIED;
  uint32_t staleness = 0;
};
// Parses "sync", "async" or "ssp:S" (S >= 0 clocks); INVALID_ARGUMENT
// otherwise.
absl::StatusOr<Consistency> ParseConsistency(absl::string_view text);

// Product of the spec's shape; 0 for an empty shape.
int64_t ElementCount(const TensorSpec& spec);

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_MODEL_SPEC_H_
