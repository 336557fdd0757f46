// mf_worker: matrix factorization for recommendation (ratings ~ user
// factors . item factors, squared loss, L2), trained through Fulcrum.
// Written against the public worker header only.
//
//   ps_server --job=worker/examples/mf/mf.textproto
//   mf_worker --coordinator=HOST:PORT --train_file=T --test_file=E
//
// The files hold "user<TAB>item<TAB>rating" lines (tools/gen_ratings writes
// them). The parameter server holds two sparse tables, "mf/user" and
// "mf/item", a row of `dim` factors per user and per item, created on first
// use. A step pulls the rows of the users and items its mini-batch of
// ratings names and pushes their gradients: for a rating r with error
// e = u . v - r, e v + lambda u to the user's row and e u + lambda v to the
// item's (summed over the batch, not averaged: a row's step does not shrink
// with the batch). Evaluation reports the test RMSE.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "worker/fulcrum_worker.h"

ABSL_FLAG(std::string, coordinator, "127.0.0.1:50051", "host:port of the coordinating ps_server.");
ABSL_FLAG(std::string, train_file, "", "Training ratings: user<TAB>item<TAB>rating lines.");
ABSL_FLAG(std::string, test_file, "", "Held-out ratings, same format (for evaluation).");
ABSL_FLAG(double, lambda, 0.01, "L2 strength on a rating's two factor rows.");
ABSL_FLAG(std::string, worker_name, "", "Name shown in status; default host:pid.");

namespace {

using fulcrum::ParameterBatch;
using fulcrum::SparseRows;

constexpr char kUsers[] = "mf/user";
constexpr char kItems[] = "mf/item";

struct Rating {
  uint64_t user;
  uint64_t item;
  float value;
};

absl::StatusOr<std::vector<Rating>> ReadRatings(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot open " + path);
  std::vector<Rating> ratings;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    const std::vector<absl::string_view> fields = absl::StrSplit(line, '\t');
    Rating r;
    if (fields.size() != 3 || !absl::SimpleAtoi(fields[0], &r.user) ||
        !absl::SimpleAtoi(fields[1], &r.item) || !absl::SimpleAtof(fields[2], &r.value) ||
        !std::isfinite(r.value)) {
      return absl::DataLossError(absl::StrCat(path, ":", number, ": not user<TAB>item<TAB>rating"));
    }
    ratings.push_back(r);
  }
  return ratings;
}

// Positions of keys among a pull's rows.
class RowIndex {
 public:
  explicit RowIndex(const SparseRows& rows) {
    for (size_t r = 0; r < rows.keys.size(); ++r) index_.emplace(rows.keys[r], r);
  }
  size_t operator()(uint64_t key) const { return index_.at(key); }

 private:
  absl::flat_hash_map<uint64_t, size_t> index_;
};

class MatrixFactorization : public fulcrum::Workload {
 public:
  MatrixFactorization(const std::vector<Rating>* train, const std::vector<Rating>* test,
                      double lambda)
      : train_(train), test_(test), lambda_(lambda) {}

  absl::Status Configure(const fulcrum::JobSpec& job) override {
    uint32_t user_dim = 0;
    uint32_t item_dim = 0;
    for (const auto& t : job.sparse_tables()) {
      if (t.name() == kUsers) user_dim = t.dim();
      if (t.name() == kItems) item_dim = t.dim();
    }
    if (user_dim == 0 || user_dim != item_dim) {
      return absl::FailedPreconditionError(
          absl::StrCat("matrix factorization needs sparse tables ", kUsers, " and ", kItems,
                       " of the same dim; job '", job.model(), "' has other ones"));
    }
    dim_ = user_dim;
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> LoadPartition(const fulcrum::DataPartition& p) override {
    const size_t n = train_->size();
    begin_ = n * p.index() / p.count();
    return static_cast<int64_t>(n * (p.index() + 1) / p.count() - begin_);
  }

  void PlanStep(absl::Span<const int64_t> examples, ParameterBatch* batch) override {
    std::vector<const Rating*> chosen;
    for (int64_t i : examples) chosen.push_back(&(*train_)[begin_ + i]);
    Plan(chosen, /*read_only=*/false, batch);
  }

  absl::StatusOr<double> ComputeGradients(absl::Span<const int64_t> examples,
                                          const ParameterBatch& params,
                                          ParameterBatch* grads) override {
    *grads = params;
    const SparseRows& users = params.sparse[0];
    const SparseRows& items = params.sparse[1];
    std::vector<float>& user_grad = grads->sparse[0].values;
    std::vector<float>& item_grad = grads->sparse[1].values;
    std::fill(user_grad.begin(), user_grad.end(), 0.0f);
    std::fill(item_grad.begin(), item_grad.end(), 0.0f);
    const RowIndex user_row(users);
    const RowIndex item_row(items);
    double loss = 0;
    for (int64_t i : examples) {
      const Rating& r = (*train_)[begin_ + i];
      const float* u = &users.values[user_row(r.user) * dim_];
      const float* v = &items.values[item_row(r.item) * dim_];
      float* gu = &user_grad[user_row(r.user) * dim_];
      float* gv = &item_grad[item_row(r.item) * dim_];
      const float error = Dot(u, v) - r.value;
      loss += error * error;
      for (uint32_t k = 0; k < dim_; ++k) {
        gu[k] += error * v[k] + lambda_ * u[k];
        gv[k] += error * u[k] + lambda_ * v[k];
      }
    }
    return loss / examples.size();
  }

  absl::StatusOr<fulcrum::EvalResult> Evaluate(const PullFn& pull) override {
    if (test_->empty()) return absl::UnimplementedError("no --test_file to evaluate on");
    double squared = 0;
    constexpr size_t kChunk = 20000;
    for (size_t start = 0; start < test_->size(); start += kChunk) {
      std::vector<const Rating*> chunk;
      for (size_t i = start; i < std::min(test_->size(), start + kChunk); ++i) {
        chunk.push_back(&(*test_)[i]);
      }
      ParameterBatch params;
      Plan(chunk, /*read_only=*/true, &params);
      if (absl::Status s = pull(&params); !s.ok()) return s;
      const RowIndex user_row(params.sparse[0]);
      const RowIndex item_row(params.sparse[1]);
      for (const Rating* r : chunk) {
        const double error = Dot(&params.sparse[0].values[user_row(r->user) * dim_],
                                 &params.sparse[1].values[item_row(r->item) * dim_]) -
                             r->value;
        squared += error * error;
      }
    }
    const double mse = squared / test_->size();
    fulcrum::EvalResult result;
    result.set_examples(test_->size());
    result.set_test_loss(mse);
    (*result.mutable_metrics())["rmse"] = std::sqrt(mse);
    return result;
  }

 private:
  float Dot(const float* u, const float* v) const {
    float dot = 0;
    for (uint32_t k = 0; k < dim_; ++k) dot += u[k] * v[k];
    return dot;
  }

  // The distinct users' and items' rows of `ratings`.
  void Plan(const std::vector<const Rating*>& ratings, bool read_only, ParameterBatch* batch) {
    batch->tensors.clear();
    batch->sparse.resize(2);
    for (int t = 0; t < 2; ++t) {
      SparseRows& rows = batch->sparse[t];
      rows.table = t == 0 ? kUsers : kItems;
      rows.dim = dim_;
      rows.read_only = read_only;
      rows.keys.clear();
      absl::flat_hash_map<uint64_t, size_t> seen;
      for (const Rating* r : ratings) {
        const uint64_t key = t == 0 ? r->user : r->item;
        if (seen.emplace(key, rows.keys.size()).second) rows.keys.push_back(key);
      }
    }
  }

  const std::vector<Rating>* const train_;
  const std::vector<Rating>* const test_;
  const double lambda_;
  uint32_t dim_ = 0;
  size_t begin_ = 0;
};

int Fail(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "mf_worker: %s: %s\n", what.c_str(), status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Matrix factorization of ratings through Fulcrum.");
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_train_file).empty()) {
    return Fail("--train_file", absl::InvalidArgumentError("required"));
  }
  absl::StatusOr<std::vector<Rating>> train = ReadRatings(absl::GetFlag(FLAGS_train_file));
  if (!train.ok()) return Fail("--train_file", train.status());
  if (train->empty()) return Fail("--train_file", absl::InvalidArgumentError("no ratings"));
  std::vector<Rating> test;
  if (!absl::GetFlag(FLAGS_test_file).empty()) {
    absl::StatusOr<std::vector<Rating>> read = ReadRatings(absl::GetFlag(FLAGS_test_file));
    if (!read.ok()) return Fail("--test_file", read.status());
    test = std::move(*read);
  }
  const double lambda = absl::GetFlag(FLAGS_lambda);
  if (!(lambda >= 0)) return Fail("--lambda", absl::InvalidArgumentError("must be >= 0"));

  fulcrum::WorkerOptions options;
  options.connection.coordinator = absl::GetFlag(FLAGS_coordinator);
  options.connection.worker_name = absl::GetFlag(FLAGS_worker_name);
  absl::Status trained = fulcrum::RunWorker(
      options, [&](const fulcrum::JobSpec&) -> absl::StatusOr<std::unique_ptr<fulcrum::Workload>> {
        return std::make_unique<MatrixFactorization>(&*train, &test, lambda);
      });
  if (!trained.ok()) return Fail("training", trained);
  return 0;
}
