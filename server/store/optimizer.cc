#include "server/store/optimizer.h"

#include <algorithm>
#include <cmath>

#include "Eigen/Core"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace fulcrum {
namespace {

using ArrayMap = Eigen::Map<Eigen::ArrayXf>;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXf>;

// Runs `update(begin, count)` over [0, n) a block at a time. An update of
// several statements (Adam's m, v, then w) passes over its arrays once per
// statement; block by block, the later passes find the block in L1 instead
// of reading a stripe's megabyte again from memory.
template <typename Update>
void InBlocks(size_t n, Update update) {
  constexpr size_t kBlock = 1024;  // 4 KB per array
  for (size_t begin = 0; begin < n; begin += kBlock) {
    update(begin, std::min(kBlock, n - begin));
  }
}

// A learning rate: constant, or decayed exponentially with the updates a
// range has received (lr * rate^((step - 1) / steps), as TensorFlow's
// exponential_decay without the staircase).
class LearningRate {
 public:
  LearningRate(float base, float decay_rate, uint64_t decay_steps)
      : base_(base), decay_rate_(decay_rate), decay_steps_(static_cast<double>(decay_steps)) {}
  float At(int64_t step) const {
    if (decay_steps_ <= 0 || decay_rate_ == 1.0f) return base_;
    return base_ *
           static_cast<float>(std::pow(decay_rate_, (step < 1 ? 0 : step - 1) / decay_steps_));
  }
  std::string Describe() const {
    if (decay_steps_ <= 0 || decay_rate_ == 1.0f) return absl::StrFormat("lr=%g", base_);
    return absl::StrFormat("lr=%g x%g per %g updates", base_, decay_rate_, decay_steps_);
  }

 private:
  const float base_;
  const float decay_rate_;
  const double decay_steps_;
};

class Sgd final : public Optimizer {
 public:
  explicit Sgd(LearningRate lr) : lr_(lr) {}
  std::string Describe() const override { return absl::StrCat("sgd(", lr_.Describe(), ")"); }
  int num_slots() const override { return 0; }
  void Apply(float* values, const float* grad, absl::Span<float* const>, size_t n,
             int64_t step) const override {
    ArrayMap w(values, n);
    ConstArrayMap g(grad, n);
    w -= lr_.At(step) * g;
  }

 private:
  const LearningRate lr_;
};

// Classical momentum: v = mu * v + g; w -= lr * v.
class Momentum final : public Optimizer {
 public:
  Momentum(LearningRate lr, float mu) : lr_(lr), mu_(mu) {}
  std::string Describe() const override {
    return absl::StrFormat("momentum(%s, momentum=%g)", lr_.Describe(), mu_);
  }
  int num_slots() const override { return 1; }
  void Apply(float* values, const float* grad, absl::Span<float* const> slots, size_t n,
             int64_t step) const override {
    const float lr = lr_.At(step);
    InBlocks(n, [&](size_t i, size_t k) {
      ArrayMap w(values + i, k);
      ConstArrayMap g(grad + i, k);
      ArrayMap v(slots[0] + i, k);
      v = mu_ * v + g;
      w -= lr * v;
    });
  }

 private:
  const LearningRate lr_;
  const float mu_;
};

// Adagrad: a += g^2; w -= lr * g / (sqrt(a) + eps).
class Adagrad final : public Optimizer {
 public:
  Adagrad(LearningRate lr, float eps, float initial) : lr_(lr), eps_(eps), initial_(initial) {}
  std::string Describe() const override {
    return absl::StrFormat("adagrad(%s, initial_accumulator=%g)", lr_.Describe(), initial_);
  }
  int num_slots() const override { return 1; }
  void InitSlots(absl::Span<float* const> slots, size_t n) const override {
    ArrayMap(slots[0], n).setConstant(initial_);
  }
  void Apply(float* values, const float* grad, absl::Span<float* const> slots, size_t n,
             int64_t step) const override {
    const float lr = lr_.At(step);
    InBlocks(n, [&](size_t i, size_t k) {
      ArrayMap w(values + i, k);
      ConstArrayMap g(grad + i, k);
      ArrayMap a(slots[0] + i, k);
      a += g.square();
      w -= lr * g / (a.sqrt() + eps_);
    });
  }

 private:
  const LearningRate lr_;
  const float eps_;
  const float initial_;
};

// Adam (Kingma & Ba): m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// w -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).
class Adam final : public Optimizer {
 public:
  Adam(LearningRate lr, float b1, float b2, float eps) : lr_(lr), b1_(b1), b2_(b2), eps_(eps) {}
  std::string Describe() const override {
    return absl::StrFormat("adam(%s, beta1=%g, beta2=%g, epsilon=%g)", lr_.Describe(), b1_, b2_,
                           eps_);
  }
  int num_slots() const override { return 2; }
  void Apply(float* values, const float* grad, absl::Span<float* const> slots, size_t n,
             int64_t step) const override {
    const double t = static_cast<double>(step < 1 ? 1 : step);
    const float m_correction = static_cast<float>(1.0 - std::pow(b1_, t));
    const float v_correction = static_cast<float>(1.0 - std::pow(b2_, t));
    const float rate = lr_.At(step) / m_correction;
    const float inv_v_correction = 1.0f / v_correction;  // a product, not a division, per element
    InBlocks(n, [&](size_t i, size_t k) {
      ArrayMap w(values + i, k);
      ConstArrayMap g(grad + i, k);
      ArrayMap m(slots[0] + i, k);
      ArrayMap v(slots[1] + i, k);
      m = b1_ * m + (1.0f - b1_) * g;
      v = b2_ * v + (1.0f - b2_) * g.square();
      w -= rate * m / ((v * inv_v_correction).sqrt() + eps_);
    });
  }

 private:
  const LearningRate lr_;
  const float b1_;
  const float b2_;
  const float eps_;
};

// FTRL-proximal, per coordinate (McMahan et al. 2013, Algorithm 1), with
// slots z and n and alpha = the learning rate:
//   sigma = (sqrt(n + g^2) - sqrt(n)) / alpha
//   z += g - sigma * w;  n += g^2
//   w = 0 if |z| <= l1, else -(z - sign(z) l1) / ((beta + sqrt(n)) / alpha + l2)
// L1 makes exact zeros. Values start at zero in the paper; w is recomputed
// from z and n at every update.
class Ftrl final : public Optimizer {
 public:
  Ftrl(float alpha, float beta, float l1, float l2)
      : alpha_(alpha), beta_(beta), l1_(l1), l2_(l2) {}
  std::string Describe() const override {
    return absl::StrFormat("ftrl(alpha=%g, beta=%g, l1=%g, l2=%g)", alpha_, beta_, l1_, l2_);
  }
  int num_slots() const override { return 2; }
  void Apply(float* values, const float* grad, absl::Span<float* const> slots, size_t n,
             int64_t) const override {
    const float inv_alpha = 1.0f / alpha_;
    InBlocks(n, [&](size_t i, size_t k) {
      ArrayMap w(values + i, k);
      ConstArrayMap g(grad + i, k);
      ArrayMap z(slots[0] + i, k);
      ArrayMap acc(slots[1] + i, k);
      // Fused expressions (no temporaries): sigma, then z, then n, then w.
      z += g - ((acc + g.square()).sqrt() - acc.sqrt()) * inv_alpha * w;
      acc += g.square();
      // Shrink |z| by l1 (exact zero inside), divided by the per-coordinate
      // rate.
      w = -((z.abs() - l1_).max(0.0f) * z.sign()) / ((beta_ + acc.sqrt()) * inv_alpha + l2_);
    });
  }

 private:
  const float alpha_, beta_, l1_, l2_;
};

float OrDefault(float value, float fallback) { return value != 0.0f ? value : fallback; }

}  // namespace

void Optimizer::InitSlots(absl::Span<float* const> slots, size_t n) const {
  for (float* slot : slots) ArrayMap(slot, n).setZero();
}

absl::StatusOr<OptimizerKind> ParseOptimizerKind(absl::string_view name) {
  if (name == "sgd") return SGD;
  if (name == "momentum") return MOMENTUM;
  if (name == "adagrad") return ADAGRAD;
  if (name == "adam") return ADAM;
  if (name == "ftrl") return FTRL;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown optimizer '", name, "'; known: sgd, momentum, adagrad, adam, ftrl"));
}

absl::StatusOr<std::unique_ptr<Optimizer>> CreateOptimizer(const OptimizerConfig& config) {
  const float default_lr = config.kind() == ADAM ? 0.001f : 0.01f;
  const float lr = OrDefault(config.learning_rate(), default_lr);
  if (!(lr > 0.0f) || !std::isfinite(lr)) {
    return absl::InvalidArgumentError(
        absl::StrCat("learning rate must be positive and finite, got ", lr));
  }
  const bool decays = config.lr_decay_rate() != 0.0f || config.lr_decay_steps() != 0;
  if (decays && (!(config.lr_decay_rate() > 0.0f && config.lr_decay_rate() <= 1.0f) ||
                 config.lr_decay_steps() == 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a learning-rate decay needs lr_decay_rate in (0, 1] and lr_decay_steps > 0, got ",
        config.lr_decay_rate(), " and ", config.lr_decay_steps()));
  }
  if (decays && config.kind() == FTRL) {
    return absl::InvalidArgumentError(
        "ftrl takes no learning-rate decay: its per-coordinate rates already decay");
  }
  const LearningRate rate(lr, decays ? config.lr_decay_rate() : 1.0f, config.lr_decay_steps());
  switch (config.kind()) {
    case SGD:
      return std::unique_ptr<Optimizer>(new Sgd(rate));
    case MOMENTUM: {
      const float mu = OrDefault(config.momentum(), 0.9f);
      if (!(mu >= 0.0f && mu < 1.0f)) {
        return absl::InvalidArgumentError(absl::StrCat("momentum must be in [0, 1), got ", mu));
      }
      return std::unique_ptr<Optimizer>(new Momentum(rate, mu));
    }
    case ADAGRAD: {
      const float eps = OrDefault(config.epsilon(), 1e-10f);
      const float initial = OrDefault(config.initial_accumulator(), 0.1f);
      if (!(initial >= 0.0f) || !(eps > 0.0f)) {
        return absl::InvalidArgumentError("adagrad needs initial_accumulator >= 0 and epsilon > 0");
      }
      return std::unique_ptr<Optimizer>(new Adagrad(rate, eps, initial));
    }
    case ADAM: {
      const float b1 = OrDefault(config.beta1(), 0.9f);
      const float b2 = OrDefault(config.beta2(), 0.999f);
      const float eps = OrDefault(config.epsilon(), 1e-8f);
      if (!(b1 >= 0.0f && b1 < 1.0f) || !(b2 >= 0.0f && b2 < 1.0f) || !(eps > 0.0f)) {
        return absl::InvalidArgumentError("adam needs beta1, beta2 in [0, 1) and epsilon > 0");
      }
      return std::unique_ptr<Optimizer>(new Adam(rate, b1, b2, eps));
    }
    case FTRL: {
      const float beta = OrDefault(config.ftrl_beta(), 1.0f);
      if (!(beta >= 0.0f) || !(config.l1() >= 0.0f) || !(config.l2() >= 0.0f)) {
        return absl::InvalidArgumentError("ftrl needs beta, l1 and l2 >= 0");
      }
      return std::unique_ptr<Optimizer>(new Ftrl(lr, beta, config.l1(), config.l2()));
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown optimizer kind ", static_cast<int>(config.kind())));
  }
}

}  // namespace fulcrum
