#include "common/data/auc.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"

namespace fulcrum {

absl::StatusOr<double> Auc(absl::Span<const double> scores, absl::Span<const uint8_t> labels) {
  if (scores.size() != labels.size()) {
    return absl::InvalidArgumentError("scores and labels differ in length");
  }
  for (size_t i = 0; i < scores.size(); ++i) {
    // NaN compares unequal to itself: it would break the sort and the tie
    // loop below, which never ended on one.
    if (!std::isfinite(scores[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("score ", i, " is ", scores[i], ": a diverged model has no AUC"));
    }
  }
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  // Rank-sum (Mann-Whitney U) with average ranks for ties.
  double positive_rank_sum = 0;
  uint64_t positives = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j < order.size() && scores[order[j]] == scores[order[i]]) ++j;
    const double average_rank = (i + 1 + j) / 2.0;  // ranks i+1 .. j
    for (size_t k = i; k < j; ++k) {
      if (labels[order[k]]) {
        positive_rank_sum += average_rank;
        ++positives;
      }
    }
    i = j;
  }
  const uint64_t negatives = labels.size() - positives;
  if (positives == 0 || negatives == 0) {
    return absl::InvalidArgumentError("AUC needs both positive and negative examples");
  }
  return (positive_rank_sum - positives * (positives + 1) / 2.0) / (double(positives) * negatives);
}

}  // namespace fulcrum
