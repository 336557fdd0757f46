// ReplicationLog: the updates a primary shard admitted, numbered in the order
// it admitted them, on their way to its backup — and the calls waiting for the
// backup to have them.
#ifndef FULCRUM_SERVER_REPLICATION_LOG_H_
#define FULCRUM_SERVER_REPLICATION_LOG_H_

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/rpc/wire.h"
#include "proto/shard_control.pb.h"

namespace fulcrum {

// The shard numbers an operation (Reserve) under its own lock, so sequence
// order is admission order, and gives it its content (Fill) right after,
// outside that lock. The replicator (server/shard_replicator.h) takes filled
// operations in order (Take), sends them and acknowledges what the backup
// applied (Acknowledge); a call that changed the shard waits for its
// sequence (AwaitReplicated) before answering.
//
// States: detached (no backup: nothing is numbered, nobody waits) ->
// Attach -> attached -> Detach (the coordinator dropped the backup) or
// StepDown (the backup took over: every wait fails from then on).
//
// Thread-safe.
class ReplicationLog {
 public:
  ReplicationLog() = default;
  ReplicationLog(const ReplicationLog&) = delete;
  ReplicationLog& operator=(const ReplicationLog&) = delete;

  // The next sequence number, or 0 when no backup is attached (then there is
  // nothing to fill or wait for). Call under the shard's lock.
  uint64_t Reserve();
  // The content of reserved operation `sequence` (its sequence field is set
  // here). Every reserved sequence must be filled, or the stream stalls.
  void Fill(uint64_t sequence, const ReplicaOp& op);
  // The same with the operation already serialised (a push's, whose
  // gradients are slices of their own: sent without another copy), its
  // sequence field unset.
  void Fill(uint64_t sequence, WireSlices op);
  // The newest sequence reserved (0: none).
  uint64_t last_reserved() const;

  // OK once the backup has applied `sequence` (at once for 0, or when the
  // backup was dropped with the coordinator's consent: this process then
  // holds the only copy); UNAVAILABLE past `deadline` or after StepDown.
  absl::Status AwaitReplicated(uint64_t sequence, absl::Time deadline);

  // Replicator side. Starts a backup whose state is the shard's as of now
  // (the caller holds the shard's lock, with no admitted update unapplied):
  // returns the sequence that state is at. Operations not yet taken belong
  // to that state and are dropped; waits for them end when the backup
  // acknowledges the returned sequence.
  uint64_t Attach();
  // Up to `max_bytes` of consecutive filled operations after the last taken
  // (at least one if any), waiting up to `wait` for the first: each a
  // serialised ReplicaOp.
  std::vector<WireSlices> Take(size_t max_bytes, absl::Duration wait);
  // The backup has applied every operation up to `sequence`.
  void Acknowledge(uint64_t sequence);
  // No backup any more (the coordinator agreed): waits end OK; nothing is
  // numbered until the next Attach.
  void Detach();
  // The backup took over this shard: waits fail UNAVAILABLE, for good.
  void StepDown();
  // Whether StepDown was called.
  bool stepped_down() const;
  // Detached again, whatever the state (a stepped-down process that became
  // a backup, then took over itself).
  void Reset();

 private:
  enum class State { kDetached, kAttached, kSteppedDown };

  mutable absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kDetached;
  uint64_t last_reserved_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t last_taken_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t acknowledged_ ABSL_GUARDED_BY(mu_) = 0;
  // Reserved and not yet taken; empty optionals are not filled yet.
  std::map<uint64_t, std::optional<WireSlices>> pending_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_REPLICATION_LOG_H_
