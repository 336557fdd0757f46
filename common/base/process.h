// Process-wide settings every Fulcrum binary applies at the start of main.
#ifndef FULCRUM_COMMON_BASE_PROCESS_H_
#define FULCRUM_COMMON_BASE_PROCESS_H_

#include "absl/synchronization/mutex.h"

namespace fulcrum {

// Turns off Abseil's mutex deadlock detection. Debian builds Abseil without
// NDEBUG, so detection defaults to on: every lock records lock-order graph
// edges and every Mutex destroyed (gRPC makes and drops several per call)
// walks that graph. A profile of ps_server serving 1 KB pushes showed the
// graph's bookkeeping in the hot path. Call before any thread starts.
inline void TuneMutexes() { absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore); }

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_BASE_PROCESS_H_
