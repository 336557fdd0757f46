// gen_ctr_data: synthetic click logs shaped like Criteo's (13 numeric and 26
// categorical fields, tab-separated, ids as 8 hexadecimal digits), labelled
// by a hidden true model, so a recommendation model can be judged against
// the best AUC any model can reach on them.
//
//   gen_ctr_data --out_dir=DIR [--train_examples=1000000] [--seed=1]
//
// Writes DIR/train.tsv, DIR/test.tsv (common/data/ctr.h reads them, by byte
// range) and DIR/true_auc.txt (the true model's test AUC), and prints
// "true_test_auc=<auc>".
//
// The true model: field f's ids are drawn by popularity rank r, Zipf(--zipf)
// over its --cardinalities[f] ids (a bijection of 32 bits turns ranks into
// ids). The logit is --bias, plus a_j * log(1 + x_j) for each numeric count
// x_j (log-normal, 10% missing, written empty), plus a weight per (field,
// id), plus --interaction_scale times the dot products of 4-dimensional
// vectors per (field, id) for six pairs of fields. The weights and vectors of
// the id of rank r are scaled by exp(-r / --signal_rank): the signal lives in
// the ids seen often enough to be learned from a million examples, the
// others are noise a model must learn to ignore (with the defaults, PyTorch's
// own DLRM reaches within 0.01 of the true AUC in one epoch; see
// bench/FIGURES.md). Each id's weight and vector come from a hash of (seed,
// field, rank), so no table of 10^7 ids is held.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/file_system.h"
#include "common/data/auc.h"

ABSL_FLAG(std::string, out_dir, "", "Folder to write the data set into.");
ABSL_FLAG(int64_t, train_examples, 1000000, "Training examples.");
ABSL_FLAG(int64_t, test_examples, 100000, "Held-out examples.");
ABSL_FLAG(std::string, cardinalities,
          "1460,583,10000000,2202608,305,24,12517,633,10,93145,5683,8351593,3194,27,14992,"
          "5461306,10,5652,2173,10,7046547,18,15,286181,105,142572",
          "Ids per categorical field, comma-separated (one per field; Criteo's spread, "
          "clamped to [10, 10^7]).");
ABSL_FLAG(double, zipf, 1.05, "Zipf exponent of id popularity within a field.");
ABSL_FLAG(double, signal_rank, 4,
          "The weight and vector of the id of rank r are scaled by exp(-r / this).");
ABSL_FLAG(double, weight_scale, 0.8, "Standard deviation of the most popular ids' weights.");
ABSL_FLAG(double, interaction_scale, 0.3,
          "The interacting pairs' dot products are multiplied by this (0: none).");
ABSL_FLAG(double, bias, -1.6, "True bias (sets the click rate; -1.6 gives about 25%).");
ABSL_FLAG(uint64_t, seed, 1, "Seed; the same seed gives the same files.");

namespace fulcrum {
namespace {

constexpr int kNumeric = 13;
constexpr int kLatent = 4;
// The field pairs whose ids interact (a dot product of their vectors).
constexpr int kPairs[][2] = {{0, 1}, {0, 5}, {1, 9}, {4, 13}, {5, 21}, {8, 16}};

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A standard normal drawn from a hash of (seed, field, rank, slot).
double HashNormal(uint64_t seed, uint64_t field, uint64_t rank, uint64_t slot) {
  const uint64_t h = SplitMix64(seed ^ SplitMix64(field << 40 ^ rank ^ SplitMix64(slot + 1)));
  const double u1 = (double(h >> 11) + 0.5) / 9007199254740992.0;
  const double u2 = double(SplitMix64(h) >> 11) / 9007199254740992.0;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

// A bijection on 32 bits, different per field: ranks become ids.
uint32_t IdOfRank(uint32_t field, uint32_t rank) {
  uint32_t x = rank ^ (0x5bd1e995u * (field + 1));
  x *= 0x9E3779B1u;
  x ^= x >> 15;
  x *= 0x85EBCA77u;
  x ^= x >> 13;
  return x;
}

// Rank in [0, n) with probability about proportional to (rank + 1)^-s: the
// continuous power law's inverse distribution function.
uint32_t ZipfRank(double u, double n, double s) {
  const double x = std::pow(1.0 + u * (std::pow(n + 1.0, 1.0 - s) - 1.0), 1.0 / (1.0 - s));
  return static_cast<uint32_t>(std::min(std::max(std::floor(x) - 1.0, 0.0), n - 1.0));
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "gen_ctr_data: %s\n", message.c_str());
  return 2;
}

int Run() {
  const std::string dir = absl::GetFlag(FLAGS_out_dir);
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  const double zipf = absl::GetFlag(FLAGS_zipf);
  const double signal_rank = absl::GetFlag(FLAGS_signal_rank);
  const double scale = absl::GetFlag(FLAGS_weight_scale);
  const double interaction_scale = absl::GetFlag(FLAGS_interaction_scale);
  if (dir.empty()) return Fail("--out_dir is required");
  if (absl::GetFlag(FLAGS_train_examples) <= 0 || absl::GetFlag(FLAGS_test_examples) <= 0) {
    return Fail("--train_examples and --test_examples must be positive");
  }
  if (!(zipf > 0) || zipf == 1.0) return Fail("--zipf must be positive and not 1");
  if (!(signal_rank > 0)) return Fail("--signal_rank must be positive");
  std::vector<double> cardinalities;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_cardinalities), ',')) {
    double c;
    if (!absl::SimpleAtod(part, &c) || c < 1 || c > 4294967296.0 || c != std::floor(c)) {
      return Fail(absl::StrCat("--cardinalities: '", part, "' is no count in [1, 2^32]"));
    }
    cardinalities.push_back(c);
  }
  const int fields = static_cast<int>(cardinalities.size());
  for (const auto& pair : kPairs) {
    if (pair[0] >= fields || pair[1] >= fields) {
      return Fail(
          absl::StrCat("--cardinalities: the true model needs at least ", pair[1] + 1, " fields"));
    }
  }
  absl::Status made = PosixFileSystem()->CreateDir(dir);
  if (!made.ok()) return Fail(made.ToString());

  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  double numeric_weights[kNumeric];
  for (double& a : numeric_weights) a = 0.25 * normal(rng);
  auto shrink = [&](uint32_t rank) { return std::exp(-double(rank) / signal_rank); };
  auto weight = [&](int field, uint32_t rank) {
    return scale * shrink(rank) * HashNormal(seed, field, rank, 0);
  };
  auto latent = [&](int field, uint32_t rank, int k) {
    return shrink(rank) * HashNormal(seed, field, rank, 1 + k) / std::sqrt(double(kLatent));
  };

  double true_auc = 0;
  std::vector<uint32_t> ranks(fields);
  for (const char* split : {"train", "test"}) {
    const bool test = std::string(split) == "test";
    const int64_t n =
        test ? absl::GetFlag(FLAGS_test_examples) : absl::GetFlag(FLAGS_train_examples);
    const std::string path = absl::StrCat(dir, "/", split, ".tsv");
    FILE* out = std::fopen(path.c_str(), "w");
    if (out == nullptr) return Fail(absl::StrCat("cannot write ", path));
    std::vector<double> scores;
    std::vector<uint8_t> labels;
    std::string line;
    char buffer[32];
    for (int64_t i = 0; i < n; ++i) {
      double logit = absl::GetFlag(FLAGS_bias);
      line.clear();
      for (int j = 0; j < kNumeric; ++j) {
        line += '\t';
        if (uniform(rng) < 0.1) continue;  // missing: read as 0
        const int64_t count =
            std::max<int64_t>(0, static_cast<int64_t>(std::exp(1.0 + 1.3 * normal(rng))) - 1);
        logit += numeric_weights[j] * (std::log1p(double(count)) - 1.0);
        line += std::to_string(count);
      }
      for (int f = 0; f < fields; ++f) {
        ranks[f] = ZipfRank(uniform(rng), cardinalities[f], zipf);
        logit += weight(f, ranks[f]);
        std::snprintf(buffer, sizeof(buffer), "\t%08x", IdOfRank(f, ranks[f]));
        line += buffer;
      }
      for (const auto& pair : kPairs) {
        double dot = 0;
        for (int k = 0; k < kLatent; ++k) {
          dot += latent(pair[0], ranks[pair[0]], k) * latent(pair[1], ranks[pair[1]], k);
        }
        logit += interaction_scale * dot;
      }
      const uint8_t label = uniform(rng) < 1.0 / (1.0 + std::exp(-logit)) ? 1 : 0;
      std::fputc(label ? '1' : '0', out);
      line += '\n';
      std::fputs(line.c_str(), out);
      if (test) {
        scores.push_back(logit);
        labels.push_back(label);
      }
    }
    if (std::fclose(out) != 0) return Fail(absl::StrCat("error writing ", path));
    if (test) {
      absl::StatusOr<double> auc = Auc(scores, labels);
      if (!auc.ok()) return Fail(auc.status().ToString());
      true_auc = *auc;
    }
  }
  const std::string auc_path = dir + "/true_auc.txt";
  FILE* f = std::fopen(auc_path.c_str(), "w");
  if (f == nullptr || std::fprintf(f, "%.6f\n", true_auc) < 0 || std::fclose(f) != 0) {
    return Fail(absl::StrCat("cannot write ", auc_path));
  }
  std::printf("true_test_auc=%.6f\n", true_auc);
  return 0;
}

}  // namespace
}  // namespace fulcrum

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Writes synthetic Criteo-shaped click logs (TSV) labelled by a hidden true model.");
  absl::ParseCommandLine(argc, argv);
  return fulcrum::Run();
}
