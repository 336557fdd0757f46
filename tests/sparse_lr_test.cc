// Sparse logistic regression end to end with real processes: generated click
// data (200,000 examples over 2^20 features), three ps_server shards with
// FTRL, two workers; the learned model's test AUC must come within 0.01 of
// the true model's, and every shard holds its share of the rows.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "tests/cluster.h"
#include "tests/subprocess.h"

namespace fulcrum {
namespace {

TEST(SparseLrTest, ThreeShardsTwoWorkersFtrl_AucWithinPoint01OfTrueModel) {
  LocalCluster c("sparse_lr");
  const std::string data = c.dir() + "/data";
  absl::Status generated =
      GenerateClickData(data, {"--train_examples=200000", "--features_log2=20", "--seed=3"});
  ASSERT_TRUE(generated.ok()) << generated;
  double true_auc = 0;
  ASSERT_TRUE(absl::SimpleAtod(absl::StripAsciiWhitespace(ReadFileOrEmpty(data + "/true_auc.txt")),
                               &true_auc));

  ASSERT_TRUE(c.StartServer({"--model=sparse_lr", "--mode=async", "--num_workers=2",
                             "--num_shards=3", "--exit_when_done"})
                  .ok());
  ASSERT_TRUE(c.StartShard(1, 3, {"--exit_when_done"}).ok());
  ASSERT_TRUE(c.StartShard(2, 3, {"--exit_when_done"}).ok());
  const std::vector<std::string> files = {"--train_file=" + data + "/train.libsvm",
                                          "--test_file=" + data + "/test.libsvm"};
  const int a = *c.StartWorker("a", files);
  const int b = *c.StartWorker("b", files);
  // Every shard serves a share of the rows, and says so in status.
  absl::StatusOr<JobStatus> spread = c.WaitFor(
      [](const JobStatus& s) {
        if (s.shards_size() != 3) return false;
        for (const ShardStatus& shard : s.shards()) {
          if (!shard.up() || shard.rows() < 1000 || shard.pushes() == 0) return false;
        }
        return true;
      },
      absl::Minutes(2));
  ASSERT_TRUE(spread.ok()) << spread.status() << c.ServerLog();
  for (int i : {a, b}) {
    absl::StatusOr<int> code = c.WaitWorker(i, absl::Minutes(5));
    ASSERT_TRUE(code.ok());
    EXPECT_EQ(*code, 0) << c.WorkerLog(i);
  }
  ASSERT_EQ(*c.server().Wait(absl::Seconds(60)), 0) << c.ServerLog();
  for (int shard : {1, 2}) {
    absl::StatusOr<int> code = c.shard(shard).Wait(absl::Seconds(60));
    ASSERT_TRUE(code.ok()) << "shard " << shard << " did not exit with the job";
    EXPECT_EQ(*code, 0) << c.ShardLog(shard);
  }
  const std::string out = c.ServerOut();
  const double auc = ResultMetric(out, "test_auc");  // of the final model
  ASSERT_GT(auc, 0) << out;
  std::printf("sparse_lr: test_auc=%.4f true_auc=%.4f\n", auc, true_auc);
  EXPECT_NEAR(auc, true_auc, 0.01) << out << " true AUC " << true_auc;
  EXPECT_LE(auc, true_auc + 0.002) << "better than the true model: suspicious";
}

}  // namespace
}  // namespace fulcrum
