#include "server/store/optimizer.h"

#include <array>
#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace fulcrum {
namespace {

// Runs `optimizer` over the gradients in turn on a fresh two-element range.
std::vector<float> ApplySteps(const Optimizer& optimizer, std::vector<float> w,
                              const std::vector<std::vector<float>>& grads) {
  std::vector<std::vector<float>> slots(optimizer.num_slots(), std::vector<float>(w.size()));
  std::vector<float*> ptrs;
  for (auto& s : slots) ptrs.push_back(s.data());
  optimizer.InitSlots(ptrs, w.size());
  int64_t step = 0;
  for (const auto& g : grads) {
    optimizer.Apply(w.data(), g.data(), ptrs, w.size(), ++step);
  }
  return w;
}

std::unique_ptr<Optimizer> Make(OptimizerConfig config) {
  absl::StatusOr<std::unique_ptr<Optimizer>> o = CreateOptimizer(config);
  EXPECT_TRUE(o.ok()) << o.status();
  return std::move(*o);
}

OptimizerConfig Config(OptimizerKind kind, float lr) {
  OptimizerConfig c;
  c.set_kind(kind);
  c.set_learning_rate(lr);
  return c;
}

TEST(OptimizerTest, Sgd_StepsAgainstGradient) {
  auto sgd = Make(Config(SGD, 0.1f));
  std::vector<float> w = ApplySteps(*sgd, {1.0f, -2.0f}, {{0.5f, 1.0f}});
  EXPECT_FLOAT_EQ(w[0], 0.95f);
  EXPECT_FLOAT_EQ(w[1], -2.1f);
}

TEST(OptimizerTest, Momentum_AccumulatesVelocity) {
  OptimizerConfig c = Config(MOMENTUM, 0.1f);
  c.set_momentum(0.9f);
  auto momentum = Make(c);
  // Step 1: v = g = (0.5, 1), w = (0.95, -2.1).
  // Step 2: v = 0.9 v + g = (0.95, 1.9), w = (0.855, -2.29).
  std::vector<float> w = ApplySteps(*momentum, {1.0f, -2.0f}, {{0.5f, 1.0f}, {0.5f, 1.0f}});
  EXPECT_NEAR(w[0], 0.855f, 1e-6);
  EXPECT_NEAR(w[1], -2.29f, 1e-6);
}

TEST(OptimizerTest, Adagrad_ScalesByAccumulatedSquares) {
  OptimizerConfig c = Config(ADAGRAD, 0.1f);
  c.set_initial_accumulator(0.1f);
  auto adagrad = Make(c);
  // a = 0.1 + g^2 = (0.35, 1.1); w -= 0.1 g / sqrt(a).
  std::vector<float> w = ApplySteps(*adagrad, {1.0f, -2.0f}, {{0.5f, 1.0f}});
  EXPECT_NEAR(w[0], 0.9154846f, 1e-6);
  EXPECT_NEAR(w[1], -2.0953463f, 1e-6);
}

TEST(OptimizerTest, Adam_BiasCorrectedMoments) {
  auto adam = Make(Config(ADAM, 0.1f));
  // Step 1 moves each weight by lr * sign(g). Step 2 (g = (-1, 1)):
  // m = (-0.055, 0.19), v = (0.00124975, 0.001999), corrected by
  // 1 - 0.9^2 and 1 - 0.999^2: w = (0.9366104, -2.2).
  std::vector<float> w = ApplySteps(*adam, {1.0f, -2.0f}, {{0.5f, 1.0f}, {-1.0f, 1.0f}});
  EXPECT_NEAR(w[0], 0.9366104f, 1e-5);
  EXPECT_NEAR(w[1], -2.2f, 1e-5);
}

TEST(OptimizerTest, Adam_FirstStepIsLearningRateTimesSign) {
  auto adam = Make(Config(ADAM, 0.01f));
  std::vector<float> w = ApplySteps(*adam, {0.0f, 0.0f}, {{3.0f, -1e-3f}});
  EXPECT_NEAR(w[0], -0.01f, 1e-6);
  EXPECT_NEAR(w[1], 0.01f, 1e-5);
}

// Runs FTRL over one coordinate and returns (w, z, n).
std::array<float, 3> FtrlSteps(const Optimizer& ftrl, std::vector<float> grads) {
  float w = 0, z = 0, n = 0;
  float* slots[2] = {&z, &n};
  for (float g : grads) ftrl.Apply(&w, &g, absl::MakeConstSpan(slots, 2), 1, 1);
  return {w, z, n};
}

TEST(OptimizerTest, Ftrl_MatchesHandComputedUpdates) {
  OptimizerConfig c = Config(FTRL, 0.5f);
  c.set_ftrl_beta(1.0f);
  c.set_l1(0.1f);
  c.set_l2(0.2f);
  auto ftrl = Make(c);
  // Step 1 (g=0.5): n=0.25, sigma=1, z=0.5, w=-(0.5-0.1)/((1+0.5)/0.5+0.2).
  // Step 2 (g=0.3): n=0.34, sigma=(sqrt(.34)-.5)/.5, z=0.5+0.3-sigma*w.
  std::array<float, 3> r = FtrlSteps(*ftrl, {0.5f, 0.3f});
  EXPECT_NEAR(r[0], -0.2141215f, 1e-6);
  EXPECT_NEAR(r[1], 0.8207738f, 1e-6);
  EXPECT_NEAR(r[2], 0.34f, 1e-6);
  // Negative z: sign flips through the L1 term.
  r = FtrlSteps(*ftrl, {-2.0f, 1.0f});
  EXPECT_NEAR(r[0], 0.1565746f, 1e-6);
  EXPECT_NEAR(r[1], -1.1446868f, 1e-6);
  EXPECT_NEAR(r[2], 5.0f, 1e-6);
}

TEST(OptimizerTest, Ftrl_L1GivesExactZeros) {
  OptimizerConfig c = Config(FTRL, 0.5f);
  c.set_l1(0.1f);
  auto ftrl = Make(c);
  // |z| = 0.07 stays under l1 = 0.1: the weight is exactly zero.
  std::array<float, 3> r = FtrlSteps(*ftrl, {0.05f, 0.02f});
  EXPECT_EQ(r[0], 0.0f);
  EXPECT_NEAR(r[1], 0.07f, 1e-7);
}

TEST(OptimizerTest, UnsetHyperParameters_GetDocumentedDefaults) {
  EXPECT_EQ(Make(Config(ADAM, 0))->Describe(),
            "adam(lr=0.001, beta1=0.9, beta2=0.999, epsilon=1e-08)");
  EXPECT_EQ(Make(Config(SGD, 0))->Describe(), "sgd(lr=0.01)");
  EXPECT_EQ(Make(Config(ADAGRAD, 0))->Describe(), "adagrad(lr=0.01, initial_accumulator=0.1)");
}

TEST(OptimizerTest, SlotCounts) {
  EXPECT_EQ(Make(Config(SGD, 1))->num_slots(), 0);
  EXPECT_EQ(Make(Config(MOMENTUM, 1))->num_slots(), 1);
  EXPECT_EQ(Make(Config(ADAGRAD, 1))->num_slots(), 1);
  EXPECT_EQ(Make(Config(ADAM, 1))->num_slots(), 2);
  EXPECT_EQ(Make(Config(FTRL, 1))->num_slots(), 2);
}

TEST(OptimizerTest, LearningRateDecay_HalvesEveryTwoUpdates) {
  OptimizerConfig config = Config(SGD, 1.0f);
  config.set_lr_decay_rate(0.5f);
  config.set_lr_decay_steps(2);
  auto sgd = Make(config);
  EXPECT_EQ(sgd->Describe(), "sgd(lr=1 x0.5 per 2 updates)");
  // Rates 1, 0.707, 0.5, 0.354 for updates 1-4: the sum of them.
  std::vector<float> w = ApplySteps(*sgd, {0.0f, 0.0f}, {{1, 0}, {1, 0}, {1, 0}, {1, 0}});
  EXPECT_NEAR(w[0], -(1 + std::sqrt(0.5) + 0.5 + 0.5 * std::sqrt(0.5)), 1e-5);
  EXPECT_EQ(w[1], 0.0f);
  // Adam's step scales the same way: at update 5 the rate is 1 * 0.5^2.
  config.set_kind(ADAM);
  auto adam = Make(config);
  std::vector<float> one(2, 0.0f);
  std::vector<float*> slots;
  std::vector<std::vector<float>> storage(2, std::vector<float>(2));
  for (auto& v : storage) slots.push_back(v.data());
  const float g[2] = {1, -1};
  adam->Apply(one.data(), g, slots, 2, /*step=*/5);
  const double m = 0.1 / (1 - std::pow(0.9, 5));      // fresh moments, bias-corrected
  const double v = 0.001 / (1 - std::pow(0.999, 5));  // at update 5
  EXPECT_NEAR(one[0], -0.25 * m / std::sqrt(v), 1e-5);
  EXPECT_NEAR(one[1], 0.25 * m / std::sqrt(v), 1e-5);
}

TEST(OptimizerTest, BadConfig_InvalidArgument) {
  EXPECT_EQ(CreateOptimizer(Config(OPTIMIZER_UNSPECIFIED, 0.1f)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateOptimizer(Config(SGD, -1.0f)).status().code(),
            absl::StatusCode::kInvalidArgument);
  OptimizerConfig c = Config(MOMENTUM, 0.1f);
  c.set_momentum(1.5f);
  EXPECT_EQ(CreateOptimizer(c).status().code(), absl::StatusCode::kInvalidArgument);
  c = Config(ADAM, 0.1f);
  c.set_beta2(1.0f);
  EXPECT_EQ(CreateOptimizer(c).status().code(), absl::StatusCode::kInvalidArgument);
  c = Config(ADAM, 0.1f);
  c.set_lr_decay_rate(0.5f);  // no steps
  EXPECT_EQ(CreateOptimizer(c).status().code(), absl::StatusCode::kInvalidArgument);
  c.set_lr_decay_steps(10);
  c.set_lr_decay_rate(1.5f);
  EXPECT_EQ(CreateOptimizer(c).status().code(), absl::StatusCode::kInvalidArgument);
  c = Config(FTRL, 0.1f);
  c.set_lr_decay_rate(0.5f);
  c.set_lr_decay_steps(10);
  EXPECT_EQ(CreateOptimizer(c).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(OptimizerTest, ParseOptimizerKind_KnownAndUnknownNames) {
  EXPECT_EQ(*ParseOptimizerKind("adagrad"), ADAGRAD);
  EXPECT_EQ(*ParseOptimizerKind("momentum"), MOMENTUM);
  EXPECT_EQ(*ParseOptimizerKind("ftrl"), FTRL);
  EXPECT_EQ(ParseOptimizerKind("rmsprop").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fulcrum
