#include "worker/topk.h"

#include <algorithm>
#include <cmath>
#include <functional>

namespace fulcrum {

TopKSparsifier::TopKSparsifier(double ratio) : ratio_(std::clamp(ratio, 0.0, 1.0)) {}

size_t TopKSparsifier::KeptOf(size_t n) const {
  if (n == 0) return 0;
  // The ratio usually arrives as a float (0.1f is 0.10000000149): without
  // the margin, 10% of 7840 would keep 785.
  return std::clamp<size_t>(static_cast<size_t>(std::ceil(ratio_ * n * (1 - 1e-6))), 1, n);
}

absl::Span<const float> TopKSparsifier::residual(size_t index) const {
  if (index >= residual_.size()) return {};
  return residual_[index];
}

float TopKSparsifier::KthLargestMagnitude(absl::Span<const float> values, size_t k) {
  const size_t n = values.size();
  // A selection over every element costs ~1 ms for 200k floats; instead,
  // a strided sample gives a bound that about 4k elements exceed, and the
  // exact k-th is selected among those few. Falls back to every element
  // when the sample misleads.
  constexpr size_t kStride = 16;
  const size_t sampled = n / kStride;
  const size_t sample_rank = (4 * k) / kStride;  // 0-based, from the top
  if (sampled >= 64 && sample_rank + 1 < sampled) {
    magnitudes_.resize(sampled);
    for (size_t i = 0; i < sampled; ++i) magnitudes_[i] = std::fabs(values[i * kStride]);
    std::nth_element(magnitudes_.begin(), magnitudes_.begin() + sample_rank, magnitudes_.end(),
                     std::greater<float>());
    const float bound = magnitudes_[sample_rank];
    magnitudes_.clear();
    for (float v : values) {
      if (std::fabs(v) >= bound) magnitudes_.push_back(std::fabs(v));
    }
    if (magnitudes_.size() >= k) {
      std::nth_element(magnitudes_.begin(), magnitudes_.begin() + (k - 1), magnitudes_.end(),
                       std::greater<float>());
      return magnitudes_[k - 1];
    }
  }
  magnitudes_.resize(n);
  for (size_t i = 0; i < n; ++i) magnitudes_[i] = std::fabs(values[i]);
  std::nth_element(magnitudes_.begin(), magnitudes_.begin() + (k - 1), magnitudes_.end(),
                   std::greater<float>());
  return magnitudes_[k - 1];
}

void TopKSparsifier::Sparsify(ParameterBatch* grads) {
  if (residual_.size() < grads->dense.size()) residual_.resize(grads->dense.size());
  for (size_t t = 0; t < grads->dense.size(); ++t) {
    std::vector<float>& g = grads->dense[t];
    std::vector<float>& held = residual_[t];
    const size_t n = g.size();
    const size_t k = KeptOf(n);
    if (held.size() != n) held.assign(n, 0.0f);
    for (size_t i = 0; i < n; ++i) g[i] += held[i];
    if (k == n) {
      std::fill(held.begin(), held.end(), 0.0f);
      continue;
    }
    // The k-th largest magnitude is the threshold; ties at it are taken in
    // element order until k are kept.
    const float threshold = KthLargestMagnitude(g, k);
    size_t above = 0;  // strictly above the threshold: always kept
    for (size_t i = 0; i < n; ++i) above += std::fabs(g[i]) > threshold;
    size_t ties_left = k - above;
    for (size_t i = 0; i < n; ++i) {
      const float m = std::fabs(g[i]);
      bool keep = m > threshold;
      if (m == threshold && ties_left > 0) {
        keep = true;
        --ties_left;
      }
      if (keep) {
        held[i] = 0.0f;
      } else {
        held[i] = g[i];
        g[i] = 0.0f;
      }
    }
  }
}

}  // namespace fulcrum
