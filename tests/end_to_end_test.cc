// End to end: real ps_server and worker processes train on the real
// Fashion-MNIST files (Debian's dataset-fashion-mnist), and psctl reads the
// status.
#include <signal.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/subprocess.h"

namespace fulcrum {
namespace {

constexpr absl::Duration kJobTimeout = absl::Minutes(4);

// Parses test_accuracy=... out of ps_server's "result:" line; -1 if absent.
double ResultAccuracy(const std::string& out) {
  for (absl::string_view line : absl::StrSplit(out, '\n')) {
    if (!absl::StartsWith(line, "result:")) continue;
    for (absl::string_view field : absl::StrSplit(line, ' ')) {
      double v;
      if (absl::ConsumePrefix(&field, "test_accuracy=") &&
          absl::SimpleAtod(field, &v)) {
        return v;
      }
    }
  }
  return -1;
}

struct Cluster {
  std::string dir;
  Subprocess ps;
  std::vector<std::unique_ptr<Subprocess>> workers;
  int port = 0;

  std::string address() const { return absl::StrCat("127.0.0.1:", port); }

  void StartServer(const std::vector<std::string>& flags) {
    std::vector<std::string> argv = {RunfilePath("server/ps_server"),
                                     "--host=127.0.0.1", "--port=0",
                                     "--port_file=" + dir + "/port",
                                     "--status_interval=0"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    ASSERT_TRUE(ps.Start(argv, dir + "/ps.out", dir + "/ps.err").ok());
    absl::StatusOr<int> p = WaitForPortFile(dir + "/port", absl::Seconds(30));
    ASSERT_TRUE(p.ok()) << ReadFileOrEmpty(dir + "/ps.err");
    port = *p;
  }

  void StartWorkers(int n) {
    for (int i = 0; i < n; ++i) {
      auto w = std::make_unique<Subprocess>();
      const std::string log = absl::StrCat(dir, "/worker", i);
      ASSERT_TRUE(w->Start({RunfilePath("worker/worker"),
                            "--coordinator=" + address(),
                            absl::StrCat("--worker_name=w", i)},
                           log + ".out", log + ".err")
                      .ok());
      workers.push_back(std::move(w));
    }
  }

  void ExpectWorkersExitZero() {
    for (size_t i = 0; i < workers.size(); ++i) {
      absl::StatusOr<int> code = workers[i]->Wait(kJobTimeout);
      ASSERT_TRUE(code.ok()) << "worker " << i << " still running";
      EXPECT_EQ(*code, 0) << ReadFileOrEmpty(absl::StrCat(dir, "/worker", i, ".err"));
    }
  }
};

class EndToEndTest : public ::testing::TestWithParam<std::string> {};

TEST_P(EndToEndTest, TwoWorkersSoftmaxOneEpoch_PassesPoint80) {
  Cluster c;
  c.dir = TestDir("e2e_" + GetParam());
  c.StartServer({"--model=softmax", "--mode=" + GetParam(), "--epochs=1",
                 "--num_workers=2", "--exit_when_done"});
  c.StartWorkers(2);
  c.ExpectWorkersExitZero();
  absl::StatusOr<int> code = c.ps.Wait(absl::Seconds(30));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0);
  const std::string out = ReadFileOrEmpty(c.dir + "/ps.out");
  const double accuracy = ResultAccuracy(out);
  EXPECT_GT(accuracy, 0.80) << out;
  EXPECT_NE(out.find("mode=" + GetParam()), std::string::npos) << out;
}

INSTANTIATE_TEST_SUITE_P(Modes, EndToEndTest, ::testing::Values("sync", "async"));

TEST(PsctlTest, StatusOfFinishedJob_TableAndJson) {
  Cluster c;
  c.dir = TestDir("psctl");
  c.StartServer({"--model=softmax", "--mode=sync", "--epochs=1", "--num_workers=2"});
  c.StartWorkers(2);
  c.ExpectWorkersExitZero();

  Subprocess psctl;
  ASSERT_TRUE(psctl.Start({RunfilePath("tools/psctl"), "status",
                           "--coordinator=" + c.address(), "--json"},
                          c.dir + "/json.out", c.dir + "/json.err")
                  .ok());
  ASSERT_EQ(*psctl.Wait(absl::Seconds(30)), 0) << ReadFileOrEmpty(c.dir + "/json.err");
  const std::string json = ReadFileOrEmpty(c.dir + "/json.out");
  for (const char* want :
       {"\"state\": \"FINISHED\"", "\"mode\": \"SYNC\"", "\"model\": \"softmax\"",
        "\"examples_seen\": \"60000\"", "\"test_accuracy\"", "\"partition\"",
        "\"name\": \"w0\"", "\"name\": \"w1\""}) {
    EXPECT_NE(json.find(want), std::string::npos) << want << " in\n" << json;
  }

  ASSERT_TRUE(psctl.Start({RunfilePath("tools/psctl"), "status",
                           "--coordinator=" + c.address()},
                          c.dir + "/table.out", c.dir + "/table.err")
                  .ok());
  ASSERT_EQ(*psctl.Wait(absl::Seconds(30)), 0);
  const std::string table = ReadFileOrEmpty(c.dir + "/table.out");
  EXPECT_NE(table.find("FINISHED"), std::string::npos) << table;
  EXPECT_NE(table.find("w0"), std::string::npos) << table;
  EXPECT_NE(table.find("evaluator"), std::string::npos) << table;

  // The server keeps serving status until told to stop; SIGTERM stops it
  // cleanly.
  c.ps.Signal(SIGTERM);
  absl::StatusOr<int> code = c.ps.Wait(absl::Seconds(30));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0);
}

TEST(PsctlTest, NoServer_FailsWithMessage) {
  const std::string dir = TestDir("psctl_down");
  Subprocess psctl;
  ASSERT_TRUE(psctl.Start({RunfilePath("tools/psctl"), "status",
                           "--coordinator=127.0.0.1:1", "--timeout=2"},
                          dir + "/out", dir + "/err")
                  .ok());
  EXPECT_EQ(*psctl.Wait(absl::Seconds(30)), 1);
  EXPECT_NE(ReadFileOrEmpty(dir + "/err").find("UNAVAILABLE"), std::string::npos);
}

TEST(WorkerTest, MissingDataFile_ExitsNamingTheFile) {
  const std::string dir = TestDir("missing_data");
  Subprocess worker;
  ASSERT_TRUE(worker.Start({RunfilePath("worker/worker"),
                            "--coordinator=127.0.0.1:1",
                            "--data_dir=" + dir + "/nowhere"},
                           dir + "/out", dir + "/err")
                  .ok());
  EXPECT_EQ(*worker.Wait(absl::Seconds(30)), 1);
  const std::string err = ReadFileOrEmpty(dir + "/err");
  EXPECT_NE(err.find(dir + "/nowhere/train-images-idx3-ubyte.gz"), std::string::npos)
      << err;
}

TEST(WorkerTest, MalformedDataFile_ExitsNamingTheFile) {
  const std::string dir = TestDir("bad_data");
  // Garbage where the training images should be.
  {
    std::ofstream f(dir + "/train-images-idx3-ubyte.gz");
    f << "this is not an IDX file";
  }
  Subprocess worker;
  ASSERT_TRUE(worker.Start({RunfilePath("worker/worker"),
                            "--coordinator=127.0.0.1:1", "--data_dir=" + dir},
                           dir + "/out", dir + "/err")
                  .ok());
  EXPECT_EQ(*worker.Wait(absl::Seconds(30)), 1);
  const std::string err = ReadFileOrEmpty(dir + "/err");
  EXPECT_NE(err.find("train-images-idx3-ubyte.gz"), std::string::npos) << err;
  EXPECT_EQ(err.find("Segmentation"), std::string::npos);
}

TEST(PsServerTest, BadFlag_ExitsWithMessage) {
  const std::string dir = TestDir("bad_flag");
  Subprocess ps;
  ASSERT_TRUE(ps.Start({RunfilePath("server/ps_server"), "--port=0", "--mode=bogus"},
                       dir + "/out", dir + "/err")
                  .ok());
  EXPECT_EQ(*ps.Wait(absl::Seconds(30)), 2);
  EXPECT_NE(ReadFileOrEmpty(dir + "/err").find("--mode=bogus"), std::string::npos);
}

}  // namespace
}  // namespace fulcrum
