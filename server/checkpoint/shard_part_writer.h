// ShardPartWriter: writes one shard's parts of checkpoints, whole or as the
// changes since a part it wrote before (incremental checkpoints).
#ifndef FULCRUM_SERVER_CHECKPOINT_SHARD_PART_WRITER_H_
#define FULCRUM_SERVER_CHECKPOINT_SHARD_PART_WRITER_H_

#include <cstdint>
#include <map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "proto/checkpoint.pb.h"
#include "server/checkpoint/checkpoint.h"
#include "server/shard/parameter_shard.h"

namespace fulcrum {

// Remembers, for the last few parts it wrote, where their snapshots left the
// shard's tables (ShardMark) and the chain each built on. A delta is written
// only on a part this writer wrote itself (a restarted or promoted process
// writes a whole one first). Thread-safe: one write at a time. `shard` and
// `store` are not owned and must outlive the writer.
class ShardPartWriter {
 public:
  ShardPartWriter(ParameterShard* shard, CheckpointStore* store, uint32_t index, uint32_t count);

  // Part `sequence` of checkpoint `sequence`: a delta on checkpoint
  // `delta_of` if this writer wrote that part, else whole (also for
  // delta_of 0). The record says which (its delta_chain). `version` (if not
  // null) gets the shard version the part holds.
  absl::StatusOr<CheckpointManifest::ShardFile> Write(uint64_t sequence, uint64_t delta_of,
                                                      int64_t* version = nullptr);

 private:
  struct Written {
    ShardMark mark;
    std::vector<uint64_t> chain;  // the part's own delta chain
  };
  // Parts remembered: a delta needs the previous committed one, which is
  // among the last few written.
  static constexpr size_t kRemembered = 4;

  ParameterShard* const shard_;
  CheckpointStore* const store_;
  const uint32_t index_;
  const uint32_t count_;
  absl::Mutex mu_;
  std::map<uint64_t, Written> written_ ABSL_GUARDED_BY(mu_);
};

// A checkpoint of a one-shard job without a coordinator's progress (a
// benchmark's or a test's): `writer`'s part of checkpoint `sequence` (a
// delta on `delta_of` if it can), then its manifest naming `job`, committed
// to `store`. Returns the part's record.
absl::StatusOr<CheckpointManifest::ShardFile> CommitOneShardCheckpoint(CheckpointStore& store,
                                                                       ShardPartWriter& writer,
                                                                       uint64_t sequence,
                                                                       uint64_t delta_of,
                                                                       const JobSpec& job);

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_CHECKPOINT_SHARD_PART_WRITER_H_
