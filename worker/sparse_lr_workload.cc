// Sparse logistic regression on libsvm data: p = sigmoid(bias + sum_j w[j] x_j)
// with w a sparse table ("lr/w", one float per feature id) and the bias a
// dense tensor ("lr/bias"). Partitions are byte ranges of the training file.
#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/data/auc.h"
#include "common/data/libsvm.h"
#include "common/model_spec.h"
#include "worker/workload.h"

namespace fulcrum {
namespace {

constexpr char kWeights[] = "lr/w";

double Sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

// Log-loss of probability p for a label, clamped away from log(0).
double LogLoss(double p, uint8_t label) {
  const double q = std::min(std::max(label ? p : 1.0 - p, 1e-12), 1.0);
  return -std::log(q);
}

class SparseLrWorkload final : public Workload {
 public:
  SparseLrWorkload(std::string train_file, std::string test_file, int64_t eval_chunk)
      : train_file_(std::move(train_file)),
        test_file_(std::move(test_file)),
        eval_chunk_(eval_chunk) {}

  absl::Status Configure(const JobSpec& job) override {
    if (job.model() != "sparse_lr") {
      return absl::FailedPreconditionError(
          absl::StrCat("the sparse_lr workload cannot train model ", job.model()));
    }
    FULCRUM_ASSIGN_OR_RETURN(bias_, ModelTensors("sparse_lr"));
    FULCRUM_ASSIGN_OR_RETURN(train_bytes_, FileSize(train_file_));
    if (test_.size() == 0 && !test_file_.empty()) {
      FULCRUM_ASSIGN_OR_RETURN(test_, ReadLibsvm(test_file_));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> LoadPartition(const DataPartition& p) override {
    if (p.count() == 0 || p.index() >= p.count()) {
      return absl::InternalError("coordinator sent an invalid partition");
    }
    const uint64_t begin = train_bytes_ * p.index() / p.count();
    const uint64_t end = train_bytes_ * (p.index() + 1) / p.count();
    FULCRUM_ASSIGN_OR_RETURN(data_, ReadLibsvm(train_file_, begin, end));
    return static_cast<int64_t>(data_.size());
  }

  void PlanStep(absl::Span<const int64_t> examples, ParameterBatch* batch) override {
    Plan(data_, examples, /*read_only=*/false, batch);
  }

  absl::StatusOr<double> ComputeGradients(absl::Span<const int64_t> examples,
                                          const ParameterBatch& params,
                                          ParameterBatch* grads) override {
    const SparseRows& w = params.sparse[0];
    const float bias = params.dense[0][0];
    grads->tensors = params.tensors;
    grads->dense.assign(1, std::vector<float>(1, 0.0f));
    grads->sparse.resize(1);
    SparseRows& gw = grads->sparse[0];
    gw.table = kWeights;
    gw.dim = 1;
    gw.keys = w.keys;
    gw.values.assign(w.keys.size(), 0.0f);
    const double scale = 1.0 / examples.size();
    double loss = 0;
    for (int64_t e : examples) {
      double z = bias;
      for (uint64_t j = data_.offsets[e]; j < data_.offsets[e + 1]; ++j) {
        z += w.values[index_.at(data_.indices[j])] * data_.values[j];
      }
      const double p = Sigmoid(z);
      loss += LogLoss(p, data_.labels[e]);
      const double g = (p - data_.labels[e]) * scale;  // d(mean loss)/dz
      grads->dense[0][0] += g;
      for (uint64_t j = data_.offsets[e]; j < data_.offsets[e + 1]; ++j) {
        gw.values[index_.at(data_.indices[j])] += g * data_.values[j];
      }
    }
    return loss * scale;
  }

  absl::StatusOr<EvalResult> Evaluate(const PullFn& pull) override {
    if (test_.size() == 0) {
      return absl::UnimplementedError("asked to evaluate, but this worker has no --test_file");
    }
    std::vector<double> scores;
    scores.reserve(test_.size());
    std::vector<int64_t> chunk;
    for (int64_t begin = 0; begin < static_cast<int64_t>(test_.size()); begin += eval_chunk_) {
      const int64_t end = std::min<int64_t>(begin + eval_chunk_, test_.size());
      chunk.resize(end - begin);
      for (int64_t i = begin; i < end; ++i) chunk[i - begin] = i;
      ParameterBatch params;
      Plan(test_, chunk, /*read_only=*/true, &params);
      FULCRUM_RETURN_IF_ERROR(pull(&params));
      for (int64_t e : chunk) {
        double z = params.dense[0][0];
        for (uint64_t j = test_.offsets[e]; j < test_.offsets[e + 1]; ++j) {
          z += params.sparse[0].values[index_.at(test_.indices[j])] * test_.values[j];
        }
        scores.push_back(Sigmoid(z));
      }
    }
    double loss = 0;
    int64_t correct = 0;
    for (size_t i = 0; i < scores.size(); ++i) {
      loss += LogLoss(scores[i], test_.labels[i]);
      correct += (scores[i] >= 0.5) == (test_.labels[i] == 1);
    }
    FULCRUM_ASSIGN_OR_RETURN(double auc, Auc(scores, test_.labels));
    EvalResult eval;
    eval.set_examples(test_.size());
    eval.set_test_accuracy(double(correct) / scores.size());
    eval.set_test_loss(loss / scores.size());
    eval.set_test_auc(auc);
    return eval;
  }

 private:
  // The batch's distinct feature ids (sorted) and the bias; index_ maps an id
  // to its row in the batch.
  void Plan(const SparseDataset& data, absl::Span<const int64_t> examples, bool read_only,
            ParameterBatch* batch) {
    batch->tensors = bias_;
    batch->sparse.resize(1);
    SparseRows& w = batch->sparse[0];
    w.table = kWeights;
    w.dim = 1;
    w.read_only = read_only;
    w.keys.clear();
    for (int64_t e : examples) {
      for (uint64_t j = data.offsets[e]; j < data.offsets[e + 1]; ++j) {
        w.keys.push_back(data.indices[j]);
      }
    }
    std::sort(w.keys.begin(), w.keys.end());
    w.keys.erase(std::unique(w.keys.begin(), w.keys.end()), w.keys.end());
    index_.clear();
    index_.reserve(w.keys.size());
    for (uint32_t i = 0; i < w.keys.size(); ++i) index_[w.keys[i]] = i;
  }

  const std::string train_file_;
  const std::string test_file_;
  const int64_t eval_chunk_;
  std::vector<TensorSpec> bias_;
  uint64_t train_bytes_ = 0;
  SparseDataset data_;  // the loaded partition
  SparseDataset test_;
  absl::flat_hash_map<uint64_t, uint32_t> index_;
};

}  // namespace

std::unique_ptr<Workload> MakeSparseLrWorkload(const std::string& train_file,
                                               const std::string& test_file, int64_t eval_chunk) {
  return std::make_unique<SparseLrWorkload>(train_file, test_file, eval_chunk);
}

}  // namespace fulcrum
