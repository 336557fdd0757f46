// The backup's side of a replicated shard, over gRPC (the ShardReplica
// service of proto/shard_control.proto): the primary installs its snapshot,
// then sends every operation after it, in order (server/replication/
// replicator.h). When the primary falls silent the backup takes over
// (server/replication/failover_role.h, server/shard_server.cc).
#ifndef FULCRUM_SERVER_REPLICATION_BACKUP_SERVICE_H_
#define FULCRUM_SERVER_REPLICATION_BACKUP_SERVICE_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/shard_control.grpc.pb.h"
#include "server/shard/parameter_shard.h"

namespace fulcrum {

// The backup's side: installs the primary's snapshot and applies its
// operations to `shard` (not owned), and tells how long the primary has been
// silent. Operations are acknowledged once received in order (the backup has
// them) and applied, in that order, by a thread of their own; Drain waits for
// them before the backup takes over. Thread-safe.
class ShardReplicaService final : public ShardReplica::Service {
 public:
  // `debug_delay`: a test hook, slept before acknowledging each batch.
  explicit ShardReplicaService(ParameterShard* shard,
                               absl::Duration debug_delay = absl::ZeroDuration());
  // Stops the applying thread (operations not applied yet are dropped).
  ~ShardReplicaService() override;

  grpc::Status InstallSnapshot(grpc::ServerContext* context, const ReplicaSnapshot* request,
                               InstallSnapshotResponse* response) override;
  grpc::Status Replicate(grpc::ServerContext* context, const ReplicateRequest* request,
                         ReplicateResponse* response) override;

  // Whether a snapshot was installed (the backup can take over).
  bool installed() const;
  // Forgets the installed snapshot: until the primary sends another, this
  // process may not take over (it registered as a backup again).
  void Forget();
  // The incarnation the replica set serves under (from the snapshot).
  uint64_t incarnation() const;
  // When the primary last reached this service (the construction time
  // before it ever did).
  absl::Time last_contact() const;
  // Waits until every operation received is applied.
  void Drain();
  // The coordinator's backup (shard 0): the newest job state applied
  // (nullopt: none yet).
  std::optional<CoordinatorReplica> coordinator() const;

 private:
  void ApplyLoop();

  ParameterShard* const shard_;
  const absl::Duration debug_delay_;
  // Held while an operation or a snapshot is applied to the shard.
  absl::Mutex apply_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  // Received in order, not yet applied; the last sequence received.
  std::deque<ReplicaOp> queue_ ABSL_GUARDED_BY(mu_);
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t received_ ABSL_GUARDED_BY(mu_) = 0;
  bool applying_ ABSL_GUARDED_BY(mu_) = false;
  // An operation failed to apply: the primary must send a snapshot again.
  bool diverged_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool installed_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t incarnation_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t primary_process_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_contact_ ABSL_GUARDED_BY(mu_);
  std::optional<CoordinatorReplica> coordinator_ ABSL_GUARDED_BY(mu_);
  std::thread applier_;
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_REPLICATION_BACKUP_SERVICE_H_
