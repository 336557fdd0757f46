#include "common/shard_map.h"

#include <vector>

#include "gtest/gtest.h"

namespace fulcrum {
namespace {

TEST(ShardMapTest, EveryElementHasExactlyOneOwner) {
  for (uint32_t shards : {1u, 2u, 3u, 7u}) {
    const ShardMap map(shards);
    for (uint64_t n : {1ull, 2ull, 3ull, 10ull, 101ull, 7850ull}) {
      std::vector<int> owners(n, 0);
      uint64_t covered = 0;
      for (uint32_t s = 0; s < shards; ++s) {
        const ElementRange r = map.DenseRange(n, s);
        ASSERT_LE(r.begin, r.end);
        covered += r.size();
        for (uint64_t e = r.begin; e < r.end; ++e) {
          ++owners[e];
          EXPECT_EQ(map.ShardOfElement(n, e), s) << "n=" << n << " e=" << e;
        }
      }
      EXPECT_EQ(covered, n);
      for (uint64_t e = 0; e < n; ++e) ASSERT_EQ(owners[e], 1) << "n=" << n << " e=" << e;
      // Ranges are contiguous and in shard order.
      EXPECT_EQ(map.DenseRange(n, 0).begin, 0u);
      EXPECT_EQ(map.DenseRange(n, shards - 1).end, n);
    }
  }
}

TEST(ShardMapTest, RangesFollowTheDesignFormula) {
  const ShardMap map(3);
  EXPECT_EQ(map.DenseRange(10, 0).begin, 0u);
  EXPECT_EQ(map.DenseRange(10, 0).end, 3u);  // 10/3
  EXPECT_EQ(map.DenseRange(10, 1).end, 6u);  // 20/3
  EXPECT_EQ(map.DenseRange(10, 2).end, 10u);
  // Huge tensors do not overflow.
  const uint64_t huge = uint64_t{1} << 62;
  EXPECT_EQ(map.DenseRange(huge, 2).end, huge);
  EXPECT_EQ(map.DenseRange(huge, 1).begin, huge / 3);
}

TEST(ShardMapTest, EveryKeyHasOneStableOwnerAndKeysSpreadEvenly) {
  const ShardMap map(3);
  std::vector<int> per_shard(3, 0);
  for (uint64_t key = 0; key < 300000; ++key) {
    const uint32_t s = map.ShardOfKey(key);
    ASSERT_LT(s, 3u);
    ASSERT_EQ(s, map.ShardOfKey(key));  // deterministic
    ++per_shard[s];
  }
  for (int count : per_shard) {
    EXPECT_GT(count, 99000);
    EXPECT_LT(count, 101000);
  }
  // One shard owns every key.
  const ShardMap single(1);
  for (uint64_t key : {0ull, 1ull, ~0ull}) EXPECT_EQ(single.ShardOfKey(key), 0u);
}

}  // namespace
}  // namespace fulcrum
