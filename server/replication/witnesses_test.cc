#include "server/replication/witnesses.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "proto/shard_control.grpc.pb.h"

namespace fulcrum {
namespace {

// Witnesses that answer only once `expected` of them are being asked at the
// same time (or never, within the test's deadlines): asked one after the
// other, none would answer.
class Rendezvous {
 public:
  explicit Rendezvous(int expected) : expected_(expected) {}
  void ArriveAndWait() {
    absl::MutexLock lock(&mu_);
    ++arrived_;
    mu_.AwaitWithTimeout(absl::Condition(
                             +[](Rendezvous* r) { return r->arrived_ >= r->expected_; }, this),
                         absl::Seconds(5));
  }

 private:
  absl::Mutex mu_;
  const int expected_;
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
};

// A shard process as a witness: says it reaches (or not) whatever it is
// asked about, after `delay` (and after meeting the others at `rendezvous`,
// if any).
class FixedWitness final : public ShardControl::Service {
 public:
  FixedWitness(bool reaches, absl::Duration delay, Rendezvous* rendezvous)
      : reaches_(reaches), delay_(delay), rendezvous_(rendezvous) {}
  grpc::Status ReachCoordinator(grpc::ServerContext*, const ReachCoordinatorRequest* request,
                                ReachCoordinatorResponse* response) override {
    if (rendezvous_ != nullptr) rendezvous_->ArriveAndWait();
    absl::SleepFor(delay_);
    last_asked_about = absl::StrCat(request->address(), "/", request->process_incarnation());
    response->set_reached(reaches_);
    return grpc::Status::OK;
  }
  std::string last_asked_about;

 private:
  const bool reaches_;
  const absl::Duration delay_;
  Rendezvous* const rendezvous_;
};

// Real gRPC servers on 127.0.0.1, one per witness.
class Witnesses {
 public:
  std::string Add(bool reaches, absl::Duration delay = absl::ZeroDuration(),
                  Rendezvous* rendezvous = nullptr) {
    services_.push_back(std::make_unique<FixedWitness>(reaches, delay, rendezvous));
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(services_.back().get());
    servers_.push_back(builder.BuildAndStart());
    EXPECT_NE(port, 0);
    return absl::StrCat("127.0.0.1:", port);
  }
  FixedWitness& service(size_t i) { return *services_[i]; }
  ~Witnesses() {
    for (auto& server : servers_) server->Shutdown(absl::ToChronoTime(absl::Now()));
  }

 private:
  std::vector<std::unique_ptr<FixedWitness>> services_;
  std::vector<std::unique_ptr<grpc::Server>> servers_;
};

// Nothing listens there (port 1 on this host).
constexpr char kNobody[] = "127.0.0.1:1";

ReachPoll Poll(const std::vector<std::string>& witnesses) {
  return PollWitnesses(witnesses, "coordinator:50051", /*process=*/7, ClientSecurityOptions(),
                       absl::Milliseconds(600));
}

TEST(PollWitnessesTest, CountsAnswersAndReachesAndAsksAboutTheNamedProcess) {
  Witnesses w;
  const std::string yes = w.Add(true);
  const std::string no = w.Add(false);
  const ReachPoll poll = Poll({yes, no, kNobody});
  EXPECT_EQ(poll.asked, 3);
  EXPECT_EQ(poll.answered, 2);
  EXPECT_EQ(poll.reached, 1);
  EXPECT_EQ(poll.a_reacher, yes);
  EXPECT_EQ(w.service(0).last_asked_about, "coordinator:50051/7");
  EXPECT_EQ(w.service(1).last_asked_about, "coordinator:50051/7");
}

TEST(PollWitnessesTest, AWitnessSlowerThanTheDeadlineDoesNotCountAndTheOthersAreAskedMeanwhile) {
  // The two quick ones answer only when both are asked at once: polled one
  // after the other (behind the slow one's deadline), neither would. (It
  // outlives the servers, whose handlers may still wait on it.)
  Rendezvous both(2);
  Witnesses w;
  const std::string slow = w.Add(true, absl::Seconds(2));
  const std::string no1 = w.Add(false, absl::ZeroDuration(), &both);
  const std::string no2 = w.Add(false, absl::ZeroDuration(), &both);
  const ReachPoll poll = Poll({slow, no1, no2});
  EXPECT_EQ(poll.asked, 3);
  EXPECT_EQ(poll.answered, 2);
  EXPECT_EQ(poll.reached, 0);
}

TEST(NothingListensAtTest, TrueOnlyWhenTheHostRefusesTheConnection) {
  Witnesses w;
  const std::string listening = w.Add(true);
  EXPECT_FALSE(NothingListensAt(listening, absl::Milliseconds(300)));
  // A port bound and closed again: refused.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  socklen_t size = sizeof(address);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size), 0);
  close(fd);
  EXPECT_TRUE(
      NothingListensAt(absl::StrCat("127.0.0.1:", ntohs(address.sin_port)), absl::Seconds(1)));
  // Nothing can be told: no port, a name that does not resolve.
  EXPECT_FALSE(NothingListensAt("127.0.0.1", absl::Seconds(1)));
  EXPECT_FALSE(NothingListensAt("no-such-host.invalid:50051", absl::Seconds(1)));
}

TEST(WitnessesTest, TheBackupTakesOverOnlyOnAMajorityOfShardProcessesAndNoneReachingIt) {
  EXPECT_TRUE(ShardsLetBackupTakeOver({1, 1, 0, ""}, "c").ok());
  EXPECT_TRUE(ShardsLetBackupTakeOver({3, 2, 0, ""}, "c").ok());
  // Half is not a majority: the other half may reach the coordinator.
  EXPECT_TRUE(absl::IsFailedPrecondition(ShardsLetBackupTakeOver({2, 1, 0, ""}, "c")));
  EXPECT_TRUE(absl::IsFailedPrecondition(ShardsLetBackupTakeOver({1, 0, 0, ""}, "c")));
  const absl::Status vetoed = ShardsLetBackupTakeOver({3, 3, 1, "s1:7"}, "c:1");
  EXPECT_TRUE(absl::IsFailedPrecondition(vetoed));
  EXPECT_TRUE(absl::StrContains(vetoed.message(), "s1:7 still reaches it at c:1")) << vetoed;
}

TEST(WitnessesTest, TheCoordinatorGoesOnAloneOnlyWhenAMajorityOfShardProcessesReachIt) {
  EXPECT_TRUE(ShardsLetCoordinatorGoOnAlone({1, 1, 1, "s"}).ok());
  EXPECT_TRUE(ShardsLetCoordinatorGoOnAlone({3, 2, 2, "s"}).ok());
  EXPECT_TRUE(absl::IsUnavailable(ShardsLetCoordinatorGoOnAlone({2, 2, 1, "s"})));
  EXPECT_TRUE(absl::IsUnavailable(ShardsLetCoordinatorGoOnAlone({1, 1, 0, ""})));
}

// Whatever the split of the witnesses, at most one side may serve.
TEST(WitnessesTest, NoSplitOfTheShardProcessesLetsBothSidesServe) {
  for (int asked = 1; asked <= 6; ++asked) {
    // `with_backup` of them reach only the backup, `with_coordinator` only
    // the coordinator, the rest neither.
    for (int with_backup = 0; with_backup <= asked; ++with_backup) {
      for (int with_coordinator = 0; with_backup + with_coordinator <= asked; ++with_coordinator) {
        const bool backup = ShardsLetBackupTakeOver({asked, with_backup, 0, ""}, "c").ok();
        const bool coordinator =
            ShardsLetCoordinatorGoOnAlone({asked, with_coordinator, with_coordinator, "s"}).ok();
        EXPECT_FALSE(backup && coordinator)
            << asked << " witnesses, " << with_backup << " with the backup, " << with_coordinator
            << " with the coordinator";
      }
    }
  }
}

TEST(WitnessesTest, NoSplitOfTheWorkersLetsBothSidesServe) {
  for (size_t live = 0; live <= 6; ++live) {
    for (size_t to_backup = 0; to_backup <= live; ++to_backup) {
      for (size_t to_coordinator = 0; to_backup + to_coordinator <= live; ++to_coordinator) {
        EXPECT_FALSE(WorkersLetBackupTakeOver(live, to_backup).ok() &&
                     WorkersLetCoordinatorGoOnAlone(live, to_coordinator).ok())
            << live << " live, " << to_backup << " came to the backup, " << to_coordinator
            << " to the coordinator";
      }
    }
  }
  // With none live, a registration decides — and a worker registers on one
  // side only (where it is then live).
  EXPECT_TRUE(WorkersLetBackupTakeOver(0, 1).ok());
  EXPECT_TRUE(absl::IsUnavailable(WorkersLetCoordinatorGoOnAlone(0, 0)));
  EXPECT_TRUE(WorkersLetCoordinatorGoOnAlone(1, 1).ok());
}

TEST(WitnessesTest, EachSideGoesOnWithItsShareOfTheWorkers) {
  EXPECT_TRUE(WorkersLetBackupTakeOver(3, 2).ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(WorkersLetBackupTakeOver(2, 1)));
  EXPECT_TRUE(WorkersLetCoordinatorGoOnAlone(2, 1).ok());
  EXPECT_TRUE(absl::IsUnavailable(WorkersLetCoordinatorGoOnAlone(3, 1)));
}

}  // namespace
}  // namespace fulcrum
