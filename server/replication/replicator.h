// The primary's side of a replicated shard: it snapshots itself at a
// sequence of its ReplicationLog (ParameterShard::StartReplica), installs
// that on the backup (server/replication/backup_service.h), then sends every
// operation after it, in order, in batches, or an empty batch every
// keepalive interval. A push is answered to its worker only once the backup
// acknowledged its operation. When the backup cannot be reached the primary
// asks the coordinator to drop it (and goes on alone) — or learns that the
// backup took over, and stops serving.
#ifndef FULCRUM_SERVER_REPLICATION_REPLICATOR_H_
#define FULCRUM_SERVER_REPLICATION_REPLICATOR_H_

#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/rpc/security.h"
#include "proto/shard_control.pb.h"
#include "server/replication/replication_log.h"
#include "server/shard/parameter_shard.h"

namespace fulcrum {

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

#endif  // FULCRUM_SERVER_REPLICATION_REPLICATOR_H_
