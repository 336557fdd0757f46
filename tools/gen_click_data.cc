// gen_click_data: a synthetic click-prediction data set in libsvm format,
// with a hidden true weight vector, so learners can be judged against the
// best possible AUC.
//
//   gen_click_data --out_dir=DIR [--train_examples=200000] [--seed=1]
//
// Writes DIR/train.libsvm, DIR/test.libsvm and DIR/true_auc.txt (the true
// model's AUC on the test set) and prints "true_test_auc=<auc>".
//
// Model: feature ids in [0, --features); each example has --active distinct
// features of value 1, drawn with Zipf(--zipf) popularity (rank r with
// probability proportional to r^-zipf; ranks are spread over the id space by
// a fixed bijection); label ~ Bernoulli(sigmoid(bias + sum of the true
// weights of its features)); the true weight of the feature of rank r is
// N(0, (--weight_scale)^2 / (1 + r / --weight_decay_rank)).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/file_system.h"
#include "common/data/auc.h"
#include "common/data/libsvm.h"

ABSL_FLAG(std::string, out_dir, "", "Folder to write the data set into.");
ABSL_FLAG(int64_t, train_examples, 200000, "Training examples.");
ABSL_FLAG(int64_t, test_examples, 50000, "Held-out examples.");
ABSL_FLAG(int, features_log2, 20, "The feature space has 2^this ids.");
ABSL_FLAG(int, active, 30, "Distinct active features per example.");
ABSL_FLAG(double, zipf, 1.1, "Zipf exponent of feature popularity.");
ABSL_FLAG(double, weight_scale, 0.8,
          "Standard deviation of the most popular features' true weights.");
ABSL_FLAG(double, bias, -1.0, "True bias (sets the click rate).");
ABSL_FLAG(double, weight_decay_rank, 300,
          "The true weight of the feature of popularity rank r has standard "
          "deviation weight_scale / sqrt(1 + r / this): the signal lives in "
          "features that occur often enough to be learned. 0: no decay.");
ABSL_FLAG(uint64_t, seed, 1, "Seed; the same seed gives the same files.");

namespace fulcrum {
namespace {

int Run() {
  const std::string dir = absl::GetFlag(FLAGS_out_dir);
  const int log2 = absl::GetFlag(FLAGS_features_log2);
  const int active = absl::GetFlag(FLAGS_active);
  if (dir.empty() || log2 < 4 || log2 > 40 || active <= 0 ||
      absl::GetFlag(FLAGS_train_examples) <= 0 || absl::GetFlag(FLAGS_test_examples) <= 0 ||
      !(absl::GetFlag(FLAGS_zipf) > 0)) {
    std::fprintf(stderr,
                 "gen_click_data: need --out_dir, --features_log2 in [4, 40], and "
                 "positive --active, --train_examples, --test_examples, --zipf\n");
    return 2;
  }
  const uint64_t features = uint64_t{1} << log2;
  if (uint64_t(active) * 4 > features) {
    std::fprintf(stderr, "gen_click_data: --active is too large for the feature space\n");
    return 2;
  }
  absl::Status made = PosixFileSystem()->CreateDir(dir);
  if (!made.ok()) {
    std::fprintf(stderr, "gen_click_data: %s\n", made.ToString().c_str());
    return 1;
  }
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  std::normal_distribution<float> normal(0.0f, absl::GetFlag(FLAGS_weight_scale));
  // Weights are drawn by popularity rank, then stored by id.
  std::vector<float> weights(features);
  const double decay = absl::GetFlag(FLAGS_weight_decay_rank);
  auto id_of = [&](uint64_t rank) { return (rank * 0x9E3779B97F4A7C15ull) & (features - 1); };
  for (uint64_t rank = 0; rank < features; ++rank) {
    const double shrink = decay > 0 ? 1.0 / std::sqrt(1.0 + rank / decay) : 1.0;
    weights[id_of(rank)] = normal(rng) * shrink;
  }
  // Zipf over ranks via the cumulative distribution.
  std::vector<double> cdf(features);
  double total = 0;
  for (uint64_t r = 0; r < features; ++r) {
    total += std::pow(double(r + 1), -absl::GetFlag(FLAGS_zipf));
    cdf[r] = total;
  }
  std::uniform_real_distribution<double> uniform(0.0, total);
  // An odd multiplier is a bijection on [0, 2^log2): ranks spread over ids.
  auto id_of_rank = id_of;
  const double bias = absl::GetFlag(FLAGS_bias);

  double true_auc = 0;
  for (const char* split : {"train", "test"}) {
    const bool test = std::string(split) == "test";
    const int64_t n =
        test ? absl::GetFlag(FLAGS_test_examples) : absl::GetFlag(FLAGS_train_examples);
    const std::string path = absl::StrCat(dir, "/", split, ".libsvm");
    FILE* out = std::fopen(path.c_str(), "w");
    if (out == nullptr) {
      std::fprintf(stderr, "gen_click_data: cannot write %s\n", path.c_str());
      return 1;
    }
    std::vector<double> scores;
    std::vector<uint8_t> labels;
    absl::flat_hash_set<uint64_t> ids;
    std::vector<uint64_t> sorted;
    std::string line;
    for (int64_t i = 0; i < n; ++i) {
      ids.clear();
      while (ids.size() < static_cast<size_t>(active)) {
        const uint64_t rank = std::lower_bound(cdf.begin(), cdf.end(), uniform(rng)) - cdf.begin();
        ids.insert(id_of_rank(std::min(rank, features - 1)));
      }
      sorted.assign(ids.begin(), ids.end());
      std::sort(sorted.begin(), sorted.end());
      double score = bias;
      for (uint64_t id : sorted) score += weights[id];
      const double p = 1.0 / (1.0 + std::exp(-score));
      const uint8_t label = std::bernoulli_distribution(p)(rng) ? 1 : 0;
      line = label ? "1" : "0";
      for (uint64_t id : sorted) absl::StrAppend(&line, " ", id, ":1");
      line += '\n';
      std::fputs(line.c_str(), out);
      if (test) {
        scores.push_back(score);
        labels.push_back(label);
      }
    }
    if (std::fclose(out) != 0) {
      std::fprintf(stderr, "gen_click_data: error writing %s\n", path.c_str());
      return 1;
    }
    if (test) {
      absl::StatusOr<double> auc = Auc(scores, labels);
      if (!auc.ok()) {
        std::fprintf(stderr, "gen_click_data: %s\n", auc.status().ToString().c_str());
        return 1;
      }
      true_auc = *auc;
    }
  }
  const std::string auc_path = dir + "/true_auc.txt";
  FILE* f = std::fopen(auc_path.c_str(), "w");
  if (f == nullptr || std::fprintf(f, "%.6f\n", true_auc) < 0 || std::fclose(f) != 0) {
    std::fprintf(stderr, "gen_click_data: cannot write %s\n", auc_path.c_str());
    return 1;
  }
  std::printf("true_test_auc=%.6f\n", true_auc);
  return 0;
}

}  // namespace
}  // namespace fulcrum

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Writes a synthetic click data set (libsvm) with a hidden true model.");
  absl::ParseCommandLine(argc, argv);
  return fulcrum::Run();
}
