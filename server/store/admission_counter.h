// AdmissionCounter: how often ids without a row have been pushed, for a
// sparse table's admission rule (FeatureAdmission in proto/job.proto). Two
// kinds: exact counts in a bounded map, and a counting Bloom filter of 8-bit
// cells.
#ifndef FULCRUM_SERVER_STORE_ADMISSION_COUNTER_H_
#define FULCRUM_SERVER_STORE_ADMISSION_COUNTER_H_

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "proto/job.pb.h"

namespace fulcrum {

// What a counter holds, for checkpoints and replicas.
struct AdmissionCounts {
  std::vector<std::pair<uint64_t, uint32_t>> exact;  // EXACT: (id, count)
  std::vector<uint8_t> cells;                        // COUNTING_BLOOM
};

// Not thread-safe: a SparseTable keeps one per lock stripe, guarded by the
// stripe's mutex.
class AdmissionCounter {
 public:
  virtual ~AdmissionCounter() = default;

  // `spec`'s counter with `capacity` counters or cells (one stripe's share).
  static std::unique_ptr<AdmissionCounter> Create(const FeatureAdmission& spec, uint64_t capacity);

  // The count `key` has (pushes seen; an estimate for the Bloom filter,
  // never below the truth).
  virtual uint32_t Count(uint64_t key) const = 0;
  // Counts one more push of `key`.
  virtual void Add(uint64_t key) = 0;
  // `key` got a row after `pushes` counted pushes: its count goes (EXACT:
  // erased; Bloom: its cells give back up to `pushes`), so an evicted id
  // must be counted again.
  virtual void Forget(uint64_t key, uint32_t pushes) = 0;

  // Memory of the counters, in bytes.
  virtual uint64_t bytes() const = 0;
  // EXACT: ids being counted; Bloom: 0.
  virtual uint64_t pending() const = 0;
  // Bloom: cells above zero; EXACT: 0.
  virtual uint64_t cells_in_use() const = 0;

  // Appends this counter's state to `out` (a table's stripes in order).
  virtual void ExportTo(AdmissionCounts* out) const = 0;
  // Replaces the state: EXACT takes `exact` (the ids of its stripe), Bloom
  // `cells` (cells() of them).
  virtual void Import(absl::Span<const std::pair<uint64_t, uint32_t>> exact,
                      absl::Span<const uint8_t> cells) = 0;
  // Bloom: the cells it holds; EXACT: 0.
  virtual size_t cells() const = 0;
  virtual void Clear() = 0;
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_STORE_ADMISSION_COUNTER_H_
