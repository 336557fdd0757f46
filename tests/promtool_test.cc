// Prometheus' own checker (promtool, Debian's prometheus package) on what
// Fulcrum exposes and ships: the /metrics output of a training ps_server and
// of a worker (`promtool check metrics`), the example scrape configuration
// and alert rules in deploy/prometheus (`check config`, `check rules`) and
// the rules' unit tests (`test rules`).
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/http_get.h"
#include "gtest/gtest.h"
#include "tests/cluster.h"
#include "tests/subprocess.h"

namespace fulcrum {
namespace {

constexpr char kPromtool[] = "/usr/bin/promtool";

// Runs promtool with `args` (through the shell, for stdin redirection);
// the error carries its output.
absl::Status Promtool(const std::string& args, const std::string& log_prefix) {
  return RunToCompletion({"/bin/sh", "-c", absl::StrCat(kPromtool, " ", args, " 2>&1")}, log_prefix,
                         absl::Minutes(1))
      .status();
}

class PromtoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::ifstream(kPromtool)) {
      FAIL() << kPromtool << " is missing: tools/install_deps.sh installs Debian's prometheus";
    }
  }
};

TEST_F(PromtoolTest, MetricsOfATrainingServerAndWorker_PassCheckMetrics) {
  LocalCluster c("promtool");
  ASSERT_TRUE(c.StartServer({"--model=softmax", "--mode=async", "--epochs=2", "--num_workers=1",
                             "--metrics_port=0"})
                  .ok());
  ASSERT_TRUE(c.StartWorker("w", {"--metrics_port=0", "--debug_step_delay_ms=2"}).ok());
  // Scraped while it trains: the histograms and counters have samples.
  ASSERT_TRUE(
      c.WaitFor([](const JobStatus& s) { return s.examples_seen() > 0; }, absl::Seconds(60)).ok());
  struct Target {
    std::string name;
    int port;
  };
  const std::vector<Target> targets = {{"ps_server", MetricsPort(c.ServerLog())},
                                       {"worker", MetricsPort(c.WorkerLog(0))}};
  for (const Target& target : targets) {
    ASSERT_GT(target.port, 0) << target.name << " logged no metrics port";
    absl::StatusOr<HttpResponse> scraped = HttpGet(target.port, "/metrics");
    ASSERT_TRUE(scraped.ok()) << scraped.status();
    ASSERT_EQ(scraped->code, 200);
    EXPECT_NE(scraped->body.find("fulcrum_"), std::string::npos) << scraped->body;
    const std::string file = absl::StrCat(c.dir(), "/", target.name, ".metrics");
    std::ofstream(file) << scraped->body;
    absl::Status checked = Promtool("check metrics < " + file, file + ".promtool");
    EXPECT_TRUE(checked.ok()) << target.name << ": " << checked;
  }
}

TEST_F(PromtoolTest, ShippedScrapeConfigAndAlertRules_AreValidAndTheirTestsPass) {
  const std::string dir = TestDir("promtool_rules");
  const std::string config = RunfilePath("deploy/prometheus/prometheus.yml");
  const std::string rules = RunfilePath("deploy/prometheus/alerts.yml");
  const std::string rule_tests = RunfilePath("deploy/prometheus/alerts_test.yml");
  absl::Status s = Promtool("check config " + config, dir + "/config");
  EXPECT_TRUE(s.ok()) << s;
  s = Promtool("check rules " + rules, dir + "/rules");
  EXPECT_TRUE(s.ok()) << s;
  s = Promtool("test rules " + rule_tests, dir + "/rule_tests");
  EXPECT_TRUE(s.ok()) << s;
}

}  // namespace
}  // namespace fulcrum
