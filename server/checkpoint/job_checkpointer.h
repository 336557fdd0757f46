// JobCheckpointer: the coordinator's side of checkpoints — restoring the job
// at start, and writing whole checkpoints of every shard.
#ifndef FULCRUM_SERVER_CHECKPOINT_JOB_CHECKPOINTER_H_
#define FULCRUM_SERVER_CHECKPOINT_JOB_CHECKPOINTER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "proto/coordinator.pb.h"
#include "server/checkpoint/checkpoint.h"
#include "server/checkpoint/shard_part_writer.h"
#include "server/coordinator/coordinator.h"
#include "server/coordinator/remote_shard.h"
#include "server/coordinator/shard_group.h"

namespace fulcrum {

// Asks every shard in `remotes` (by index; index 0, the caller's own, is
// skipped) to write its part of checkpoint `sequence` (a delta on `delta_of`
// where it can; 0: whole), all at once, each within `timeout`: their file
// records by index, or the first error, naming its shard.
absl::StatusOr<std::vector<CheckpointManifest::ShardFile>> WriteRemoteParts(
    const std::vector<std::shared_ptr<RemoteShard>>& remotes, uint64_t sequence, uint64_t delta_of,
    absl::Duration timeout);

struct JobCheckpointerOptions {
  // Periodic checkpoints while the job runs: every this long and/or every
  // this many versions of the coordinator's shard (rounds in sync, pushes
  // otherwise); zero disables each. One more is written when the job ends.
  absl::Duration every = absl::ZeroDuration();
  int64_t every_steps = 0;
  // How long another shard may take to write its part.
  absl::Duration part_timeout = absl::Seconds(120);
  // Incremental checkpoints: every full_every-th checkpoint is whole; the
  // others hold the dense tensors and the sparse rows changed and evicted
  // since the checkpoint before. 1: every one whole.
  int full_every = 8;
};

// A checkpoint is the coordinator's progress, its own shard's part and the
// other shards' parts (written in parallel by them, whole or as deltas on
// the last committed checkpoint), then a manifest naming them all, written
// last: without it the checkpoint is incomplete. A failed
// write fails that checkpoint only (logged, counted in status and metrics);
// training goes on.
//
// Thread-safe; one checkpoint at a time. `store` may be null (no checkpoint
// folder: Checkpoint is refused). `store`, `coordinator`, `shards` and
// `metrics` are not owned and must outlive the checkpointer.
class JobCheckpointer {
 public:
  JobCheckpointer(const JobCheckpointerOptions& options, CheckpointStore* store,
                  JobCoordinator* coordinator, ShardGroup* shards, MetricsRegistry* metrics);
  // Stops.
  ~JobCheckpointer();
  JobCheckpointer(const JobCheckpointer&) = delete;
  JobCheckpointer& operator=(const JobCheckpointer&) = delete;

  // Before any worker registers: `restore` "" loads the newest complete
  // checkpoint in the store (none there: starts fresh), "none" starts fresh,
  // anything else is a checkpoint folder's path. The coordinator's shard and
  // progress are restored; the other shards restore their parts when they
  // register. FAILED_PRECONDITION for a checkpoint of another job or one that
  // does not verify; NOT_FOUND for a named one that is missing.
  absl::Status Restore(const std::string& restore);

  // Writes a checkpoint now. FAILED_PRECONDITION without a store.
  absl::StatusOr<CheckpointInfo> Checkpoint();

  // Starts and stops the periodic checkpoints (a no-op without a store or a
  // period). Stop is idempotent.
  void Start();
  void Stop();

 private:
  void PeriodicLoop();
  // The checkpoint the next one is a delta on (0: whole).
  uint64_t DeltaOf() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const JobCheckpointerOptions options_;
  CheckpointStore* const store_;
  JobCoordinator* const coordinator_;
  ShardGroup* const shards_;
  Counter* const written_;
  Counter* const failures_;
  Gauge* const seconds_;
  Gauge* const bytes_;
  absl::Mutex mu_;  // one checkpoint at a time
  // The coordinator's own shard's parts.
  std::unique_ptr<ShardPartWriter> own_parts_ ABSL_GUARDED_BY(mu_);
  // The newest checkpoint committed by this checkpointer (none: sequence 0).
  CheckpointManifest last_committed_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread periodic_;
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_CHECKPOINT_JOB_CHECKPOINTER_H_
