// Auc: the area under the ROC curve, for evaluating binary classifiers.
#ifndef FULCRUM_COMMON_DATA_AUC_H_
#define FULCRUM_COMMON_DATA_AUC_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace fulcrum {

// Area under the ROC curve of `scores` for binary `labels` (ties count
// half): the chance that a random positive scores above a random negative.
// INVALID_ARGUMENT if sizes differ, one class is missing or a score is not
// finite (a diverged model's NaN).
absl::StatusOr<double> Auc(absl::Span<const double> scores, absl::Span<const uint8_t> labels);

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_DATA_AUC_H_
