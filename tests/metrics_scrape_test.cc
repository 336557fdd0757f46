// ps_server's Prometheus endpoint, scraped over HTTP while a real in-process
// server handles pushes and pulls.
#include <regex>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/http_get.h"
#include "common/payload.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "proto/coordinator.grpc.pb.h"
#include "proto/job.pb.h"
#include "proto/parameter_service.grpc.pb.h"
#include "server/job_spec.h"
#include "server/ps_server.h"

namespace fulcrum {
namespace {

// The value of an unlabelled sample, or -1.
double Sample(const std::string& text, const std::string& name) {
  std::smatch m;
  if (!std::regex_search(text, m, std::regex("\n" + name + " ([^\n]+)\n"))) return -1;
  double v;
  return absl::SimpleAtod(m[1].str(), &v) ? v : -1;
}

TEST(MetricsScrapeTest, CountersMoveWithTraffic) {
  ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.metrics_host = "127.0.0.1";
  options.metrics_port = 0;
  JobSpec job = *BuiltinJob("softmax");
  job.set_mode(ASYNC);
  options.job = *Job::Complete(job);
  auto server = ParameterServer::Create(options);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->Start().ok());
  const int metrics_port = (*server)->metrics_port();
  ASSERT_GT(metrics_port, 0);

  absl::StatusOr<HttpResponse> before = HttpGet(metrics_port, "/metrics");
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_EQ(before->code, 200);
  EXPECT_EQ(Sample(before->body, "fulcrum_pushes_total"), 0);
  EXPECT_EQ(Sample(before->body, "fulcrum_live_workers"), 0);

  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->bound_port()),
                                     grpc::InsecureChannelCredentials());
  auto coordinator = Coordinator::NewStub(channel);
  auto ps = ParameterService::NewStub(channel);
  RegisterWorkerResponse registered;
  {
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    ASSERT_TRUE(coordinator->RegisterWorker(&c, RegisterWorkerRequest(), &registered).ok());
  }
  {
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    AcquirePartitionRequest r;
    r.set_worker_id(registered.worker_id());
    r.set_coordinator_incarnation(registered.incarnation());
    AcquirePartitionResponse lease;
    ASSERT_TRUE(coordinator->AcquirePartition(&c, r, &lease).ok());
  }
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    PushRequest push;
    push.mutable_header()->set_worker_id(registered.worker_id());
    push.mutable_header()->set_coordinator_incarnation(registered.incarnation());
    DenseValues* v = push.add_dense();
    v->mutable_slice()->set_tensor("softmax/b");
    v->mutable_slice()->set_length(10);
    v->set_encoding(FLOAT32);
    EncodeFloat32(std::vector<float>(10, 0.1f), v->mutable_data());
    PushResponse response;
    ASSERT_TRUE(ps->Push(&c, push, &response).ok());
  }
  {
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    PullRequest pull;
    pull.mutable_header()->set_worker_id(registered.worker_id());
    pull.mutable_header()->set_coordinator_incarnation(registered.incarnation());
    pull.mutable_header()->set_clock(-1);
    DenseSlice* slice = pull.add_dense();
    slice->set_tensor("softmax/w");
    slice->set_length(7840);
    PullResponse response;
    ASSERT_TRUE(ps->Pull(&c, pull, &response).ok());
    grpc::ClientContext bad;
    bad.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    slice->set_tensor("nope");
    EXPECT_FALSE(ps->Pull(&bad, pull, &response).ok());
  }

  const std::string after = HttpGet(metrics_port, "/metrics")->body;
  EXPECT_EQ(Sample(after, "fulcrum_pushes_total"), 3);
  EXPECT_EQ(Sample(after, "fulcrum_pulls_total"), 2);
  EXPECT_EQ(Sample(after, "fulcrum_push_bytes_total"), 120);
  EXPECT_EQ(Sample(after, "fulcrum_pull_bytes_total"), 31360);
  EXPECT_EQ(Sample(after, "fulcrum_rejected_requests_total"), 1);
  EXPECT_EQ(Sample(after, "fulcrum_push_latency_seconds_count"), 3);
  EXPECT_GT(Sample(after, "fulcrum_push_latency_seconds_sum"), 0);
  EXPECT_EQ(Sample(after, "fulcrum_shard_version"), 3);
  EXPECT_EQ(Sample(after, "fulcrum_live_workers"), 1);
  EXPECT_EQ(Sample(after, "fulcrum_checkpoints_total"), 0);
  (*server)->Shutdown();
}

}  // namespace
}  // namespace fulcrum
