// SparseTable: an embedding-style table of float32 rows keyed by uint64,
// lock-striped, updated by a server-side optimizer, with the life of its
// features: which ids get a row (admission), and when rows go (eviction).
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
#include "common/base/clock.h"
#include "proto/job.pb.h"
#include "server/store/admission_counter.h"
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
  // Rows the table may hold. Without an evicting `eviction.when_full`, a
  // pull or push that would create more fails with RESOURCE_EXHAUSTED and
  // creates none.
  uint64_t max_rows = uint64_t{1} << 26;
  // Lock stripes (rows go to stripe hash(key) % stripes). A table that
  // evicts when full keeps at most max(1, max_rows / 1024) of them: each
  // stripe chooses its own least recently (frequently) updated rows.
  int stripes = 64;
  // Which ids get a row (unset: every id, at its first use) and when rows go
  // (unset: never). With either set, rows are made by pushes only: a pull
  // of an id without a row reads its initializer value.
  FeatureAdmission admission;
  FeatureEviction eviction;
  // Row ages in seconds, TTL sweeps. Not owned.
  const Clock* clock = Clock::Real();
};

// How a push reaches a table.
struct SparsePushContext {
  // Probability admission draws from (seed, id, draw): a push's identity
  // (its worker and request id, or the sync round), the same on a retry and
  // on the backup replaying it.
  uint64_t draw = 0;
  // A backup replaying its primary's push: rows are made past max_rows (the
  // primary's evictions follow as their own operation).
  bool mirror = false;
};

// Counters of a table's feature life.
struct SparseTableCounters {
  uint64_t admitted = 0;  // ids given a row by admission
  uint64_t refused = 0;   // ids whose gradients were dropped (no row yet)
  uint64_t evicted = 0;   // rows removed
};

// Thread-safe. Keys need not be unique within a call; duplicate pushes of a
// key apply one after the other (and count once for admission).
//
// Rows carry their age: the table's update count and the clock's second at
// their last update, and how many updates they had. The table's update
// count grows by one per Push call.
class SparseTable {
 public:
  // INVALID_ARGUMENT for dim 0, no stripes, or an unusable initializer.
  static absl::StatusOr<std::unique_ptr<SparseTable>> Create(const SparseTableOptions& options,
                                                             std::unique_ptr<Optimizer> optimizer);

  // Copies the rows of `keys` into `out` (keys.size() * dim floats), creating
  // missing rows with the initializer, or with `create` false (or admission
  // or eviction configured) reading them as the initializer's values
  // without storing them; `found` (if not null, not creating) gets whether
  // each key has a row.
  absl::Status Pull(absl::Span<const uint64_t> keys, absl::Span<float> out, bool create = true,
                    std::vector<bool>* found = nullptr);

  // Applies the optimizer to each key's row with its gradient
  // (keys.size() * dim floats). Missing rows are created first for the ids
  // admission admits; the others' gradients are dropped (and their pushes
  // counted). All or nothing: RESOURCE_EXHAUSTED with no change (counts
  // included) when the rows to create do not fit.
  absl::Status Push(absl::Span<const uint64_t> keys, absl::Span<const float> grads,
                    const SparsePushContext& context = {});

  // How many of `keys` (distinct) have no row yet, and whether creating them
  // would stay within max_rows (or the slack above it a table that evicts
  // when full allows). A check before a multi-table update; a concurrent
  // creator may still take the last rows first.
  bool HasRoomFor(absl::Span<const uint64_t> keys) const;
  uint64_t max_rows() const { return options_.max_rows; }

  // Eviction. Whether EvictDue has work now: a TTL sweep is due, or the
  // table is past max_rows and evicts when full. Cheap (no row is read).
  bool EvictionDue() const;
  // Removes the rows whose TTL passed and, past max_rows, the least
  // recently (frequently) updated ones down to 63/64 of max_rows; returns
  // their keys: EvictChosen(ChooseEvictions()).
  std::vector<uint64_t> EvictDue();
  // EvictDue in two steps. The choice reads the rows a stripe at a time
  // while pushes go on (it costs a scan of the table); the eviction removes
  // each chosen row not updated since, and is what a caller that orders
  // evictions against pushes (a replicated shard) holds pushes off for.
  struct Victim {
    uint64_t key;
    uint64_t last_update;  // as chosen
  };
  std::vector<Victim> ChooseEvictions();
  std::vector<uint64_t> EvictChosen(absl::Span<const Victim> victims);
  // Removes the rows of `keys` (those present): a backup following its
  // primary's evictions.
  void Evict(absl::Span<const uint64_t> keys);
  // Whether admission or eviction is configured (rows are made by pushes).
  bool has_lifecycle() const { return lifecycle_; }

  uint64_t rows() const { return rows_.load(std::memory_order_relaxed); }
  // Bytes of row storage (values and optimizer slots), excluding keys, ages
  // and the hash maps' own overhead.
  uint64_t row_bytes() const { return rows() * RowFloats() * sizeof(float); }
  // Bytes each row costs beside its values and slots: its key, its age
  // (16 bytes) and its index slot at the index's worst load.
  static double RowOverheadBytes() { return 8 + 16 + 5.0 * 8 / 7; }
  SparseTableCounters counters() const;
  // Admission counters: their memory, the ids counted (EXACT), and the
  // Bloom filter's false-positive rate for a new id (0 for EXACT).
  uint64_t counter_bytes() const;
  uint64_t pending_ids() const;
  double bloom_false_positive_rate() const;
  uint32_t dim() const { return options_.dim; }
  const std::string& name() const { return options_.name; }
  const Optimizer& optimizer() const { return *optimizer_; }

  // A row as checkpoints hold it.
  struct RowSnapshot {
    uint64_t key = 0;
    std::vector<float> data;           // values, then each slot (dim floats each)
    uint64_t last_update = 0;          // the table's update count then
    uint32_t last_update_seconds = 0;  // Unix seconds then
    uint32_t updates = 0;              // updates the row had (saturating)
  };
  // Everything a checkpoint or a replica needs: rows, the update count,
  // the counters and the admission counts. A delta (see Snapshot) holds the
  // rows changed since its mark and the keys removed since.
  struct Contents {
    std::vector<RowSnapshot> rows;
    std::vector<uint64_t> removed;  // a delta's: keys evicted since its mark
    uint64_t updates = 0;
    SparseTableCounters counters;
    AdmissionCounts pending;
  };
  // Where a snapshot left the table: what a later delta is relative to.
  struct Mark {
    uint64_t updates = 0;    // the update count before the rows were read
    uint64_t evictions = 0;  // position in the log of evicted keys
  };
  // Stripe by stripe (each consistent). With `since`, a delta: only the rows
  // updated after that mark (and perhaps a few before: a row is never
  // missed) and the keys evicted since. With `mark`, where this one left
  // the table; from the first such call on, evicted keys are logged until
  // ForgetEvictionsBefore.
  Contents Snapshot(const Mark* since = nullptr, Mark* mark = nullptr) const;
  // The eviction log before `evictions` is no longer needed.
  void ForgetEvictionsBefore(uint64_t evictions);
  // Replaces the contents; FAILED_PRECONDITION if a row has the wrong width
  // or there are more than max_rows. Admission counts of another kind or
  // size than this table's are dropped (logged): they only delay admission.
  absl::Status Restore(const Contents& contents);
  // Replaces or adds these rows as they are (values, slots and age): a
  // reader following a training job's deltas. FAILED_PRECONDITION and no
  // change if a row has the wrong width.
  absl::Status Upsert(absl::Span<const RowSnapshot> rows);
  // Applies `delta` (a Snapshot with `since`) to `base`: removes its keys,
  // then replaces or adds its rows; the state is the delta's.
  static void ApplyDelta(Contents* base, const Contents& delta);

 private:
  // Rows of `width` floats, and each row's key, in fixed chunks of
  // kChunkRows: growing never copies rows or holds twice their memory (a
  // growing vector does both). Not synchronised: the stripe's mutex guards it.
  // A row's age (see RowSnapshot).
  struct RowMeta {
    uint64_t last_update = 0;
    uint32_t last_update_seconds = 0;
    uint32_t updates = 0;
  };
  // Rows of `width` floats, each row's key and age, in fixed chunks of
  // kChunkRows: growing never copies rows or holds twice their memory (a
  // growing vector does both). Rows are numbered densely: removing one moves
  // the last into its place. Not synchronised: the stripe's mutex guards it.
  class RowPool {
   public:
    static constexpr size_t kChunkRows = 1024;
    explicit RowPool(size_t width) : width_(width) {}
    // A new row for `key` (its values uninitialised, its age zero) and its
    // number.
    uint32_t Append(uint64_t key) {
      if (rows_ == chunks_.size() * kChunkRows) {
        chunks_.push_back(std::make_unique<float[]>(kChunkRows * width_));
        key_chunks_.push_back(std::make_unique<uint64_t[]>(kChunkRows));
        meta_chunks_.push_back(std::make_unique<RowMeta[]>(kChunkRows));
      }
      key_chunks_[rows_ / kChunkRows][rows_ % kChunkRows] = key;
      Meta(rows_) = RowMeta{};
      return static_cast<uint32_t>(rows_++);
    }
    // Moves the last row into `row`'s place and drops the last; frees a
    // chunk once two are empty.
    void RemoveByMovingLast(uint32_t row) {
      const uint32_t last = static_cast<uint32_t>(rows_ - 1);
      if (row != last) {
        std::copy_n(Row(last), width_, Row(row));
        key_chunks_[row / kChunkRows][row % kChunkRows] = Key(last);
        Meta(row) = Meta(last);
      }
      --rows_;
      if (chunks_.size() * kChunkRows >= rows_ + 2 * kChunkRows) {
        chunks_.pop_back();
        key_chunks_.pop_back();
        meta_chunks_.pop_back();
      }
    }
    float* Row(uint32_t row) const {
      return &chunks_[row / kChunkRows][size_t{row % kChunkRows} * width_];
    }
    uint64_t Key(uint32_t row) const { return key_chunks_[row / kChunkRows][row % kChunkRows]; }
    RowMeta& Meta(uint32_t row) const { return meta_chunks_[row / kChunkRows][row % kChunkRows]; }
    size_t size() const { return rows_; }
    void Clear() {
      chunks_.clear();
      key_chunks_.clear();
      meta_chunks_.clear();
      rows_ = 0;
    }

   private:
    const size_t width_;
    std::vector<std::unique_ptr<float[]>> chunks_;
    std::vector<std::unique_ptr<uint64_t[]>> key_chunks_;
    std::vector<std::unique_ptr<RowMeta[]>> meta_chunks_;
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
    // Pushes of this stripe's ids without a row (counting admission only).
    std::unique_ptr<AdmissionCounter> pending ABSL_GUARDED_BY(mu);
  };

  // The stripes `keys` touch, locked in index order (no deadlock) from
  // construction to destruction; each key's stripe and row number (kMissing
  // for none), and the distinct keys without a row, sorted.
  class LockedKeys {
   public:
    static constexpr uint32_t kMissing = UINT32_MAX;
    LockedKeys(const SparseTable& table, absl::Span<const uint64_t> keys);
    ~LockedKeys();
    LockedKeys(const LockedKeys&) = delete;
    LockedKeys& operator=(const LockedKeys&) = delete;
    std::vector<size_t> stripe_of;
    std::vector<uint32_t> rows;
    std::vector<uint64_t> missing;

   private:
    const SparseTable& table_;
    std::vector<size_t> order_;  // the stripes locked, ascending
  };

  SparseTable(const SparseTableOptions& options, std::unique_ptr<Optimizer> optimizer);
  size_t RowFloats() const { return size_t{options_.dim} * (1 + optimizer_->num_slots()); }
  size_t StripeOf(uint64_t key) const;
  // Locks the stripes `keys` touch (LockedKeys), creates the missing rows
  // if the table has room for all of them, then calls fn(row pointer,
  // position in keys) for each key. RESOURCE_EXHAUSTED and no change if not.
  // (Pulls that create rows: tables without admission or eviction.)
  template <typename Fn>
  absl::Status ForEachRow(absl::Span<const uint64_t> keys, Fn fn);
  void InitRow(uint64_t key, float* row) const;
  // Calls fn(index, stripe) for every stripe, one at a time under its lock,
  // then after() without it, in descending order: a push locks its stripes
  // ascending and holds them, so a walk the same way would drag it along
  // stripe after stripe (it waits for each one the walk holds); walking the
  // other way it meets the walk once.
  template <typename Fn, typename After = void (*)()>
  void ForEachStripeDescending(
      Fn fn, After after = [] {}) const;
  // Rows the table may make: max_rows, or for a table that evicts when full
  // max_rows plus an eighth (new rows wait for the next EvictDue).
  uint64_t CreationLimit() const;
  bool EvictsWhenFull() const;
  // Whether a push of `key`, which has no row, gives it one now.
  bool Admits(const Stripe& stripe, uint64_t key, uint64_t draw) const
      ABSL_SHARED_LOCKS_REQUIRED(stripe.mu);
  // Removes `key`'s row if present; whether it was.
  bool RemoveRow(Stripe& stripe, uint64_t key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(stripe.mu);
  uint32_t NowSeconds() const;

  const SparseTableOptions options_;
  const std::unique_ptr<Optimizer> optimizer_;
  const bool lifecycle_;
  std::vector<std::unique_ptr<Stripe>> stripes_;
  // Bloom admission: the cells of each stripe's filter (0: none).
  uint64_t cells_per_stripe_ = 0;
  std::atomic<uint64_t> rows_{0};
  // The table's update count (Push calls).
  std::atomic<uint64_t> updates_{0};
  std::atomic<uint64_t> admitted_{0};
  std::atomic<uint64_t> refused_{0};
  std::atomic<uint64_t> evicted_{0};
  // When the next TTL sweep is due: an update count and a time.
  std::atomic<uint64_t> next_sweep_update_{0};
  std::atomic<int64_t> next_sweep_seconds_{0};
  // Keys evicted, for delta snapshots: logged once a snapshot took a mark.
  // A leaf lock: taken under a stripe's.
  mutable absl::Mutex log_mu_;
  mutable bool logging_evictions_ ABSL_GUARDED_BY(log_mu_) = false;
  std::vector<uint64_t> eviction_log_ ABSL_GUARDED_BY(log_mu_);
  uint64_t eviction_log_start_ ABSL_GUARDED_BY(log_mu_) = 0;  // position of its first
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_STORE_SPARSE_TABLE_H_
