// Initial values for parameter tensors.
#ifndef FULCRUM_SERVER_STORE_INITIALIZER_H_
#define FULCRUM_SERVER_STORE_INITIALIZER_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "proto/job.pb.h"

namespace fulcrum {

// Fills `values` (the whole tensor `spec` describes) as spec.initializer()
// says: ZEROS; UNIFORM in [-scale, scale); GLOROT_UNIFORM in [-s, s) with
// s = sqrt(6 / (fan_in + fan_out)), fan_in = product of all dims but the last,
// fan_out = the last dim (Glorot & Bengio 2010). The same seed and spec give
// the same values. INVALID_ARGUMENT for an unknown initializer or a
// non-positive UNIFORM scale.
absl::Status InitializeTensor(const TensorSpec& spec, uint64_t seed, absl::Span<float> values);

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_STORE_INITIALIZER_H_
