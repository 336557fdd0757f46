// The classic learners of worker/examples (built on the public worker API)
// against independent implementations from Debian's packages, on the same
// data: each job runs whole (2 workers, a ps_server) and must reach its bar
// against the oracle.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/cluster.h"
#include "tests/subprocess.h"

namespace fulcrum {
namespace {

// Runs tests/oracles/`script` with `args` and returns its field `name`
// ("inertia=1936957.8 seconds=7.27"); -1 with a test failure if it fails.
double Oracle(const LocalCluster& c, const std::string& script, std::vector<std::string> args,
              const std::string& name) {
  args.insert(args.begin(), {"/usr/bin/python3", RunfilePath("tests/oracles/" + script)});
  absl::StatusOr<std::string> out = RunToCompletion(args, c.dir() + "/" + script, absl::Minutes(5));
  EXPECT_TRUE(out.ok()) << out.status() << " (tools/install_deps.sh installs the oracles)";
  if (!out.ok()) return -1;
  const size_t at = out->find(name + "=");
  double v = -1;
  if (at == std::string::npos ||
      !absl::SimpleAtod(
          out->substr(at + name.size() + 1, out->find(' ', at) - at - name.size() - 1), &v)) {
    ADD_FAILURE() << "no " << name << " in " << script << "'s output: " << *out;
    return -1;
  }
  return v;
}

TEST(LearnersTest, KMeans_InertiaWithinTwoPercentOfScikitLearn) {
  LocalCluster c("kmeans");
  // scikit-learn's KMeans: Lloyd from greedy k-means++ seeds, one of them.
  const double sklearn_inertia =
      Oracle(c, "kmeans_sklearn.py", {"--k=10", "--n_init=1", "--seed=1"}, "inertia");
  ASSERT_GT(sklearn_inertia, 0);

  absl::StatusOr<std::string> out =
      c.RunJob("worker/examples/kmeans/kmeans.textproto", {},
               "worker/examples/kmeans/kmeans_worker", {}, 2, absl::Minutes(5));
  ASSERT_TRUE(out.ok()) << out.status();
  const double inertia = ResultMetric(*out, "inertia");
  std::printf("kmeans: inertia=%.0f scikit-learn=%.0f (%+.2f%%)\n", inertia, sklearn_inertia,
              100 * (inertia / sklearn_inertia - 1));
  ASSERT_GT(inertia, 0) << *out;
  EXPECT_LE(inertia, 1.02 * sklearn_inertia) << *out;
  // Not better than Lloyd's own fixed point by more than seeds can explain:
  // the figure is a real inertia, not a broken evaluation.
  EXPECT_GE(inertia, 0.97 * sklearn_inertia) << *out;
}

TEST(LearnersTest, Pca_ExplainedVarianceWithinOnePercentOfNumpysSvd) {
  LocalCluster c("pca");
  const double svd = Oracle(c, "pca_numpy.py", {"--k=16"}, "explained_variance");
  ASSERT_GT(svd, 0);

  absl::StatusOr<std::string> out =
      c.RunJob("worker/examples/pca/pca.textproto", {}, "worker/examples/pca/pca_worker", {}, 2,
               absl::Minutes(5));
  ASSERT_TRUE(out.ok()) << out.status();
  const double explained = ResultMetric(*out, "explained_variance");
  std::printf("pca: explained_variance=%.4f numpy=%.4f (%+.2f%%)\n", explained, svd,
              100 * (explained / svd - 1));
  EXPECT_GE(explained, 0.99 * svd) << *out;
  // No subspace of 16 dimensions explains more than the top 16 components.
  EXPECT_LE(explained, svd + 1e-4) << *out;
}

TEST(LearnersTest, MatrixFactorization_TestRmseWithinFivePercentOfTheNoiseFloor) {
  LocalCluster c("mf");
  const std::string data = c.dir() + "/ratings";
  absl::StatusOr<std::string> generated =
      RunToCompletion({RunfilePath("tools/gen_ratings"), "--out_dir=" + data, "--users=1000",
                       "--items=1000", "--rank=5", "--density=0.3", "--noise=0.3", "--seed=2"},
                      data, absl::Minutes(2));
  ASSERT_TRUE(generated.ok()) << generated.status();
  double floor = 0;
  ASSERT_TRUE(absl::SimpleAtod(ReadFileOrEmpty(data + "/noise_floor.txt"), &floor)) << *generated;
  ASSERT_GT(floor, 0.25);  // the noise drawn: about --noise

  absl::StatusOr<std::string> out =
      c.RunJob("worker/examples/mf/mf.textproto", {}, "worker/examples/mf/mf_worker",
               {"--train_file=" + data + "/train.tsv", "--test_file=" + data + "/test.tsv"}, 2,
               absl::Minutes(5));
  ASSERT_TRUE(out.ok()) << out.status();
  const double rmse = ResultMetric(*out, "rmse");
  std::printf("mf: test rmse=%.4f noise floor=%.4f (%+.2f%%)\n", rmse, floor,
              100 * (rmse / floor - 1));
  ASSERT_GT(rmse, 0) << *out;
  EXPECT_LE(rmse, 1.05 * floor) << *out;
}

TEST(LearnersTest, BoostedTrees_TestAucWithinPoint01OfXgboost) {
  LocalCluster c("gbdt");
  // XGBoost's hist method, the job's settings: 20 trees of depth 4, eta 0.3,
  // lambda 1, 32 bins, Fashion-MNIST's class 6 against the rest.
  const double xgboost_auc = Oracle(
      c, "xgboost_hist.py",
      {"--positive_class=6", "--trees=20", "--depth=4", "--eta=0.3", "--bins=32"}, "test_auc");
  ASSERT_GT(xgboost_auc, 0.5);

  absl::StatusOr<std::string> out =
      c.RunJob("worker/examples/gbdt/gbdt.textproto", {}, "worker/examples/gbdt/gbdt_worker",
               {"--positive_class=6"}, 2, absl::Minutes(10));
  ASSERT_TRUE(out.ok()) << out.status();
  const double auc = ResultMetric(*out, "test_auc");
  std::printf("gbdt: test_auc=%.4f xgboost=%.4f\n", auc, xgboost_auc);
  EXPECT_NEAR(auc, xgboost_auc, 0.01) << *out;
}

}  // namespace
}  // namespace fulcrum
