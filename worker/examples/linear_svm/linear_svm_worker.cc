// linear_svm_worker: a linear SVM (hinge loss, L2) on libsvm data, trained
// through Fulcrum. Written against the public worker header only: the
// Workload below is the data and the maths; RunWorker does the rest.
//
//   ps_server --job=worker/examples/linear_svm/linear_svm.textproto
//   linear_svm_worker --coordinator=HOST:PORT --train_file=T --test_file=E
//
// The job's sparse table "svm/w" holds a weight per feature id and tensor
// "svm/b" the bias. The objective is liblinear's L2-regularised L1-loss SVC,
// |w|^2 / 2 + C * sum of hinge losses, divided by C * n: a step's loss is the
// mean hinge loss over the batch plus lambda/2 * |w|^2 with
// lambda = 1 / (C * n), the L2 term applied lazily (to the features the
// batch touches).
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "worker/fulcrum_worker.h"

ABSL_FLAG(std::string, coordinator, "127.0.0.1:50051", "host:port of the coordinating ps_server.");
ABSL_FLAG(std::string, train_file, "", "Training set, libsvm format (labels 0/1 or -1/+1).");
ABSL_FLAG(std::string, test_file, "", "Held-out set, libsvm format (for evaluation).");
ABSL_FLAG(double, c, 0.01,
          "Cost of a margin violation, as liblinear's -c: the L2 strength per example "
          "is 1 / (C * training examples).");
ABSL_FLAG(std::string, worker_name, "", "Name shown in status; default host:pid.");

namespace {

using fulcrum::ParameterBatch;

constexpr char kWeights[] = "svm/w";
constexpr char kBias[] = "svm/b";

// One example: label +1 or -1 and its nonzero features.
struct Example {
  float label = 0;
  std::vector<uint64_t> ids;
  std::vector<float> values;
};

absl::StatusOr<std::vector<Example>> ReadLibsvm(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::vector<Example> examples;
  std::string line;
  for (int64_t line_no = 1; std::getline(in, line); ++line_no) {
    std::istringstream fields(line);
    double label;
    if (!(fields >> label)) continue;  // blank line
    Example e;
    e.label = label > 0 ? 1.0f : -1.0f;
    std::string pair;
    while (fields >> pair) {
      const size_t colon = pair.find(':');
      char* end = nullptr;
      const uint64_t id = std::strtoull(pair.c_str(), &end, 10);
      if (colon == std::string::npos || end != pair.c_str() + colon) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ":", line_no, ": expected id:value, got \"", pair, "\""));
      }
      e.ids.push_back(id);
      e.values.push_back(std::strtof(pair.c_str() + colon + 1, nullptr));
    }
    examples.push_back(std::move(e));
  }
  return examples;
}

class LinearSvm : public fulcrum::Workload {
 public:
  LinearSvm(std::vector<Example> train, std::vector<Example> test, double lambda)
      : train_(std::move(train)), test_(std::move(test)), lambda_(lambda) {}

  absl::Status Configure(const fulcrum::JobSpec& job) override {
    bool has_weights = false;
    for (const auto& t : job.sparse_tables()) has_weights |= t.name() == kWeights && t.dim() == 1;
    bool has_bias = false;
    for (const auto& t : job.tensors()) {
      if (t.name() == kBias) {
        has_bias = true;
        bias_ = t;
      }
    }
    if (!has_weights || !has_bias) {
      return absl::FailedPreconditionError(
          absl::StrCat("a linear SVM needs sparse table ", kWeights, " (dim 1) and tensor ", kBias,
                       "; job \"", job.model(), "\" has neither or one"));
    }
    return absl::OkStatus();
  }

  // Partition i of n is the i-th contiguous n-th of the training file.
  absl::StatusOr<int64_t> LoadPartition(const fulcrum::DataPartition& partition) override {
    const size_t n = train_.size();
    begin_ = n * partition.index() / partition.count();
    end_ = n * (partition.index() + 1) / partition.count();
    return static_cast<int64_t>(end_ - begin_);
  }

  void PlanStep(absl::Span<const int64_t> examples, ParameterBatch* batch) override {
    std::vector<const Example*> chosen;
    for (int64_t i : examples) chosen.push_back(&train_[begin_ + i]);
    Plan(chosen, /*read_only=*/false, batch);
  }

  absl::StatusOr<double> ComputeGradients(absl::Span<const int64_t> examples,
                                          const ParameterBatch& params,
                                          ParameterBatch* grads) override {
    *grads = params;
    const fulcrum::SparseRows& w = params.sparse[0];
    std::vector<float>& gw = grads->sparse[0].values;
    std::fill(gw.begin(), gw.end(), 0.0f);
    std::fill(grads->dense[0].begin(), grads->dense[0].end(), 0.0f);
    const RowIndex row_of = IndexRows(w);
    const float b = params.dense[0][0];
    const float scale = 1.0f / examples.size();
    double loss = 0;
    for (int64_t i : examples) {
      const Example& e = train_[begin_ + i];
      double score = b;
      for (size_t j = 0; j < e.ids.size(); ++j)
        score += w.values[row_of.at(e.ids[j])] * e.values[j];
      const double margin = e.label * score;
      if (margin >= 1) continue;
      loss += 1 - margin;
      for (size_t j = 0; j < e.ids.size(); ++j) {
        gw[row_of.at(e.ids[j])] -= scale * e.label * e.values[j];
      }
      grads->dense[0][0] -= scale * e.label;
    }
    double l2 = 0;
    for (size_t r = 0; r < w.keys.size(); ++r) {
      gw[r] += lambda_ * w.values[r];
      l2 += w.values[r] * w.values[r];
    }
    return loss * scale + lambda_ / 2 * l2;
  }

  absl::StatusOr<fulcrum::EvalResult> Evaluate(const PullFn& pull) override {
    if (test_.empty()) return absl::UnimplementedError("no --test_file to evaluate on");
    int64_t correct = 0;
    double hinge = 0;
    constexpr size_t kChunk = 10000;
    for (size_t start = 0; start < test_.size(); start += kChunk) {
      std::vector<const Example*> chunk;
      for (size_t i = start; i < std::min(test_.size(), start + kChunk); ++i) {
        chunk.push_back(&test_[i]);
      }
      ParameterBatch params;
      Plan(chunk, /*read_only=*/true, &params);
      if (absl::Status s = pull(&params); !s.ok()) return s;
      const RowIndex row_of = IndexRows(params.sparse[0]);
      for (const Example* e : chunk) {
        double score = params.dense[0][0];
        for (size_t j = 0; j < e->ids.size(); ++j) {
          score += params.sparse[0].values[row_of.at(e->ids[j])] * e->values[j];
        }
        correct += (score >= 0) == (e->label > 0);
        hinge += std::max(0.0, 1 - e->label * score);
      }
    }
    fulcrum::EvalResult result;
    result.set_test_accuracy(static_cast<double>(correct) / test_.size());
    result.set_test_loss(hinge / test_.size());
    return result;
  }

 private:
  // Reads the bias and the distinct features of `examples`.
  void Plan(const std::vector<const Example*>& examples, bool read_only, ParameterBatch* batch) {
    batch->tensors = {bias_};
    batch->sparse.resize(1);
    fulcrum::SparseRows& rows = batch->sparse[0];
    rows.table = kWeights;
    rows.dim = 1;
    rows.read_only = read_only;
    rows.keys.clear();
    RowIndex seen;
    for (const Example* e : examples) {
      for (uint64_t id : e->ids) {
        if (seen.emplace(id, rows.keys.size()).second) rows.keys.push_back(id);
      }
    }
  }

  // The row of each feature id among the pulled keys.
  using RowIndex = absl::flat_hash_map<uint64_t, size_t>;
  static RowIndex IndexRows(const fulcrum::SparseRows& rows) {
    RowIndex index;
    for (size_t r = 0; r < rows.keys.size(); ++r) index.emplace(rows.keys[r], r);
    return index;
  }

  const std::vector<Example> train_;
  const std::vector<Example> test_;
  const double lambda_;
  fulcrum::TensorSpec bias_;
  size_t begin_ = 0;
  size_t end_ = 0;
};

int Fail(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "linear_svm_worker: %s: %s\n", what.c_str(), status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Trains a linear SVM on libsvm data through Fulcrum.");
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_train_file).empty()) {
    return Fail("--train_file", absl::InvalidArgumentError("required"));
  }
  absl::StatusOr<std::vector<Example>> train = ReadLibsvm(absl::GetFlag(FLAGS_train_file));
  if (!train.ok()) return Fail("--train_file", train.status());
  std::vector<Example> test;
  if (!absl::GetFlag(FLAGS_test_file).empty()) {
    absl::StatusOr<std::vector<Example>> read = ReadLibsvm(absl::GetFlag(FLAGS_test_file));
    if (!read.ok()) return Fail("--test_file", read.status());
    test = std::move(*read);
  }

  fulcrum::WorkerOptions options;
  options.connection.coordinator = absl::GetFlag(FLAGS_coordinator);
  options.connection.worker_name = absl::GetFlag(FLAGS_worker_name);
  const double c = absl::GetFlag(FLAGS_c);
  if (!(c > 0)) return Fail("--c", absl::InvalidArgumentError("must be > 0"));
  if (train->empty()) return Fail("--train_file", absl::InvalidArgumentError("no examples"));
  const double lambda = 1 / (c * static_cast<double>(train->size()));
  absl::Status trained = fulcrum::RunWorker(
      options, [&](const fulcrum::JobSpec&) -> absl::StatusOr<std::unique_ptr<fulcrum::Workload>> {
        return std::make_unique<LinearSvm>(*train, test, lambda);
      });
  if (!trained.ok()) return Fail("training", trained);
  return 0;
}
