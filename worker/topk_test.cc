#include "worker/topk.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"

namespace fulcrum {
namespace {

ParameterBatch OneTensor(std::vector<float> values) {
  ParameterBatch batch;
  batch.tensors.resize(1);
  batch.dense.push_back(std::move(values));
  return batch;
}

size_t Nonzeros(const std::vector<float>& v) {
  size_t n = 0;
  for (float x : v) n += x != 0.0f;
  return n;
}

TEST(TopKSparsifierTest, KeepsTheLargestMagnitudesAndHoldsTheRestBack) {
  TopKSparsifier topk(0.25);
  ParameterBatch g = OneTensor({0.1f, -4.0f, 0.2f, 3.0f, -0.3f, 0.05f, 1.0f, -0.01f});
  topk.Sparsify(&g);
  EXPECT_EQ(g.dense[0], (std::vector<float>{0, -4.0f, 0, 3.0f, 0, 0, 0, 0}));
  EXPECT_EQ(std::vector<float>(topk.residual(0).begin(), topk.residual(0).end()),
            (std::vector<float>{0.1f, 0, 0.2f, 0, -0.3f, 0.05f, 1.0f, -0.01f}));
}

TEST(TopKSparsifierTest, ErrorFeedback_HeldBackValuesAddUpAndAreSentLater) {
  // A coordinate with a small but steady gradient is sent once its residual
  // outgrows the others: nothing is lost, only delayed.
  TopKSparsifier topk(0.5);
  std::vector<float> sent_total(2, 0.0f);
  for (int step = 0; step < 4; ++step) {
    ParameterBatch g = OneTensor({1.0f, 0.4f});
    topk.Sparsify(&g);
    EXPECT_EQ(Nonzeros(g.dense[0]), 1u) << step;
    for (int i = 0; i < 2; ++i) sent_total[i] += g.dense[0][i];
  }
  // Sent plus held back equals the sum of the gradients, exactly.
  EXPECT_FLOAT_EQ(sent_total[0] + topk.residual(0)[0], 4.0f);
  EXPECT_FLOAT_EQ(sent_total[1] + topk.residual(0)[1], 1.6f);
  EXPECT_GT(sent_total[1], 0.0f);  // the small coordinate did go out
}

TEST(TopKSparsifierTest, ExactlyKKeptEvenWithTies) {
  TopKSparsifier topk(0.3);
  ParameterBatch g = OneTensor(std::vector<float>(10, 2.0f));
  topk.Sparsify(&g);
  EXPECT_EQ(topk.KeptOf(10), 3u);
  EXPECT_EQ(Nonzeros(g.dense[0]), 3u);
  EXPECT_EQ(Nonzeros(std::vector<float>(topk.residual(0).begin(), topk.residual(0).end())), 7u);
}

TEST(TopKSparsifierTest, RatioOneSendsEverythingAndTinyTensorsKeepOne) {
  TopKSparsifier all(1.0);
  ParameterBatch g = OneTensor({1, 2, 3});
  all.Sparsify(&g);
  EXPECT_EQ(g.dense[0], (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(Nonzeros(std::vector<float>(all.residual(0).begin(), all.residual(0).end())), 0u);

  TopKSparsifier few(0.001);
  EXPECT_EQ(few.KeptOf(1), 1u);
  EXPECT_EQ(few.KeptOf(10), 1u);
  EXPECT_EQ(few.KeptOf(100000), 100u);
}

TEST(TopKSparsifierTest, SeveralTensorsEachKeepTheirShare) {
  TopKSparsifier topk(0.5);
  ParameterBatch g;
  g.tensors.resize(2);
  g.dense = {{1, 2, 3, 4}, {-8, 7, -6, 5, 0.5f, 0.25f}};
  topk.Sparsify(&g);
  EXPECT_EQ(g.dense[0], (std::vector<float>{0, 0, 3, 4}));
  EXPECT_EQ(g.dense[1], (std::vector<float>{-8, 7, -6, 0, 0, 0}));
  // A tensor that changes size starts a fresh residual.
  g.dense[0] = {1, 1};
  topk.Sparsify(&g);
  EXPECT_EQ(topk.residual(0).size(), 2u);
  EXPECT_EQ(Nonzeros(g.dense[0]), 1u);
}

TEST(TopKSparsifierTest, LargeTensor_KeepsExactlyTheKLargest) {
  // Large enough for the sampled selection; its answer must be exact.
  for (uint32_t seed : {1u, 2u, 3u}) {
    std::vector<float> values(100000);
    uint32_t x = seed;
    for (float& v : values) {
      x = x * 1664525u + 1013904223u;
      v = static_cast<float>(static_cast<int32_t>(x)) / 2147483648.0f;
    }
    std::vector<float> sorted = values;
    for (float& v : sorted) v = std::fabs(v);
    std::sort(sorted.begin(), sorted.end(), std::greater<float>());
    TopKSparsifier topk(0.01);
    ParameterBatch g = OneTensor(values);
    topk.Sparsify(&g);
    EXPECT_EQ(Nonzeros(g.dense[0]), 1000u);
    float smallest_kept = INFINITY;
    for (float v : g.dense[0]) {
      if (v != 0) smallest_kept = std::min(smallest_kept, std::fabs(v));
    }
    EXPECT_EQ(smallest_kept, sorted[999]) << seed;
  }
  // All magnitudes equal: the sample cannot narrow anything down.
  TopKSparsifier topk(0.01);
  ParameterBatch g = OneTensor(std::vector<float>(100000, -0.5f));
  topk.Sparsify(&g);
  EXPECT_EQ(Nonzeros(g.dense[0]), 1000u);
}

}  // namespace
}  // namespace fulcrum
