// TLS, mutual TLS and bearer-token auth, with a throwaway CA and
// certificates made by openssl at test time.
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/payload.h"
#include "common/rpc/channel.h"
#include "common/rpc/health_check.h"
#include "google/protobuf/descriptor.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "proto/coordinator.grpc.pb.h"
#include "proto/job.pb.h"
#include "proto/parameter_service.grpc.pb.h"
#include "server/job_spec.h"
#include "server/ps_server.h"
#include "tests/cluster.h"
#include "tests/subprocess.h"

namespace fulcrum {
namespace {

constexpr char kToken[] = "s3cr3t-token-4f1c9a";

// A plaintext client setting whose channels carry `token` ("": none).
ClientSecurityOptions WithToken(const std::string& token) {
  ClientSecurityOptions security;
  security.auth_token = token;
  return security;
}

// Makes ca.pem, server.{pem,key} (for localhost and 127.0.0.1),
// client.{pem,key} signed by the CA, and other_client.{pem,key} signed by
// another CA, in `dir`.
void MakeCertificates(const std::string& dir) {
  const std::string script = absl::StrCat(
      "set -e; cd '", dir, "'; ",
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
      "-subj '/CN=Fulcrum Test CA' 2>/dev/null; ",
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout other_ca.key -out other_ca.pem "
      "-days 2 -subj '/CN=Other CA' 2>/dev/null; ",
      "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext; ",
      "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
      "-subj '/CN=localhost' 2>/dev/null; ",
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
      "-out server.pem -days 2 -extfile san.ext 2>/dev/null; ",
      "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr "
      "-subj '/CN=worker' 2>/dev/null; ",
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
      "-out client.pem -days 2 2>/dev/null; ",
      "openssl req -newkey rsa:2048 -nodes -keyout other_client.key -out other_client.csr "
      "-subj '/CN=intruder' 2>/dev/null; ",
      "openssl x509 -req -in other_client.csr -CA other_ca.pem -CAkey other_ca.key "
      "-CAcreateserial -out other_client.pem -days 2 2>/dev/null; ",
      "printf '%s\\n' '", kToken, "' > token; printf 'wrong\\n' > wrong_token");
  ASSERT_EQ(std::system(script.c_str()), 0) << "openssl failed";
}

class SecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(TestDir("certs"));
    MakeCertificates(*dir_);
  }
  static std::string F(const std::string& name) { return *dir_ + "/" + name; }

  void StartServer(bool tls, bool mutual, bool token) {
    ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    JobSpec job = *BuiltinJob("softmax");
    job.set_mode(ASYNC);
    if (tls) {
      options.security.tls_cert = F("server.pem");
      options.security.tls_key = F("server.key");
    }
    if (mutual) options.security.tls_client_ca = F("ca.pem");
    if (token) options.auth_token = kToken;
    options.job = *Job::Complete(job);
    auto server = ParameterServer::Create(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_TRUE(server_->Start().ok());
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  // GetStatus through a channel opened with `security` (ChannelOpener, as
  // every Fulcrum client opens them) carrying `token`, if any.
  grpc::Status Status(ClientSecurityOptions security, const std::string& token = "") {
    security.auth_token = token;
    absl::StatusOr<ChannelOpener> opener = ChannelOpener::Create(security);
    EXPECT_TRUE(opener.ok()) << opener.status();
    auto stub =
        Coordinator::NewStub(opener->Open(absl::StrCat("localhost:", server_->bound_port())));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    JobStatus status;
    return stub->GetStatus(&context, GetStatusRequest(), &status);
  }

  ClientSecurityOptions Tls(const std::string& cert = "", const std::string& key = "") {
    ClientSecurityOptions o;
    o.tls_ca = F("ca.pem");
    if (!cert.empty()) {
      o.tls_cert = F(cert);
      o.tls_key = F(key);
    }
    return o;
  }

  static std::string* dir_;
  std::unique_ptr<ParameterServer> server_;
};

std::string* SecurityTest::dir_ = nullptr;

TEST_F(SecurityTest, Tls_ClientTrustingTheCa_Works) {
  StartServer(/*tls=*/true, /*mutual=*/false, /*token=*/false);
  EXPECT_TRUE(Status(Tls()).ok());
}

TEST_F(SecurityTest, Tls_PlaintextClient_Refused) {
  StartServer(true, false, false);
  grpc::Status s = Status(ClientSecurityOptions());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

TEST_F(SecurityTest, MutualTls_NeedsAClientCertificateFromTheCa) {
  StartServer(true, /*mutual=*/true, false);
  EXPECT_FALSE(Status(Tls()).ok());  // no client certificate
  EXPECT_FALSE(Status(Tls("other_client.pem", "other_client.key")).ok());
  EXPECT_TRUE(Status(Tls("client.pem", "client.key")).ok());
}

TEST_F(SecurityTest, Token_MissingOrWrongUnauthenticated_RightAccepted) {
  StartServer(true, false, /*token=*/true);
  grpc::Status missing = Status(Tls());
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status wrong = Status(Tls(), "not-the-token");
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(wrong.error_message().find(kToken), std::string::npos);
  EXPECT_TRUE(Status(Tls(), kToken).ok());
}

TEST_F(SecurityTest, Token_WrongTokenPushHasNoEffect) {
  StartServer(false, false, /*token=*/true);
  const std::string address = absl::StrCat("127.0.0.1:", server_->bound_port());
  auto coordinator = Coordinator::NewStub(*OpenChannel(address, WithToken(kToken)));
  auto ps = ParameterService::NewStub(*OpenChannel(address, WithToken("guess")));
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
  PushRequest push;
  push.mutable_header()->set_worker_id(registered.worker_id());
  push.mutable_header()->set_coordinator_incarnation(registered.incarnation());
  DenseValues* v = push.add_dense();
  v->mutable_slice()->set_tensor("softmax/b");
  v->mutable_slice()->set_length(10);
  v->set_encoding(FLOAT32);
  EncodeFloat32(std::vector<float>(10, 1.0f), v->mutable_data());
  grpc::ClientContext c;
  c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  PushResponse response;
  EXPECT_EQ(ps->Push(&c, push, &response).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(server_->shard()->version().version, 0);
  grpc::ClientContext unregistered;
  unregistered.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  RegisterWorkerResponse r;
  EXPECT_EQ(Coordinator::NewStub(*OpenChannel(address, ClientSecurityOptions()))
                ->RegisterWorker(&unregistered, RegisterWorkerRequest(), &r)
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(server_->coordinator()->GetStatus().live_workers(), 1u);
}

TEST_F(SecurityTest, Token_HealthServiceStaysOpen) {
  StartServer(false, false, /*token=*/true);
  absl::Status serving =
      CheckServing(grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->bound_port()),
                                       grpc::InsecureChannelCredentials()),
                   absl::Seconds(5));
  EXPECT_TRUE(serving.ok()) << serving;
}

// Calls `path` at `address` with an empty request, over a channel carrying
// `token` ("": none).
grpc::Status CallRaw(const std::string& address, const std::string& path,
                     const std::string& token) {
  grpc::GenericStub stub(*OpenChannel(address, WithToken(token)));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice empty("", 0);
  grpc::ByteBuffer request(&empty, 1), response;
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&context, path, grpc::StubOptions(), &request, &response, [&](grpc::Status s) {
    status = std::move(s);
    done.Notify();
  });
  done.WaitForNotification();
  return status;
}

// Every method of every Fulcrum service, enumerated from the services'
// descriptors (a method added later is covered too), refuses a call with no
// token or a wrong one before any handler runs; the health service is open.
TEST(AuthTest, EveryRpcOfEveryService_RefusesAMissingOrWrongToken) {
  ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.num_shards = 2;
  options.auth_token = kToken;
  JobSpec job = *BuiltinJob("softmax");
  job.set_num_workers(1);
  options.job = *Job::Complete(job);
  absl::StatusOr<std::unique_ptr<ParameterServer>> coordinator = ParameterServer::Create(options);
  ASSERT_TRUE(coordinator.ok()) << coordinator.status();
  ASSERT_TRUE((*coordinator)->Start().ok());
  const std::string coordinator_address = absl::StrCat("127.0.0.1:", (*coordinator)->bound_port());
  ServerOptions shard_options = options;
  shard_options.shard_index = 1;
  shard_options.coordinator_address = coordinator_address;
  // Joining takes the token too: shard 1 registers with it.
  absl::StatusOr<std::unique_ptr<ParameterServer>> shard = ParameterServer::Create(shard_options);
  ASSERT_TRUE(shard.ok()) << shard.status();
  ASSERT_TRUE((*shard)->Start().ok());

  struct Server {
    std::string address;
    std::vector<std::string> services;
  };
  const std::vector<Server> servers = {
      {coordinator_address,
       {"fulcrum.Coordinator", "fulcrum.ParameterService", "fulcrum.ShardRegistry"}},
      {absl::StrCat("127.0.0.1:", (*shard)->bound_port()),
       {"fulcrum.ParameterService", "fulcrum.ShardControl", "fulcrum.ShardReplica"}},
  };
  int methods = 0;
  for (const Server& server : servers) {
    for (const std::string& name : server.services) {
      const google::protobuf::ServiceDescriptor* service =
          google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(name);
      ASSERT_NE(service, nullptr) << name;
      ASSERT_GT(service->method_count(), 0) << name;
      for (int i = 0; i < service->method_count(); ++i) {
        const std::string path = absl::StrCat("/", name, "/", service->method(i)->name());
        for (const std::string& token : {std::string(), std::string("wrong")}) {
          const grpc::Status s = CallRaw(server.address, path, token);
          EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED)
              << path << " with token '" << token << "': " << s.error_message();
        }
        ++methods;
      }
    }
    // The standard health service needs no token.
    EXPECT_TRUE(
        CheckServing(*OpenChannel(server.address, ClientSecurityOptions()), absl::Seconds(10)).ok())
        << server.address;
  }
  // Coordinator, ParameterService x2, ShardRegistry, ShardControl, ShardReplica.
  EXPECT_EQ(methods, 9 + 3 + 3 + 3 + 3 + 2);
  // No handler ran: nobody registered, nothing was pushed, nobody stopped
  // the job.
  JobStatus status = (*coordinator)->coordinator()->GetStatus();
  EXPECT_EQ(status.workers_size(), 0);
  EXPECT_EQ(status.state(), WAITING_FOR_WORKERS);
  EXPECT_EQ((*coordinator)->shard()->stats().pushes, 0);
  EXPECT_EQ((*shard)->shard()->stats().pushes, 0);
  (*shard)->Shutdown();
  (*coordinator)->Shutdown();
}

// Each binary's --help lists the TLS and token flags they share
// (common/rpc/security_flags.cc) beside its own.
TEST(SecurityFlagsTest, EveryBinarysHelp_ListsTheSharedFlagsAndItsOwn) {
  const std::string dir = TestDir("help");
  const std::vector<std::pair<std::string, std::string>> binaries = {
      {"server/ps_server", "--num_shards"},
      {"worker/worker", "--data_dir"},
      {"tools/psctl", "--json"}};
  for (const auto& [binary, own] : binaries) {
    Subprocess process;
    ASSERT_TRUE(
        process.Start({RunfilePath(binary), "--help"}, dir + "/help.out", dir + "/help.err").ok());
    process.Wait(absl::Seconds(30)).IgnoreError();  // --help exits 1
    const std::string help =
        ReadFileOrEmpty(dir + "/help.out") + ReadFileOrEmpty(dir + "/help.err");
    for (const std::string& flag :
         {own, std::string("--tls_ca"), std::string("--tls_cert"), std::string("--tls_key"),
          std::string("--tls_server_name"), std::string("--auth_token_file")}) {
      EXPECT_NE(help.find(flag + " "), std::string::npos) << binary << " --help lacks " << flag;
    }
  }
}

TEST_F(SecurityTest, BadCredentialFiles_ClearErrors) {
  ServerSecurityOptions s;
  s.tls_cert = F("server.pem");
  EXPECT_EQ(MakeServerCredentials(s).status().code(), absl::StatusCode::kInvalidArgument);
  s.tls_key = F("missing.key");
  absl::Status missing = MakeServerCredentials(s).status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.message().find("missing.key"), std::string::npos);
  s.tls_key = F("san.ext");  // not PEM
  EXPECT_EQ(MakeServerCredentials(s).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadTokenFile(F("nope")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SecurityTest, Processes_MutualTlsAndToken_JobRunsAndSecretsStayOut) {
  LocalCluster c("secure_job");
  const std::vector<std::string> tls_server = {
      "--tls_cert=" + F("server.pem"), "--tls_key=" + F("server.key"),
      "--tls_client_ca=" + F("ca.pem"), "--auth_token_file=" + F("token")};
  std::vector<std::string> flags = {"--model=softmax", "--epochs=1", "--num_workers=2"};
  flags.insert(flags.end(), tls_server.begin(), tls_server.end());
  ASSERT_TRUE(c.StartServer(flags).ok());
  const std::vector<std::string> client = {
      "--tls_ca=" + F("ca.pem"), "--tls_cert=" + F("client.pem"), "--tls_key=" + F("client.key"),
      "--tls_server_name=localhost", "--auth_token_file=" + F("token")};
  const int a = *c.StartWorker("a", client);
  const int b = *c.StartWorker("b", client);
  for (int i : {a, b}) {
    absl::StatusOr<int> code = c.WaitWorker(i, absl::Minutes(3));
    ASSERT_TRUE(code.ok());
    EXPECT_EQ(*code, 0) << c.WorkerLog(i);
  }
  Subprocess psctl;
  std::vector<std::string> argv = {RunfilePath("tools/psctl"), "status", "--json",
                                   "--coordinator=" + c.address()};
  argv.insert(argv.end(), client.begin(), client.end());
  ASSERT_TRUE(psctl.Start(argv, c.dir() + "/status.out", c.dir() + "/status.err").ok());
  ASSERT_EQ(*psctl.Wait(absl::Seconds(30)), 0) << ReadFileOrEmpty(c.dir() + "/status.err");
  const std::string status = ReadFileOrEmpty(c.dir() + "/status.out");
  EXPECT_NE(status.find("\"state\": \"FINISHED\""), std::string::npos);
  // A worker with the wrong token is refused.
  std::vector<std::string> wrong = client;
  wrong.back() = "--auth_token_file=" + F("wrong_token");
  const int intruder = *c.StartWorker("intruder", wrong);
  EXPECT_EQ(*c.WaitWorker(intruder, absl::Seconds(60)), 1);
  EXPECT_NE(c.WorkerLog(intruder).find("UNAUTHENTICATED"), std::string::npos)
      << c.WorkerLog(intruder);
  // The token appears in no log and no status.
  for (const std::string& text : {status, c.ServerLog(), c.ServerOut(), c.WorkerLog(a),
                                  c.WorkerLog(b), c.WorkerLog(intruder)}) {
    EXPECT_EQ(text.find(kToken), std::string::npos);
  }
}

}  // namespace
}  // namespace fulcrum
