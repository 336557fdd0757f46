// ShardMap: which parameter-server shard owns which part of the model.
//
// A dense tensor of n elements is cut into N contiguous element ranges:
// shard i owns [i*n/N, (i+1)*n/N) (so a tensor smaller than N leaves some
// shards without a part of it). A sparse row with key k lives on shard
// (Mix64(k) >> 32) % N: the high half of a SplitMix64 mix, so keys that are
// dense integers spread evenly, and the placement does not correlate with
// the lock stripe a shard picks from the low half.
//
// A value type; immutable and thread-safe.
#ifndef FULCRUM_COMMON_SHARD_MAP_H_
#define FULCRUM_COMMON_SHARD_MAP_H_

#include <cstdint>

namespace fulcrum {

// SplitMix64's finaliser: a stable 64-bit mix (absl::Hash is salted per
// process, so it cannot place keys across processes).
inline uint64_t Mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// [begin, end) in a tensor's flattened element order.
struct ElementRange {
  uint64_t begin = 0;
  uint64_t end = 0;
  uint64_t size() const { return end - begin; }
  bool empty() const { return begin == end; }
};

class ShardMap {
 public:
  // `num_shards` >= 1.
  explicit ShardMap(uint32_t num_shards = 1) : num_shards_(num_shards ? num_shards : 1) {}

  uint32_t num_shards() const { return num_shards_; }

  // The elements of a tensor of `elements` elements that `shard` owns.
  ElementRange DenseRange(uint64_t elements, uint32_t shard) const {
    // 128-bit products: element counts times shard counts may pass 2^64.
    const auto cut = [&](uint64_t i) {
      return static_cast<uint64_t>(static_cast<unsigned __int128>(elements) * i / num_shards_);
    };
    return ElementRange{cut(shard), cut(shard + 1)};
  }

  // The shard owning element `element` of a tensor of `elements` elements.
  uint32_t ShardOfElement(uint64_t elements, uint64_t element) const {
    // The candidate from the proportion, corrected for rounding.
    uint32_t s =
        static_cast<uint32_t>(static_cast<unsigned __int128>(element) * num_shards_ / elements);
    while (s + 1 < num_shards_ && DenseRange(elements, s + 1).begin <= element) ++s;
    while (s > 0 && DenseRange(elements, s).begin > element) --s;
    return s;
  }

  // The shard owning sparse row `key`.
  uint32_t ShardOfKey(uint64_t key) const {
    return static_cast<uint32_t>((Mix64(key) >> 32) % num_shards_);
  }

 private:
  uint32_t num_shards_;
};

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_SHARD_MAP_H_
