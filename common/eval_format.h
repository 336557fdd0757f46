// How an evaluation is printed on one line, alike in ps_server's result and
// progress lines, psctl and the worker's log.
#ifndef FULCRUM_COMMON_EVAL_FORMAT_H_
#define FULCRUM_COMMON_EVAL_FORMAT_H_

#include <string>

#include "proto/coordinator.pb.h"

namespace fulcrum {

// " test_accuracy=0.8500 test_auc=0.9012 inertia=1.9e+06": the accuracy
// (unless the evaluation has metrics and an accuracy of 0: a learner without
// one), the AUC when there is one, then the metrics sorted by name.
std::string FormatEval(const EvalResult& eval);

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_EVAL_FORMAT_H_
