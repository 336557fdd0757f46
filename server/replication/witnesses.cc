#include "server/replication/witnesses.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/base/status_macros.h"
#include "common/rpc/channel.h"
#include "common/rpc/grpc_status.h"
#include "grpcpp/client_context.h"
#include "proto/coordinator.grpc.pb.h"
#include "proto/shard_control.grpc.pb.h"

namespace fulcrum {

ReachPoll PollWitnesses(const std::vector<std::string>& witnesses, const std::string& coordinator,
                        uint64_t process, const ClientSecurityOptions& security,
                        absl::Duration deadline) {
  ReachPoll poll;
  poll.asked = static_cast<int>(witnesses.size());
  absl::Mutex mu;
  std::vector<std::thread> calls;
  calls.reserve(witnesses.size());
  for (const std::string& witness : witnesses) {
    calls.emplace_back([&, witness] {
      absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = OpenChannel(witness, security);
      if (!channel.ok()) return;
      std::unique_ptr<ShardControl::Stub> stub = ShardControl::NewStub(*channel);
      ReachCoordinatorRequest request;
      request.set_address(coordinator);
      request.set_process_incarnation(process);
      grpc::ClientContext context;
      SetTimeout(deadline, &context);
      ReachCoordinatorResponse response;
      if (!stub->ReachCoordinator(&context, request, &response).ok()) return;
      absl::MutexLock lock(&mu);
      ++poll.answered;
      if (response.reached()) {
        ++poll.reached;
        poll.a_reacher = witness;
      }
    });
  }
  for (std::thread& call : calls) call.join();
  return poll;
}

absl::Status CallCoordinator(const std::string& address, const ClientSecurityOptions& security,
                             absl::Duration deadline) {
  FULCRUM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel, OpenChannel(address, security));
  std::unique_ptr<Coordinator::Stub> stub = Coordinator::NewStub(channel);
  grpc::ClientContext context;
  SetTimeout(deadline, &context);
  JobStatus status;
  return FromGrpcStatus(stub->GetStatus(&context, GetStatusRequest(), &status));
}

absl::Status ShardsLetBackupTakeOver(const ReachPoll& poll, const std::string& coordinator) {
  if (poll.reached > 0) {
    return absl::FailedPreconditionError(absl::StrCat("the shard process at ", poll.a_reacher,
                                                      " still reaches it at ", coordinator));
  }
  if (2 * poll.answered > poll.asked) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "only ", poll.answered, " of the other shards' ", poll.asked,
      " processes answered (a majority must: this process may be the one cut off, and the "
      "coordinator goes on where a majority reaches it)"));
}

absl::Status ShardsLetCoordinatorGoOnAlone(const ReachPoll& poll) {
  if (2 * poll.reached > poll.asked) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(
      "only ", poll.reached, " of the other shards' ", poll.asked,
      " processes reach this coordinator (a majority must, or the backup may take over)"));
}

absl::Status WorkersLetBackupTakeOver(size_t live, size_t came) {
  if (live == 0) {
    if (came > 0) return absl::OkStatus();
    return absl::FailedPreconditionError("no worker has come here since");
  }
  if (2 * came > live) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("only ", came, " of the job's ", live,
                   " live workers have come here since (a majority must: the others still "
                   "reach it)"));
}

absl::Status WorkersLetCoordinatorGoOnAlone(size_t live, size_t came) {
  if (live > 0 && 2 * came >= live) return absl::OkStatus();
  return absl::UnavailableError(
      live == 0 ? std::string("the job had no live worker when it lost its backup (one "
                              "registering now may be the backup's too)")
                : absl::StrCat("only ", came, " of the job's ", live,
                               " live workers have called here since it lost its backup (at "
                               "least half must, or the backup may take over with the others)"));
}

bool NothingListensAt(const std::string& address, absl::Duration timeout) {
  std::string host = address;
  std::string port;
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return false;
  host = address.substr(0, colon);
  port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr) {
    return false;
  }
  bool refused = false;
  const int fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    int error = 0;
    if (connect(fd, found->ai_addr, found->ai_addrlen) != 0) {
      error = errno;
      if (error == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        const int ready = poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
        error = 0;
        socklen_t size = sizeof(error);
        if (ready != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) != 0) {
          error = ETIMEDOUT;
        }
      }
    }
    refused = error == ECONNREFUSED;
    close(fd);
  }
  freeaddrinfo(found);
  return refused;
}

}  // namespace fulcrum
