// gen_ratings: a synthetic recommendation data set with a known noise floor,
// so matrix factorization can be judged against the best any model can do.
//
//   gen_ratings --out_dir=DIR [--users=1000] [--items=1000] [--rank=5]
//               [--density=0.2] [--noise=0.3] [--test_fraction=0.1] [--seed=1]
//
// Model: every user u and item i has a hidden factor vector of --rank
// entries, each N(0, 1); the rating of (u, i) is their dot product divided by
// sqrt(rank) (unit variance) plus N(0, noise^2). Each (user, item) pair is
// rated with probability --density (every user and every item at least
// once in training); a --test_fraction of the ratings is held out.
//
// Writes DIR/train.tsv and DIR/test.tsv ("user<TAB>item<TAB>rating" lines)
// and DIR/noise_floor.txt: the test RMSE of the true model (the noise on
// the held-out ratings, the least RMSE any learner can expect); prints
// "noise_floor_rmse=<rmse>".
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/file_system.h"

ABSL_FLAG(std::string, out_dir, "", "Folder to write the data set into.");
ABSL_FLAG(int64_t, users, 1000, "Users.");
ABSL_FLAG(int64_t, items, 1000, "Items.");
ABSL_FLAG(int, rank, 5, "Rank of the hidden rating matrix.");
ABSL_FLAG(double, density, 0.2, "Probability that a (user, item) pair is rated.");
ABSL_FLAG(double, noise, 0.3, "Standard deviation of the Gaussian noise on every rating.");
ABSL_FLAG(double, test_fraction, 0.1, "Share of the ratings held out for testing.");
ABSL_FLAG(uint64_t, seed, 1, "Seed; the same seed gives the same files.");

namespace fulcrum {
namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "gen_ratings: %s\n", message.c_str());
  return 1;
}

int Run() {
  const std::string dir = absl::GetFlag(FLAGS_out_dir);
  const int64_t users = absl::GetFlag(FLAGS_users);
  const int64_t items = absl::GetFlag(FLAGS_items);
  const int rank = absl::GetFlag(FLAGS_rank);
  const double density = absl::GetFlag(FLAGS_density);
  const double noise = absl::GetFlag(FLAGS_noise);
  const double test_fraction = absl::GetFlag(FLAGS_test_fraction);
  if (dir.empty()) return Fail("--out_dir is required");
  if (users < 1 || items < 1 || rank < 1) return Fail("--users, --items and --rank must be >= 1");
  if (!(density > 0 && density <= 1)) return Fail("--density must be in (0, 1]");
  if (!(noise >= 0)) return Fail("--noise must be >= 0");
  if (!(test_fraction > 0 && test_fraction < 1)) return Fail("--test_fraction must be in (0, 1)");
  if (absl::Status s = PosixFileSystem()->CreateDir(dir); !s.ok()) {
    return Fail(absl::StrCat("--out_dir ", dir, ": ", s.message()));
  }

  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  std::normal_distribution<double> gaussian(0, 1);
  std::uniform_real_distribution<double> uniform(0, 1);
  std::vector<double> user_factors(users * rank);
  std::vector<double> item_factors(items * rank);
  for (double& f : user_factors) f = gaussian(rng);
  for (double& f : item_factors) f = gaussian(rng);
  const double scale = 1 / std::sqrt(static_cast<double>(rank));

  const std::string train_path = dir + "/train.tsv";
  const std::string test_path = dir + "/test.tsv";
  FILE* train = std::fopen(train_path.c_str(), "w");
  FILE* test = std::fopen(test_path.c_str(), "w");
  if (train == nullptr || test == nullptr) return Fail("cannot write into " + dir);
  std::vector<bool> item_seen(items, false);
  double squared_noise = 0;
  int64_t tested = 0;
  int64_t trained = 0;
  for (int64_t u = 0; u < users; ++u) {
    // Every user and every item rated at least once in training: the
    // u-th user surely rates item u % items.
    for (int64_t i = 0; i < items; ++i) {
      const bool sure = i == u % items || (!item_seen[i] && u == users - 1);
      if (!sure && uniform(rng) >= density) continue;
      double truth = 0;
      for (int k = 0; k < rank; ++k)
        truth += user_factors[u * rank + k] * item_factors[i * rank + k];
      truth *= scale;
      const double error = noise * gaussian(rng);
      const std::string line = absl::StrFormat("%d\t%d\t%.6f\n", u, i, truth + error);
      if (!sure && uniform(rng) < test_fraction) {
        std::fputs(line.c_str(), test);
        squared_noise += error * error;
        ++tested;
      } else {
        std::fputs(line.c_str(), train);
        item_seen[i] = true;
        ++trained;
      }
    }
  }
  if (std::fclose(train) != 0 || std::fclose(test) != 0) return Fail("error writing into " + dir);
  if (tested == 0) return Fail("no test ratings: raise --density or --test_fraction");
  const double floor = std::sqrt(squared_noise / tested);
  const std::string floor_path = dir + "/noise_floor.txt";
  FILE* f = std::fopen(floor_path.c_str(), "w");
  if (f == nullptr || std::fprintf(f, "%.6f\n", floor) < 0 || std::fclose(f) != 0) {
    return Fail("cannot write " + floor_path);
  }
  std::printf("train_ratings=%lld test_ratings=%lld noise_floor_rmse=%.6f\n",
              static_cast<long long>(trained), static_cast<long long>(tested), floor);
  return 0;
}

}  // namespace
}  // namespace fulcrum

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Writes a synthetic low-rank ratings data set with known noise.");
  absl::ParseCommandLine(argc, argv);
  return fulcrum::Run();
}
