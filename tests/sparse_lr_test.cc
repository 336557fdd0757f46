// Sparse logistic regression end to end with real processes: generated click
// data (200,000 examples over 2^20 features), three ps_server shards with
// FTRL, two workers; the learned model's test AUC must come within 0.01 of
// the true model's, and every shard holds its share of the rows.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "common/http_get.h"
#include "gtest/gtest.h"
#include "tests/cluster.h"
#include "tests/subprocess.h"

namespace fulcrum {
namespace {

// Generated click data (200,000 examples over 2^20 features) in `dir`, and
// the true model's test AUC.
void ClickData(const std::string& dir, double* true_auc) {
  absl::Status generated =
      GenerateClickData(dir, {"--train_examples=200000", "--features_log2=20", "--seed=3"});
  ASSERT_TRUE(generated.ok()) << generated;
  ASSERT_TRUE(absl::SimpleAtod(absl::StripAsciiWhitespace(ReadFileOrEmpty(dir + "/true_auc.txt")),
                               true_auc));
}

TEST(SparseLrTest, ThreeShardsTwoWorkersFtrl_AucWithinPoint01OfTrueModel) {
  LocalCluster c("sparse_lr");
  const std::string data = c.dir() + "/data";
  double true_auc = 0;
  ASSERT_NO_FATAL_FAILURE(ClickData(data, &true_auc));

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

// The same model with the life of a feature on: ids admitted at their
// second push (a counting Bloom filter), a cap of 40,000 rows per shard
// evicting the least recently updated (the data has ~494,000 distinct ids,
// ~230,000 of them seen twice or more), and shard 1 replicated. The job
// still learns, and status and /metrics say what admission and eviction did.
TEST(SparseLrTest, AdmissionAndEvictionOnAReplicatedShard_LearnsAndReportsWhatTheyDid) {
  LocalCluster c("sparse_lr_lifecycle");
  const std::string data = c.dir() + "/data";
  double true_auc = 0;
  ASSERT_NO_FATAL_FAILURE(ClickData(data, &true_auc));
  const std::string job = c.dir() + "/lifecycle.textproto";
  std::ofstream(job) << R"(
model: "sparse_lr"
mode: ASYNC
num_workers: 2
epochs: 3
batch_size: 64
tensors { name: "lr/bias" shape: [1] initializer: ZEROS }
sparse_tables {
  name: "lr/w" dim: 1 initializer: ZEROS max_rows: 40000
  admission { min_count: 2 counter: COUNTING_BLOOM bloom_cells: 4194304 }
  eviction { when_full: LEAST_RECENTLY_UPDATED }
}
optimizer { kind: FTRL learning_rate: 1.0 l1: 0.1 l2: 0.1 }
)";
  ASSERT_TRUE(
      c.StartServer({"--job=" + job, "--num_shards=2", "--exit_when_done", "--metrics_port=0"})
          .ok());
  ASSERT_TRUE(c.StartShard(1, 2, {"--exit_when_done"}).ok());
  ASSERT_TRUE(c.StartBackup(1, 2, {"--exit_when_done"}).ok());
  const std::vector<std::string> files = {"--train_file=" + data + "/train.libsvm",
                                          "--test_file=" + data + "/test.libsvm"};
  const int a = *c.StartWorker("a", files);
  const int b = *c.StartWorker("b", files);
  // The coordinator's shard reports its table: rows at most the cap (and
  // the slack above it), ids refused, admitted and evicted.
  absl::StatusOr<JobStatus> evicting = c.WaitFor(
      [](const JobStatus& s) {
        return s.sparse_tables_size() == 1 && s.sparse_tables(0).evicted() > 0;
      },
      absl::Minutes(3));
  ASSERT_TRUE(evicting.ok()) << evicting.status() << c.ServerLog();
  const SparseTableStatus& table = evicting->sparse_tables(0);
  EXPECT_EQ(table.name(), "lr/w");
  EXPECT_LE(table.rows(), 40000u + 40000 / 8 + 64);
  EXPECT_GT(table.refused(), 10000u);
  EXPECT_GT(table.admitted(), 40000u);
  // The cells, split evenly over the table's lock stripes, and 4 bytes per
  // block of 4096 cells.
  EXPECT_NEAR(double(table.counter_bytes()), 4194304 + 4096, 200);
  EXPECT_GT(table.bloom_false_positive_rate(), 0);
  EXPECT_LT(table.bloom_false_positive_rate(), 0.05);
  absl::StatusOr<HttpResponse> scraped = HttpGet(MetricsPort(c.ServerLog()), "/metrics");
  ASSERT_TRUE(scraped.ok()) << scraped.status();
  const std::string evicted_line = "fulcrum_table_evicted_total{table=\"lr/w\"} ";
  const size_t at = scraped->body.find(evicted_line);
  ASSERT_NE(at, std::string::npos) << scraped->body;
  double evicted = 0;
  ASSERT_TRUE(absl::SimpleAtod(
      scraped->body.substr(at + evicted_line.size(),
                           scraped->body.find('\n', at) - at - evicted_line.size()),
      &evicted));
  EXPECT_GT(evicted, 0);

  for (int i : {a, b}) {
    absl::StatusOr<int> code = c.WaitWorker(i, absl::Minutes(5));
    ASSERT_TRUE(code.ok());
    EXPECT_EQ(*code, 0) << c.WorkerLog(i);
  }
  ASSERT_EQ(*c.server().Wait(absl::Seconds(60)), 0) << c.ServerLog();
  const std::string out = c.ServerOut();
  const double auc = ResultMetric(out, "test_auc");
  std::printf("sparse_lr with admission and eviction: test_auc=%.4f true_auc=%.4f\n", auc,
              true_auc);
  EXPECT_NEAR(auc, true_auc, 0.03) << out;
}

}  // namespace
}  // namespace fulcrum
