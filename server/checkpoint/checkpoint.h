// Checkpoints: the on-disk format of a shard's state and the job's progress,
// and CheckpointStore, which writes them atomically and finds the newest one
// that verifies.
//
// A shard's part is whole, or a delta: the dense tensors whole and each
// sparse table's rows changed and keys evicted since the checkpoint before
// (its header names the chain it builds on: the whole part, then each delta;
// they are in the sibling folders). Loading a delta loads its chain and
// applies each in turn; pruning keeps every folder a kept one builds on.
//
// Layout: one folder per checkpoint, <dir>/ckpt-<sequence, 9 digits>/, with
//   shard-<i, 5 digits>-of-<n, 5 digits>   one per parameter-server shard
//   MANIFEST                               written last: its presence marks
//                                          the checkpoint complete
// Every file is written under a ".tmp" name, fsynced, renamed, and the folder
// fsynced; the manifest only after the shard files are durable.
//
// Shard file (all integers little-endian):
//   "FULCRUMS" | u32 format version (3)
//   u32 header length | header | u32 CRC-32C of header
//     header: i64 version | u32 shard index | u32 shard count |
//             u32 tensor count | u32 n | u64 delta chain[n] (none: whole)
//   per tensor:
//     u32 metadata length | metadata | u32 CRC-32C of metadata
//       metadata: u32 name length | name | u32 rank | i64 dims[rank] |
//                 u32 slot count | u64 elements | i64 optimizer steps
//     data: float32 values[elements], then each slot's float32[elements]
//     u32 CRC-32C of data
//   u32 length (4) | u32 sparse table count | u32 CRC-32C of the count
//   per sparse table:
//     u32 metadata length | metadata | u32 CRC-32C of metadata
//       metadata: u32 name length | name | u32 dim | u32 slot count |
//                 u64 rows
//     data: per row, u64 key | u64 last update (the table's update count)
//           | u32 last update (Unix seconds) | u32 updates |
//           float32[dim * (1 + slot count)] (values, then each slot)
//     u32 CRC-32C of data
//     u32 state length | state | u32 CRC-32C of state
//       state: u64 table updates | u64 admitted | u64 refused |
//              u64 evicted | u64 n | n * (u64 id, u32 count) (EXACT
//              admission counts) | u64 s | u64 halvings[s] (EXACT, per
//              stripe) | u64 cells | u64 b | b * (u64 first cell, u64 k,
//              u8 cells[k]) (Bloom cells, in blocks) | u64 m |
//              u64 removed keys[m] (a delta's)
// Manifest file:
//   "FULCRUMM" | u32 format version (2) | u32 length |
//   CheckpointManifest (protobuf) | u32 CRC-32C of the protobuf bytes
// The manifest also records each shard file's size and whole-file CRC-32C.
//
// Consistency: in sync mode a shard's snapshot sits at a round boundary. In
// async and ssp modes it is taken while pushes go on: every lock stripe is
// consistent and the snapshot holds at least the pushes its version counts,
// but a push may be in some stripes and not others (as for any running
// asynchronous parameter server). The job progress is captured just before
// the shard state, so partitions it counts as trained are in the parameters.
#ifndef FULCRUM_SERVER_CHECKPOINT_CHECKPOINT_H_
#define FULCRUM_SERVER_CHECKPOINT_CHECKPOINT_H_

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/base/file_system.h"
#include "proto/checkpoint.pb.h"
#include "proto/coordinator.pb.h"
#include "server/shard/parameter_shard.h"

namespace fulcrum {

// The manifest's format, and the shard file's (3 added rows' ages and the
// tables' state; version 2 files still load, their rows without an age).
inline constexpr uint32_t kCheckpointFormatVersion = 2;
inline constexpr uint32_t kShardFormatVersion = 3;

// "ckpt-<sequence, 9 digits>": the folder of checkpoint `sequence`.
std::string CheckpointFolderName(uint64_t sequence);

// Serialises a shard snapshot in the format above.
std::string EncodeShardFile(const ShardSnapshot& shard, uint32_t shard_index, uint32_t num_shards);
// Parses and verifies a shard file; DATA_LOSS naming `path` and the reason
// (wrong magic or version, truncation, checksum mismatch) otherwise.
absl::StatusOr<ShardSnapshot> DecodeShardFile(absl::string_view data, const std::string& path);

struct CheckpointStoreOptions {
  // The folder holding the checkpoints; created if missing.
  std::string dir;
  // Complete checkpoints kept; older ones are deleted after each write.
  int keep = 3;
  // Not owned; PosixFileSystem() unless a test substitutes one.
  FileSystem* fs = nullptr;
  // Test hook: sleep this long halfway through writing the shard file, so a
  // test can kill the process mid-write. Zero in production.
  absl::Duration debug_write_delay = absl::ZeroDuration();
};

// A checkpoint read back.
struct LoadedCheckpoint {
  CheckpointInfo info;
  CheckpointManifest manifest;  // names every shard's part
  ShardSnapshot shard;          // the loading shard's part
  CoordinatorCheckpoint coordinator;
};

// Thread-compatible: one writer at a time (the server serialises writes).
class CheckpointStore {
 public:
  explicit CheckpointStore(const CheckpointStoreOptions& options);

  // Writes checkpoint <next sequence> for one shard (this process is the only
  // one) and the job progress: WritePart, then Commit. `started` is when the
  // snapshot was taken (for the duration).
  absl::StatusOr<CheckpointInfo> Write(const ShardSnapshot& shard,
                                       const CoordinatorCheckpoint& progress, absl::Time started);

  // The sequence number after the newest folder here, and at least the one
  // StartAfter named.
  absl::StatusOr<uint64_t> NextSequence();
  // Later checkpoints are numbered after `sequence` (a coordinator that took
  // over from another, whose checkpoints the shards' folders hold).
  void StartAfter(uint64_t sequence) { start_after_ = std::max(start_after_, sequence); }

  // Writes shard `index` of `count`'s part of checkpoint `sequence` durably
  // (replacing a leftover folder of that number) and says what it wrote.
  absl::StatusOr<CheckpointManifest::ShardFile> WritePart(uint64_t sequence,
                                                          const ShardSnapshot& shard,
                                                          uint32_t index, uint32_t count);

  // The coordinator, once every part of `manifest` is durable: writes the
  // manifest (which makes the checkpoint complete), then deletes all but the
  // newest `keep` complete checkpoints and any older incomplete ones. On
  // failure the folder is removed where possible and earlier checkpoints
  // are untouched.
  absl::StatusOr<CheckpointInfo> Commit(const CheckpointManifest& manifest, absl::Time started);

  // Removes the folder of a checkpoint that will not be committed.
  void Abandon(uint64_t sequence);

  // Another shard, told by the coordinator that `manifest` is committed:
  // records it beside this shard's part (if that is here) and prunes.
  absl::Status RecordCommitted(const CheckpointManifest& manifest);

  // The newest complete checkpoint whose files verify, falling back to older
  // ones (each skipped one is logged with its reason). NOT_FOUND if there is
  // none. Loads shard `index` of `count`'s part.
  absl::StatusOr<LoadedCheckpoint> LoadNewest(uint32_t index = 0, uint32_t count = 1);

  // Loads the checkpoint folder `path`; DATA_LOSS or NOT_FOUND saying why
  // not, FAILED_PRECONDITION if it was written by another number of shards.
  absl::StatusOr<LoadedCheckpoint> Load(const std::string& path, uint32_t index = 0,
                                        uint32_t count = 1);

  // Loads shard `index`'s part of `manifest` from this folder, verified
  // against the size and checksum the manifest records.
  absl::StatusOr<ShardSnapshot> LoadPart(const CheckpointManifest& manifest, uint32_t index);

  // Complete checkpoints (those with a manifest), oldest first, as paths.
  absl::StatusOr<std::vector<std::string>> ListComplete();

  // The manifest of checkpoint folder `path`; NOT_FOUND without one,
  // DATA_LOSS if it does not verify.
  absl::StatusOr<CheckpointManifest> ReadManifest(const std::string& path);
  // Shard `index`'s part of `manifest` in folder `path`, whole: a delta
  // with the chain it builds on (from `path`'s sibling folders) applied.
  absl::StatusOr<ShardSnapshot> LoadPartFrom(const std::string& path,
                                             const CheckpointManifest& manifest, uint32_t index);
  // Shard `index`'s part of `manifest` in folder `path` as written (a delta
  // stays a delta: see ShardSnapshot::delta_chain), verified against the
  // manifest's size and checksum.
  absl::StatusOr<ShardSnapshot> ReadPart(const std::string& path,
                                         const CheckpointManifest& manifest, uint32_t index);

 private:
  absl::Status WriteFileAtomically(const std::string& dir, const std::string& name,
                                   absl::string_view data, bool slow);
  absl::Status WriteManifest(const std::string& path, const CheckpointManifest& manifest);
  std::string PathOf(uint64_t sequence) const;
  absl::Status Prune();

  const CheckpointStoreOptions options_;
  FileSystem* const fs_;
  uint64_t start_after_ = 0;
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_CHECKPOINT_CHECKPOINT_H_
