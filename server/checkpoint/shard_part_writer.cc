#include "server/checkpoint/shard_part_writer.h"

#include <algorithm>

#include "common/base/status_macros.h"

namespace fulcrum {

ShardPartWriter::ShardPartWriter(ParameterShard* shard, CheckpointStore* store, uint32_t index,
                                 uint32_t count)
    : shard_(shard), store_(store), index_(index), count_(count) {}

absl::StatusOr<CheckpointManifest::ShardFile> ShardPartWriter::Write(uint64_t sequence,
                                                                     uint64_t delta_of,
                                                                     int64_t* version) {
  absl::MutexLock lock(&mu_);
  auto base = delta_of == 0 ? written_.end() : written_.find(delta_of);
  Written here;
  ShardSnapshot snapshot =
      shard_->Snapshot(base == written_.end() ? nullptr : &base->second.mark, &here.mark);
  if (base != written_.end()) {
    here.chain = base->second.chain;
    here.chain.push_back(delta_of);
    snapshot.delta_chain = here.chain;
  }
  if (version != nullptr) *version = snapshot.version;
  absl::StatusOr<CheckpointManifest::ShardFile> file =
      store_->WritePart(sequence, snapshot, index_, count_);
  if (!file.ok()) return file;
  written_[sequence] = std::move(here);
  while (written_.size() > kRemembered) written_.erase(written_.begin());
  // Evictions older than every remembered part's mark are in every delta
  // that can still be written.
  const ShardMark& oldest = written_.begin()->second.mark;
  shard_->ForgetEvictionsBefore(oldest);
  return file;
}

absl::StatusOr<CheckpointManifest::ShardFile> CommitOneShardCheckpoint(CheckpointStore& store,
                                                                       ShardPartWriter& writer,
                                                                       uint64_t sequence,
                                                                       uint64_t delta_of,
                                                                       const JobSpec& job) {
  const absl::Time started = absl::Now();
  int64_t version = 0;
  FULCRUM_ASSIGN_OR_RETURN(CheckpointManifest::ShardFile file,
                           writer.Write(sequence, delta_of, &version));
  CheckpointManifest manifest;
  manifest.set_format_version(kCheckpointFormatVersion);
  manifest.set_sequence(sequence);
  manifest.set_num_shards(1);
  manifest.set_round(version);
  manifest.set_unix_seconds(absl::ToDoubleSeconds(started - absl::UnixEpoch()));
  *manifest.add_shards() = file;
  *manifest.mutable_coordinator()->mutable_job() = job;
  FULCRUM_RETURN_IF_ERROR(store.Commit(manifest, started).status());
  return file;
}

}  // namespace fulcrum
