#include "server/store/sparse_table.h"

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
  std::vector<SparseTable::RowSnapshot> rows = a->Snapshot();
  rows.push_back(rows.front());  // a repeated key: one row
  rows.back().data[0] = 99.0f;   // and the last copy wins
  const uint64_t repeated = rows.front().key;
  ASSERT_TRUE(b->Restore(rows).ok());
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

}  // namespace
}  // namespace fulcrum
