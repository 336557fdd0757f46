#include "server/store/admission_counter.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "common/shard_map.h"

namespace fulcrum {
namespace {

// Whether `changed` (an update count modulo 2^32) is after `since`.
bool ChangedAfter(uint32_t changed, uint64_t since) {
  return static_cast<int32_t>(changed - static_cast<uint32_t>(since)) > 0;
}

// A count per id in a map of at most `capacity` entries. When full, every
// count is halved and the zeros are dropped (TinyLFU's reset).
class ExactCounter final : public AdmissionCounter {
 public:
  explicit ExactCounter(uint64_t capacity) : capacity_(std::max<uint64_t>(1, capacity)) {}

  uint32_t Count(uint64_t key) const override {
    auto it = counts_.find(key);
    return it == counts_.end() ? 0 : it->second.count;
  }
  void Add(uint64_t key, uint64_t update) override {
    auto it = counts_.find(key);
    if (it != counts_.end()) {
      if (it->second.count < UINT32_MAX) ++it->second.count;
      it->second.changed = static_cast<uint32_t>(update);
      return;
    }
    while (counts_.size() >= capacity_) Halve();
    counts_.emplace(key, Entry{1, static_cast<uint32_t>(update)});
  }
  void Forget(uint64_t key, uint32_t, uint64_t) override { counts_.erase(key); }
  uint64_t bytes() const override {
    // A slot: the id and its entry (16 bytes) and a control byte.
    return counts_.capacity() * (sizeof(std::pair<uint64_t, Entry>) + 1);
  }
  uint64_t pending() const override { return counts_.size(); }
  uint64_t cells_in_use() const override { return 0; }
  size_t cells() const override { return 0; }
  void ExportTo(AdmissionCounts* out, uint64_t, const uint64_t* since) const override {
    const size_t start = out->exact.size();
    for (const auto& [key, entry] : counts_) {
      if (since == nullptr || ChangedAfter(entry.changed, *since)) {
        out->exact.emplace_back(key, entry.count);
      }
    }
    // In key order: the same state encodes to the same bytes.
    std::sort(out->exact.begin() + start, out->exact.end());
    out->halvings.push_back(halvings_);
  }
  void Import(absl::Span<const std::pair<uint64_t, uint32_t>> exact, uint64_t halvings,
              const AdmissionCounts&, uint64_t) override {
    counts_.clear();
    halvings_ = halvings;
    for (const auto& [key, count] : exact) {
      if (count == 0) continue;
      while (counts_.size() >= capacity_) Halve();
      counts_[key] = Entry{count, 0};
    }
  }
  void Clear() override {
    counts_.clear();
    halvings_ = 0;
  }

 private:
  struct Entry {
    uint32_t count;
    uint32_t changed;  // the table update of the last Add, modulo 2^32
  };
  void Halve() {
    ++halvings_;
    for (auto it = counts_.begin(); it != counts_.end();) {
      it->second.count /= 2;
      if (it->second.count == 0) {
        counts_.erase(it++);
      } else {
        ++it;
      }
    }
  }

  const uint64_t capacity_;
  absl::flat_hash_map<uint64_t, Entry> counts_;
  uint64_t halvings_ = 0;
};

// A counting Bloom filter: `hashes` saturating 8-bit cells per id (double
// hashing over one 64-bit mix); an id's count is the least of its cells.
class BloomCounter final : public AdmissionCounter {
 public:
  BloomCounter(uint64_t cells, uint32_t hashes)
      : cells_(std::max<uint64_t>(1, cells), 0),
        block_changed_((cells_.size() + kBlockCells - 1) / kBlockCells, 0),
        hashes_(std::max<uint32_t>(1, hashes)) {}

  uint32_t Count(uint64_t key) const override {
    uint32_t least = 255;
    ForEachCell(key, [&](size_t c) { least = std::min<uint32_t>(least, cells_[c]); });
    return least;
  }
  void Add(uint64_t key, uint64_t update) override {
    // Conservative update: only the cells at the id's least count grow, so
    // the estimate stays as low as the filter allows.
    const uint32_t least = Count(key);
    if (least == 255) return;
    ForEachCell(key, [&](size_t c) {
      if (cells_[c] == least) {
        if (cells_[c] == 0) ++in_use_;
        ++cells_[c];
        block_changed_[c / kBlockCells] = static_cast<uint32_t>(update);
      }
    });
  }
  void Forget(uint64_t key, uint32_t pushes, uint64_t update) override {
    ForEachCell(key, [&](size_t c) {
      const uint8_t before = cells_[c];
      cells_[c] = before > pushes ? before - pushes : 0;
      if (before > 0 && cells_[c] == 0) --in_use_;
      if (cells_[c] != before) block_changed_[c / kBlockCells] = static_cast<uint32_t>(update);
    });
  }
  uint64_t bytes() const override { return cells_.size() + block_changed_.size() * 4; }
  uint64_t pending() const override { return 0; }
  uint64_t cells_in_use() const override { return in_use_; }
  size_t cells() const override { return cells_.size(); }
  void ExportTo(AdmissionCounts* out, uint64_t first_cell, const uint64_t* since) const override {
    out->cells += cells_.size();
    for (size_t b = 0; b < block_changed_.size(); ++b) {
      if (since != nullptr && !ChangedAfter(block_changed_[b], *since)) continue;
      const size_t begin = b * kBlockCells;
      const size_t end = std::min(cells_.size(), begin + kBlockCells);
      out->blocks.emplace_back(first_cell + begin,
                               std::vector<uint8_t>(cells_.begin() + begin, cells_.begin() + end));
    }
  }
  void Import(absl::Span<const std::pair<uint64_t, uint32_t>>, uint64_t,
              const AdmissionCounts& whole, uint64_t first_cell) override {
    Clear();
    for (const auto& [first, cells] : whole.blocks) {
      for (size_t i = 0; i < cells.size(); ++i) {
        const uint64_t c = first + i;
        if (c >= first_cell && c < first_cell + cells_.size()) cells_[c - first_cell] = cells[i];
      }
    }
    in_use_ = cells_.size() - std::count(cells_.begin(), cells_.end(), 0);
  }
  void Clear() override {
    std::fill(cells_.begin(), cells_.end(), 0);
    std::fill(block_changed_.begin(), block_changed_.end(), 0);
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
  // Per block of kBlockCells: the table update that last changed it.
  std::vector<uint32_t> block_changed_;
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

void ApplyAdmissionDelta(AdmissionCounts* base, const AdmissionCounts& delta,
                         const std::vector<uint64_t>& row_keys,
                         size_t (*stripe_of)(uint64_t, size_t)) {
  // Bloom: the changed blocks replace theirs.
  if (!delta.blocks.empty()) {
    std::vector<uint8_t> cells(delta.cells, 0);
    const std::vector<std::pair<uint64_t, std::vector<uint8_t>>>* both[] = {&base->blocks,
                                                                            &delta.blocks};
    for (const auto* blocks : both) {
      for (const auto& [first, values] : *blocks) {
        for (size_t i = 0; i < values.size() && first + i < cells.size(); ++i) {
          cells[first + i] = values[i];
        }
      }
    }
    base->blocks.clear();
    for (size_t first = 0; first < cells.size(); first += AdmissionCounter::kBlockCells) {
      const size_t end = std::min(cells.size(), first + AdmissionCounter::kBlockCells);
      base->blocks.emplace_back(first,
                                std::vector<uint8_t>(cells.begin() + first, cells.begin() + end));
    }
  }
  base->cells = delta.cells;
  // EXACT: ids that got (or lost) a row since have no count; each stripe's
  // counts are halved as often as the live ones were; then the counts that
  // changed replace theirs.
  const size_t stripes = delta.halvings.size();
  if (stripes > 0) {
    absl::flat_hash_set<uint64_t> with_row(row_keys.begin(), row_keys.end());
    absl::flat_hash_map<uint64_t, uint32_t> counts;
    for (const auto& [key, count] : base->exact) {
      if (with_row.contains(key)) continue;
      const size_t s = stripe_of(key, stripes);
      uint64_t halvings = delta.halvings[s] - (s < base->halvings.size() ? base->halvings[s] : 0);
      uint32_t c = count;
      while (halvings-- > 0 && c > 0) c /= 2;
      if (c > 0) counts[key] = c;
    }
    for (const auto& [key, count] : delta.exact) counts[key] = count;
    base->exact.assign(counts.begin(), counts.end());
    std::sort(base->exact.begin(), base->exact.end());
  }
  base->halvings = delta.halvings;
}

}  // namespace fulcrum
