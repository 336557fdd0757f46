#include "server/store/admission_counter.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "common/shard_map.h"

namespace fulcrum {
namespace {

// A count per id in a map of at most `capacity` entries. When full, every
// count is halved and the zeros are dropped (TinyLFU's reset).
class ExactCounter final : public AdmissionCounter {
 public:
  explicit ExactCounter(uint64_t capacity) : capacity_(std::max<uint64_t>(1, capacity)) {}

  uint32_t Count(uint64_t key) const override {
    auto it = counts_.find(key);
    return it == counts_.end() ? 0 : it->second;
  }
  void Add(uint64_t key) override {
    auto it = counts_.find(key);
    if (it != counts_.end()) {
      if (it->second < UINT32_MAX) ++it->second;
      return;
    }
    while (counts_.size() >= capacity_) Halve();
    counts_.emplace(key, 1);
  }
  void Forget(uint64_t key, uint32_t) override { counts_.erase(key); }
  uint64_t bytes() const override {
    // A slot: the (id, count) pair, padded to 16 bytes, and a control byte.
    return counts_.capacity() * (sizeof(std::pair<uint64_t, uint32_t>) + 1);
  }
  uint64_t pending() const override { return counts_.size(); }
  uint64_t cells_in_use() const override { return 0; }
  void ExportTo(AdmissionCounts* out) const override {
    const size_t start = out->exact.size();
    out->exact.insert(out->exact.end(), counts_.begin(), counts_.end());
    // In key order: the same state encodes to the same bytes.
    std::sort(out->exact.begin() + start, out->exact.end());
  }
  void Import(absl::Span<const std::pair<uint64_t, uint32_t>> exact,
              absl::Span<const uint8_t>) override {
    counts_.clear();
    for (const auto& [key, count] : exact) {
      if (count == 0) continue;
      while (counts_.size() >= capacity_) Halve();
      counts_[key] = count;
    }
  }
  size_t cells() const override { return 0; }
  void Clear() override { counts_.clear(); }

 private:
  void Halve() {
    for (auto it = counts_.begin(); it != counts_.end();) {
      it->second /= 2;
      if (it->second == 0) {
        counts_.erase(it++);
      } else {
        ++it;
      }
    }
  }

  const uint64_t capacity_;
  absl::flat_hash_map<uint64_t, uint32_t> counts_;
};

// A counting Bloom filter: `hashes` saturating 8-bit cells per id (double
// hashing over one 64-bit mix); an id's count is the least of its cells.
class BloomCounter final : public AdmissionCounter {
 public:
  BloomCounter(uint64_t cells, uint32_t hashes)
      : cells_(std::max<uint64_t>(1, cells), 0), hashes_(std::max<uint32_t>(1, hashes)) {}

  uint32_t Count(uint64_t key) const override {
    uint32_t least = 255;
    ForEachCell(key, [&](size_t c) { least = std::min<uint32_t>(least, cells_[c]); });
    return least;
  }
  void Add(uint64_t key) override {
    // Conservative update: only the cells at the id's least count grow, so
    // the estimate stays as low as the filter allows.
    const uint32_t least = Count(key);
    if (least == 255) return;
    ForEachCell(key, [&](size_t c) {
      if (cells_[c] == least) {
        if (cells_[c] == 0) ++in_use_;
        ++cells_[c];
      }
    });
  }
  void Forget(uint64_t key, uint32_t pushes) override {
    ForEachCell(key, [&](size_t c) {
      const uint8_t before = cells_[c];
      cells_[c] = before > pushes ? before - pushes : 0;
      if (before > 0 && cells_[c] == 0) --in_use_;
    });
  }
  uint64_t bytes() const override { return cells_.size(); }
  uint64_t pending() const override { return 0; }
  uint64_t cells_in_use() const override { return in_use_; }
  void ExportTo(AdmissionCounts* out) const override {
    out->cells.insert(out->cells.end(), cells_.begin(), cells_.end());
  }
  void Import(absl::Span<const std::pair<uint64_t, uint32_t>>,
              absl::Span<const uint8_t> cells) override {
    std::fill(cells_.begin(), cells_.end(), 0);
    std::copy_n(cells.begin(), std::min(cells.size(), cells_.size()), cells_.begin());
    in_use_ = cells_.size() - std::count(cells_.begin(), cells_.end(), 0);
  }
  size_t cells() const override { return cells_.size(); }
  void Clear() override {
    std::fill(cells_.begin(), cells_.end(), 0);
    in_use_ = 0;
  }

 private:
  template <typename Fn>
  void ForEachCell(uint64_t key, Fn fn) const {
    // Not the stripe's hash (Mix64(key)): keys of one stripe share its
    // remainder, so the cells take another mix of the key.
    const uint64_t h = Mix64(key ^ 0x9e3779b97f4a7c15ULL);
    const uint64_t h1 = h & 0xffffffffu, h2 = (h >> 32) | 1;
    for (uint32_t i = 0; i < hashes_; ++i) fn((h1 + i * h2) % cells_.size());
  }

  std::vector<uint8_t> cells_;
  const uint32_t hashes_;
  uint64_t in_use_ = 0;
};

}  // namespace

std::unique_ptr<AdmissionCounter> AdmissionCounter::Create(const FeatureAdmission& spec,
                                                           uint64_t capacity) {
  if (spec.counter() == FeatureAdmission::COUNTING_BLOOM) {
    return std::make_unique<BloomCounter>(capacity,
                                          spec.bloom_hashes() > 0 ? spec.bloom_hashes() : 3);
  }
  return std::make_unique<ExactCounter>(capacity);
}

}  // namespace fulcrum
