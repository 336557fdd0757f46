// ConsistencyPolicy: what one consistency mode decides for a parameter shard.
#ifndef FULCRUM_SERVER_SHARD_CONSISTENCY_POLICY_H_
#define FULCRUM_SERVER_SHARD_CONSISTENCY_POLICY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "proto/job.pb.h"
#include "server/shard/membership.h"

namespace fulcrum {

// When a pull may be served, which pushes are accepted, whether a push is
// applied at once or summed into a round, and when a round is complete —
// everything that differs between ASYNC, SYNC (BSP) and SSP. The shard owns
// one and holds the data; the policy holds the mode's state (rounds, who
// pushed, the version).
//
// Thread-safety: methods ending in Locked are called with the owning shard's
// mutex held (exclusively, unless they are const); PushApplied and, outside
// SYNC, Version may be called from any thread.
class ConsistencyPolicy {
 public:
  // Applies the gradients summed for a round, times `scale` (one over the
  // round's pushes: their mean). Called with the shard's mutex held.
  using ApplyRoundFn = std::function<void(float scale)>;

  // `staleness` is SSP's; `apply_round` is SYNC's.
  static std::unique_ptr<ConsistencyPolicy> Create(ConsistencyMode mode, int64_t staleness,
                                                   ApplyRoundFn apply_round);
  virtual ~ConsistencyPolicy() = default;

  virtual ConsistencyMode mode() const = 0;

  // Whether a pull at `clock` (>= 0: a round or ssp clock to wait for) may
  // be served now; and, for one that waited past its deadline, why not.
  virtual bool PullReadyLocked(int64_t clock, const WorkerMembership& members) const = 0;
  virtual std::string PullNotReadyLocked(int64_t clock, const WorkerMembership& members) const = 0;
  // Whether a pull of worker `id` at `clock` could only be satisfied by that
  // worker's own push (SYNC: an active worker asking for a round past the one
  // it has not pushed yet, having lost track of the shard's rounds because a
  // push went unanswered). The shard serves such a pull at once, at the
  // current round, which the reply names: waiting would hang the round.
  virtual bool PullWaitsOnPullerLocked(uint64_t id, int64_t clock,
                                       const WorkerMembership& members) const {
    return false;
  }

  // True when pushes are summed into rounds rather than applied at once:
  // then reads and snapshots are taken under the shard's mutex (reader side),
  // so they always see whole rounds.
  virtual bool SumsRounds() const = 0;

  // Accepts a push of worker `id` at `clock`, or refuses it (SYNC: ABORTED
  // for a clock other than the round being collected — the worker is out of
  // step with this shard and pulls again at its current round — and
  // ALREADY_EXISTS for the worker's second push of the round, which the
  // shard acknowledges and ignores). A SYNC push accepted is in flight until
  // PushSummedLocked.
  virtual absl::Status AdmitPushLocked(uint64_t id, int64_t clock) = 0;
  // SYNC: an accepted push has been added into the round's sums; the round
  // completes if every active worker has pushed — when `decide`. A backup
  // replaying its primary's operations passes false: the primary decides
  // when its pushes have all been summed, possibly after membership changes
  // that come later in its order of operations, and its decision reaches
  // the backup in that order (CloseRoundLocked).
  virtual void PushSummedLocked(const WorkerMembership& members, bool decide) {}
  // Counts a push applied at once (ASYNC, SSP) and returns the new version.
  virtual int64_t PushApplied() { return 0; }

  // The membership changed. SYNC: the round completes if the workers it
  // still waits for are gone; with `renumbered` (a new coordinator, whose
  // ids mean other workers) the round in progress is applied with what it
  // has and the next starts empty. Only when `decide` (see PushSummedLocked).
  virtual void MembershipChangedLocked(const WorkerMembership& members, bool renumbered,
                                       bool decide) {}
  // SYNC, on a backup: its primary closed round `round` at this point of its
  // operations. FAILED_PRECONDITION when this copy is not collecting that
  // round with every push summed (the copies differ).
  virtual absl::Status CloseRoundLocked(int64_t round) {
    return absl::FailedPreconditionError("no rounds in this consistency mode");
  }

  // SYNC: whether the round being collected has any push in it (admitted or
  // summed): a snapshot taken now would miss part of it.
  virtual bool RoundInProgressLocked() const { return false; }

  // Updates applied: rounds (SYNC; mutex held) or pushes.
  virtual int64_t Version() const = 0;
  // After a restore: the version the restored state had; the round being
  // collected starts empty.
  virtual void RestoreLocked(int64_t version) = 0;
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_SHARD_CONSISTENCY_POLICY_H_
