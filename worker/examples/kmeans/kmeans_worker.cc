// kmeans_worker: mini-batch k-means (Sculley, "Web-scale k-means
// clustering", WWW 2010) of Fashion-MNIST's training images, trained through
// Fulcrum. Written against the public worker header (plus the project's IDX
// reader and Eigen), like any user's model.
//
//   ps_server --job=worker/examples/kmeans/kmeans.textproto
//   kmeans_worker --coordinator=HOST:PORT [--data_dir=/usr/share/datasets/fashion-mnist]
//
// The parameter server holds, for k centroids of d features:
//   kmeans/offset [k, d]  each centroid's displacement from its seed
//   kmeans/count  [k]     examples assigned to each centroid so far
// under plain SGD with learning rate 1, so that what a worker pushes is
// simply added (negated). Every worker computes the same seeds (greedy
// k-means++ over the training set, seeded by the job's seed), so the server
// never has to be told them and no worker races another to set them.
//
// A step assigns its mini-batch to the nearest centroids (seed + offset) and,
// for each centroid j with n_j of the batch's examples summing to S_j, moves
// it by Sculley's per-centroid rate 1 / v_j, v_j = count_j + n_j:
//   c_j += (S_j - n_j c_j) / v_j,   count_j += n_j.
// Asynchronous workers apply these to the server's values as they come
// (the server adds, the worker computes the step), as in Hogwild-style
// parallel mini-batch k-means. One change to Sculley: v_j counts only this
// epoch's assignments (the worker subtracts the count it saw at the epoch's
// first step), so each epoch ends near the mean of the points its centroid
// last won, as Lloyd's iteration would, rather than the mean of every point
// it ever won (measured: inertia 1.955e6 without, 1.933e6 with, after 5
// epochs; scikit-learn's KMeans 1.920e6 to 1.937e6 over seeds 0-2).
//
// Evaluation reports the inertia (sum of squared distances of every
// training example to its nearest centroid), as scikit-learn's inertia_.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "Eigen/Core"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "common/data/idx_dataset.h"
#include "worker/fulcrum_worker.h"

ABSL_FLAG(std::string, coordinator, "127.0.0.1:50051", "host:port of the coordinating ps_server.");
ABSL_FLAG(std::string, data_dir, std::string(fulcrum::kDefaultFashionMnistDir),
          "Folder with Fashion-MNIST's IDX files; the training images are clustered.");
ABSL_FLAG(std::string, worker_name, "", "Name shown in status; default host:pid.");

namespace {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixMap = Eigen::Map<const Matrix>;

constexpr char kOffset[] = "kmeans/offset";
constexpr char kCount[] = "kmeans/count";

// Squared distances of every row of `x` to every row of `centroids`
// (rows(x) x k), through one matrix product.
Matrix SquaredDistances(const Eigen::Ref<const Matrix>& x, const Matrix& centroids) {
  const Eigen::VectorXf x_norms = x.rowwise().squaredNorm();
  const Eigen::RowVectorXf c_norms = centroids.rowwise().squaredNorm().transpose();
  Matrix d = -2 * x * centroids.transpose();
  d.colwise() += x_norms;
  d.rowwise() += c_norms;
  return d.cwiseMax(0);
}

// Greedy k-means++ (Arthur and Vassilvitskii 2007, with scikit-learn's
// 2 + ln k candidates per centroid): deterministic in `seed`.
Matrix KMeansPlusPlus(const MatrixMap& x, int k, uint64_t seed) {
  const int64_t n = x.rows();
  std::mt19937_64 random(seed);
  Matrix centroids(k, x.cols());
  centroids.row(0) = x.row(std::uniform_int_distribution<int64_t>(0, n - 1)(random));
  Eigen::VectorXf closest = (x.rowwise() - centroids.row(0)).rowwise().squaredNorm();
  const int trials = 2 + static_cast<int>(std::log(k));
  for (int c = 1; c < k; ++c) {
    std::vector<double> cumulative(n);
    double total = 0;
    for (int64_t i = 0; i < n; ++i) cumulative[i] = total += closest[i];
    std::uniform_real_distribution<double> uniform(0, total);
    double best_potential = std::numeric_limits<double>::infinity();
    Eigen::VectorXf best_closest;
    for (int t = 0; t < trials; ++t) {
      const int64_t candidate = std::min<int64_t>(
          n - 1, std::lower_bound(cumulative.begin(), cumulative.end(), uniform(random)) -
                     cumulative.begin());
      Eigen::VectorXf with =
          (x.rowwise() - x.row(candidate)).rowwise().squaredNorm().cwiseMin(closest);
      const double potential = with.cast<double>().sum();
      if (potential < best_potential) {
        best_potential = potential;
        best_closest = std::move(with);
        centroids.row(c) = x.row(candidate);
      }
    }
    closest = std::move(best_closest);
  }
  return centroids;
}

class MiniBatchKMeans : public fulcrum::Workload {
 public:
  explicit MiniBatchKMeans(const fulcrum::ImageDataset* train) : train_(train) {}

  absl::Status Configure(const fulcrum::JobSpec& job) override {
    const fulcrum::TensorSpec* offset = nullptr;
    const fulcrum::TensorSpec* count = nullptr;
    for (const fulcrum::TensorSpec& t : job.tensors()) {
      if (t.name() == kOffset) offset = &t;
      if (t.name() == kCount) count = &t;
    }
    if (offset == nullptr || count == nullptr || offset->shape_size() != 2 ||
        offset->shape(1) != train_->num_features || count->shape_size() != 1 ||
        count->shape(0) != offset->shape(0) || offset->shape(0) < 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("a k-means job needs tensors ", kOffset, " [k, ", train_->num_features,
                       "] and ", kCount, " [k]; job '", job.model(), "' has other ones"));
    }
    if (offset->shape(0) != k_ || job.seed() != seed_) {
      k_ = offset->shape(0);
      seed_ = job.seed();
      seeds_ = KMeansPlusPlus(Data(), k_, seed_);
      epoch_start_count_ = Eigen::VectorXf::Zero(k_);
    }
    offset_ = *offset;
    count_ = *count;
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> LoadPartition(const fulcrum::DataPartition& p) override {
    const int64_t n = train_->num_examples;
    if (p.epoch() != epoch_) {
      epoch_ = p.epoch();
      restart_pending_ = true;
    }
    begin_ = int64_t{p.index()} * n / p.count();
    return int64_t{p.index() + 1} * n / p.count() - begin_;
  }

  void PlanStep(absl::Span<const int64_t>, fulcrum::ParameterBatch* batch) override {
    batch->tensors = {offset_, count_};
    batch->sparse.clear();
  }

  absl::StatusOr<double> ComputeGradients(absl::Span<const int64_t> examples,
                                          const fulcrum::ParameterBatch& params,
                                          fulcrum::ParameterBatch* grads) override {
    const int64_t d = train_->num_features;
    const Matrix centroids = Centroids(params);
    const Eigen::Map<const Eigen::VectorXf> pulled_count(params.dense[1].data(), k_);
    if (restart_pending_) {
      epoch_start_count_ = pulled_count;
      restart_pending_ = false;
    }
    const Eigen::VectorXf count = (pulled_count - epoch_start_count_).cwiseMax(0.0f);
    batch_.resize(examples.size(), d);
    for (size_t i = 0; i < examples.size(); ++i) {
      batch_.row(i) = Data().row(begin_ + examples[i]);
    }
    const Matrix distances = SquaredDistances(batch_, centroids);
    Matrix sums = Matrix::Zero(k_, d);
    Eigen::VectorXf assigned = Eigen::VectorXf::Zero(k_);
    double loss = 0;
    for (Eigen::Index i = 0; i < batch_.rows(); ++i) {
      Eigen::Index j;
      loss += distances.row(i).minCoeff(&j);
      sums.row(j) += batch_.row(i);
      assigned[j] += 1;
    }
    grads->tensors = params.tensors;
    grads->sparse.clear();
    grads->dense.resize(2);
    grads->dense[0].assign(k_ * d, 0.0f);
    grads->dense[1].assign(k_, 0.0f);
    Eigen::Map<Matrix> offset_grad(grads->dense[0].data(), k_, d);
    for (int j = 0; j < k_; ++j) {
      if (assigned[j] == 0) continue;
      const float rate = 1 / (count[j] + assigned[j]);
      // The server subtracts the gradient: push minus the move.
      offset_grad.row(j) = -rate * (sums.row(j) - assigned[j] * centroids.row(j));
      grads->dense[1][j] = -assigned[j];
    }
    return loss / examples.size();
  }

  absl::StatusOr<fulcrum::EvalResult> Evaluate(const PullFn& pull) override {
    fulcrum::ParameterBatch params;
    PlanStep({}, &params);
    absl::Status pulled = pull(&params);
    if (!pulled.ok()) return pulled;
    const Matrix centroids = Centroids(params);
    double inertia = 0;
    constexpr int64_t kChunk = 4096;
    for (int64_t begin = 0; begin < Data().rows(); begin += kChunk) {
      const int64_t rows = std::min(kChunk, Data().rows() - begin);
      inertia += SquaredDistances(Data().middleRows(begin, rows), centroids)
                     .rowwise()
                     .minCoeff()
                     .cast<double>()
                     .sum();
    }
    fulcrum::EvalResult eval;
    eval.set_examples(Data().rows());
    eval.set_test_loss(inertia / Data().rows());
    (*eval.mutable_metrics())["inertia"] = inertia;
    return eval;
  }

 private:
  MatrixMap Data() const {
    return MatrixMap(train_->features.data(), train_->num_examples, train_->num_features);
  }
  Matrix Centroids(const fulcrum::ParameterBatch& params) const {
    return seeds_ + MatrixMap(params.dense[0].data(), k_, train_->num_features);
  }

  const fulcrum::ImageDataset* const train_;
  int k_ = 0;
  uint64_t seed_ = 0;
  Matrix seeds_;
  fulcrum::TensorSpec offset_;
  fulcrum::TensorSpec count_;
  int64_t begin_ = 0;
  Matrix batch_;
  uint32_t epoch_ = 0;
  bool restart_pending_ = false;
  Eigen::VectorXf epoch_start_count_;
};

int Fail(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "kmeans_worker: %s: %s\n", what.c_str(), status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Mini-batch k-means of Fashion-MNIST through Fulcrum.");
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<fulcrum::ImageDataset> train =
      fulcrum::ReadFashionMnist(absl::GetFlag(FLAGS_data_dir), "train");
  if (!train.ok()) return Fail("--data_dir", train.status());

  fulcrum::WorkerOptions options;
  options.connection.coordinator = absl::GetFlag(FLAGS_coordinator);
  options.connection.worker_name = absl::GetFlag(FLAGS_worker_name);
  absl::Status trained = fulcrum::RunWorker(
      options, [&](const fulcrum::JobSpec&) -> absl::StatusOr<std::unique_ptr<fulcrum::Workload>> {
        return std::make_unique<MiniBatchKMeans>(&*train);
      });
  if (!trained.ok()) return Fail("training", trained);
  return 0;
}
