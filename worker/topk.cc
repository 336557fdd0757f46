#include "worker/topk.h"

#include <algorithm>
#include <cmath>

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
    magnitudes_.resize(n);
    for (size_t i = 0; i < n; ++i) magnitudes_[i] = std::fabs(g[i]);
    std::nth_element(magnitudes_.begin(), magnitudes_.begin() + (n - k), magnitudes_.end());
    const float threshold = magnitudes_[n - k];
    size_t above = 0;  // strictly above the threshold: always kept
    for (size_t i = 0; i < n; ++i) above += std::fabs(g[i]) > threshold;
    size_t ties_left = k - above;
    for (size_t i = 0; i < n; ++i) {
      const float m = std::fabs(g[i]);
      const bool keep = m > threshold || (m == threshold && ties_left > 0 && (--ties_left, true));
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
