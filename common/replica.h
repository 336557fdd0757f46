// How a worker tells a shard's backup, which serves no one until it takes
// over from its primary, from a shard that cannot be reached: the backup
// answers UNAVAILABLE with a message that begins with kBackupNotServing.
// Part of the ParameterService protocol (proto/parameter_service.proto),
// and of the Coordinator service's (the coordinator's backup answers so).
#ifndef FULCRUM_COMMON_REPLICA_H_
#define FULCRUM_COMMON_REPLICA_H_

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace fulcrum {

inline constexpr absl::string_view kBackupNotServing = "backup not serving: ";

// Whether an UNAVAILABLE status's message is a backup's "not serving yet".
inline bool IsBackupNotServing(absl::string_view message) {
  return absl::StartsWith(message, kBackupNotServing);
}

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_REPLICA_H_
