#include "worker/model.h"

#include <cmath>

#include "Eigen/Core"
#include "common/base/status_macros.h"
#include "common/model_spec.h"

namespace fulcrum {
namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMatrixMap = Eigen::Map<const RowMatrix>;
using MatrixMap = Eigen::Map<RowMatrix>;
using ConstRowVectorMap = Eigen::Map<const Eigen::RowVectorXf>;
using RowVectorMap = Eigen::Map<Eigen::RowVectorXf>;

// Turns `logits` into softmax probabilities in place (row-wise, stable) and
// returns the summed cross-entropy of the labels.
double SoftmaxCrossEntropy(RowMatrix* logits, const uint8_t* labels) {
  RowMatrix& z = *logits;
  double loss = 0;
  for (Eigen::Index i = 0; i < z.rows(); ++i) {
    const float max = z.row(i).maxCoeff();
    z.row(i).array() -= max;
    z.row(i) = z.row(i).array().exp().matrix();
    const float sum = z.row(i).sum();
    z.row(i) /= sum;
    loss -= std::log(std::max(z(i, labels[i]), 1e-30f));
  }
  return loss;
}

// Counts arg-max hits.
int64_t CountCorrect(const RowMatrix& scores, const uint8_t* labels) {
  int64_t correct = 0;
  for (Eigen::Index i = 0; i < scores.rows(); ++i) {
    Eigen::Index best;
    scores.row(i).maxCoeff(&best);
    if (best == labels[i]) ++correct;
  }
  return correct;
}

// Turns softmax probabilities into d(mean loss)/d(logits).
void SoftmaxGradient(RowMatrix* probs, const uint8_t* labels) {
  for (Eigen::Index i = 0; i < probs->rows(); ++i) (*probs)(i, labels[i]) -= 1.0f;
  *probs /= static_cast<float>(probs->rows());
}

// A model ending in softmax cross-entropy over `classes` logits: subclasses
// compute the logits (keeping what their backward pass needs).
class SoftmaxClassifier : public Model {
 public:
  void Evaluate(const ParameterSet& params, const Batch& batch, int64_t* correct,
                double* loss_sum) final {
    ConstMatrixMap x(batch.features, batch.size, batch.num_features);
    Forward(params, x);
    *correct += CountCorrect(logits_, batch.labels);
    *loss_sum += SoftmaxCrossEntropy(&logits_, batch.labels);
  }

  double ComputeGradients(const ParameterSet& params, const Batch& batch,
                          ParameterSet* grads) final {
    ConstMatrixMap x(batch.features, batch.size, batch.num_features);
    Forward(params, x);
    const double loss = SoftmaxCrossEntropy(&logits_, batch.labels);
    SoftmaxGradient(&logits_, batch.labels);
    grads->resize(tensors().size());
    for (size_t i = 0; i < tensors().size(); ++i) {
      (*grads)[i].resize(ElementCount(tensors()[i]));
    }
    Backward(params, x, grads);
    return loss / batch.size;
  }

 protected:
  // Sets logits_ for the rows of x.
  virtual void Forward(const ParameterSet& params, const ConstMatrixMap& x) = 0;
  // With logits_ holding d(mean loss)/d(logits), writes every parameter's
  // gradient into `grads` (already sized like the parameters).
  virtual void Backward(const ParameterSet& params, const ConstMatrixMap& x,
                        ParameterSet* grads) = 0;

  RowMatrix logits_;
};

class SoftmaxRegression final : public SoftmaxClassifier {
 public:
  explicit SoftmaxRegression(std::vector<TensorSpec> tensors)
      : tensors_(std::move(tensors)),
        features_(tensors_[0].shape(0)),
        classes_(tensors_[0].shape(1)) {}

  const std::vector<TensorSpec>& tensors() const override { return tensors_; }

 private:
  void Forward(const ParameterSet& params, const ConstMatrixMap& x) override {
    ConstMatrixMap w(params[0].data(), features_, classes_);
    ConstRowVectorMap b(params[1].data(), classes_);
    logits_.noalias() = x * w;
    logits_.rowwise() += b;
  }

  void Backward(const ParameterSet&, const ConstMatrixMap& x, ParameterSet* grads) override {
    MatrixMap(grads->at(0).data(), features_, classes_).noalias() = x.transpose() * logits_;
    RowVectorMap(grads->at(1).data(), classes_) = logits_.colwise().sum();
  }

  const std::vector<TensorSpec> tensors_;
  const int64_t features_;
  const int64_t classes_;
};

class Mlp final : public SoftmaxClassifier {
 public:
  explicit Mlp(std::vector<TensorSpec> tensors)
      : tensors_(std::move(tensors)),
        features_(tensors_[0].shape(0)),
        hidden_(tensors_[0].shape(1)),
        classes_(tensors_[2].shape(1)) {}

  const std::vector<TensorSpec>& tensors() const override { return tensors_; }

  void Backward(const ParameterSet& params, const ConstMatrixMap& x, ParameterSet* grads) override {
    ConstMatrixMap w2(params[2].data(), hidden_, classes_);
    MatrixMap(grads->at(2).data(), hidden_, classes_).noalias() = hidden_out_.transpose() * logits_;
    RowVectorMap(grads->at(3).data(), classes_) = logits_.colwise().sum();
    // Back through the ReLU: zero where the unit was off.
    d_hidden_.noalias() = logits_ * w2.transpose();
    d_hidden_ = d_hidden_.cwiseProduct((hidden_out_.array() > 0.0f).cast<float>().matrix());
    MatrixMap(grads->at(0).data(), features_, hidden_).noalias() = x.transpose() * d_hidden_;
    RowVectorMap(grads->at(1).data(), hidden_) = d_hidden_.colwise().sum();
  }

 private:
  void Forward(const ParameterSet& params, const ConstMatrixMap& x) override {
    ConstMatrixMap w1(params[0].data(), features_, hidden_);
    ConstRowVectorMap b1(params[1].data(), hidden_);
    ConstMatrixMap w2(params[2].data(), hidden_, classes_);
    ConstRowVectorMap b2(params[3].data(), classes_);
    hidden_out_.noalias() = x * w1;
    hidden_out_.rowwise() += b1;
    hidden_out_ = hidden_out_.cwiseMax(0.0f);
    logits_.noalias() = hidden_out_ * w2;
    logits_.rowwise() += b2;
  }

  const std::vector<TensorSpec> tensors_;
  const int64_t features_;
  const int64_t hidden_;
  const int64_t classes_;
  RowMatrix hidden_out_;
  RowMatrix d_hidden_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> CreateModel(absl::string_view name) {
  FULCRUM_ASSIGN_OR_RETURN(std::vector<TensorSpec> tensors, ModelTensors(name));
  if (name == "softmax") {
    return std::unique_ptr<Model>(new SoftmaxRegression(std::move(tensors)));
  }
  return std::unique_ptr<Model>(new Mlp(std::move(tensors)));
}

ParameterSet ZerosLike(const std::vector<TensorSpec>& tensors) {
  ParameterSet set;
  for (const TensorSpec& t : tensors) set.emplace_back(ElementCount(t), 0.0f);
  return set;
}

}  // namespace fulcrum
