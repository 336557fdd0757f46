#include "server/store/parameter_store.h"

#include <cmath>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "server/store/initializer.h"

namespace fulcrum {
namespace {

TensorSpec Spec(const std::string& name, std::vector<int64_t> shape, InitializerKind init = ZEROS) {
  TensorSpec s;
  s.set_name(name);
  for (int64_t d : shape) s.add_shape(d);
  s.set_initializer(init);
  return s;
}

std::unique_ptr<ParameterStore> MakeStore(std::vector<TensorSpec> tensors, size_t stripe = 4,
                                          float lr = 1.0f, uint64_t seed = 7) {
  OptimizerConfig config;
  config.set_kind(SGD);
  config.set_learning_rate(lr);
  ParameterStoreOptions options;
  options.stripe_elements = stripe;
  options.seed = seed;
  auto store = ParameterStore::Create(options, *CreateOptimizer(config), tensors);
  EXPECT_TRUE(store.ok()) << store.status();
  return std::move(*store);
}

std::vector<float> ReadAll(const ParameterStore& store, const std::string& name) {
  const uint64_t n = *store.TensorSize(name);
  std::vector<float> out(n);
  EXPECT_TRUE(store.Read({name, 0, n}, absl::MakeSpan(out)).ok());
  return out;
}

TEST(ParameterStoreTest, TensorWithItsOwnOptimizer_UpdatedByIt) {
  TensorSpec fast = Spec("fast", {4});
  fast.mutable_optimizer()->set_kind(SGD);
  fast.mutable_optimizer()->set_learning_rate(10.0f);
  TensorSpec adagrad = Spec("adagrad", {4});
  adagrad.mutable_optimizer()->set_kind(ADAGRAD);
  adagrad.mutable_optimizer()->set_learning_rate(1.0f);
  auto store = MakeStore({Spec("plain", {4}), fast, adagrad});  // the store's: SGD, rate 1
  const std::vector<float> grad(4, 1.0f);
  for (const char* name : {"plain", "fast", "adagrad"}) {
    ASSERT_TRUE(store->ApplyGradient({name, 0, 4}, grad).ok()) << name;
  }
  EXPECT_EQ(ReadAll(*store, "plain"), std::vector<float>(4, -1.0f));
  EXPECT_EQ(ReadAll(*store, "fast"), std::vector<float>(4, -10.0f));
  // Adagrad's step: rate / sqrt(initial accumulator 0.1 + g^2) ~ 0.953.
  EXPECT_NEAR(ReadAll(*store, "adagrad")[0], -1.0f / std::sqrt(1.1f), 1e-4);
  // Its slots travel with it through a snapshot.
  std::vector<TensorSnapshot> snapshot = store->Snapshot();
  ASSERT_EQ(snapshot.size(), 3u);
  EXPECT_EQ(snapshot[0].slots.size(), 0u);
  EXPECT_EQ(snapshot[2].slots.size(), 1u);
  EXPECT_TRUE(store->Restore(snapshot).ok());
}

TEST(ParameterStoreTest, Create_ZerosAndSizes) {
  auto store = MakeStore({Spec("a", {3, 5}), Spec("b", {7})});
  EXPECT_EQ(*store->TensorSize("a"), 15u);
  EXPECT_EQ(store->TotalElements(), 22u);
  EXPECT_EQ(store->TensorNames(), (std::vector<std::string>{"a", "b"}));
  for (float v : ReadAll(*store, "a")) EXPECT_EQ(v, 0.0f);
}

TEST(ParameterStoreTest, GlorotInit_WithinLimitAndSeeded) {
  auto a = MakeStore({Spec("w", {784, 10}, GLOROT_UNIFORM)}, 1000, 1, 42);
  auto b = MakeStore({Spec("w", {784, 10}, GLOROT_UNIFORM)}, 7, 1, 42);
  auto c = MakeStore({Spec("w", {784, 10}, GLOROT_UNIFORM)}, 1000, 1, 43);
  const float limit = std::sqrt(6.0f / (784 + 10));
  std::vector<float> va = ReadAll(*a, "w");
  double sum_abs = 0;
  for (float v : va) {
    EXPECT_LE(std::abs(v), limit);
    sum_abs += std::abs(v);
  }
  EXPECT_GT(sum_abs / va.size(), limit / 4);  // spread, not all near 0
  EXPECT_EQ(va, ReadAll(*b, "w"));            // same seed: same values, any striping
  EXPECT_NE(va, ReadAll(*c, "w"));
}

TEST(ParameterStoreTest, ConstantInit_EveryElementTheScale) {
  TensorSpec gain = Spec("gain", {5}, CONSTANT);
  gain.set_scale(1.5f);
  auto store = MakeStore({gain});
  EXPECT_EQ(ReadAll(*store, "gain"), std::vector<float>(5, 1.5f));
}

TEST(ParameterStoreTest, ApplyGradient_AcrossStripeBoundaries) {
  auto store = MakeStore({Spec("t", {10})}, /*stripe=*/3);
  // Elements 2..8 span stripes [0,3) [3,6) [6,9).
  std::vector<float> grad = {1, 2, 3, 4, 5, 6, 7};
  ASSERT_TRUE(store->ApplyGradient({"t", 2, 7}, grad).ok());
  EXPECT_EQ(ReadAll(*store, "t"), (std::vector<float>{0, 0, -1, -2, -3, -4, -5, -6, -7, 0}));
  std::vector<float> part(4);
  ASSERT_TRUE(store->Read({"t", 5, 4}, absl::MakeSpan(part)).ok());
  EXPECT_EQ(part, (std::vector<float>{-4, -5, -6, -7}));
}

TEST(ParameterStoreTest, BadSlices_RejectedWithCodes) {
  auto store = MakeStore({Spec("t", {10})});
  EXPECT_EQ(store->Validate({"nope", 0, 1}).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->Validate({"t", 0, 0}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->Validate({"t", 8, 3}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->Validate({"t", 10, 1}).code(), absl::StatusCode::kInvalidArgument);
  // Offset + length overflowing uint64 must not wrap into range.
  EXPECT_EQ(store->Validate({"t", 5, ~uint64_t{0}}).code(), absl::StatusCode::kInvalidArgument);
  std::vector<float> grad(3, 1.0f);
  EXPECT_EQ(store->ApplyGradient({"t", 0, 2}, grad).code(), absl::StatusCode::kInvalidArgument);
  for (float v : ReadAll(*store, "t")) EXPECT_EQ(v, 0.0f);
}

TEST(ParameterStoreTest, TensorOverTheSizeLimit_ResourceExhausted) {
  OptimizerConfig config;
  config.set_kind(SGD);
  ParameterStoreOptions options;
  options.max_tensor_elements = 100;
  absl::Status s =
      ParameterStore::Create(options, *CreateOptimizer(config), {Spec("big", {10, 11})}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("big"), std::string::npos);
}

TEST(ParameterStoreTest, CreateRejectsBadSpecs) {
  OptimizerConfig config;
  config.set_kind(SGD);
  for (const std::vector<TensorSpec>& bad :
       {std::vector<TensorSpec>{Spec("a", {2}), Spec("a", {3})},
        std::vector<TensorSpec>{Spec("z", {0, 4})}, std::vector<TensorSpec>{Spec("", {4})},
        std::vector<TensorSpec>{Spec("n", {})}}) {
    EXPECT_EQ(ParameterStore::Create({}, *CreateOptimizer(config), bad).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST(ParameterStoreTest, AccumulateThenApply_AppliesScaledSumOnce) {
  auto store = MakeStore({Spec("t", {5})}, 2);
  ASSERT_TRUE(store->Accumulate({"t", 0, 5}, std::vector<float>{1, 1, 1, 1, 1}).ok());
  ASSERT_TRUE(store->Accumulate({"t", 0, 5}, std::vector<float>{3, 3, 3, 3, 3}).ok());
  for (float v : ReadAll(*store, "t")) EXPECT_EQ(v, 0.0f);  // not yet
  store->ApplyAccumulated(0.5f);
  for (float v : ReadAll(*store, "t")) EXPECT_EQ(v, -2.0f);
  store->ApplyAccumulated(0.5f);  // nothing pending: no change
  for (float v : ReadAll(*store, "t")) EXPECT_EQ(v, -2.0f);
}

TEST(ParameterStoreTest, SnapshotRestore_RoundTripsValuesSlotsAndSteps) {
  OptimizerConfig adam;
  adam.set_kind(ADAM);
  ParameterStoreOptions options;
  options.stripe_elements = 3;
  auto a =
      *ParameterStore::Create(options, *CreateOptimizer(adam), {Spec("t", {7}, GLOROT_UNIFORM)});
  ASSERT_TRUE(a->ApplyGradient({"t", 0, 7}, std::vector<float>(7, 0.5f)).ok());
  ASSERT_TRUE(a->ApplyGradient({"t", 0, 7}, std::vector<float>(7, -1.0f)).ok());
  std::vector<TensorSnapshot> snap = a->Snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].slots.size(), 2u);
  EXPECT_EQ(snap[0].optimizer_steps, 2);

  options.stripe_elements = 5;  // a different striping restores the same
  options.seed = 99;
  auto b =
      *ParameterStore::Create(options, *CreateOptimizer(adam), {Spec("t", {7}, GLOROT_UNIFORM)});
  ASSERT_TRUE(b->Restore(snap).ok());
  EXPECT_EQ(ReadAll(*b, "t"), ReadAll(*a, "t"));
  // The same next step gives the same result: slots and Adam's t came along.
  ASSERT_TRUE(a->ApplyGradient({"t", 0, 7}, std::vector<float>(7, 0.25f)).ok());
  ASSERT_TRUE(b->ApplyGradient({"t", 0, 7}, std::vector<float>(7, 0.25f)).ok());
  EXPECT_EQ(ReadAll(*b, "t"), ReadAll(*a, "t"));
}

TEST(ParameterStoreTest, RestoreMismatch_FailedPreconditionNothingChanged) {
  auto store = MakeStore({Spec("t", {4})});
  std::vector<TensorSnapshot> snap = store->Snapshot();
  snap[0].values = {1, 2, 3};
  snap[0].shape = {3};
  EXPECT_EQ(store->Restore(snap).code(), absl::StatusCode::kFailedPrecondition);
  snap = store->Snapshot();
  snap[0].name = "u";
  EXPECT_EQ(store->Restore(snap).code(), absl::StatusCode::kFailedPrecondition);
  snap = store->Snapshot();
  snap[0].slots.push_back(std::vector<float>(4));  // SGD has no slots
  EXPECT_EQ(store->Restore(snap).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReadAll(*store, "t"), std::vector<float>(4, 0.0f));
}

TEST(ParameterStoreTest, ConcurrentPushes_NoUpdateLost) {
  // SGD with lr 1: the result is minus the exact sum of all gradients.
  // Integer-valued gradients keep float sums exact.
  auto store = MakeStore({Spec("t", {1000})}, /*stripe=*/64);
  constexpr int kThreads = 8;
  constexpr int kPushes = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<float> grad(1000, static_cast<float>(t + 1));
      for (int i = 0; i < kPushes; ++i) {
        EXPECT_TRUE(store->ApplyGradient({"t", 0, 1000}, grad).ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  const float expected = -kPushes * (kThreads * (kThreads + 1) / 2);
  for (float v : ReadAll(*store, "t")) ASSERT_EQ(v, expected);
}

}  // namespace
}  // namespace fulcrum

namespace fulcrum {
namespace {

TEST(ParameterStoreShardTest, EachShardHoldsItsRangeInitialisedAsTheWholeTensor) {
  const TensorSpec spec = Spec("w", {7, 3}, GLOROT_UNIFORM);
  const std::unique_ptr<ParameterStore> whole = MakeStore({spec});
  const std::vector<float> all = ReadAll(*whole, "w");
  OptimizerConfig config;
  config.set_kind(SGD);
  config.set_learning_rate(1.0f);
  uint64_t held = 0;
  for (uint32_t shard = 0; shard < 3; ++shard) {
    ParameterStoreOptions options;
    options.stripe_elements = 4;
    options.seed = 7;
    options.shard_index = shard;
    options.num_shards = 3;
    auto store = ParameterStore::Create(options, *CreateOptimizer(config), {spec});
    ASSERT_TRUE(store.ok()) << store.status();
    const uint64_t begin = 21 * shard / 3, end = 21 * (shard + 1) / 3;
    held += (*store)->TotalElements();
    EXPECT_EQ(*(*store)->TensorSize("w"), 21u);  // the whole tensor's size
    std::vector<float> part(end - begin);
    ASSERT_TRUE((*store)->Read({"w", begin, end - begin}, absl::MakeSpan(part)).ok());
    for (uint64_t i = begin; i < end; ++i) EXPECT_EQ(part[i - begin], all[i]);
    // A gradient for its range applies; one reaching past it is refused.
    std::vector<float> grad(end - begin, 1.0f);
    ASSERT_TRUE((*store)->ApplyGradient({"w", begin, end - begin}, grad).ok());
    ASSERT_TRUE((*store)->Read({"w", begin, end - begin}, absl::MakeSpan(part)).ok());
    EXPECT_FLOAT_EQ(part[0], all[begin] - 1.0f);
    std::vector<float> wide(end - begin + 1, 1.0f);
    const uint64_t outside = shard == 0 ? begin : begin - 1;
    absl::Status s = (*store)->ApplyGradient({"w", outside, wide.size()}, wide);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("is not on shard"), std::string::npos) << s;
    // The whole tensor's elements are still validated first.
    EXPECT_EQ((*store)->Validate({"w", 20, 2}).code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(held, 21u);
}

}  // namespace
}  // namespace fulcrum
