// End to end: real ps_server and worker processes train on the real
// Fashion-MNIST files (Debian's dataset-fashion-mnist), and psctl reads the
// status.
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/cluster.h"
#include "tests/subprocess.h"

namespace fulcrum {
namespace {

constexpr absl::Duration kJobTimeout = absl::Minutes(4);

// Waits for `workers` and then the server (--exit_when_done) to exit 0.
void WaitForExits(LocalCluster& c, const std::vector<int>& workers) {
  for (int i : workers) {
    absl::StatusOr<int> code = c.WaitWorker(i, kJobTimeout);
    ASSERT_TRUE(code.ok());
    EXPECT_EQ(*code, 0) << c.WorkerLog(i);
  }
  absl::StatusOr<int> code = c.server().Wait(absl::Seconds(30));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0) << c.ServerLog();
}

class EndToEndTest : public ::testing::TestWithParam<std::string> {};

TEST_P(EndToEndTest, TwoWorkersSoftmaxOneEpoch_PassesPoint80) {
  LocalCluster c("e2e_" + GetParam().substr(0, 4));
  ASSERT_TRUE(c.StartServer({"--model=softmax", "--mode=" + GetParam(), "--epochs=1",
                             "--num_workers=2", "--exit_when_done"})
                  .ok());
  ASSERT_TRUE(c.StartWorker("w0").ok());
  ASSERT_TRUE(c.StartWorker("w1").ok());
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<int> code = c.WaitWorker(i, kJobTimeout);
    ASSERT_TRUE(code.ok());
    EXPECT_EQ(*code, 0) << c.WorkerLog(i);
  }
  absl::StatusOr<int> code = c.server().Wait(absl::Seconds(30));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0);
  const std::string out = c.ServerOut();
  EXPECT_GT(ResultAccuracy(out), 0.80) << out;
  EXPECT_NE(out.find("mode=" + GetParam()), std::string::npos) << out;
}

INSTANTIATE_TEST_SUITE_P(Modes, EndToEndTest, ::testing::Values("sync", "async", "ssp:2"),
                         [](const auto& info) {
                           std::string name = info.param;
                           return name == "ssp:2" ? std::string("ssp2") : name;
                         });

// A job from a file: the shipped softmax job, with the flags that are
// changed from their defaults (epochs, mode) overriding it.
TEST(JobFileTest, ShippedSoftmaxJobWithFlagsOverridingIt_Trains) {
  LocalCluster c("job_file");
  ASSERT_TRUE(c.StartServer({"--job=" + RunfilePath("server/jobs/softmax.textproto"),
                             "--mode=async", "--epochs=1", "--num_workers=2", "--exit_when_done"})
                  .ok())
      << c.ServerLog();
  const int a = *c.StartWorker("a");
  const int b = *c.StartWorker("b");
  for (int i : {a, b}) {
    absl::StatusOr<int> code = c.WaitWorker(i, kJobTimeout);
    ASSERT_TRUE(code.ok());
    EXPECT_EQ(*code, 0) << c.WorkerLog(i);
  }
  ASSERT_TRUE(c.server().Wait(absl::Seconds(30)).ok());
  const std::string out = c.ServerOut();
  EXPECT_GT(ResultAccuracy(out), 0.80) << out;
  EXPECT_NE(out.find("mode=async"), std::string::npos) << out;         // the flag's
  EXPECT_NE(c.ServerLog().find("adagrad(lr=0.01"), std::string::npos)  // the file's
      << c.ServerLog();
}

TEST(JobFileTest, FlagAtItsDefaultValue_StillOverridesTheFile) {
  const std::string dir = TestDir("job_mode_flag");
  const std::string job = dir + "/job.textproto";
  std::ofstream(job) << "model: \"m\"\nmode: ASYNC\nepochs: 3\n"
                     << "tensors { name: \"w\" shape: [4] }\n";
  LocalCluster c("job_mode_flag");
  // --mode=sync is the flag's default: given, it still wins over the file;
  // --epochs=0 is the "the job's own" sentinel: the file's 3 stay.
  ASSERT_TRUE(c.StartServer({"--job=" + job, "--mode=sync", "--epochs=0"}).ok()) << c.ServerLog();
  absl::StatusOr<JobStatus> status = c.Status();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->mode(), SYNC);
  EXPECT_EQ(status->epochs(), 3u);
}

TEST(JobFileTest, JobFileWithAMistake_ExitsTwoNamingTheField) {
  const std::string dir = TestDir("bad_job");
  const std::string job = dir + "/job.textproto";
  std::ofstream(job) << "model: \"softmax\"\n"
                     << "tensors { name: \"softmax/w\" shape: [784, 0] }\n";
  Subprocess ps;
  ASSERT_TRUE(ps.Start({RunfilePath("server/ps_server"), "--port=0", "--job=" + job}, dir + "/out",
                       dir + "/err")
                  .ok());
  EXPECT_EQ(*ps.Wait(absl::Seconds(30)), 2);
  const std::string err = ReadFileOrEmpty(dir + "/err");
  EXPECT_NE(err.find("tensors[0].shape[1] is 0"), std::string::npos) << err;
  EXPECT_NE(err.find(job), std::string::npos) << err;
}

// What a job file declares is the job, and errors found in what its fields
// say name the file as parse errors do: a file of no tensors is refused
// whatever its model's name (it does not become that built-in model), and
// so is a negative learning rate.
TEST(JobFileTest, NoTensorsOrABadRate_ExitsTwoNamingTheFile) {
  const std::string dir = TestDir("job_says");
  for (const std::string& text :
       {std::string("model: \"mlp\"\n"),
        std::string("tensors { name: \"w\" shape: [4] }\noptimizer { learning_rate: -1 }\n")}) {
    const std::string job = dir + "/job.textproto";
    std::ofstream(job) << text;
    Subprocess ps;
    ASSERT_TRUE(ps.Start({RunfilePath("server/ps_server"), "--port=0", "--job=" + job},
                         dir + "/out", dir + "/err")
                    .ok());
    EXPECT_EQ(*ps.Wait(absl::Seconds(30)), 2) << text;
    const std::string err = ReadFileOrEmpty(dir + "/err");
    EXPECT_NE(err.find("--job=" + job), std::string::npos) << err;
    EXPECT_NE(
        err.find(text.find("tensors") == std::string::npos ? "declares no tensors" : "learning"),
        std::string::npos)
        << err;
  }
}

// A job file without a model is not called softmax, and the optimizers its
// tensors have of their own show at start-up and in status.
TEST(JobFileTest, OwnOptimizersAndNoModel_ShownAsTheyAre) {
  const std::string dir = TestDir("job_own_optimizers");
  const std::string job = dir + "/job.textproto";
  std::ofstream(job)
      << "tensors { name: \"w\" shape: [4] }\n"
      << "tensors { name: \"slow\" shape: [4] optimizer { learning_rate: 0.0001 } }\n";
  LocalCluster c("job_own_optimizers");
  ASSERT_TRUE(c.StartServer({"--job=" + job}).ok()) << c.ServerLog();
  absl::StatusOr<JobStatus> status = c.Status();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->model(), "");
  ASSERT_EQ(status->own_optimizers_size(), 1);
  EXPECT_EQ(status->own_optimizers(0).rfind("slow: adam(lr=0.0001", 0), 0u)
      << status->own_optimizers(0);
  EXPECT_NE(c.ServerLog().find("own optimizers: slow: adam(lr=0.0001"), std::string::npos)
      << c.ServerLog();
  EXPECT_NE(c.ServerLog().find("model -,"), std::string::npos) << c.ServerLog();
}

class CompressedGradientsTest : public ::testing::TestWithParam<std::string> {};

// Workers send compressed gradients (the job says how); the server decodes
// them and the model still learns.
TEST_P(CompressedGradientsTest, TwoWorkersSoftmaxOneEpoch_PassesPoint80) {
  LocalCluster c("e2e_" + GetParam());
  std::vector<std::string> flags = {"--model=softmax",  "--mode=sync",
                                    "--epochs=1",       "--num_workers=2",
                                    "--exit_when_done", "--gradient_compression=" + GetParam()};
  if (GetParam() == "topk") flags.push_back("--topk_ratio=0.1");
  ASSERT_TRUE(c.StartServer(flags).ok());
  std::vector<int> workers;
  for (const char* name : {"c0", "c1"}) workers.push_back(*c.StartWorker(name));
  absl::StatusOr<JobStatus> running =
      c.WaitFor([](const JobStatus& s) { return s.state() == RUNNING; }, kJobTimeout);
  ASSERT_TRUE(running.ok());
  WaitForExits(c, workers);
  EXPECT_GT(ResultAccuracy(c.ServerOut()), 0.80) << c.ServerOut();
}

INSTANTIATE_TEST_SUITE_P(Encodings, CompressedGradientsTest,
                         ::testing::Values("fp16", "int8", "topk"));

// Async workers computing each step while the previous push-pull is in flight
// (a second thread using the gRPC client) still train the model.
TEST(EndToEndOverlapTest, AsyncOverlappedWorkers_TrainAndSayTheyOverlap) {
  LocalCluster c("e2e_overlap");
  ASSERT_TRUE(c.StartServer({"--model=softmax", "--mode=async", "--epochs=1", "--num_workers=2",
                             "--exit_when_done", "--overlap_communication"})
                  .ok());
  std::vector<int> workers;
  for (const char* name : {"o0", "o1"}) workers.push_back(*c.StartWorker(name));
  WaitForExits(c, workers);
  EXPECT_GT(ResultAccuracy(c.ServerOut()), 0.80) << c.ServerOut();
  for (int i = 0; i < 2; ++i) {
    EXPECT_NE(c.WorkerLog(i).find("overlapping communication with computation"), std::string::npos)
        << c.WorkerLog(i);
  }
}

TEST(EndToEndUnixSocketTest, WorkersOnTheSameMachine_TrainOverAUnixSocket) {
  LocalCluster c("e2e_unix");
  // sun_path holds 108 bytes: a short path, not one under TEST_TMPDIR.
  const std::string socket = absl::StrCat("/tmp/fulcrum-e2e-", getpid(), ".sock");
  ASSERT_TRUE(c.StartServer({"--model=softmax", "--mode=async", "--epochs=1", "--num_workers=2",
                             "--exit_when_done", "--unix_socket=" + socket})
                  .ok());
  std::vector<int> workers;
  for (const char* name : {"u0", "u1"}) {
    workers.push_back(*c.StartWorker(name, {"--coordinator=unix:" + socket}));
  }
  WaitForExits(c, workers);
  EXPECT_GT(ResultAccuracy(c.ServerOut()), 0.80) << c.ServerOut();
  unlink(socket.c_str());
}

TEST(PsctlTest, StatusOfFinishedJob_TableAndJson) {
  LocalCluster c("psctl");
  ASSERT_TRUE(
      c.StartServer({"--model=softmax", "--mode=sync", "--epochs=1", "--num_workers=2"}).ok());
  ASSERT_TRUE(c.StartWorker("w0").ok());
  ASSERT_TRUE(c.StartWorker("w1").ok());
  for (int i = 0; i < 2; ++i) ASSERT_EQ(*c.WaitWorker(i, kJobTimeout), 0);

  Subprocess psctl;
  ASSERT_TRUE(
      psctl
          .Start({RunfilePath("tools/psctl"), "status", "--coordinator=" + c.address(), "--json"},
                 c.dir() + "/json.out", c.dir() + "/json.err")
          .ok());
  ASSERT_EQ(*psctl.Wait(absl::Seconds(30)), 0) << ReadFileOrEmpty(c.dir() + "/json.err");
  const std::string json = ReadFileOrEmpty(c.dir() + "/json.out");
  for (const char* want : {"\"state\": \"FINISHED\"", "\"mode\": \"SYNC\"",
                           "\"model\": \"softmax\"", "\"examples_seen\": \"60000\"",
                           "\"test_accuracy\"", "\"completed\"", "\"partitions_per_epoch\": 8",
                           "\"name\": \"w0\"", "\"name\": \"w1\"", "\"state\": \"LEFT\""}) {
    EXPECT_NE(json.find(want), std::string::npos) << want << " in\n" << json;
  }

  ASSERT_TRUE(psctl
                  .Start({RunfilePath("tools/psctl"), "status", "--coordinator=" + c.address()},
                         c.dir() + "/table.out", c.dir() + "/table.err")
                  .ok());
  ASSERT_EQ(*psctl.Wait(absl::Seconds(30)), 0);
  const std::string table = ReadFileOrEmpty(c.dir() + "/table.out");
  for (const char* want : {"FINISHED", "w0", "w1", "left", "partitions left"}) {
    EXPECT_NE(table.find(want), std::string::npos) << want << " in\n" << table;
  }

  // The server keeps serving status until told to stop; SIGTERM stops it
  // cleanly.
  c.server().Signal(SIGTERM);
  absl::StatusOr<int> code = c.server().Wait(absl::Seconds(30));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0);
}

TEST(PsctlTest, NoServer_FailsWithMessage) {
  const std::string dir = TestDir("psctl_down");
  Subprocess psctl;
  ASSERT_TRUE(
      psctl
          .Start({RunfilePath("tools/psctl"), "status", "--coordinator=127.0.0.1:1", "--timeout=2"},
                 dir + "/out", dir + "/err")
          .ok());
  EXPECT_EQ(*psctl.Wait(absl::Seconds(30)), 1);
  EXPECT_NE(ReadFileOrEmpty(dir + "/err").find("UNAVAILABLE"), std::string::npos);
}

TEST(WorkerTest, MissingDataFile_ExitsNamingTheFile) {
  const std::string dir = TestDir("missing_data");
  Subprocess worker;
  ASSERT_TRUE(worker
                  .Start({RunfilePath("worker/worker"), "--coordinator=127.0.0.1:1",
                          "--data_dir=" + dir + "/nowhere"},
                         dir + "/out", dir + "/err")
                  .ok());
  EXPECT_EQ(*worker.Wait(absl::Seconds(30)), 1);
  const std::string err = ReadFileOrEmpty(dir + "/err");
  EXPECT_NE(err.find(dir + "/nowhere/train-images-idx3-ubyte.gz"), std::string::npos) << err;
}

TEST(WorkerTest, MalformedDataFile_ExitsNamingTheFile) {
  const std::string dir = TestDir("bad_data");
  {
    std::ofstream f(dir + "/train-images-idx3-ubyte.gz");
    f << "this is not an IDX file";
  }
  Subprocess worker;
  ASSERT_TRUE(
      worker
          .Start({RunfilePath("worker/worker"), "--coordinator=127.0.0.1:1", "--data_dir=" + dir},
                 dir + "/out", dir + "/err")
          .ok());
  EXPECT_EQ(*worker.Wait(absl::Seconds(30)), 1);
  const std::string err = ReadFileOrEmpty(dir + "/err");
  EXPECT_NE(err.find("train-images-idx3-ubyte.gz"), std::string::npos) << err;
}

TEST(PsServerTest, BadFlag_ExitsWithMessage) {
  const std::string dir = TestDir("bad_flag");
  for (const char* flag : {"--mode=bogus", "--mode=ssp:x", "--worker_timeout=0"}) {
    Subprocess ps;
    ASSERT_TRUE(
        ps.Start({RunfilePath("server/ps_server"), "--port=0", flag}, dir + "/out", dir + "/err")
            .ok());
    EXPECT_EQ(*ps.Wait(absl::Seconds(30)), 2) << flag;
    EXPECT_FALSE(ReadFileOrEmpty(dir + "/err").empty()) << flag;
  }
}

}  // namespace
}  // namespace fulcrum

namespace fulcrum {
namespace {

// Where tools/install_deps.sh puts grpcurl (or PATH's); "" if absent.
std::string FindGrpcurl() {
  for (const char* path : {"/usr/local/bin/grpcurl", "/usr/bin/grpcurl"}) {
    if (access(path, X_OK) == 0) return path;
  }
  return "";
}

// Generic gRPC tools need no .proto: server reflection describes every
// service, the standard health service included.
TEST(ReflectionTest, GrpcurlChecksHealthAndDescribesServicesWithoutProtoFiles) {
  const std::string grpcurl = FindGrpcurl();
  if (grpcurl.empty()) {
    GTEST_SKIP() << "grpcurl is not installed (tools/install_deps.sh installs it with Go)";
  }
  LocalCluster c("grpcurl");
  ASSERT_TRUE(c.StartServer({"--model=softmax", "--num_workers=1"}).ok()) << c.ServerLog();
  const std::string dir = c.dir();
  auto run = [&](const std::vector<std::string>& args, const std::string& name) {
    std::vector<std::string> argv = {grpcurl, "-plaintext", "-max-time", "20"};
    argv.insert(argv.end(), args.begin(), args.end());
    Subprocess tool;
    EXPECT_TRUE(tool.Start(argv, dir + "/" + name + ".out", dir + "/" + name + ".err").ok());
    absl::StatusOr<int> code = tool.Wait(absl::Seconds(60));
    EXPECT_TRUE(code.ok());
    EXPECT_EQ(code.value_or(-1), 0) << ReadFileOrEmpty(dir + "/" + name + ".err");
    return ReadFileOrEmpty(dir + "/" + name + ".out");
  };
  const std::string health = run({c.address(), "grpc.health.v1.Health/Check"}, "health");
  EXPECT_NE(health.find("SERVING"), std::string::npos) << health;
  const std::string services = run({c.address(), "list"}, "list");
  for (const char* service : {"fulcrum.Coordinator", "fulcrum.ParameterService",
                              "fulcrum.ShardRegistry", "grpc.health.v1.Health"}) {
    EXPECT_NE(services.find(service), std::string::npos) << services;
  }
  const std::string status = run({c.address(), "fulcrum.Coordinator/GetStatus"}, "status");
  EXPECT_NE(status.find("WAITING_FOR_WORKERS"), std::string::npos) << status;
}

}  // namespace
}  // namespace fulcrum
