// FailoverStubs: stubs of one gRPC service served by interchangeable
// processes (a replicated coordinator and its backup), one per address, and
// which of them answered last. A call goes there first; while the process
// called cannot answer, it goes to each other once (a backup may have taken
// over), and the next call starts where one answered. Addresses learnt later
// (the coordinator names its processes) are added; none is ever removed.
//
// Thread-safe. Used by the worker's coordinator client and by shards
// reporting to the coordinator.
#ifndef FULCRUM_COMMON_RPC_FAILOVER_STUBS_H_
#define FULCRUM_COMMON_RPC_FAILOVER_STUBS_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/channel.h"

namespace fulcrum {

template <typename Service>
class FailoverStubs {
 public:
  using Stub = typename Service::Stub;
  using Dial = std::function<absl::StatusOr<std::shared_ptr<grpc::Channel>>(const std::string&)>;

  // `dial` opens a channel to a learnt address (null: none are learnt);
  // `also_on_deadline`: a call past its deadline moves on too, not only an
  // UNAVAILABLE one.
  explicit FailoverStubs(Dial dial = nullptr, bool also_on_deadline = false)
      : dial_(std::move(dial)), also_on_deadline_(also_on_deadline) {}

  // A process at `address` ("" when it has none to learn by) over `channel`.
  void Add(const std::string& address, std::shared_ptr<grpc::Channel> channel) {
    absl::MutexLock lock(&mu_);
    stubs_.emplace_back(address, Service::NewStub(std::move(channel)));
  }

  // Dials and adds the non-empty addresses not known yet; the first error
  // (the others are still added).
  absl::Status Learn(const std::vector<std::string>& addresses) {
    absl::Status first_error;
    if (!dial_) return first_error;
    for (const std::string& address : addresses) {
      if (address.empty() || Knows(address)) continue;
      absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = dial_(address);
      if (!channel.ok()) {
        first_error.Update(channel.status());
        continue;
      }
      Add(address, *std::move(channel));
    }
    return first_error;
  }

  bool empty() const {
    absl::MutexLock lock(&mu_);
    return stubs_.empty();
  }

  // The stub called last (at least one must have been added).
  Stub* Current() const {
    absl::MutexLock lock(&mu_);
    return stubs_[current_].second.get();
  }

  // `call(stub)` on the process that answered last and, while the answer is
  // unavailable (or past its deadline, see above), on each other once; the
  // last answer. `call` sets its own deadline.
  absl::Status Call(const std::function<absl::Status(Stub*)>& call) {
    size_t first = 0;
    size_t count = 0;
    {
      absl::MutexLock lock(&mu_);
      first = current_;
      count = stubs_.size();
    }
    absl::Status s = absl::FailedPreconditionError("no process to call");
    for (size_t attempt = 0; attempt < count; ++attempt) {
      const size_t index = (first + attempt) % count;
      Stub* stub = nullptr;
      {
        absl::MutexLock lock(&mu_);
        stub = stubs_[index].second.get();  // never removed: stays valid
      }
      s = call(stub);
      if (!absl::IsUnavailable(s) && !(also_on_deadline_ && absl::IsDeadlineExceeded(s))) {
        absl::MutexLock lock(&mu_);
        current_ = index;
        return s;
      }
    }
    return s;
  }

 private:
  bool Knows(const std::string& address) const {
    absl::MutexLock lock(&mu_);
    for (const auto& [known, stub] : stubs_) {
      if (known == address) return true;
    }
    return false;
  }

  const Dial dial_;
  const bool also_on_deadline_;
  mutable absl::Mutex mu_;
  std::vector<std::pair<std::string, std::unique_ptr<Stub>>> stubs_ ABSL_GUARDED_BY(mu_);
  size_t current_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_RPC_FAILOVER_STUBS_H_
