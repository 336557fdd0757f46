// Mini-batch k-means through Fulcrum (worker/examples/kmeans, on the public
// worker API) against scikit-learn's KMeans (Debian's python3-sklearn) on
// the same data with the same seed budget (one k-means++ initialisation):
// the final inertia within 2% of the oracle's.
#include <cstdio>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "tests/cluster.h"
#include "tests/subprocess.h"

namespace fulcrum {
namespace {

// "inertia=1936957.8 seconds=7.27" -> 1936957.8
double Field(const std::string& out, const std::string& name) {
  const size_t at = out.find(name + "=");
  double v = -1;
  if (at == std::string::npos ||
      !absl::SimpleAtod(out.substr(at + name.size() + 1, out.find(' ', at) - at - name.size() - 1),
                        &v)) {
    return -1;
  }
  return v;
}

TEST(KMeansExampleTest, TwoWorkers_InertiaWithinTwoPercentOfScikitLearn) {
  LocalCluster c("kmeans");
  absl::StatusOr<std::string> oracle =
      RunToCompletion({"/usr/bin/python3", RunfilePath("tests/oracles/kmeans_sklearn.py"),
                       "--k=10", "--n_init=1", "--seed=1"},
                      c.dir() + "/sklearn", absl::Minutes(5));
  ASSERT_TRUE(oracle.ok()) << oracle.status()
                           << " (tools/install_deps.sh installs python3-sklearn)";
  const double sklearn_inertia = Field(*oracle, "inertia");
  ASSERT_GT(sklearn_inertia, 0) << *oracle;

  absl::StatusOr<std::string> out =
      c.RunJob("worker/examples/kmeans/kmeans.textproto", {}, "worker/examples/kmeans/kmeans_worker",
               {}, 2, absl::Minutes(5));
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

}  // namespace
}  // namespace fulcrum
