#include "server/store/sparse_table.h"

#include <algorithm>
#include <thread>

#include "gtest/gtest.h"

namespace fulcrum {
namespace {

std::unique_ptr<SparseTable> Make(OptimizerKind kind, float lr, uint32_t dim,
                                  uint64_t max_rows = 1000, InitializerKind init = ZEROS) {
  OptimizerConfig config;
  config.set_kind(kind);
  config.set_learning_rate(lr);
  SparseTableOptions options;
  options.name = "emb";
  options.dim = dim;
  options.max_rows = max_rows;
  options.initializer = init;
  options.scale = 0.5f;
  options.seed = 7;
  options.stripes = 4;
  auto table = SparseTable::Create(options, *CreateOptimizer(config));
  EXPECT_TRUE(table.ok()) << table.status();
  return std::move(*table);
}

std::vector<float> PullRows(SparseTable& t, std::vector<uint64_t> keys) {
  std::vector<float> out(keys.size() * t.dim());
  EXPECT_TRUE(t.Pull(keys, absl::MakeSpan(out)).ok());
  return out;
}

TEST(SparseTableTest, FirstPull_CreatesRowsWithTheInitializer) {
  auto zeros = Make(SGD, 1, 3);
  EXPECT_EQ(PullRows(*zeros, {5, 1ull << 40}), std::vector<float>(6, 0.0f));
  EXPECT_EQ(zeros->rows(), 2u);
  EXPECT_EQ(zeros->row_bytes(), 2u * 3 * 4);

  auto a = Make(SGD, 1, 4, 1000, UNIFORM);
  auto b = Make(SGD, 1, 4, 1000, UNIFORM);
  std::vector<float> ra = PullRows(*a, {42, 43});
  // Same key, same seed: the same row on every server; keys differ.
  EXPECT_EQ(ra, PullRows(*b, {42, 43}));
  EXPECT_NE(std::vector<float>(ra.begin(), ra.begin() + 4),
            std::vector<float>(ra.begin() + 4, ra.end()));
  for (float v : ra) EXPECT_LE(std::abs(v), 0.5f);
}

TEST(SparseTableTest, Push_AppliesOptimizerPerRowDuplicatesInTurn) {
  auto t = Make(SGD, 0.5f, 2);
  ASSERT_TRUE(t->Push(std::vector<uint64_t>{9, 3, 9}, std::vector<float>{1, 2, 10, 20, 1, 2}).ok());
  EXPECT_EQ(PullRows(*t, {9, 3}), (std::vector<float>{-1, -2, -5, -10}));
}

TEST(SparseTableTest, Adagrad_MatchesHandComputation) {
  auto t = Make(ADAGRAD, 0.1f, 1);
  ASSERT_TRUE(t->Push(std::vector<uint64_t>{1}, std::vector<float>{0.5f}).ok());
  // a = 0.1 + 0.25; w = -0.1 * 0.5 / sqrt(0.35).
  EXPECT_NEAR(PullRows(*t, {1})[0], -0.0845154f, 1e-6);
}

TEST(SparseTableTest, Ftrl_L1ZerosRareFeatures) {
  OptimizerConfig config;
  config.set_kind(FTRL);
  config.set_learning_rate(0.5f);
  config.set_l1(1.0f);
  SparseTableOptions options;
  options.name = "w";
  auto t = *SparseTable::Create(options, *CreateOptimizer(config));
  // Key 1 gets a strong, consistent gradient; key 2 a weak one.
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(t->Push(std::vector<uint64_t>{1, 2}, std::vector<float>{0.9f, 0.01f}).ok());
  }
  std::vector<float> w = PullRows(*t, {1, 2});
  EXPECT_LT(w[0], 0.0f);
  EXPECT_EQ(w[1], 0.0f);  // exactly zero: |z| never passes l1
}

TEST(SparseTableTest, Full_ResourceExhaustedAndNothingCreated) {
  auto t = Make(SGD, 1, 2, /*max_rows=*/3);
  PullRows(*t, {1, 2});
  std::vector<float> out(3 * 2);
  absl::Status s = t->Pull(std::vector<uint64_t>{1, 3, 4}, absl::MakeSpan(out));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(t->rows(), 2u);  // key 3 was not created on its own
  EXPECT_EQ(t->Push(std::vector<uint64_t>{5, 6}, std::vector<float>(4, 1)).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(t->rows(), 2u);
  EXPECT_TRUE(t->Pull(std::vector<uint64_t>{3, 3, 1}, absl::MakeSpan(out)).ok());
  EXPECT_EQ(t->rows(), 3u);  // a repeated new key is one row
}

TEST(SparseTableTest, WrongSizes_InvalidArgument) {
  auto t = Make(SGD, 1, 2);
  std::vector<float> out(3);
  EXPECT_EQ(t->Pull(std::vector<uint64_t>{1, 2}, absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t->Push(std::vector<uint64_t>{1}, std::vector<float>{1}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t->rows(), 0u);
}

TEST(SparseTableTest, ConcurrentPushes_NoUpdateLost) {
  auto t = Make(SGD, 1, 1, 100000);
  std::vector<std::thread> threads;
  for (int th = 0; th < 8; ++th) {
    threads.emplace_back([&, th] {
      for (int i = 0; i < 500; ++i) {
        // Overlapping keys across threads and stripes.
        ASSERT_TRUE(t->Push(std::vector<uint64_t>{uint64_t(i % 50), uint64_t(1000 + th)},
                            std::vector<float>{1, 1})
                        .ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  for (uint64_t k = 0; k < 50; ++k) EXPECT_EQ(PullRows(*t, {k})[0], -80.0f) << k;
  EXPECT_EQ(PullRows(*t, {1003})[0], -500.0f);
  EXPECT_EQ(t->rows(), 58u);
}

TEST(SparseTableTest, SnapshotRestore_RoundTrip) {
  auto a = Make(ADAGRAD, 0.1f, 2);
  ASSERT_TRUE(a->Push(std::vector<uint64_t>{4, 8}, std::vector<float>{1, 2, 3, 4}).ok());
  auto b = Make(ADAGRAD, 0.1f, 2);
  ASSERT_TRUE(b->Restore(a->Snapshot()).ok());
  EXPECT_EQ(b->rows(), 2u);
  ASSERT_TRUE(a->Push(std::vector<uint64_t>{4}, std::vector<float>{1, 1}).ok());
  ASSERT_TRUE(b->Push(std::vector<uint64_t>{4}, std::vector<float>{1, 1}).ok());
  EXPECT_EQ(PullRows(*b, {4, 8}), PullRows(*a, {4, 8}));  // slots came along
  auto wrong = Make(SGD, 0.1f, 2);
  EXPECT_EQ(wrong->Restore(a->Snapshot()).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(SparseTableTest, ManyRowsAcrossChunks_EachKeyFindsItsOwnRow) {
  // Rows live in chunks of 1024 and the index holds row numbers only: every
  // key must still reach its row, before and after a snapshot and restore.
  auto a = Make(SGD, 1.0f, 2, 10000);
  std::vector<uint64_t> keys;
  std::vector<float> grads;
  for (uint64_t k = 0; k < 5000; ++k) {
    keys.push_back(k * 7919 + 3);
    grads.push_back(-static_cast<float>(k));
    grads.push_back(static_cast<float>(k));
  }
  ASSERT_TRUE(a->Push(keys, grads).ok());
  EXPECT_EQ(a->rows(), 5000u);
  auto b = Make(SGD, 1.0f, 2, 10000);
  SparseTable::Contents contents = a->Snapshot();
  std::vector<SparseTable::RowSnapshot>& rows = contents.rows;
  rows.push_back(rows.front());  // a repeated key: one row
  rows.back().data[0] = 99.0f;   // and the last copy wins
  const uint64_t repeated = rows.front().key;
  ASSERT_TRUE(b->Restore(contents).ok());
  EXPECT_EQ(b->rows(), 5000u);
  for (const auto* t : {a.get(), b.get()}) {
    const std::vector<float> values = PullRows(*const_cast<SparseTable*>(t), keys);
    for (size_t k = 0; k < keys.size(); ++k) {
      const float want = t == b.get() && keys[k] == repeated ? 99.0f : static_cast<float>(k);
      ASSERT_EQ(values[2 * k], want) << "key " << keys[k];
      if (!(t == b.get() && keys[k] == repeated)) {
        ASSERT_EQ(values[2 * k + 1], -want);
      }
    }
  }
}

// Admission and eviction: a table of dim 2, SGD with rate 1, UNIFORM
// initial rows, one stripe unless asked, on a clock the test moves.
class LifecycleTest : public ::testing::Test {
 protected:
  std::unique_ptr<SparseTable> Make(const FeatureAdmission& admission,
                                    const FeatureEviction& eviction, uint64_t max_rows = 1000,
                                    int stripes = 1) {
    OptimizerConfig config;
    config.set_kind(SGD);
    config.set_learning_rate(1);
    SparseTableOptions options;
    options.name = "emb";
    options.dim = 2;
    options.max_rows = max_rows;
    options.initializer = UNIFORM;
    options.scale = 0.5f;
    options.seed = 11;
    options.stripes = stripes;
    options.admission = admission;
    options.eviction = eviction;
    options.clock = &clock_;
    auto table = SparseTable::Create(options, *CreateOptimizer(config));
    EXPECT_TRUE(table.ok()) << table.status();
    return std::move(*table);
  }
  static FeatureAdmission Count(uint32_t n, FeatureAdmission::Counter counter) {
    FeatureAdmission a;
    a.set_min_count(n);
    a.set_counter(counter);
    return a;
  }
  static absl::Status PushOnes(SparseTable& t, std::vector<uint64_t> keys, uint64_t draw = 0) {
    SparsePushContext context;
    context.draw = draw;
    return t.Push(keys, std::vector<float>(keys.size() * 2, 1.0f), context);
  }
  static std::vector<uint64_t> Keys(const SparseTable& t) {
    std::vector<uint64_t> keys;
    for (const auto& row : t.Snapshot().rows) keys.push_back(row.key);
    std::sort(keys.begin(), keys.end());
    return keys;
  }

  ManualClock clock_;
};

TEST_F(LifecycleTest, ExactCount_RowOnlyAtTheNthPush_UntilThenInitialValuesAndGradientsDropped) {
  auto t = Make(Count(3, FeatureAdmission::EXACT), {});
  const std::vector<float> initial = PullRows(*t, {42});
  EXPECT_EQ(t->rows(), 0u);                  // a pull makes no row
  ASSERT_TRUE(PushOnes(*t, {42, 42}).ok());  // counts once
  ASSERT_TRUE(PushOnes(*t, {42}).ok());
  EXPECT_EQ(t->rows(), 0u);
  EXPECT_EQ(t->pending_ids(), 1u);
  EXPECT_EQ(PullRows(*t, {42}), initial);  // both gradients were dropped
  ASSERT_TRUE(PushOnes(*t, {42}).ok());    // the third: admitted and applied
  EXPECT_EQ(t->rows(), 1u);
  EXPECT_EQ(t->pending_ids(), 0u);
  EXPECT_EQ(PullRows(*t, {42}), (std::vector<float>{initial[0] - 1, initial[1] - 1}));
  EXPECT_EQ(t->counters().admitted, 1u);
  EXPECT_EQ(t->counters().refused, 2u);
}

TEST_F(LifecycleTest, CountingBloom_AdmitsAtTheCountAndStatesItsFalsePositiveRate) {
  FeatureAdmission admission = Count(2, FeatureAdmission::COUNTING_BLOOM);
  admission.set_bloom_cells(1 << 12);
  admission.set_bloom_hashes(3);
  auto t = Make(admission, {});
  // Fixed: a byte a cell, and 4 bytes a block of 4096 cells (when it last
  // changed, for incremental checkpoints).
  EXPECT_EQ(t->counter_bytes(), (1u << 12) + 4);
  std::vector<uint64_t> once;
  for (uint64_t k = 1; k <= 200; ++k) once.push_back(k * 1000003);
  ASSERT_TRUE(PushOnes(*t, once).ok());
  EXPECT_EQ(t->rows(), 0u);
  // 200 ids of 3 cells in 4096: about 14% of cells in use, rate ~0.3%.
  const double rate = t->bloom_false_positive_rate();
  EXPECT_GT(rate, 0.0005);
  EXPECT_LT(rate, 0.01);
  ASSERT_TRUE(PushOnes(*t, once).ok());  // every id's second push
  EXPECT_EQ(t->rows(), 200u);
  EXPECT_EQ(t->counter_bytes(), (1u << 12) + 4);
  // Admitted ids gave their counts back: the cells are (nearly) empty again.
  EXPECT_LT(t->bloom_false_positive_rate(), rate / 100);
}

TEST_F(LifecycleTest, ExactCounters_StayWithinMaxCounters) {
  FeatureAdmission admission = Count(2, FeatureAdmission::EXACT);
  admission.set_max_counters(64);
  auto t = Make(admission, {});
  for (uint64_t k = 0; k < 10000; ++k) ASSERT_TRUE(PushOnes(*t, {k}).ok());
  EXPECT_LE(t->pending_ids(), 64u);
  // The map's slots: at most twice max_counters, 17 bytes each.
  EXPECT_LE(t->counter_bytes(), 2u * 64 * 17);
  EXPECT_EQ(t->rows(), 0u);
  // A recurring id still gets in: halving keeps its count above the
  // once-seen ids it competes with.
  ASSERT_TRUE(PushOnes(*t, {5, 5}).ok());
  ASSERT_TRUE(PushOnes(*t, {5}).ok());
  EXPECT_EQ(t->rows(), 1u);
}

TEST_F(LifecycleTest, Probability_DeterministicPerIdAndDraw_AboutPOfIdsPerPush) {
  FeatureAdmission admission;
  admission.set_probability(0.25f);
  auto a = Make(admission, {}, 10000);
  auto b = Make(admission, {}, 10000);
  std::vector<uint64_t> ids;
  for (uint64_t k = 0; k < 4000; ++k) ids.push_back(k);
  ASSERT_TRUE(PushOnes(*a, ids, /*draw=*/7).ok());
  ASSERT_TRUE(PushOnes(*b, ids, /*draw=*/7).ok());
  EXPECT_EQ(Keys(*a), Keys(*b));  // a retry or a replica draws the same
  EXPECT_NEAR(double(a->rows()) / ids.size(), 0.25, 0.03);
  ASSERT_TRUE(PushOnes(*a, ids, /*draw=*/8).ok());  // another push: another draw
  EXPECT_NEAR(double(a->rows()) / ids.size(), 1 - 0.75 * 0.75, 0.03);
}

TEST_F(LifecycleTest, TtlInUpdates_RowsNotUpdatedForTtlUpdatesGo) {
  FeatureEviction eviction;
  eviction.set_ttl_updates(3);
  auto t = Make({}, eviction);
  ASSERT_TRUE(PushOnes(*t, {1}).ok());  // update 1
  ASSERT_TRUE(PushOnes(*t, {2}).ok());  // update 2
  ASSERT_TRUE(PushOnes(*t, {2}).ok());  // update 3: row 1 is 2 updates old
  ASSERT_TRUE(t->EvictionDue());
  EXPECT_TRUE(t->EvictDue().empty());
  ASSERT_TRUE(PushOnes(*t, {2}).ok());  // update 4: row 1 is 3 updates old
  EXPECT_EQ(t->EvictDue(), std::vector<uint64_t>{1});
  EXPECT_EQ(Keys(*t), std::vector<uint64_t>{2});
  EXPECT_EQ(t->counters().evicted, 1u);
}

TEST_F(LifecycleTest, TtlInSeconds_OnTheInjectedClock) {
  FeatureEviction eviction;
  eviction.set_ttl_seconds(80);
  auto t = Make({}, eviction);
  ASSERT_TRUE(PushOnes(*t, {1, 2}).ok());
  clock_.Advance(absl::Seconds(50));
  ASSERT_TRUE(PushOnes(*t, {2, 3}).ok());
  EXPECT_TRUE(t->EvictDue().empty());  // row 1 is 50 s old
  clock_.Advance(absl::Seconds(31));
  ASSERT_TRUE(t->EvictionDue());
  EXPECT_EQ(t->EvictDue(), std::vector<uint64_t>{1});  // 81 s; rows 2, 3 are 31 s old
  // The next sweep is an eighth of the TTL later.
  EXPECT_FALSE(t->EvictionDue());
  clock_.Advance(absl::Seconds(10));
  ASSERT_TRUE(t->EvictionDue());
  EXPECT_TRUE(t->EvictDue().empty());
  clock_.Advance(absl::Seconds(40));
  std::vector<uint64_t> evicted = t->EvictDue();
  std::sort(evicted.begin(), evicted.end());
  EXPECT_EQ(evicted, (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(t->rows(), 0u);
}

TEST_F(LifecycleTest, Full_LeastRecentlyUpdatedRowsGoInsteadOfRefusingNewIds) {
  FeatureEviction eviction;
  eviction.set_when_full(FeatureEviction::LEAST_RECENTLY_UPDATED);
  auto t = Make({}, eviction, /*max_rows=*/8);
  for (uint64_t k = 1; k <= 8; ++k) ASSERT_TRUE(PushOnes(*t, {k}).ok());
  ASSERT_TRUE(PushOnes(*t, {1, 2, 3, 4}).ok());
  EXPECT_FALSE(t->EvictionDue());
  ASSERT_TRUE(PushOnes(*t, {9}).ok());  // not refused: 9 rows until evicted
  ASSERT_TRUE(t->EvictionDue());
  // Down to 63/64 of the cap (at least one row under it): 7 rows.
  std::vector<uint64_t> evicted = t->EvictDue();
  std::sort(evicted.begin(), evicted.end());
  EXPECT_EQ(evicted, (std::vector<uint64_t>{5, 6}));
  EXPECT_EQ(Keys(*t), (std::vector<uint64_t>{1, 2, 3, 4, 7, 8, 9}));
}

TEST_F(LifecycleTest, Full_LeastFrequentlyUpdatedRowsGoFirst) {
  FeatureEviction eviction;
  eviction.set_when_full(FeatureEviction::LEAST_FREQUENTLY_UPDATED);
  auto t = Make({}, eviction, /*max_rows=*/4);
  ASSERT_TRUE(PushOnes(*t, {1, 2, 3, 4}).ok());
  ASSERT_TRUE(PushOnes(*t, {1, 2}).ok());
  ASSERT_TRUE(PushOnes(*t, {3}).ok());
  ASSERT_TRUE(PushOnes(*t, {5}).ok());  // 4 (1 update, older) and 5 (1 update)
  std::vector<uint64_t> evicted = t->EvictDue();
  std::sort(evicted.begin(), evicted.end());
  EXPECT_EQ(evicted, (std::vector<uint64_t>{4, 5}));
}

TEST_F(LifecycleTest, EvictedIdComesBackThroughAdmissionWithItsInitialRow) {
  FeatureEviction eviction;
  eviction.set_ttl_updates(1);
  auto t = Make(Count(2, FeatureAdmission::EXACT), eviction);
  const std::vector<float> initial = PullRows(*t, {7});
  ASSERT_TRUE(PushOnes(*t, {7}).ok());
  ASSERT_TRUE(PushOnes(*t, {7}).ok());
  ASSERT_EQ(t->rows(), 1u);
  ASSERT_TRUE(PushOnes(*t, {8}).ok());
  EXPECT_EQ(t->EvictDue(), std::vector<uint64_t>{7});
  EXPECT_EQ(PullRows(*t, {7}), initial);
  ASSERT_TRUE(PushOnes(*t, {7}).ok());  // counted afresh: one push is not enough
  EXPECT_EQ(t->rows(), 0u);
  ASSERT_TRUE(PushOnes(*t, {7}).ok());
  EXPECT_EQ(t->rows(), 1u);
}

TEST_F(LifecycleTest, EvictingManyRows_TheOthersKeepTheirValues) {
  FeatureEviction eviction;
  eviction.set_ttl_updates(1000000);
  auto t = Make({}, eviction, 100000, /*stripes=*/4);
  std::vector<uint64_t> keys;
  std::vector<float> grads;
  for (uint64_t k = 0; k < 5000; ++k) {
    keys.push_back(k * 7919 + 3);
    grads.push_back(static_cast<float>(k));
    grads.push_back(0);
  }
  const std::vector<float> initial = PullRows(*t, keys);
  ASSERT_TRUE(t->Push(keys, grads).ok());
  std::vector<uint64_t> odd;
  for (size_t k = 1; k < keys.size(); k += 2) odd.push_back(keys[k]);
  t->Evict(odd);  // rows move to fill the holes
  EXPECT_EQ(t->rows(), 2500u);
  const std::vector<float> after = PullRows(*t, keys);
  for (size_t k = 0; k < keys.size(); ++k) {
    const float want = k % 2 == 1 ? initial[2 * k] : initial[2 * k] - static_cast<float>(k);
    ASSERT_EQ(after[2 * k], want) << "key " << keys[k];
  }
}

TEST_F(LifecycleTest, SnapshotRestore_SameRowsAgesCountersAndCounts_ThenTheSameFuture) {
  FeatureEviction eviction;
  eviction.set_ttl_updates(6);
  eviction.set_when_full(FeatureEviction::LEAST_RECENTLY_UPDATED);
  auto live = Make(Count(2, FeatureAdmission::EXACT), eviction, 64, 1);
  for (uint64_t step = 0; step < 40; ++step) {
    ASSERT_TRUE(PushOnes(*live, {step % 5, 100 + step, 100 + step / 2}).ok());
    clock_.Advance(absl::Seconds(1));
    if (live->EvictionDue()) live->EvictDue();
  }
  auto restored = Make(Count(2, FeatureAdmission::EXACT), eviction, 64, 1);
  ASSERT_TRUE(restored->Restore(live->Snapshot()).ok());
  auto same = [](const SparseTable& a, const SparseTable& b) {
    const SparseTable::Contents x = a.Snapshot(), y = b.Snapshot();
    EXPECT_EQ(x.updates, y.updates);
    EXPECT_EQ(x.counters.admitted, y.counters.admitted);
    EXPECT_EQ(x.counters.refused, y.counters.refused);
    EXPECT_EQ(x.counters.evicted, y.counters.evicted);
    EXPECT_EQ(x.pending.exact, y.pending.exact);
    ASSERT_EQ(x.rows.size(), y.rows.size());
    for (size_t i = 0; i < x.rows.size(); ++i) {
      EXPECT_EQ(x.rows[i].key, y.rows[i].key);
      EXPECT_EQ(x.rows[i].data, y.rows[i].data);
      EXPECT_EQ(x.rows[i].last_update, y.rows[i].last_update);
      EXPECT_EQ(x.rows[i].last_update_seconds, y.rows[i].last_update_seconds);
      EXPECT_EQ(x.rows[i].updates, y.rows[i].updates);
    }
  };
  same(*live, *restored);
  EXPECT_GT(live->counters().evicted, 0u);
  EXPECT_GT(live->pending_ids(), 0u);
  // And they go on alike: the same pushes admit and evict the same ids.
  uint64_t evicted_after = 0;
  for (uint64_t step = 40; step < 60; ++step) {
    std::vector<uint64_t> evicted[2];
    for (int i = 0; i < 2; ++i) {
      SparseTable& t = i == 0 ? *live : *restored;
      ASSERT_TRUE(PushOnes(t, {step % 5, 100 + step, 100 + step / 2}).ok());
      if (t.EvictionDue()) evicted[i] = t.EvictDue();
    }
    EXPECT_EQ(evicted[0], evicted[1]) << "step " << step;
    evicted_after += evicted[0].size();
    clock_.Advance(absl::Seconds(1));
  }
  EXPECT_GT(evicted_after, 0u);
  same(*live, *restored);
}

TEST_F(LifecycleTest, BadOptions_InvalidArgument) {
  OptimizerConfig config;
  config.set_kind(SGD);
  SparseTableOptions options;
  options.admission.set_probability(1.5f);
  EXPECT_EQ(SparseTable::Create(options, *CreateOptimizer(config)).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.admission.set_probability(0.5f);
  options.admission.set_min_count(3);
  EXPECT_EQ(SparseTable::Create(options, *CreateOptimizer(config)).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.admission = FeatureAdmission();
  options.eviction.set_ttl_seconds(-1);
  EXPECT_EQ(SparseTable::Create(options, *CreateOptimizer(config)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fulcrum
