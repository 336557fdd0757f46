#include "server/store/initializer.h"

#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"

namespace fulcrum {
namespace {

// FNV-1a: stable across processes and builds (absl::Hash is salted per
// process, which would break seeded reproducibility).
uint64_t StableHash(absl::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace

absl::Status InitializeTensor(const TensorSpec& spec, uint64_t seed, absl::Span<float> values) {
  float limit = 0.0f;
  switch (spec.initializer()) {
    case ZEROS:
    case INITIALIZER_UNSPECIFIED:
      std::fill(values.begin(), values.end(), 0.0f);
      return absl::OkStatus();
    case CONSTANT:
      if (!std::isfinite(spec.scale())) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor ", spec.name(), ": CONSTANT needs a finite scale"));
      }
      std::fill(values.begin(), values.end(), spec.scale());
      return absl::OkStatus();
    case UNIFORM:
      if (!(spec.scale() > 0.0f)) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor ", spec.name(), ": UNIFORM needs a positive scale"));
      }
      limit = spec.scale();
      break;
    case GLOROT_UNIFORM: {
      int64_t fan_in = 1;
      for (int i = 0; i + 1 < spec.shape_size(); ++i) fan_in *= spec.shape(i);
      const int64_t fan_out = spec.shape_size() > 0 ? spec.shape(spec.shape_size() - 1) : 1;
      limit = static_cast<float>(std::sqrt(6.0 / double(fan_in + fan_out)));
      break;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor ", spec.name(), ": unknown initializer ", static_cast<int>(spec.initializer())));
  }
  // A stream per tensor: the seed mixed with the tensor's name.
  std::mt19937_64 rng(seed ^ StableHash(spec.name()));
  std::uniform_real_distribution<float> dist(-limit, limit);
  for (float& v : values) v = dist(rng);
  return absl::OkStatus();
}

}  // namespace fulcrum
