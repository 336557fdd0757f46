// Early-return helpers for absl::Status and absl::StatusOr (Debian's Abseil
// 20220623 has none of its own).
#ifndef FULCRUM_COMMON_BASE_STATUS_MACROS_H_
#define FULCRUM_COMMON_BASE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define FULCRUM_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    ::absl::Status fulcrum_status_ = (expr);           \
    if (!fulcrum_status_.ok()) return fulcrum_status_; \
  } while (0)

#define FULCRUM_STATUS_CONCAT_INNER_(a, b) a##b
#define FULCRUM_STATUS_CONCAT_(a, b) FULCRUM_STATUS_CONCAT_INNER_(a, b)

// `FULCRUM_ASSIGN_OR_RETURN(auto x, StatusOrExpr());` assigns the value or
// returns the error.
#define FULCRUM_ASSIGN_OR_RETURN(lhs, expr) \
  FULCRUM_ASSIGN_OR_RETURN_IMPL_(FULCRUM_STATUS_CONCAT_(fulcrum_statusor_, __LINE__), lhs, expr)

#define FULCRUM_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                   \
  if (!statusor.ok()) return statusor.status();             \
  lhs = std::move(statusor).value()

#endif  // FULCRUM_COMMON_BASE_STATUS_MACROS_H_
