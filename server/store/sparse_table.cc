#include "server/store/sparse_table.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/shard_map.h"

namespace fulcrum {

absl::StatusOr<std::unique_ptr<SparseTable>> SparseTable::Create(
    const SparseTableOptions& options, std::unique_ptr<Optimizer> optimizer) {
  if (optimizer == nullptr) return absl::InvalidArgumentError("sparse table needs an optimizer");
  if (options.dim == 0 || options.stripes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sparse table ", options.name, ": dim and stripes must be positive"));
  }
  if (options.initializer == UNIFORM && !(options.scale > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sparse table ", options.name, ": UNIFORM needs a positive scale"));
  }
  if (options.initializer != ZEROS && options.initializer != UNIFORM &&
      options.initializer != INITIALIZER_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        absl::StrCat("sparse table ", options.name, ": initializer must be ZEROS or UNIFORM"));
  }
  if (optimizer->num_slots() > 4) return absl::InternalError("too many optimizer slots");
  std::unique_ptr<SparseTable> table(new SparseTable(options, std::move(optimizer)));
  return table;
}

SparseTable::SparseTable(const SparseTableOptions& options, std::unique_ptr<Optimizer> optimizer)
    : options_(options), optimizer_(std::move(optimizer)) {
  for (int i = 0; i < options_.stripes; ++i) {
    stripes_.push_back(std::make_unique<Stripe>(RowFloats()));
  }
}

size_t SparseTable::StripeOf(uint64_t key) const { return Mix64(key) % stripes_.size(); }

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

template <typename Fn>
absl::Status SparseTable::ForEachRow(absl::Span<const uint64_t> keys, Fn fn) {
  // The stripes this call touches, locked in index order (no deadlock).
  std::vector<size_t> touched;
  touched.reserve(keys.size());
  for (uint64_t key : keys) touched.push_back(StripeOf(key));
  std::vector<size_t> order = touched;
  std::sort(order.begin(), order.end());
  order.erase(std::unique(order.begin(), order.end()), order.end());
  for (size_t s : order) stripes_[s]->mu.Lock();
  auto unlock = [&] {
    for (auto it = order.rbegin(); it != order.rend(); ++it) stripes_[*it]->mu.Unlock();
  };

  // Find every row, then count the new ones: all or nothing.
  constexpr uint32_t kMissing = UINT32_MAX;
  std::vector<uint32_t> rows(keys.size(), kMissing);
  std::vector<uint64_t> missing;
  for (size_t i = 0; i < keys.size(); ++i) {
    const Stripe& stripe = *stripes_[touched[i]];
    auto it = stripe.index.find(KeyRef{keys[i]});
    if (it != stripe.index.end()) {
      rows[i] = *it;
    } else {
      missing.push_back(keys[i]);
    }
  }
  if (!missing.empty()) {
    std::sort(missing.begin(), missing.end());
    missing.erase(std::unique(missing.begin(), missing.end()), missing.end());
    if (rows_.load() + missing.size() > options_.max_rows) {
      unlock();
      return absl::ResourceExhaustedError(absl::StrCat(
          "sparse table ", options_.name, " would grow to ", rows_.load() + missing.size(),
          " rows, over its limit of ", options_.max_rows, "; nothing was changed"));
    }
    for (uint64_t key : missing) {
      Stripe& stripe = *stripes_[StripeOf(key)];
      const uint32_t row = stripe.pool.Append(key);
      InitRow(key, stripe.pool.Row(row));
      stripe.index.insert(row);
    }
    rows_.fetch_add(missing.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      if (rows[i] == kMissing) rows[i] = *stripes_[touched[i]]->index.find(KeyRef{keys[i]});
    }
  }
  for (size_t i = 0; i < keys.size(); ++i) fn(stripes_[touched[i]]->pool.Row(rows[i]), i);
  unlock();
  return absl::OkStatus();
}

bool SparseTable::HasRoomFor(absl::Span<const uint64_t> keys) const {
  // Far from the cap (the usual case), no key lookups: even if every key
  // were new the table would fit.
  if (rows_.load() + keys.size() <= options_.max_rows) return true;
  std::vector<uint64_t> missing;
  for (uint64_t key : keys) {
    const Stripe& stripe = *stripes_[StripeOf(key)];
    absl::MutexLock lock(&stripe.mu);
    if (!stripe.index.contains(KeyRef{key})) missing.push_back(key);
  }
  std::sort(missing.begin(), missing.end());
  missing.erase(std::unique(missing.begin(), missing.end()), missing.end());
  return rows_.load() + missing.size() <= options_.max_rows;
}

absl::Status SparseTable::Pull(absl::Span<const uint64_t> keys, absl::Span<float> out,
                               bool create) {
  const uint32_t dim = options_.dim;
  if (out.size() != keys.size() * dim) {
    return absl::InvalidArgumentError(absl::StrCat("sparse table ", options_.name,
                                                   ": output holds ", out.size(), " floats, ",
                                                   keys.size(), " keys need ", keys.size() * dim));
  }
  if (!create) {
    std::vector<float> fresh(RowFloats());
    for (size_t i = 0; i < keys.size(); ++i) {
      const Stripe& stripe = *stripes_[StripeOf(keys[i])];
      absl::MutexLock lock(&stripe.mu);
      auto it = stripe.index.find(KeyRef{keys[i]});
      if (it != stripe.index.end()) {
        std::copy_n(stripe.pool.Row(*it), dim, &out[i * dim]);
      } else {
        InitRow(keys[i], fresh.data());
        std::copy_n(fresh.data(), dim, &out[i * dim]);
      }
    }
    return absl::OkStatus();
  }
  return ForEachRow(keys, [&](float* row, size_t i) { std::copy_n(row, dim, &out[i * dim]); });
}

absl::Status SparseTable::Push(absl::Span<const uint64_t> keys, absl::Span<const float> grads) {
  const uint32_t dim = options_.dim;
  if (grads.size() != keys.size() * dim) {
    return absl::InvalidArgumentError(absl::StrCat("sparse table ", options_.name, ": ",
                                                   grads.size(), " gradient floats for ",
                                                   keys.size(), " keys of dim ", dim));
  }
  const int num_slots = optimizer_->num_slots();
  return ForEachRow(keys, [&](float* row, size_t i) {
    float* slots[4];
    for (int s = 0; s < num_slots; ++s) slots[s] = row + dim * (s + 1);
    optimizer_->Apply(row, &grads[i * dim], absl::MakeConstSpan(slots, num_slots), dim, 1);
  });
}

std::vector<SparseTable::RowSnapshot> SparseTable::Snapshot() const {
  std::vector<RowSnapshot> out;
  const size_t width = RowFloats();
  for (const auto& stripe : stripes_) {
    absl::MutexLock lock(&stripe->mu);
    for (const uint32_t row : stripe->index) {
      const float* data = stripe->pool.Row(row);
      out.push_back(RowSnapshot{stripe->pool.Key(row), std::vector<float>(data, data + width)});
    }
  }
  return out;
}

absl::Status SparseTable::Restore(const std::vector<RowSnapshot>& rows) {
  const size_t width = RowFloats();
  if (rows.size() > options_.max_rows) {
    return absl::FailedPreconditionError(absl::StrCat("checkpoint holds ", rows.size(), " rows of ",
                                                      options_.name, ", over its limit of ",
                                                      options_.max_rows));
  }
  for (const RowSnapshot& r : rows) {
    if (r.data.size() != width) {
      return absl::FailedPreconditionError(absl::StrCat("checkpoint row of ", options_.name,
                                                        " has ", r.data.size(),
                                                        " floats; this table's rows have ", width));
    }
  }
  for (auto& stripe : stripes_) {
    absl::MutexLock lock(&stripe->mu);
    stripe->index.clear();
    stripe->pool.Clear();
  }
  uint64_t distinct = 0;
  for (const RowSnapshot& r : rows) {
    Stripe& stripe = *stripes_[StripeOf(r.key)];
    absl::MutexLock lock(&stripe.mu);
    auto existing = stripe.index.find(KeyRef{r.key});
    if (existing != stripe.index.end()) {  // a repeated key: the last copy wins
      std::copy(r.data.begin(), r.data.end(), stripe.pool.Row(*existing));
      continue;
    }
    const uint32_t row = stripe.pool.Append(r.key);
    std::copy(r.data.begin(), r.data.end(), stripe.pool.Row(row));
    stripe.index.insert(row);
    ++distinct;
  }
  rows_ = distinct;
  return absl::OkStatus();
}

}  // namespace fulcrum
