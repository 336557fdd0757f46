#include "common/eval_format.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"

namespace fulcrum {

std::string FormatEval(const EvalResult& eval) {
  std::string out;
  if (eval.metrics().empty() || eval.test_accuracy() > 0) {
    absl::StrAppendFormat(&out, " test_accuracy=%.4f", eval.test_accuracy());
  }
  if (eval.test_auc() > 0) absl::StrAppendFormat(&out, " test_auc=%.4f", eval.test_auc());
  std::vector<std::pair<std::string, double>> metrics(eval.metrics().begin(), eval.metrics().end());
  std::sort(metrics.begin(), metrics.end());
  for (const auto& [name, value] : metrics) absl::StrAppendFormat(&out, " %s=%.6g", name, value);
  return out;
}

}  // namespace fulcrum
