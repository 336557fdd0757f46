// The example model that Fulcrum does not ship (worker/examples/linear_svm,
// built against the public worker header only) trains end to end: generated
// click data, a ps_server started with the example's job file, two example
// workers.
#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "gtest/gtest.h"
#include "tests/cluster.h"
#include "tests/subprocess.h"

namespace fulcrum {
namespace {

// The share of the larger class in a libsvm file: what always answering it
// scores.
double MajorityRate(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  int64_t positive = 0;
  int64_t all = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    ++all;
    positive += line[0] == '1';
  }
  return all == 0 ? 1.0 : std::max(positive, all - positive) / static_cast<double>(all);
}

TEST(LinearSvmExampleTest, TwoExampleWorkers_BeatTheMajorityClassByTwoPoints) {
  LocalCluster c("linear_svm");
  const std::string data = c.dir() + "/data";
  absl::Status generated =
      GenerateClickData(data, {"--train_examples=60000", "--test_examples=20000", "--seed=3"});
  ASSERT_TRUE(generated.ok()) << generated;
  const double majority = MajorityRate(data + "/test.libsvm");

  ASSERT_TRUE(
      c.StartServer({"--job=" + RunfilePath("worker/examples/linear_svm/linear_svm.textproto"),
                     "--exit_when_done"})
          .ok())
      << c.ServerLog();
  const std::vector<std::string> flags = {"--coordinator=" + c.address(),
                                          "--train_file=" + data + "/train.libsvm",
                                          "--test_file=" + data + "/test.libsvm"};
  const std::string binary = RunfilePath("worker/examples/linear_svm/linear_svm_worker");
  Subprocess workers[2];
  for (int i = 0; i < 2; ++i) {
    std::vector<std::string> argv = {binary};
    argv.insert(argv.end(), flags.begin(), flags.end());
    const std::string log = c.dir() + "/svm" + std::to_string(i);
    ASSERT_TRUE(workers[i].Start(argv, log + ".out", log + ".err").ok());
  }
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<int> code = workers[i].Wait(absl::Minutes(3));
    ASSERT_TRUE(code.ok());
    EXPECT_EQ(*code, 0) << ReadFileOrEmpty(c.dir() + "/svm" + std::to_string(i) + ".err");
  }
  ASSERT_EQ(*c.server().Wait(absl::Seconds(60)), 0) << c.ServerLog();
  const std::string out = c.ServerOut();
  EXPECT_NE(out.find("model=linear_svm"), std::string::npos) << out;
  const double accuracy = ResultAccuracy(out);
  std::printf("linear_svm: test_accuracy=%.4f majority=%.4f\n", accuracy, majority);
  EXPECT_GT(accuracy, majority + 0.02) << out;
}

}  // namespace
}  // namespace fulcrum
