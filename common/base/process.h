// Process-wide settings every Fulcrum binary applies at the start of main.
#ifndef FULCRUM_COMMON_BASE_PROCESS_H_
#define FULCRUM_COMMON_BASE_PROCESS_H_

#include <cstdlib>  // defines __GLIBC__ under glibc

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "absl/synchronization/mutex.h"

namespace fulcrum {

// Turns off Abseil's mutex deadlock detection. Debian builds Abseil without
// NDEBUG, so detection defaults to on: every lock records lock-order graph
// edges and every Mutex destroyed (gRPC makes and drops several per call)
// walks that graph. A profile of ps_server serving 1 KB pushes showed the
// graph's bookkeeping in the hot path. Call before any thread starts.
inline void TuneMutexes() { absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore); }

// Keeps memory that large messages freed in the process, for the next ones.
// By default glibc gives a freed block of a few hundred KB back to the kernel
// (munmap, or a trim of the heap's top with madvise) and the next message of
// that size faults its pages in afresh: a ps_server receiving and sending a
// 0.8 MB MLP gradient and model per step spent most of its time in page
// faults and TLB shootdowns (they are dear on a VM), and MLP training ran at
// 24,800-36,100 examples/s instead of 60,600-63,800 (bench/FIGURES.md,
// "Freed memory kept"). Blocks up to 32 MiB come from the heap, and up to
// 512 MiB of free memory at its top stays mapped; a process's footprint stays
// at its high-water mark up to that. Call at the start of main.
inline void KeepFreedMemory() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's maximum
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  mallopt(M_TOP_PAD, 64 << 20);
#endif
}

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_BASE_PROCESS_H_
