#include "worker/model.h"

#include <cmath>
#include <random>

#include "common/model_spec.h"
#include "gtest/gtest.h"

namespace fulcrum {
namespace {

struct Data {
  std::vector<float> features;
  std::vector<uint8_t> labels;
  Batch batch() const {
    return Batch{features.data(), labels.data(), static_cast<int64_t>(labels.size()),
                 kImageFeatures};
  }
};

Data RandomData(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Data d;
  d.features.resize(n * kImageFeatures);
  for (float& x : d.features) x = normal(rng);
  for (int i = 0; i < n; ++i) d.labels.push_back(rng() % kImageClasses);
  return d;
}

ParameterSet RandomParams(const Model& model, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  ParameterSet p = ZerosLike(model.tensors());
  for (auto& t : p) {
    for (float& v : t) v = u(rng);
  }
  return p;
}

double Loss(Model& model, const ParameterSet& p, const Batch& batch) {
  int64_t correct = 0;
  double loss = 0;
  model.Evaluate(p, batch, &correct, &loss);
  return loss / batch.size;
}

// Compares the analytic gradient of every tensor with central differences at
// a sample of coordinates.
void CheckGradients(const std::string& name) {
  std::unique_ptr<Model> model = *CreateModel(name);
  Data data = RandomData(6, 1);
  ParameterSet params = RandomParams(*model, 2, 0.05f);
  ParameterSet grads;
  const double loss = model->ComputeGradients(params, data.batch(), &grads);
  EXPECT_NEAR(loss, Loss(*model, params, data.batch()), 1e-5);
  ASSERT_EQ(grads.size(), params.size());
  std::mt19937 rng(3);
  constexpr float kEps = 1e-3f;
  for (size_t t = 0; t < params.size(); ++t) {
    ASSERT_EQ(grads[t].size(), params[t].size());
    for (int k = 0; k < 40; ++k) {
      const size_t i = rng() % params[t].size();
      const float saved = params[t][i];
      params[t][i] = saved + kEps;
      const double plus = Loss(*model, params, data.batch());
      params[t][i] = saved - kEps;
      const double minus = Loss(*model, params, data.batch());
      params[t][i] = saved;
      const double numeric = (plus - minus) / (2 * kEps);
      EXPECT_NEAR(grads[t][i], numeric, 2e-3 + 0.02 * std::abs(numeric))
          << name << " tensor " << model->tensors()[t].name() << " element " << i;
    }
  }
}

TEST(ModelTest, Softmax_GradientsMatchFiniteDifferences) { CheckGradients("softmax"); }

TEST(ModelTest, Mlp_GradientsMatchFiniteDifferences) { CheckGradients("mlp"); }

TEST(ModelTest, GradientDescent_LowersTheLoss) {
  for (const char* name : {"softmax", "mlp"}) {
    std::unique_ptr<Model> model = *CreateModel(name);
    Data data = RandomData(32, 4);
    ParameterSet params = RandomParams(*model, 5, 0.05f);
    ParameterSet grads;
    const double before = model->ComputeGradients(params, data.batch(), &grads);
    for (int step = 0; step < 30; ++step) {
      model->ComputeGradients(params, data.batch(), &grads);
      for (size_t t = 0; t < params.size(); ++t) {
        for (size_t i = 0; i < params[t].size(); ++i) params[t][i] -= 0.05f * grads[t][i];
      }
    }
    EXPECT_LT(Loss(*model, params, data.batch()), before * 0.5) << name;
  }
}

TEST(ModelTest, Evaluate_CountsArgMaxHits) {
  std::unique_ptr<Model> model = *CreateModel("softmax");
  ParameterSet params = ZerosLike(model->tensors());
  // Bias favours class 3: every example is predicted 3.
  params[1][3] = 1.0f;
  Data data = RandomData(5, 6);
  data.labels = {3, 3, 1, 3, 0};
  int64_t correct = 0;
  double loss = 0;
  model->Evaluate(params, data.batch(), &correct, &loss);
  EXPECT_EQ(correct, 3);
  EXPECT_GT(loss, 0);
}

TEST(ModelTest, UnknownModel_NotFound) {
  EXPECT_EQ(CreateModel("resnet").status().code(), absl::StatusCode::kNotFound);
}

TEST(ModelTest, TensorsMatchModelSpec) {
  std::unique_ptr<Model> mlp = *CreateModel("mlp");
  ASSERT_EQ(mlp->tensors().size(), 4u);
  EXPECT_EQ(ElementCount(mlp->tensors()[0]), kImageFeatures * kMlpHidden);
  EXPECT_EQ(ElementCount(mlp->tensors()[3]), kImageClasses);
}

}  // namespace
}  // namespace fulcrum
