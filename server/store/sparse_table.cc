#include "server/store/sparse_table.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/shard_map.h"

namespace fulcrum {
namespace {

bool Evicting(const FeatureEviction& eviction) {
  return eviction.when_full() == FeatureEviction::LEAST_RECENTLY_UPDATED ||
         eviction.when_full() == FeatureEviction::LEAST_FREQUENTLY_UPDATED;
}

bool Counting(const FeatureAdmission& admission) {
  return admission.probability() == 0 && admission.min_count() > 1;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SparseTable>> SparseTable::Create(
    const SparseTableOptions& options, std::unique_ptr<Optimizer> optimizer) {
  if (optimizer == nullptr) return absl::InvalidArgumentError("sparse table needs an optimizer");
  const std::string& name = options.name;
  if (options.dim == 0 || options.stripes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sparse table ", name, ": dim and stripes must be positive"));
  }
  if (options.initializer == UNIFORM && !(options.scale > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sparse table ", name, ": UNIFORM needs a positive scale"));
  }
  if (options.initializer != ZEROS && options.initializer != UNIFORM &&
      options.initializer != INITIALIZER_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        absl::StrCat("sparse table ", name, ": initializer must be ZEROS or UNIFORM"));
  }
  const FeatureAdmission& admission = options.admission;
  if (!(admission.probability() >= 0 && admission.probability() <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sparse table ", name, ": admission.probability must be in (0, 1], got ",
                     admission.probability()));
  }
  if (admission.probability() > 0 && admission.min_count() > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sparse table ", name, ": admission takes min_count or probability, not both"));
  }
  if (admission.counter() == FeatureAdmission::COUNTING_BLOOM &&
      (admission.min_count() > 255 || admission.bloom_hashes() > 16)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sparse table ", name,
        ": a COUNTING_BLOOM admission counts to 255 (min_count) with at most 16 hashes"));
  }
  const FeatureEviction& eviction = options.eviction;
  if (!(eviction.ttl_seconds() >= 0) || !std::isfinite(eviction.ttl_seconds())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sparse table ", name, ": eviction.ttl_seconds must be a non-negative number"));
  }
  if (optimizer->num_slots() > 4) return absl::InternalError("too many optimizer slots");
  std::unique_ptr<SparseTable> table(new SparseTable(options, std::move(optimizer)));
  return table;
}

SparseTable::SparseTable(const SparseTableOptions& options, std::unique_ptr<Optimizer> optimizer)
    : options_(options),
      optimizer_(std::move(optimizer)),
      lifecycle_(Counting(options.admission) || options.admission.probability() > 0 ||
                 options.eviction.ttl_updates() > 0 || options.eviction.ttl_seconds() > 0 ||
                 Evicting(options.eviction)) {
  int stripes = options_.stripes;
  if (Evicting(options_.eviction)) {
    stripes = static_cast<int>(
        std::clamp<uint64_t>(options_.max_rows / 1024, 1, static_cast<uint64_t>(stripes)));
  }
  // Counting admission: the counters' capacity shared by the stripes.
  const bool bloom = options_.admission.counter() == FeatureAdmission::COUNTING_BLOOM;
  uint64_t capacity = bloom ? options_.admission.bloom_cells() : options_.admission.max_counters();
  if (capacity == 0) capacity = bloom ? uint64_t{1} << 24 : uint64_t{1} << 20;
  for (int i = 0; i < stripes; ++i) {
    auto stripe = std::make_unique<Stripe>(RowFloats());
    if (Counting(options_.admission)) {
      absl::MutexLock lock(&stripe->mu);
      stripe->pending =
          AdmissionCounter::Create(options_.admission, std::max<uint64_t>(1, capacity / stripes));
      cells_per_stripe_ = stripe->pending->cells();
    }
    stripes_.push_back(std::move(stripe));
  }
  const int64_t now = NowSeconds();
  next_sweep_seconds_ = now + static_cast<int64_t>(std::ceil(options_.eviction.ttl_seconds() / 8));
  next_sweep_update_ = std::max<uint64_t>(1, options_.eviction.ttl_updates() / 8);
}

size_t SparseTable::StripeOf(uint64_t key) const { return Mix64(key) % stripes_.size(); }

template <typename Fn, typename After>
void SparseTable::ForEachStripeDescending(Fn fn, After after) const {
  for (size_t s = stripes_.size(); s-- > 0;) {
    {
      const Stripe& stripe = *stripes_[s];
      absl::MutexLock lock(&stripe.mu);
      fn(s, stripe);
    }
    after();
  }
}

uint32_t SparseTable::NowSeconds() const {
  return static_cast<uint32_t>(
      std::clamp<int64_t>(absl::ToUnixSeconds(options_.clock->Now()), 0, UINT32_MAX));
}

bool SparseTable::EvictsWhenFull() const { return Evicting(options_.eviction); }

uint64_t SparseTable::CreationLimit() const {
  return EvictsWhenFull() ? options_.max_rows + options_.max_rows / 8 + 64 : options_.max_rows;
}

void SparseTable::InitRow(uint64_t key, float* row) const {
  const uint32_t dim = options_.dim;
  if (options_.initializer == UNIFORM) {
    std::mt19937_64 rng(Mix64(options_.seed ^ Mix64(key)));
    std::uniform_real_distribution<float> u(-options_.scale, options_.scale);
    for (uint32_t i = 0; i < dim; ++i) row[i] = u(rng);
  } else {
    std::fill(row, row + dim, 0.0f);
  }
  float* slots[4];
  for (int s = 0; s < optimizer_->num_slots(); ++s) slots[s] = row + dim * (s + 1);
  optimizer_->InitSlots(absl::MakeConstSpan(slots, optimizer_->num_slots()), dim);
}

bool SparseTable::Admits(const Stripe& stripe, uint64_t key, uint64_t draw) const {
  const FeatureAdmission& admission = options_.admission;
  if (admission.probability() > 0) {
    const uint64_t h = Mix64(Mix64(options_.seed ^ Mix64(key)) ^ draw);
    // The top 53 bits as a uniform double in [0, 1).
    return static_cast<double>(h >> 11) * 0x1.0p-53 < admission.probability();
  }
  if (stripe.pending == nullptr) return true;
  return stripe.pending->Count(key) + 1 >= admission.min_count();
}

SparseTable::LockedKeys::LockedKeys(const SparseTable& table, absl::Span<const uint64_t> keys)
    : table_(table) {
  stripe_of.reserve(keys.size());
  for (uint64_t key : keys) stripe_of.push_back(table.StripeOf(key));
  order_ = stripe_of;
  std::sort(order_.begin(), order_.end());
  order_.erase(std::unique(order_.begin(), order_.end()), order_.end());
  for (size_t s : order_) table.stripes_[s]->mu.Lock();
  rows.assign(keys.size(), kMissing);
  for (size_t i = 0; i < keys.size(); ++i) {
    const Stripe& stripe = *table.stripes_[stripe_of[i]];
    auto it = stripe.index.find(KeyRef{keys[i]});
    if (it != stripe.index.end()) {
      rows[i] = *it;
    } else {
      missing.push_back(keys[i]);
    }
  }
  std::sort(missing.begin(), missing.end());
  missing.erase(std::unique(missing.begin(), missing.end()), missing.end());
}

SparseTable::LockedKeys::~LockedKeys() {
  for (auto it = order_.rbegin(); it != order_.rend(); ++it) table_.stripes_[*it]->mu.Unlock();
}

template <typename Fn>
absl::Status SparseTable::ForEachRow(absl::Span<const uint64_t> keys, Fn fn) {
  LockedKeys locked(*this, keys);
  // Every row found, then the new ones counted: all or nothing.
  if (!locked.missing.empty()) {
    if (rows_.load() + locked.missing.size() > options_.max_rows) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "sparse table ", options_.name, " would grow to ", rows_.load() + locked.missing.size(),
          " rows, over its limit of ", options_.max_rows, "; nothing was changed"));
    }
    for (uint64_t key : locked.missing) {
      Stripe& stripe = *stripes_[StripeOf(key)];
      const uint32_t row = stripe.pool.Append(key);
      InitRow(key, stripe.pool.Row(row));
      stripe.index.insert(row);
    }
    rows_.fetch_add(locked.missing.size());
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    Stripe& stripe = *stripes_[locked.stripe_of[i]];
    uint32_t row = locked.rows[i];
    if (row == LockedKeys::kMissing) row = *stripe.index.find(KeyRef{keys[i]});
    fn(stripe.pool.Row(row), i);
  }
  return absl::OkStatus();
}

bool SparseTable::HasRoomFor(absl::Span<const uint64_t> keys) const {
  const uint64_t limit = CreationLimit();
  // Far from the cap (the usual case), no key lookups: even if every key
  // were new the table would fit.
  if (rows_.load() + keys.size() <= limit) return true;
  std::vector<uint64_t> missing;
  for (uint64_t key : keys) {
    const Stripe& stripe = *stripes_[StripeOf(key)];
    absl::MutexLock lock(&stripe.mu);
    if (!stripe.index.contains(KeyRef{key})) missing.push_back(key);
  }
  std::sort(missing.begin(), missing.end());
  missing.erase(std::unique(missing.begin(), missing.end()), missing.end());
  return rows_.load() + missing.size() <= limit;
}

absl::Status SparseTable::Pull(absl::Span<const uint64_t> keys, absl::Span<float> out, bool create,
                               std::vector<bool>* found) {
  const uint32_t dim = options_.dim;
  if (out.size() != keys.size() * dim) {
    return absl::InvalidArgumentError(absl::StrCat("sparse table ", options_.name,
                                                   ": output holds ", out.size(), " floats, ",
                                                   keys.size(), " keys need ", keys.size() * dim));
  }
  if (create && !lifecycle_ && found == nullptr) {
    return ForEachRow(keys, [&](float* row, size_t i) { std::copy_n(row, dim, &out[i * dim]); });
  }
  // Every stripe the keys touch locked once (not a lock per key: this is
  // every training pull of a table with admission or eviction).
  LockedKeys locked(*this, keys);
  if (found != nullptr) found->assign(keys.size(), false);
  std::vector<float> fresh(RowFloats());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (locked.rows[i] != LockedKeys::kMissing) {
      std::copy_n(stripes_[locked.stripe_of[i]]->pool.Row(locked.rows[i]), dim, &out[i * dim]);
      if (found != nullptr) (*found)[i] = true;
    } else {
      InitRow(keys[i], fresh.data());
      std::copy_n(fresh.data(), dim, &out[i * dim]);
    }
  }
  return absl::OkStatus();
}

absl::Status SparseTable::Push(absl::Span<const uint64_t> keys, absl::Span<const float> grads,
                               const SparsePushContext& context) {
  const uint32_t dim = options_.dim;
  if (grads.size() != keys.size() * dim) {
    return absl::InvalidArgumentError(absl::StrCat("sparse table ", options_.name, ": ",
                                                   grads.size(), " gradient floats for ",
                                                   keys.size(), " keys of dim ", dim));
  }
  // Find every row; decide the missing ones' admission without changing
  // anything, check room, then commit: all or nothing.
  LockedKeys locked(*this, keys);
  std::vector<uint64_t> admit, refuse;
  if (!locked.missing.empty()) {
    for (uint64_t key : locked.missing) {
      (Admits(*stripes_[StripeOf(key)], key, context.draw) ? admit : refuse).push_back(key);
    }
    // A backup mirrors an evicting table past the limit: its primary's
    // evictions arrive as operations after the pushes they made room for.
    const bool mirror_past_limit = context.mirror && EvictsWhenFull();
    if (!mirror_past_limit && rows_.load() + admit.size() > CreationLimit()) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "sparse table ", options_.name, " would grow to ", rows_.load() + admit.size(),
          " rows, over its limit of ", CreationLimit(), "; nothing was changed"));
    }
  }
  const uint64_t update = updates_.fetch_add(1) + 1;
  const uint32_t now = NowSeconds();
  for (uint64_t key : refuse) {
    Stripe& stripe = *stripes_[StripeOf(key)];
    if (stripe.pending != nullptr) stripe.pending->Add(key, update);
  }
  for (uint64_t key : admit) {
    Stripe& stripe = *stripes_[StripeOf(key)];
    if (stripe.pending != nullptr) {
      // What it counted (at most min_count - 1 pushes) goes back.
      stripe.pending->Forget(
          key, std::min(stripe.pending->Count(key), options_.admission.min_count() - 1), update);
    }
    const uint32_t row = stripe.pool.Append(key);
    InitRow(key, stripe.pool.Row(row));
    stripe.index.insert(row);
  }
  rows_.fetch_add(admit.size());
  if (lifecycle_) {
    admitted_.fetch_add(admit.size(), std::memory_order_relaxed);
    refused_.fetch_add(refuse.size(), std::memory_order_relaxed);
  }
  const int num_slots = optimizer_->num_slots();
  for (size_t i = 0; i < keys.size(); ++i) {
    Stripe& stripe = *stripes_[locked.stripe_of[i]];
    uint32_t r = locked.rows[i];
    if (r == LockedKeys::kMissing) {
      auto it = stripe.index.find(KeyRef{keys[i]});
      if (it == stripe.index.end()) continue;  // not admitted: dropped
      r = *it;
    }
    float* row = stripe.pool.Row(r);
    float* slots[4];
    for (int s = 0; s < num_slots; ++s) slots[s] = row + dim * (s + 1);
    optimizer_->Apply(row, &grads[i * dim], absl::MakeConstSpan(slots, num_slots), dim, 1);
    RowMeta& meta = stripe.pool.Meta(r);
    meta.last_update = update;
    meta.last_update_seconds = now;
    if (meta.updates < UINT32_MAX) ++meta.updates;
  }
  return absl::OkStatus();
}

bool SparseTable::RemoveRow(Stripe& stripe, uint64_t key) {
  auto it = stripe.index.find(KeyRef{key});
  if (it == stripe.index.end()) return false;
  const uint32_t row = *it;
  stripe.index.erase(it);
  {
    absl::MutexLock lock(&log_mu_);
    if (logging_evictions_) eviction_log_.push_back(key);
  }
  const uint32_t last = static_cast<uint32_t>(stripe.pool.size() - 1);
  if (row != last) {
    // The last row moves into `row`'s place: re-index it under its number.
    stripe.index.erase(KeyRef{stripe.pool.Key(last)});
    stripe.pool.RemoveByMovingLast(row);
    stripe.index.insert(row);
  } else {
    stripe.pool.RemoveByMovingLast(row);
  }
  return true;
}

bool SparseTable::EvictionDue() const {
  if (EvictsWhenFull() && rows_.load(std::memory_order_relaxed) > options_.max_rows) return true;
  const FeatureEviction& eviction = options_.eviction;
  if (eviction.ttl_updates() > 0 && updates_.load(std::memory_order_relaxed) >= next_sweep_update_)
    return true;
  return eviction.ttl_seconds() > 0 && int64_t{NowSeconds()} >= next_sweep_seconds_;
}

std::vector<SparseTable::Victim> SparseTable::ChooseEvictions() {
  const FeatureEviction& eviction = options_.eviction;
  const uint64_t update = updates_.load();
  const uint32_t now = NowSeconds();
  // A TTL sweep at most every eighth of the TTL: a row outlives its TTL by
  // at most that.
  const bool sweep_updates = eviction.ttl_updates() > 0 && update >= next_sweep_update_;
  const bool sweep_seconds = eviction.ttl_seconds() > 0 && int64_t{now} >= next_sweep_seconds_;
  if (sweep_updates) {
    next_sweep_update_ = update + std::max<uint64_t>(1, eviction.ttl_updates() / 8);
  }
  if (sweep_seconds) {
    next_sweep_seconds_ = now + std::max<int64_t>(1, std::ceil(eviction.ttl_seconds() / 8));
  }
  auto expired = [&](const RowMeta& meta) {
    return (sweep_updates && update - meta.last_update >= eviction.ttl_updates()) ||
           (sweep_seconds &&
            int64_t{now} - int64_t{meta.last_update_seconds} >= eviction.ttl_seconds());
  };
  // Past the cap: down to 63/64 of it, each stripe its share, so a scan of
  // the table pays for max_rows / 64 new rows.
  const uint64_t total = rows_.load();
  const bool over = EvictsWhenFull() && total > options_.max_rows;
  const uint64_t target = options_.max_rows - std::max<uint64_t>(1, options_.max_rows / 64);
  const bool by_frequency = eviction.when_full() == FeatureEviction::LEAST_FREQUENTLY_UPDATED;
  std::vector<Victim> victims;
  ForEachStripeDescending([&](size_t, const Stripe& stripe) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    const uint64_t rows = stripe.pool.size();
    // (updates or 0, last update, key) of the rows the TTL leaves: the
    // smallest go first; the key breaks ties, so that the choice depends on
    // the contents alone.
    std::vector<std::tuple<uint32_t, uint64_t, uint64_t>> order;
    if (over) order.reserve(rows);
    for (uint32_t row = 0; row < rows; ++row) {
      const RowMeta& meta = stripe.pool.Meta(row);
      if ((sweep_updates || sweep_seconds) && expired(meta)) {
        victims.push_back(Victim{stripe.pool.Key(row), meta.last_update});
      } else if (over) {
        order.emplace_back(by_frequency ? meta.updates : 0, meta.last_update, stripe.pool.Key(row));
      }
    }
    if (!over || total == 0) return;
    const uint64_t keep = static_cast<uint64_t>(static_cast<long double>(target) * rows / total);
    if (order.size() <= keep) return;
    const size_t n = order.size() - keep;
    std::nth_element(order.begin(), order.begin() + (n - 1), order.end());
    for (size_t i = 0; i < n; ++i) {
      victims.push_back(Victim{std::get<2>(order[i]), std::get<1>(order[i])});
    }
  });
  return victims;
}

std::vector<uint64_t> SparseTable::EvictChosen(absl::Span<const Victim> victims) {
  std::vector<uint64_t> evicted;
  evicted.reserve(victims.size());
  for (const Victim& v : victims) {
    Stripe& stripe = *stripes_[StripeOf(v.key)];
    absl::MutexLock lock(&stripe.mu);
    auto it = stripe.index.find(KeyRef{v.key});
    // A row updated since it was chosen stays.
    if (it == stripe.index.end() || stripe.pool.Meta(*it).last_update != v.last_update) continue;
    RemoveRow(stripe, v.key);
    evicted.push_back(v.key);
  }
  rows_.fetch_sub(evicted.size());
  evicted_.fetch_add(evicted.size(), std::memory_order_relaxed);
  return evicted;
}

std::vector<uint64_t> SparseTable::EvictDue() { return EvictChosen(ChooseEvictions()); }

void SparseTable::Evict(absl::Span<const uint64_t> keys) {
  uint64_t removed = 0;
  for (uint64_t key : keys) {
    Stripe& stripe = *stripes_[StripeOf(key)];
    absl::MutexLock lock(&stripe.mu);
    if (RemoveRow(stripe, key)) ++removed;
  }
  rows_.fetch_sub(removed);
  evicted_.fetch_add(removed, std::memory_order_relaxed);
}

SparseTableCounters SparseTable::counters() const {
  return SparseTableCounters{admitted_.load(), refused_.load(), evicted_.load()};
}

uint64_t SparseTable::counter_bytes() const {
  uint64_t bytes = 0;
  for (const auto& stripe : stripes_) {
    absl::MutexLock lock(&stripe->mu);
    if (stripe->pending != nullptr) bytes += stripe->pending->bytes();
  }
  return bytes;
}

uint64_t SparseTable::pending_ids() const {
  uint64_t ids = 0;
  for (const auto& stripe : stripes_) {
    absl::MutexLock lock(&stripe->mu);
    if (stripe->pending != nullptr) ids += stripe->pending->pending();
  }
  return ids;
}

double SparseTable::bloom_false_positive_rate() const {
  if (!Counting(options_.admission) ||
      options_.admission.counter() != FeatureAdmission::COUNTING_BLOOM) {
    return 0;
  }
  uint64_t in_use = 0, cells = 0;
  for (const auto& stripe : stripes_) {
    absl::MutexLock lock(&stripe->mu);
    in_use += stripe->pending->cells_in_use();
    cells += stripe->pending->cells();
  }
  const uint32_t hashes =
      options_.admission.bloom_hashes() > 0 ? options_.admission.bloom_hashes() : 3;
  return cells == 0 ? 0 : std::pow(double(in_use) / double(cells), hashes);
}

SparseTable::Contents SparseTable::Snapshot(const Mark* since, Mark* mark) const {
  Contents out;
  // The log position and the update count before any row is read: a push
  // numbered at most `updates` holds its stripes' locks from before it took
  // its number, so its rows are in this snapshot; a later one's are in the
  // next delta (its rows are newer than this mark).
  Mark here;
  {
    absl::MutexLock lock(&log_mu_);
    here.evictions = eviction_log_start_ + eviction_log_.size();
    if (since != nullptr) {
      const uint64_t from = std::max(since->evictions, eviction_log_start_);
      out.removed.assign(eviction_log_.begin() + (from - eviction_log_start_), eviction_log_.end());
    }
    if (mark != nullptr) logging_evictions_ = true;
  }
  here.updates = updates_.load();
  const size_t width = RowFloats();
  // Stripes in descending order, against a push's ascending locks (see
  // ForEachStripeDescending). Under a stripe's lock its rows are copied
  // flat (a memcpy's pace); they become RowSnapshots after it is released.
  // Admission counts go in stripe order.
  std::vector<AdmissionCounts> pending(stripes_.size());
  std::vector<uint64_t> keys;
  std::vector<RowMeta> metas;
  std::vector<float> values;
  ForEachStripeDescending(
      [&](size_t s, const Stripe& stripe) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        keys.clear();
        metas.clear();
        values.clear();
        if (since == nullptr) {
          keys.reserve(stripe.pool.size());
          metas.reserve(stripe.pool.size());
          values.reserve(stripe.pool.size() * width);
        }
        for (uint32_t row = 0; row < stripe.pool.size(); ++row) {
          const RowMeta& meta = stripe.pool.Meta(row);
          if (since != nullptr && meta.last_update <= since->updates) continue;
          const float* data = stripe.pool.Row(row);
          keys.push_back(stripe.pool.Key(row));
          metas.push_back(meta);
          values.insert(values.end(), data, data + width);
        }
        if (stripe.pending != nullptr) {
          stripe.pending->ExportTo(&pending[s], s * cells_per_stripe_,
                                   since != nullptr ? &since->updates : nullptr);
        }
      },
      [&] {
        for (size_t i = 0; i < keys.size(); ++i) {
          const float* data = &values[i * width];
          out.rows.push_back(RowSnapshot{keys[i], std::vector<float>(data, data + width),
                                         metas[i].last_update, metas[i].last_update_seconds,
                                         metas[i].updates});
        }
      });
  for (AdmissionCounts& p : pending) {
    out.pending.exact.insert(out.pending.exact.end(), p.exact.begin(), p.exact.end());
    out.pending.halvings.insert(out.pending.halvings.end(), p.halvings.begin(), p.halvings.end());
    for (auto& block : p.blocks) out.pending.blocks.push_back(std::move(block));
    out.pending.cells += p.cells;
  }
  out.updates = updates_.load();
  out.counters = counters();
  if (mark != nullptr) *mark = here;
  return out;
}

void SparseTable::ForgetEvictionsBefore(uint64_t evictions) {
  absl::MutexLock lock(&log_mu_);
  if (evictions <= eviction_log_start_) return;
  const uint64_t drop = std::min<uint64_t>(evictions - eviction_log_start_, eviction_log_.size());
  eviction_log_.erase(eviction_log_.begin(), eviction_log_.begin() + drop);
  eviction_log_start_ += drop;
}

absl::Status SparseTable::Upsert(absl::Span<const RowSnapshot> rows) {
  const size_t width = RowFloats();
  for (const RowSnapshot& r : rows) {
    if (r.data.size() != width) {
      return absl::FailedPreconditionError(absl::StrCat(
          "row of ", options_.name, " has ", r.data.size(), " floats; its rows have ", width));
    }
  }
  uint64_t added = 0;
  for (const RowSnapshot& r : rows) {
    Stripe& stripe = *stripes_[StripeOf(r.key)];
    absl::MutexLock lock(&stripe.mu);
    auto existing = stripe.index.find(KeyRef{r.key});
    uint32_t row;
    if (existing != stripe.index.end()) {
      row = *existing;
    } else {
      row = stripe.pool.Append(r.key);
      stripe.index.insert(row);
      ++added;
    }
    std::copy(r.data.begin(), r.data.end(), stripe.pool.Row(row));
    stripe.pool.Meta(row) = RowMeta{r.last_update, r.last_update_seconds, r.updates};
  }
  rows_.fetch_add(added);
  return absl::OkStatus();
}

void SparseTable::ApplyDelta(Contents* base, const Contents& delta) {
  absl::flat_hash_map<uint64_t, size_t> at;
  at.reserve(base->rows.size());
  for (size_t i = 0; i < base->rows.size(); ++i) at[base->rows[i].key] = i;
  std::vector<bool> gone(base->rows.size(), false);
  for (uint64_t key : delta.removed) {
    auto it = at.find(key);
    if (it == at.end()) continue;
    gone[it->second] = true;
    at.erase(it);
  }
  for (const RowSnapshot& row : delta.rows) {
    auto it = at.find(row.key);
    if (it != at.end()) {
      base->rows[it->second] = row;
    } else {
      at[row.key] = base->rows.size();
      base->rows.push_back(row);
      gone.push_back(false);
    }
  }
  size_t kept = 0;
  for (size_t i = 0; i < base->rows.size(); ++i) {
    if (gone[i]) continue;
    if (kept != i) base->rows[kept] = std::move(base->rows[i]);
    ++kept;
  }
  base->rows.resize(kept);
  base->removed.clear();
  base->updates = delta.updates;
  base->counters = delta.counters;
  std::vector<uint64_t> row_keys = delta.removed;
  for (const RowSnapshot& row : delta.rows) row_keys.push_back(row.key);
  ApplyAdmissionDelta(&base->pending, delta.pending, row_keys,
                      [](uint64_t key, size_t stripes) -> size_t { return Mix64(key) % stripes; });
}

absl::Status SparseTable::Restore(const Contents& contents) {
  const std::vector<RowSnapshot>& rows = contents.rows;
  const size_t width = RowFloats();
  if (rows.size() > CreationLimit()) {
    return absl::FailedPreconditionError(absl::StrCat("checkpoint holds ", rows.size(), " rows of ",
                                                      options_.name, ", over its limit of ",
                                                      CreationLimit()));
  }
  for (const RowSnapshot& r : rows) {
    if (r.data.size() != width) {
      return absl::FailedPreconditionError(absl::StrCat("checkpoint row of ", options_.name,
                                                        " has ", r.data.size(),
                                                        " floats; this table's rows have ", width));
    }
  }
  // Admission counts: each stripe takes its ids and halvings (EXACT) or its
  // run of cells (Bloom), if the checkpoint's are of this table's kind and
  // size.
  const AdmissionCounts& pending = contents.pending;
  size_t cells = 0;
  bool exact = false;
  for (auto& stripe : stripes_) {
    absl::MutexLock lock(&stripe->mu);
    if (stripe->pending != nullptr) {
      cells += stripe->pending->cells();
      exact = stripe->pending->cells() == 0;
    }
  }
  const bool counts_fit =
      exact ? pending.cells == 0 &&
                  (pending.halvings.empty() || pending.halvings.size() == stripes_.size())
            : pending.exact.empty() && (pending.cells == cells || pending.blocks.empty());
  if (!counts_fit) {
    FULCRUM_LOG(WARNING) << "sparse table " << options_.name
                         << ": the checkpoint's admission counts are of another kind or size "
                            "than this table's; pending ids are counted afresh";
  }
  std::vector<std::vector<std::pair<uint64_t, uint32_t>>> exact_counts(stripes_.size());
  if (counts_fit) {
    for (const auto& entry : pending.exact) exact_counts[StripeOf(entry.first)].push_back(entry);
  }
  uint64_t first_cell = 0;
  for (size_t s = 0; s < stripes_.size(); ++s) {
    Stripe& stripe = *stripes_[s];
    absl::MutexLock lock(&stripe.mu);
    stripe.index.clear();
    stripe.pool.Clear();
    if (stripe.pending == nullptr) continue;
    if (!counts_fit) {
      stripe.pending->Clear();
      continue;
    }
    const uint64_t halvings = s < pending.halvings.size() ? pending.halvings[s] : 0;
    stripe.pending->Import(exact_counts[s], halvings, pending, first_cell);
    first_cell += stripe.pending->cells();
  }
  uint64_t distinct = 0;
  for (const RowSnapshot& r : rows) {
    Stripe& stripe = *stripes_[StripeOf(r.key)];
    absl::MutexLock lock(&stripe.mu);
    auto existing = stripe.index.find(KeyRef{r.key});
    uint32_t row;
    if (existing != stripe.index.end()) {  // a repeated key: the last copy wins
      row = *existing;
    } else {
      row = stripe.pool.Append(r.key);
      stripe.index.insert(row);
      ++distinct;
    }
    std::copy(r.data.begin(), r.data.end(), stripe.pool.Row(row));
    stripe.pool.Meta(row) = RowMeta{r.last_update, r.last_update_seconds, r.updates};
  }
  rows_ = distinct;
  updates_ = contents.updates;
  admitted_ = contents.counters.admitted;
  refused_ = contents.counters.refused;
  evicted_ = contents.counters.evicted;
  next_sweep_update_ =
      contents.updates + std::max<uint64_t>(1, options_.eviction.ttl_updates() / 8);
  return absl::OkStatus();
}

}  // namespace fulcrum
