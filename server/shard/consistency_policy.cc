#include "server/shard/consistency_policy.h"

#include <atomic>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace fulcrum {
namespace {

// ASP: every push applied as it arrives; pulls never wait.
class AsyncPolicy : public ConsistencyPolicy {
 public:
  ConsistencyMode mode() const override { return ASYNC; }
  bool PullReadyLocked(int64_t, const WorkerMembership&) const override { return true; }
  std::string PullNotReadyLocked(int64_t, const WorkerMembership&) const override { return ""; }
  bool SumsRounds() const override { return false; }
  absl::Status AdmitPushLocked(uint64_t, int64_t) override { return absl::OkStatus(); }
  int64_t PushApplied() override { return version_.fetch_add(1) + 1; }
  int64_t Version() const override { return version_.load(); }
  void RestoreLocked(int64_t version) override { version_ = version; }

 private:
  std::atomic<int64_t> version_{0};
};

// SSP(s): pushes applied as they arrive, but a pull at clock c waits until
// every active worker's clock is at least c - s.
class SspPolicy final : public AsyncPolicy {
 public:
  explicit SspPolicy(int64_t staleness) : staleness_(staleness) {}
  ConsistencyMode mode() const override { return SSP; }
  bool PullReadyLocked(int64_t clock, const WorkerMembership& members) const override {
    return members.SlowestActiveClock() >= clock - staleness_;
  }
  std::string PullNotReadyLocked(int64_t clock, const WorkerMembership& members) const override {
    return absl::StrCat("clock ", clock, " is more than ", staleness_,
                        " ahead of the slowest worker (clock ", members.SlowestActiveClock(),
                        ") past the deadline");
  }

 private:
  const int64_t staleness_;
};

// BSP: the pushes of round r are summed; when every active worker has pushed
// r their mean is applied once and round r + 1 opens. A pull for round r
// waits until it is open.
class SyncPolicy final : public ConsistencyPolicy {
 public:
  explicit SyncPolicy(ApplyRoundFn apply_round) : apply_round_(std::move(apply_round)) {}
  ConsistencyMode mode() const override { return SYNC; }
  bool PullReadyLocked(int64_t clock, const WorkerMembership&) const override {
    return round_ >= clock;
  }
  bool PullWaitsOnPullerLocked(uint64_t id, int64_t clock,
                               const WorkerMembership& members) const override {
    return clock > round_ && members.IsActive(id) && !pushed_.contains(id);
  }
  std::string PullNotReadyLocked(int64_t clock, const WorkerMembership&) const override {
    return absl::StrCat("round ", clock, " not complete before the deadline (shard at round ",
                        round_, ")");
  }
  bool SumsRounds() const override { return true; }

  absl::Status AdmitPushLocked(uint64_t id, int64_t clock) override {
    if (clock != round_) {
      return absl::AbortedError(absl::StrCat("push for round ", clock,
                                             " but the shard is collecting round ", round_,
                                             "; pull again at its current round"));
    }
    if (!pushed_.insert(id).second) {
      return absl::AlreadyExistsError(
          absl::StrCat("worker ", id, " already pushed round ", round_));
    }
    ++in_flight_;
    return absl::OkStatus();
  }

  void PushSummedLocked(const WorkerMembership& members, bool decide) override {
    --in_flight_;
    if (decide) MaybeCompleteRound(members);
  }

  void MembershipChangedLocked(const WorkerMembership& members, bool renumbered,
                               bool decide) override {
    if (!decide) return;
    if (renumbered && !pushed_.empty() && in_flight_ == 0) CompleteRound();
    // A gradient already summed into the round stays in it.
    MaybeCompleteRound(members);
  }

  absl::Status CloseRoundLocked(int64_t round) override {
    if (round != round_ || in_flight_ > 0 || pushed_.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the primary closed round ", round, "; this copy is collecting round ",
                       round_, in_flight_ > 0 ? " with pushes still being summed" : ""));
    }
    CompleteRound();
    return absl::OkStatus();
  }

  bool RoundInProgressLocked() const override { return !pushed_.empty(); }
  int64_t Version() const override { return round_; }
  void RestoreLocked(int64_t version) override {
    pushed_.clear();
    round_ = version;
  }

 private:
  void MaybeCompleteRound(const WorkerMembership& members) {
    if (in_flight_ > 0 || pushed_.empty()) return;
    for (const auto& [id, clock] : members.active) {
      if (!pushed_.contains(id)) return;
    }
    CompleteRound();
  }

  void CompleteRound() {
    // The mean gradient over the round's pushes: one big mini-batch.
    apply_round_(1.0f / static_cast<float>(pushed_.size()));
    pushed_.clear();
    ++round_;
  }

  const ApplyRoundFn apply_round_;
  int64_t round_ = 0;                     // rounds applied
  absl::flat_hash_set<uint64_t> pushed_;  // who pushed the round being collected
  int in_flight_ = 0;                     // pushes still adding into the sums
};

}  // namespace

std::unique_ptr<ConsistencyPolicy> ConsistencyPolicy::Create(ConsistencyMode mode,
                                                             int64_t staleness,
                                                             ApplyRoundFn apply_round) {
  switch (mode) {
    case SYNC:
      return std::make_unique<SyncPolicy>(std::move(apply_round));
    case SSP:
      return std::make_unique<SspPolicy>(staleness);
    default:
      return std::make_unique<AsyncPolicy>();
  }
}

}  // namespace fulcrum
