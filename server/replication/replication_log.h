// ReplicationLog: the updates a primary shard admitted, numbered in the order
// it admitted them, encoded on their way to its backup (the UpdateSink a
// replicated shard has) — and the calls waiting for the backup to have them.
#ifndef FULCRUM_SERVER_REPLICATION_REPLICATION_LOG_H_
#define FULCRUM_SERVER_REPLICATION_REPLICATION_LOG_H_

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/rpc/wire.h"
#include "proto/shard_control.pb.h"
#include "server/shard/update_sink.h"

namespace fulcrum {

// The shard numbers an operation (Reserve) under its own lock, so sequence
// order is admission order, and gives it its content (Put*, encoded here as
// a ReplicaOp) right after, outside that lock. The replicator
// (server/replication/replicator.h) takes filled operations in order (Take), sends
// them and acknowledges what the backup applied (Acknowledge); a call that
// changed the shard waits for its sequence (AwaitSafe) before answering.
//
// States: detached (no backup: nothing is numbered, nobody waits) ->
// Attach -> attached -> Detach (the coordinator dropped the backup) or
// StepDown (the backup took over: every wait fails from then on).
//
// Thread-safe.
class ReplicationLog final : public UpdateSink {
 public:
  ReplicationLog() = default;
  ReplicationLog(const ReplicationLog&) = delete;
  ReplicationLog& operator=(const ReplicationLog&) = delete;

  // UpdateSink. Reserve returns 0 when no backup is attached (then there is
  // nothing to fill or wait for). A push's dense gradients are copied once,
  // into payload slices the batch is sent from. AwaitSafe is OK once the
  // backup has applied `sequence` (at once for 0, or when the backup was
  // dropped with the coordinator's consent: this process then holds the
  // only copy); UNAVAILABLE past `deadline` or after StepDown. Attach starts
  // a backup whose state is the shard's as of now: operations not yet taken
  // belong to that state and are dropped; waits for them end when the
  // backup acknowledges the returned sequence.
  uint64_t Reserve() override;
  uint64_t last_reserved() const override;
  void PutPush(uint64_t sequence, const AdmittedPush& push) override;
  void PutRoundClosed(uint64_t sequence, int64_t version) override;
  void PutEviction(uint64_t sequence, absl::Span<const TableEviction> evicted) override;
  void PutMembership(uint64_t sequence, const WorkerMembership& membership) override;
  absl::Status AwaitSafe(uint64_t sequence, absl::Time deadline) override;
  uint64_t Attach() override;

  // The content of reserved operation `sequence` (its sequence field is set
  // here): an update replicated beside the shard's own (the coordinator's
  // job state). Every reserved sequence must be filled, or the stream stalls.
  void Fill(uint64_t sequence, const ReplicaOp& op);

  // Replicator side.
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
  // Fill with the operation already serialised, its sequence field unset.
  void Fill(uint64_t sequence, WireSlices op);

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

#endif  // FULCRUM_SERVER_REPLICATION_REPLICATION_LOG_H_
