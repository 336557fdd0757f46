// AdmissionCounter: how often ids without a row have been pushed, for a
// sparse table's admission rule (FeatureAdmission in proto/job.proto). Two
// kinds: exact counts in a bounded map, and a counting Bloom filter of 8-bit
// cells. Both remember when (at which of the table's updates) each count or
// block of cells last changed, so a checkpoint can hold only what changed.
#ifndef FULCRUM_SERVER_STORE_ADMISSION_COUNTER_H_
#define FULCRUM_SERVER_STORE_ADMISSION_COUNTER_H_

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "proto/job.pb.h"

namespace fulcrum {

// A table's admission counts, whole or as a delta (what changed since a
// snapshot's mark), for checkpoints and replicas.
struct AdmissionCounts {
  // EXACT: (id, count) in key order; a delta's: the counts changed since.
  std::vector<std::pair<uint64_t, uint32_t>> exact;
  // EXACT: how often each stripe's counts were halved so far (a delta's
  // base is halved as often again before the delta's counts replace its).
  std::vector<uint64_t> halvings;
  // Bloom: cells in blocks (first cell, cells): a whole table's every
  // block, a delta's those changed since.
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> blocks;
  uint64_t cells = 0;  // Bloom: the table's cells
};

// Not thread-safe: a SparseTable keeps one per lock stripe, guarded by the
// stripe's mutex. `update` arguments are the table's update count, kept
// modulo 2^32: a delta spans fewer than 2^31 updates.
class AdmissionCounter {
 public:
  static constexpr size_t kBlockCells = 4096;

  virtual ~AdmissionCounter() = default;

  // `spec`'s counter with `capacity` counters or cells (one stripe's share).
  static std::unique_ptr<AdmissionCounter> Create(const FeatureAdmission& spec, uint64_t capacity);

  // The count `key` has (pushes seen; for the Bloom filter an estimate, see
  // FeatureAdmission.COUNTING_BLOOM).
  virtual uint32_t Count(uint64_t key) const = 0;
  // Counts one more push of `key`, at table update `update`.
  virtual void Add(uint64_t key, uint64_t update) = 0;
  // `key` got a row after `pushes` counted pushes: its count goes (EXACT:
  // erased; Bloom: its cells give back up to `pushes`), so an evicted id
  // must be counted again.
  virtual void Forget(uint64_t key, uint32_t pushes, uint64_t update) = 0;

  // Memory of the counters, in bytes.
  virtual uint64_t bytes() const = 0;
  // EXACT: ids being counted; Bloom: 0.
  virtual uint64_t pending() const = 0;
  // Bloom: cells above zero, and all cells; EXACT: 0.
  virtual uint64_t cells_in_use() const = 0;
  virtual size_t cells() const = 0;

  // Appends this counter's state to `out` (a table's stripes in order; Bloom
  // cells numbered from `first_cell`): everything, or with `since` what
  // changed after that update.
  virtual void ExportTo(AdmissionCounts* out, uint64_t first_cell, const uint64_t* since) const = 0;
  // Replaces the state with a whole one: EXACT takes `exact` (the ids of
  // its stripe) and `halvings`, Bloom its cells from `blocks` (numbered from
  // `first_cell`).
  virtual void Import(absl::Span<const std::pair<uint64_t, uint32_t>> exact, uint64_t halvings,
                      const AdmissionCounts& whole, uint64_t first_cell) = 0;
  virtual void Clear() = 0;
};

// Applies `delta` (counts changed since a mark) to `base` (the counts at that
// mark), for a table of `stripes` stripes (`stripe_of` maps an id to its)
// whose rows the delta made or evicted are `row_keys` (ids with a row have
// no count). `base` becomes the counts at the delta's snapshot.
void ApplyAdmissionDelta(AdmissionCounts* base, const AdmissionCounts& delta,
                         const std::vector<uint64_t>& row_keys,
                         size_t (*stripe_of)(uint64_t, size_t));

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_STORE_ADMISSION_COUNTER_H_
