// The public low-level Session (worker/fulcrum_worker.h) against a real
// ps_server process on an ephemeral port, serving a job no built-in model
// knows.
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/cluster.h"
#include "tests/subprocess.h"
#include "worker/fulcrum_worker.h"

namespace fulcrum {
namespace {

// A dense tensor and a sparse table, plain SGD (lr 0.5), one worker, two
// epochs of two partitions, batch 4.
constexpr char kJob[] = R"(
model: "session_test"
mode: ASYNC
tensors { name: "w" shape: [2, 3] initializer: ZEROS }
sparse_tables { name: "emb" dim: 2 initializer: ZEROS }
optimizer { kind: SGD learning_rate: 0.5 }
epochs: 2
partitions_per_epoch: 2
batch_size: 4
num_workers: 1
)";

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Each test's own folders (a server's port file must not be a previous
    // test's).
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    cluster_ = std::make_unique<LocalCluster>("session_" + name);
    const std::string dir = TestDir("session_job_" + name);
    job_file_ = dir + "/job.textproto";
    std::ofstream(job_file_) << kJob;
    ASSERT_TRUE(cluster_->StartServer({"--job=" + job_file_}).ok()) << cluster_->ServerLog();
    options_.coordinator = cluster_->address();
    options_.worker_name = "session";
    options_.rpc_timeout = absl::Seconds(20);
  }

  std::unique_ptr<Session> Open() {
    absl::StatusOr<std::unique_ptr<Session>> session = Session::Open(options_);
    EXPECT_TRUE(session.ok()) << session.status();
    return session.ok() ? std::move(*session) : nullptr;
  }

  std::unique_ptr<LocalCluster> cluster_;
  std::string job_file_;
  ConnectionOptions options_;
};

TEST_F(SessionTest, OwnLoop_TrainsEveryPartitionEvaluatesAndFinishes) {
  std::unique_ptr<Session> session = Open();
  ASSERT_NE(session, nullptr);
  EXPECT_EQ(session->job().model(), "session_test");
  ASSERT_EQ(session->job().tensors_size(), 1);

  std::vector<float> w(6, 99.0f);
  const std::vector<float> ones(6, 1.0f);
  std::vector<float> grad = ones;
  Buffers params{{{"w", absl::MakeSpan(w)}}, {}};
  Buffers grads{{{"w", absl::MakeSpan(grad)}}, {}};
  int trained = 0;
  int evaluated = 0;
  std::vector<float> evaluated_w;
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<Task> task = session->NextTask();
    ASSERT_TRUE(task.ok()) << task.status();
    if (task->kind == Task::kDone) break;
    if (task->kind == Task::kWait) {
      absl::SleepFor(task->retry_after);
      continue;
    }
    if (task->kind == Task::kEvaluate) {
      ASSERT_TRUE(session->PullForEval(params).ok());
      evaluated_w = w;
      EvalResult eval;
      eval.set_test_accuracy(0.25 * (evaluated + 1));
      ASSERT_TRUE(session->ReportEval(*task, eval).ok());
      ++evaluated;
      continue;
    }
    ASSERT_EQ(task->kind, Task::kTrain);
    EXPECT_EQ(session->Complete(Task{Task::kEvaluate}).code(), absl::StatusCode::kInvalidArgument);
    // Two steps: pull, push-pull, push.
    ASSERT_TRUE(session->Pull(params).ok());
    ASSERT_TRUE(session->PushPull(grads, 4, 0.5, params).ok());
    ASSERT_TRUE(session->Push(grads, 4, 0.5).ok());
    ASSERT_TRUE(session->Complete(*task).ok());
    ++trained;
  }
  EXPECT_EQ(trained, 4);
  EXPECT_EQ(evaluated, 2);
  // Eight pushes of ones at learning rate 0.5, all in before the final
  // evaluation read the model.
  EXPECT_EQ(evaluated_w, std::vector<float>(6, -4.0f));

  absl::StatusOr<JobStatus> status = cluster_->Status();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->state(), FINISHED);
  EXPECT_EQ(status->completed_size(), 4);
  EXPECT_TRUE(status->last_eval().final());
  EXPECT_DOUBLE_EQ(status->last_eval().test_accuracy(), 0.5);
  EXPECT_EQ(status->examples_seen(), 32u);
}

TEST_F(SessionTest, SparseRows_PulledPushedAndReadBack) {
  std::unique_ptr<Session> session = Open();
  ASSERT_NE(session, nullptr);
  absl::StatusOr<Task> task = session->NextTask();
  ASSERT_TRUE(task.ok()) << task.status();
  ASSERT_EQ(task->kind, Task::kTrain);
  const std::vector<uint64_t> keys = {7, 9, 7};
  std::vector<float> rows(6, 99.0f);
  Buffers params{{}, {{"emb", keys, absl::MakeSpan(rows)}}};
  ASSERT_TRUE(session->Pull(params).ok());
  EXPECT_EQ(rows, std::vector<float>(6, 0.0f));
  std::vector<float> grad = {1, 2, 0, 0, 1, 2};  // key 7 twice
  Buffers grads{{}, {{"emb", keys, absl::MakeSpan(grad)}}};
  ASSERT_TRUE(session->PushPull(grads, 1, -1, params).ok());
  // Key 7's two gradients summed, key 9's zero: lr 0.5.
  EXPECT_EQ(rows, std::vector<float>({-1, -2, 0, 0, -1, -2}));
}

TEST_F(SessionTest, BuffersTheJobDoesNotHave_InvalidArgumentAndNothingSent) {
  std::unique_ptr<Session> session = Open();
  ASSERT_NE(session, nullptr);
  ASSERT_EQ(session->NextTask()->kind, Task::kTrain);
  std::vector<float> five(5);
  std::vector<float> six(6);
  const std::vector<uint64_t> keys = {1, 2};
  std::vector<float> three(3);
  struct Case {
    Buffers buffers;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{{{"v", absl::MakeSpan(six)}}, {}}, "no dense tensor \"v\""},
      {{{{"w", absl::MakeSpan(five)}}, {}}, "tensor \"w\" has 6 elements; the buffer holds 5"},
      {{{}, {{"tab", keys, absl::MakeSpan(three)}}}, "no sparse table \"tab\""},
      {{{}, {{"emb", keys, absl::MakeSpan(three)}}}, "need 4 floats; the buffer holds 3"},
  };
  for (const Case& c : cases) {
    absl::Status pulled = session->Pull(c.buffers);
    EXPECT_EQ(pulled.code(), absl::StatusCode::kInvalidArgument) << pulled;
    EXPECT_NE(pulled.message().find(c.message), std::string::npos) << pulled;
    absl::Status pushed = session->Push(c.buffers, 1, -1);
    EXPECT_EQ(pushed.code(), absl::StatusCode::kInvalidArgument) << pushed;
  }
  Buffers good{{{"w", absl::MakeSpan(six)}}, {}};
  EXPECT_EQ(session->Push(good, 0, -1).code(), absl::StatusCode::kInvalidArgument);
  // Nothing reached the model.
  std::fill(six.begin(), six.end(), 99.0f);
  ASSERT_TRUE(session->Pull(good).ok());
  EXPECT_EQ(six, std::vector<float>(6, 0.0f));
}

TEST(SessionOpenTest, NoServer_UnavailableAfterTheRetries) {
  ConnectionOptions options;
  options.coordinator = "127.0.0.1:1";  // nothing listens there
  options.max_attempts = 2;
  options.max_backoff = absl::Milliseconds(100);
  options.rpc_timeout = absl::Seconds(2);
  absl::StatusOr<std::unique_ptr<Session>> session = Session::Open(options);
  EXPECT_EQ(session.status().code(), absl::StatusCode::kUnavailable) << session.status();
}

}  // namespace
}  // namespace fulcrum
