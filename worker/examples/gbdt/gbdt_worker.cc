// gbdt_worker: gradient-boosted decision trees (histogram-based, as in
// XGBoost's `hist` method and Angel), binary logistic loss, trained through
// Fulcrum: Fashion-MNIST, one class against the rest. Written against the
// public worker header (plus the project's IDX reader and AUC).
//
//   ps_server --job=worker/examples/gbdt/gbdt.textproto
//   gbdt_worker --coordinator=HOST:PORT [--positive_class=6]
//
// Trees grow level by level, one epoch per level, in a job with
// `epoch_barrier` (no partition of epoch e + 1 starts before every partition
// of epoch e is complete). Tree t takes epochs t * (D + 1) ... t * (D + 1) + D:
// at level l < D each partition pushes the gradient/hessian histograms of
// the tree's 2^l nodes over its examples (node x feature x bin); at "level"
// D it pushes each leaf's gradient and hessian sums. A worker starting a
// partition of epoch e + 1 sums the histograms every partition of epoch e
// pushed (in partition order: every worker gets the same sums) and decides
// the splits (or leaf values) from them, exactly as XGBoost does: the
// split of largest gain G_L^2/(H_L+lambda) + G_R^2/(H_R+lambda) -
// G^2/(H+lambda) with both sides' hessians >= min_child_weight, none if no
// gain is positive; leaf value -eta G / (H + lambda). The worker holding
// partition 0 also writes those decisions into the tree table on the
// server, so the server holds the model. One last epoch writes the last
// tree's leaves.
//
// The parameter server holds, under SGD with rate 1:
//   gbdt/trees [T, 3 * 2^D - 1]  per tree: 2^D - 1 split features, 2^D - 1
//                                split bins, 2^D leaf values, a done flag
//   gbdt/hist/<parity>/<partition> [2^(D-1) * features * bins * 2]
//                                a partition's histograms, two generations
// Every write is "set to": a worker pulls the current value and pushes the
// difference, so a partition trained again after its worker died leaves the
// same value, not twice the sum.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "common/data/auc.h"
#include "common/data/idx_dataset.h"
#include "worker/fulcrum_worker.h"

ABSL_FLAG(std::string, coordinator, "127.0.0.1:50051", "host:port of the coordinating ps_server.");
ABSL_FLAG(std::string, data_dir, std::string(fulcrum::kDefaultFashionMnistDir),
          "Folder with Fashion-MNIST's IDX files.");
ABSL_FLAG(int, positive_class, 6, "The class learned against the rest (6: shirt).");
ABSL_FLAG(double, eta, 0.3, "Learning rate: each leaf value is scaled by it.");
ABSL_FLAG(double, lambda, 1.0, "L2 regularisation of leaf values.");
ABSL_FLAG(double, min_child_weight, 1.0, "Least hessian sum of a split's either side.");
ABSL_FLAG(std::string, worker_name, "", "Name shown in status; default host:pid.");

namespace {

using fulcrum::ParameterBatch;
using fulcrum::TensorSpec;

constexpr char kTrees[] = "gbdt/trees";

std::string HistName(int parity, int partition) {
  return absl::StrCat("gbdt/hist/", parity, "/", partition);
}

struct Params {
  double eta;
  double lambda;
  double min_child_weight;
};

// Examples binned per feature: bins[example * features + f] in [0, bins).
struct BinnedData {
  int64_t n = 0;
  int features = 0;
  int bins = 0;
  std::vector<uint8_t> bin;
  std::vector<uint8_t> label;  // 1: the positive class
};

// Up to bins - 1 cut points per feature at the training set's quantiles;
// bin b holds values in [cut b-1, cut b).
std::vector<std::vector<float>> Cuts(const fulcrum::ImageDataset& train, int bins) {
  const int64_t n = train.num_examples;
  const int64_t d = train.num_features;
  std::vector<std::vector<float>> cuts(d);
  std::vector<float> column(n);
  for (int64_t f = 0; f < d; ++f) {
    for (int64_t i = 0; i < n; ++i) column[i] = train.features[i * d + f];
    std::sort(column.begin(), column.end());
    for (int b = 1; b < bins; ++b) {
      const float cut = column[std::min<int64_t>(n - 1, n * b / bins)];
      if (cut > column.front() && (cuts[f].empty() || cut > cuts[f].back())) cuts[f].push_back(cut);
    }
  }
  return cuts;
}

BinnedData Bin(const fulcrum::ImageDataset& data, const std::vector<std::vector<float>>& cuts,
               int bins, int positive_class) {
  BinnedData out;
  out.n = data.num_examples;
  out.features = data.num_features;
  out.bins = bins;
  out.bin.resize(out.n * out.features);
  out.label.resize(out.n);
  for (int64_t i = 0; i < out.n; ++i) {
    for (int f = 0; f < out.features; ++f) {
      const float x = data.features[i * out.features + f];
      out.bin[i * out.features + f] =
          std::upper_bound(cuts[f].begin(), cuts[f].end(), x) - cuts[f].begin();
    }
    out.label[i] = data.labels[i] == positive_class;
  }
  return out;
}

// One tree as the trees tensor stores it: node k of the heap order (root 0,
// children 2k+1, 2k+2) splits on feature[k] at bin[k] (bins <= bin go
// left); feature -1: no split, everything goes left.
class TreeView {
 public:
  TreeView(const float* row, int depth) : row_(row), depth_(depth), internal_((1 << depth) - 1) {}
  float feature(int k) const { return row_[k]; }
  float bin(int k) const { return row_[internal_ + k]; }
  float leaf(int j) const { return row_[2 * internal_ + j]; }
  bool done() const { return row_[2 * internal_ + (1 << depth_)] > 0.5f; }
  // The node of level `level` example i reaches (0-based within the level).
  int Route(const BinnedData& data, int64_t i, int level) const {
    int k = 0;
    for (int l = 0; l < level; ++l) {
      const int f = static_cast<int>(feature(k));
      const bool left = f < 0 || data.bin[i * data.features + f] <= bin(k);
      k = 2 * k + (left ? 1 : 2);
    }
    return k - ((1 << level) - 1);
  }

 private:
  const float* row_;
  int depth_;
  int internal_;
};

class BoostedTrees : public fulcrum::Workload {
 public:
  BoostedTrees(const fulcrum::ImageDataset* train, const fulcrum::ImageDataset* test,
               int positive_class, Params params)
      : train_(train), test_(test), positive_class_(positive_class), params_(params) {}

  absl::Status Configure(const fulcrum::JobSpec& job) override {
    const TensorSpec* trees = nullptr;
    for (const TensorSpec& t : job.tensors()) {
      if (t.name() == kTrees) trees = &t;
    }
    partitions_ = job.partitions_per_epoch();
    if (trees == nullptr || trees->shape_size() != 2 || partitions_ < 1 || !job.epoch_barrier()) {
      return absl::FailedPreconditionError(
          absl::StrCat("a boosted-trees job needs tensor ", kTrees,
                       " [trees, 3 * 2^depth - 1], epoch_barrier and partitions_per_epoch"));
    }
    num_trees_ = trees->shape(0);
    depth_ = 0;
    constexpr int kMaxDepth = 12;
    while (depth_ <= kMaxDepth && 3 * (int64_t{1} << depth_) - 1 < trees->shape(1)) ++depth_;
    if (depth_ < 1 || depth_ > kMaxDepth || 3 * (int64_t{1} << depth_) - 1 != trees->shape(1)) {
      return absl::FailedPreconditionError(
          absl::StrCat(kTrees, "'s rows must be 3 * 2^depth - 1 for a depth in [1, ", kMaxDepth,
                       "], not ", trees->shape(1)));
    }
    if (job.epochs() != num_trees_ * (depth_ + 1) + 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("a boosted-trees job of ", num_trees_, " trees of depth ", depth_, " takes ",
                       num_trees_ * (depth_ + 1) + 1, " epochs, not ", job.epochs()));
    }
    trees_ = *trees;
    hists_.clear();
    for (int parity = 0; parity < 2; ++parity) {
      for (int p = 0; p < partitions_; ++p) {
        const TensorSpec* found = nullptr;
        for (const TensorSpec& t : job.tensors()) {
          if (t.name() == HistName(parity, p)) found = &t;
        }
        if (found == nullptr || found->shape_size() != 1) {
          return absl::FailedPreconditionError("missing tensor " + HistName(parity, p));
        }
        hists_.push_back(*found);
      }
    }
    // features * bins * 2 per node of the deepest split level.
    const int64_t per_node = hists_[0].shape(0) / (int64_t{1} << (depth_ - 1));
    const int bins = per_node / (2 * train_->num_features);
    if (bins < 2 || bins > 256 || per_node != int64_t{2} * train_->num_features * bins) {
      return absl::FailedPreconditionError(
          "gbdt/hist tensors must hold 2^(depth-1) * features * bins * 2 floats, bins in [2, 256]");
    }
    if (bins != bins_) {
      bins_ = bins;
      const std::vector<std::vector<float>> cuts = Cuts(*train_, bins_);
      data_ = Bin(*train_, cuts, bins_, positive_class_);
      test_data_ = Bin(*test_, cuts, bins_, positive_class_);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> LoadPartition(const fulcrum::DataPartition& p) override {
    epoch_ = p.epoch();
    partition_ = p.index();
    begin_ = data_.n * p.index() / p.count();
    end_ = data_.n * (p.index() + 1) / p.count();
    // One step per partition: its whole histogram at once.
    return 1;
  }

  void PlanStep(absl::Span<const int64_t>, ParameterBatch* batch) override {
    batch->sparse.clear();
    // The trees, this partition's slot (to overwrite it) and, after the
    // first epoch, every partition's slot of the epoch before.
    batch->tensors = {trees_, hists_[Slot(epoch_ % 2, partition_)]};
    if (epoch_ > 0) {
      for (int p = 0; p < partitions_; ++p) {
        batch->tensors.push_back(hists_[Slot((epoch_ - 1) % 2, p)]);
      }
    }
  }

  absl::StatusOr<double> ComputeGradients(absl::Span<const int64_t>, const ParameterBatch& params,
                                          ParameterBatch* grads) override {
    const int row = trees_.shape(1);
    std::vector<float> trees = params.dense[0];  // with this epoch's decisions
    const int epochs_per_tree = depth_ + 1;
    if (epoch_ > 0) {
      // Decide from every partition's histograms of the epoch before.
      const int prev_tree = (epoch_ - 1) / epochs_per_tree;
      const int prev_level = (epoch_ - 1) % epochs_per_tree;
      const std::vector<double> sums = SumPrevious(params, prev_level);
      Decide(sums, prev_level, &trees[prev_tree * row]);
    }
    // Pushed: the trees (partition 0 sets the server's to ours, the others
    // push zeros) and this partition's slot, nothing of the slots read.
    grads->tensors = {params.tensors[0], params.tensors[1]};
    grads->sparse.clear();
    grads->dense.assign(2, {});
    grads->dense[0].assign(params.dense[0].size(), 0.0f);
    if (partition_ == 0) {
      for (size_t i = 0; i < trees.size(); ++i) grads->dense[0][i] = params.dense[0][i] - trees[i];
    }
    const int tree = epoch_ / epochs_per_tree;
    const int level = epoch_ % epochs_per_tree;
    std::vector<float> hist(params.dense[1].size(), 0.0f);
    double loss = 0;
    if (tree < num_trees_) loss = Histograms(trees, tree, level, &hist);
    // Set our slot to this epoch's histograms.
    grads->dense[1].resize(hist.size());
    for (size_t i = 0; i < hist.size(); ++i) grads->dense[1][i] = params.dense[1][i] - hist[i];
    return loss;
  }

  absl::StatusOr<fulcrum::EvalResult> Evaluate(const PullFn& pull) override {
    ParameterBatch params;
    params.tensors = {trees_};
    absl::Status pulled = pull(&params);
    if (!pulled.ok()) return pulled;
    std::vector<double> scores(test_data_.n);
    int64_t correct = 0;
    double loss = 0;
    for (int64_t i = 0; i < test_data_.n; ++i) {
      scores[i] = Score(params.dense[0], test_data_, i, num_trees_);
      const double p = 1 / (1 + std::exp(-scores[i]));
      correct += (scores[i] > 0) == (test_data_.label[i] == 1);
      loss -= std::log(std::max(1e-12, test_data_.label[i] ? p : 1 - p));
    }
    absl::StatusOr<double> auc = fulcrum::Auc(scores, test_data_.label);
    if (!auc.ok()) return auc.status();
    fulcrum::EvalResult eval;
    eval.set_examples(test_data_.n);
    eval.set_test_accuracy(static_cast<double>(correct) / test_data_.n);
    eval.set_test_loss(loss / test_data_.n);
    eval.set_test_auc(*auc);
    return eval;
  }

 private:
  int Slot(int parity, int partition) const { return parity * partitions_ + partition; }

  // The raw score of example i: the sum of the leaves it reaches in the
  // first `trees` finished trees.
  double Score(const std::vector<float>& table, const BinnedData& data, int64_t i,
               int trees) const {
    const int row = trees_.shape(1);
    double score = 0;
    for (int t = 0; t < trees; ++t) {
      const TreeView tree(&table[t * row], depth_);
      if (!tree.done()) break;
      score += tree.leaf(tree.Route(data, i, depth_));
    }
    return score;
  }

  // Every partition's slot of the epoch before, summed in partition order
  // (the same order, so the same sums, on every worker).
  std::vector<double> SumPrevious(const ParameterBatch& params, int level) const {
    const int nodes = level < depth_ ? 1 << level : 1 << depth_;
    const size_t used = level < depth_ ? size_t(nodes) * data_.features * bins_ * 2 : nodes * 2;
    std::vector<double> sums(used, 0.0);
    // PlanStep put the epoch before's slots after the trees and our own slot.
    for (int p = 0; p < partitions_; ++p) {
      const std::vector<float>& slot = params.dense[2 + p];
      for (size_t i = 0; i < used; ++i) sums[i] += slot[i];
    }
    return sums;
  }

  // Writes the splits of `level` (or, at level D, the leaf values and the
  // done flag) into `tree_row`, from the summed histograms.
  void Decide(const std::vector<double>& sums, int level, float* tree_row) const {
    const int internal = (1 << depth_) - 1;
    if (level == depth_) {
      for (int j = 0; j < (1 << depth_); ++j) {
        const double g = sums[2 * j];
        const double h = sums[2 * j + 1];
        tree_row[2 * internal + j] = -params_.eta * g / (h + params_.lambda);
      }
      tree_row[2 * internal + (1 << depth_)] = 1;  // done
      return;
    }
    const double lambda = params_.lambda;
    for (int node = 0; node < (1 << level); ++node) {
      const double* h0 = &sums[size_t(node) * data_.features * bins_ * 2];
      double g_total = 0;
      double h_total = 0;
      for (int b = 0; b < bins_; ++b) {
        g_total += h0[2 * b];
        h_total += h0[2 * b + 1];
      }
      const double parent = g_total * g_total / (h_total + lambda);
      double best_gain = 0;
      int best_feature = -1;
      int best_bin = 0;
      for (int f = 0; f < data_.features; ++f) {
        const double* hist = h0 + size_t(f) * bins_ * 2;
        double gl = 0;
        double hl = 0;
        for (int b = 0; b + 1 < bins_; ++b) {
          gl += hist[2 * b];
          hl += hist[2 * b + 1];
          const double gr = g_total - gl;
          const double hr = h_total - hl;
          if (hl < params_.min_child_weight || hr < params_.min_child_weight) continue;
          const double gain = gl * gl / (hl + lambda) + gr * gr / (hr + lambda) - parent;
          if (gain > best_gain) {
            best_gain = gain;
            best_feature = f;
            best_bin = b;
          }
        }
      }
      const int k = (1 << level) - 1 + node;
      tree_row[k] = best_feature;
      tree_row[internal + k] = best_bin;
    }
  }

  // This partition's histograms for `level` of tree `tree` (or its leaf
  // sums at level D) into `hist`; returns the mean log-loss of the model so
  // far on the partition.
  double Histograms(const std::vector<float>& table, int tree, int level,
                    std::vector<float>* hist) const {
    const TreeView current(&table[tree * trees_.shape(1)], depth_);
    double loss = 0;
    for (int64_t i = begin_; i < end_; ++i) {
      const double score = Score(table, data_, i, tree);
      const double p = 1 / (1 + std::exp(-score));
      const double g = p - data_.label[i];
      const double h = std::max(p * (1 - p), 1e-16);
      loss -= std::log(std::max(1e-12, data_.label[i] ? p : 1 - p));
      const int node = current.Route(data_, i, level);
      if (level == depth_) {
        (*hist)[2 * node] += g;
        (*hist)[2 * node + 1] += h;
        continue;
      }
      float* base = &(*hist)[size_t(node) * data_.features * bins_ * 2];
      const uint8_t* bins = &data_.bin[i * data_.features];
      for (int f = 0; f < data_.features; ++f) {
        float* cell = base + (size_t(f) * bins_ + bins[f]) * 2;
        cell[0] += g;
        cell[1] += h;
      }
    }
    return loss / std::max<int64_t>(1, end_ - begin_);
  }

  const fulcrum::ImageDataset* const train_;
  const fulcrum::ImageDataset* const test_;
  const int positive_class_;
  const Params params_;
  TensorSpec trees_;
  std::vector<TensorSpec> hists_;
  int partitions_ = 0;
  int num_trees_ = 0;
  int depth_ = 0;
  int bins_ = 0;
  BinnedData data_;
  BinnedData test_data_;
  uint32_t epoch_ = 0;
  int partition_ = 0;
  int64_t begin_ = 0;
  int64_t end_ = 0;
};

int Fail(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "gbdt_worker: %s: %s\n", what.c_str(), status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Gradient-boosted trees on Fashion-MNIST through Fulcrum.");
  absl::ParseCommandLine(argc, argv);
  const std::string dir = absl::GetFlag(FLAGS_data_dir);
  absl::StatusOr<fulcrum::ImageDataset> train = fulcrum::ReadFashionMnist(dir, "train");
  if (!train.ok()) return Fail("--data_dir", train.status());
  absl::StatusOr<fulcrum::ImageDataset> test = fulcrum::ReadFashionMnist(dir, "t10k");
  if (!test.ok()) return Fail("--data_dir", test.status());
  const int positive_class = absl::GetFlag(FLAGS_positive_class);
  if (positive_class < 0 || positive_class >= train->num_classes) {
    return Fail("--positive_class", absl::InvalidArgumentError("not a class of the data"));
  }
  const Params params{absl::GetFlag(FLAGS_eta), absl::GetFlag(FLAGS_lambda),
                      absl::GetFlag(FLAGS_min_child_weight)};
  if (!(params.eta > 0) || !(params.lambda >= 0) || !(params.min_child_weight >= 0)) {
    return Fail("--eta/--lambda/--min_child_weight",
                absl::InvalidArgumentError("eta must be > 0, the others >= 0"));
  }

  fulcrum::WorkerOptions options;
  options.connection.coordinator = absl::GetFlag(FLAGS_coordinator);
  options.connection.worker_name = absl::GetFlag(FLAGS_worker_name);
  absl::Status trained = fulcrum::RunWorker(
      options, [&](const fulcrum::JobSpec&) -> absl::StatusOr<std::unique_ptr<fulcrum::Workload>> {
        return std::make_unique<BoostedTrees>(&*train, &*test, positive_class, params);
      });
  if (!trained.ok()) return Fail("training", trained);
  return 0;
}
