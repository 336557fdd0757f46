// SparseTable: an embedding-style table of float32 rows keyed by uint64,
// created on first use, lock-striped, updated by a server-side optimizer.
#ifndef FULCRUM_SERVER_STORE_SPARSE_TABLE_H_
#define FULCRUM_SERVER_STORE_SPARSE_TABLE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "proto/job.pb.h"
#include "server/store/optimizer.h"

namespace fulcrum {

struct SparseTableOptions {
  std::string name;
  // Floats per row.
  uint32_t dim = 1;
  // ZEROS, or UNIFORM in [-scale, scale) drawn from a stream seeded by
  // (seed, key): the same key gets the same initial row on every server.
  InitializerKind initializer = ZEROS;
  float scale = 0.0f;
  uint64_t seed = 1;
  // Rows the table may hold; a pull or push that would create more fails
  // with RESOURCE_EXHAUSTED and creates none.
  uint64_t max_rows = uint64_t{1} << 26;
  // Lock stripes (rows go to stripe hash(key) % stripes).
  int stripes = 64;
};

// Thread-safe. Keys need not be unique within a call; duplicate pushes of a
// key apply one after the other.
class SparseTable {
 public:
  // INVALID_ARGUMENT for dim 0, no stripes, or an unusable initializer.
  static absl::StatusOr<std::unique_ptr<SparseTable>> Create(const SparseTableOptions& options,
                                                             std::unique_ptr<Optimizer> optimizer);

  // Copies the rows of `keys` into `out` (keys.size() * dim floats), creating
  // missing rows with the initializer, or with `create` false reading them
  // as the initializer's values without storing them.
  absl::Status Pull(absl::Span<const uint64_t> keys, absl::Span<float> out, bool create = true);

  // Applies the optimizer to each key's row with its gradient
  // (keys.size() * dim floats), creating missing rows first.
  absl::Status Push(absl::Span<const uint64_t> keys, absl::Span<const float> grads);

  // How many of `keys` (distinct) have no row yet, and whether creating them
  // would stay within max_rows. A check before a multi-table update; a
  // concurrent creator may still take the last rows first.
  bool HasRoomFor(absl::Span<const uint64_t> keys) const;
  uint64_t max_rows() const { return options_.max_rows; }

  uint64_t rows() const { return rows_.load(std::memory_order_relaxed); }
  // Bytes of row storage (values and optimizer slots), excluding the hash
  // maps' own overhead.
  uint64_t row_bytes() const { return rows() * RowFloats() * sizeof(float); }
  uint32_t dim() const { return options_.dim; }
  const std::string& name() const { return options_.name; }
  const Optimizer& optimizer() const { return *optimizer_; }

  // Every row (key, values, slots) for checkpoints, stripe by stripe.
  struct RowSnapshot {
    uint64_t key;
    std::vector<float> data;  // values, then each slot (dim floats each)
  };
  std::vector<RowSnapshot> Snapshot() const;
  // Replaces the contents; FAILED_PRECONDITION if a row has the wrong width
  // or there are more than max_rows.
  absl::Status Restore(const std::vector<RowSnapshot>& rows);

 private:
  // Rows of `width` floats, and each row's key, in fixed chunks of
  // kChunkRows: growing never copies rows or holds twice their memory (a
  // growing vector does both). Not synchronised: the stripe's mutex guards it.
  class RowPool {
   public:
    static constexpr size_t kChunkRows = 1024;
    explicit RowPool(size_t width) : width_(width) {}
    // A new row for `key` (its values uninitialised) and its number.
    uint32_t Append(uint64_t key) {
      if (rows_ == chunks_.size() * kChunkRows) {
        chunks_.push_back(std::make_unique<float[]>(kChunkRows * width_));
        key_chunks_.push_back(std::make_unique<uint64_t[]>(kChunkRows));
      }
      key_chunks_[rows_ / kChunkRows][rows_ % kChunkRows] = key;
      return static_cast<uint32_t>(rows_++);
    }
    float* Row(uint32_t row) const {
      return &chunks_[row / kChunkRows][size_t{row % kChunkRows} * width_];
    }
    uint64_t Key(uint32_t row) const { return key_chunks_[row / kChunkRows][row % kChunkRows]; }
    void Clear() {
      chunks_.clear();
      key_chunks_.clear();
      rows_ = 0;
    }

   private:
    const size_t width_;
    std::vector<std::unique_ptr<float[]>> chunks_;
    std::vector<std::unique_ptr<uint64_t[]>> key_chunks_;
    size_t rows_ = 0;
  };
  // The index holds row numbers only (4 bytes a slot, not a 16-byte
  // key-and-row pair): hashing and comparing go through the pool to the
  // row's key. Lookups by key use KeyRef (heterogeneous lookup).
  struct KeyRef {
    uint64_t key;
  };
  struct RowHash {
    using is_transparent = void;
    const RowPool* pool;
    size_t operator()(uint32_t row) const { return (*this)(KeyRef{pool->Key(row)}); }
    // Not Mix64: keys of one stripe share Mix64(key) % stripes, and the
    // index takes its control bits from the hash's low bits.
    size_t operator()(KeyRef k) const { return absl::Hash<uint64_t>()(k.key); }
  };
  struct RowEq {
    using is_transparent = void;
    const RowPool* pool;
    uint64_t KeyOf(uint32_t row) const { return pool->Key(row); }
    uint64_t KeyOf(KeyRef k) const { return k.key; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return KeyOf(a) == KeyOf(b);
    }
  };
  struct Stripe {
    explicit Stripe(size_t width) : pool(width), index(0, RowHash{&pool}, RowEq{&pool}) {}
    mutable absl::Mutex mu;
    RowPool pool ABSL_GUARDED_BY(mu);
    // Numbers of the rows in `pool`, found by their keys.
    absl::flat_hash_set<uint32_t, RowHash, RowEq> index ABSL_GUARDED_BY(mu);
  };

  SparseTable(const SparseTableOptions& options, std::unique_ptr<Optimizer> optimizer);
  size_t RowFloats() const { return size_t{options_.dim} * (1 + optimizer_->num_slots()); }
  size_t StripeOf(uint64_t key) const;
  // Locks the stripes `keys` touch (in index order), creates the missing
  // rows if the table has room for all of them, then calls fn(row pointer,
  // position in keys) for each key. RESOURCE_EXHAUSTED and no change if not.
  template <typename Fn>
  absl::Status ForEachRow(absl::Span<const uint64_t> keys, Fn fn);
  void InitRow(uint64_t key, float* row) const;

  const SparseTableOptions options_;
  const std::unique_ptr<Optimizer> optimizer_;
  std::vector<std::unique_ptr<Stripe>> stripes_;
  std::atomic<uint64_t> rows_{0};
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_STORE_SPARSE_TABLE_H_
