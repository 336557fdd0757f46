// Replication between the two processes of one parameter shard, over gRPC
// (the ShardReplica service of proto/shard_control.proto): the backup's
// service, and the primary's replicator that keeps the backup in step.
//
// The protocol: the primary snapshots itself at a sequence of its
// ReplicationLog (ParameterShard::StartReplica) and installs that on the
// backup, then sends every operation after it, in order, in batches, or an
// empty batch every keepalive interval. A push is answered to its worker only
// once the backup acknowledged its operation. When the backup cannot be
// reached the primary asks the coordinator to drop it (and goes on alone) —
// or learns that the backup took over, and stops serving. When the primary
// falls silent the backup asks the coordinator to take over
// (server/shard_server.cc).
#ifndef FULCRUM_SERVER_REPLICATION_SHARD_REPLICA_H_
#define FULCRUM_SERVER_REPLICATION_SHARD_REPLICA_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/rpc/security.h"
#include "proto/shard_control.grpc.pb.h"
#include "server/replication/replication_log.h"
#include "server/shard/parameter_shard.h"

namespace fulcrum {

// A ReplicaState as sent (`incarnation`: the replica set's, which a backup
// serves under once it takes over; `primary_process`: the sender's own id).
ReplicaSnapshot EncodeReplicaState(const ReplicaState& state, uint32_t shard_index,
                                   uint32_t num_shards, uint64_t incarnation,
                                   uint64_t primary_process);
// INVALID_ARGUMENT / DATA_LOSS for a snapshot that does not decode.
absl::StatusOr<ReplicaState> DecodeReplicaState(const ReplicaSnapshot& snapshot);

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

struct ShardReplicatorOptions {
  uint32_t shard_index = 0;
  uint32_t num_shards = 1;
  // The replica set's incarnation (as workers see it) and this process's id.
  uint64_t incarnation = 0;
  uint64_t process_incarnation = 0;
  // How the backup is dialled (its bearer token included).
  ClientSecurityOptions security;
  // An empty batch goes to the backup after this much idle time, so the
  // backup knows the primary is alive.
  absl::Duration keepalive = absl::Milliseconds(100);
  // Deadline of a batch of operations (and of the snapshot's preparation).
  absl::Duration rpc_timeout = absl::Seconds(2);
  // Deadline of installing a snapshot.
  absl::Duration install_timeout = absl::Seconds(60);
  // Asks the coordinator to drop backup `process`, which stopped following
  // at `unreachable_since` (ShardRegistry.DropBackup; the coordinator's own
  // shard asks its witnesses, server/replication/witnesses.h): OK, FAILED_PRECONDITION
  // (the backup took over), or another error (ask again 200 ms later;
  // meanwhile nothing this process changes is acknowledged).
  std::function<absl::Status(uint64_t process, absl::Time unreachable_since)> drop_backup;
  // This process's backup took over: it must stop serving.
  std::function<void()> step_down;
  // The coordinator's shard: the job state a snapshot carries (null: none).
  std::function<CoordinatorReplica()> coordinator_state;
};

// The primary's side: one thread that keeps the backup the coordinator names
// (SetBackup) in step with `shard` through `log` (both not owned; the shard
// must have replication enabled on `log`). Thread-safe.
class ShardReplicator {
 public:
  ShardReplicator(ParameterShard* shard, ReplicationLog* log, ShardReplicatorOptions options);
  // Stops.
  ~ShardReplicator();
  ShardReplicator(const ShardReplicator&) = delete;
  ShardReplicator& operator=(const ShardReplicator&) = delete;

  // The backup to keep in step ("" and 0: none). A new one gets a snapshot.
  void SetBackup(const std::string& address, uint64_t process);
  // Ends the thread; waits on the log end as if the backup were dropped
  // unless the shard stepped down.
  void Stop();

 private:
  void Loop();
  // Keeps `address` in step until it fails or changes: the error.
  absl::Status Follow(const std::string& address, uint64_t process);
  // What the coordinator says of a backup that failed; true if the thread
  // should go on.
  bool Drop(uint64_t process, const absl::Status& why);

  ParameterShard* const shard_;
  ReplicationLog* const log_;
  const ShardReplicatorOptions options_;
  absl::Mutex mu_;
  std::string address_ ABSL_GUARDED_BY(mu_);
  uint64_t process_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_REPLICATION_SHARD_REPLICA_H_
