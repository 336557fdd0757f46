// TopKSparsifier: top-k gradient sparsification with error feedback.
#ifndef FULCRUM_WORKER_TOPK_H_
#define FULCRUM_WORKER_TOPK_H_

#include <cstddef>
#include <vector>

#include "absl/types/span.h"
#include "worker/ps_client.h"

namespace fulcrum {

// Keeps, of each dense tensor's gradient plus what earlier steps held back,
// the `ratio` share of elements with the largest magnitudes (at least one)
// and holds the rest back for the next step: error feedback (Stich et al.,
// "Sparsified SGD with Memory", 2018; Lin et al., "Deep Gradient
// Compression", 2018), so every coordinate's gradient is eventually sent.
// Sparse-table gradients are left alone (already sparse).
//
// The residual lives here, on the worker; it is sized on first use and
// restarted when a tensor's size changes. Not thread-safe.
class TopKSparsifier {
 public:
  // `ratio` in (0, 1]; 1 sends everything (and holds nothing back).
  explicit TopKSparsifier(double ratio);

  // Replaces each grads->dense[i] with its top-k part (zeros elsewhere) and
  // keeps the remainder.
  void Sparsify(ParameterBatch* grads);

  // What tensor `index` holds back for the next step (empty before its
  // first Sparsify).
  absl::Span<const float> residual(size_t index) const;

  // Elements kept of a tensor of `n`.
  size_t KeptOf(size_t n) const;

 private:
  // The k-th largest |value| (1 <= k <= values.size()), exactly.
  float KthLargestMagnitude(absl::Span<const float> values, size_t k);

  const double ratio_;
  std::vector<std::vector<float>> residual_;  // by tensor index
  std::vector<float> magnitudes_;             // scratch
};

}  // namespace fulcrum

#endif  // FULCRUM_WORKER_TOPK_H_
