#include "server/checkpoint/job_checkpointer.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"

namespace fulcrum {

JobCheckpointer::JobCheckpointer(const JobCheckpointerOptions& options, CheckpointStore* store,
                                 JobCoordinator* coordinator, ShardGroup* shards,
                                 MetricsRegistry* metrics)
    : options_(options),
      store_(store),
      coordinator_(coordinator),
      shards_(shards),
      written_(metrics->AddCounter("fulcrum_checkpoints_total", "Checkpoints written.")),
      failures_(metrics->AddCounter("fulcrum_checkpoint_failures_total",
                                    "Checkpoint writes that failed.")),
      seconds_(metrics->AddGauge("fulcrum_checkpoint_duration_seconds",
                                 "Duration of the last checkpoint.")),
      bytes_(metrics->AddGauge("fulcrum_checkpoint_bytes", "Size of the last checkpoint.")) {}

JobCheckpointer::~JobCheckpointer() { Stop(); }

absl::Status JobCheckpointer::Restore(const std::string& restore) {
  if (restore == "none") return absl::OkStatus();
  const uint32_t num_shards = shards_->num_shards();
  absl::StatusOr<LoadedCheckpoint> loaded;
  if (!restore.empty()) {
    CheckpointStore reader(CheckpointStoreOptions{});
    loaded = reader.Load(restore, 0, num_shards);
  } else if (store_ != nullptr) {
    loaded = store_->LoadNewest(0, num_shards);
    if (!loaded.ok()) {
      // None complete and verified (LoadNewest logged why for each).
      FULCRUM_LOG(INFO) << "no checkpoint to restore: " << loaded.status().message()
                        << "; starting fresh";
      return absl::OkStatus();
    }
  } else {
    return absl::OkStatus();  // no folder, nothing named: fresh
  }
  if (!loaded.ok()) return loaded.status();
  absl::Status restored = shards_->local()->Restore(loaded->shard);
  if (restored.ok()) restored = coordinator_->RestoreProgress(loaded->coordinator);
  if (!restored.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot restore ", loaded->info.path(), ": ", restored.message(),
                     " (start with --restore=none or another --checkpoint_dir)"));
  }
  coordinator_->RecordRestore(loaded->info);
  shards_->SetCommitted(loaded->manifest);
  FULCRUM_LOG(INFO) << "restored checkpoint " << loaded->info.path() << " at version "
                    << loaded->info.round() << ", " << loaded->coordinator.completed_size()
                    << " partitions trained";
  return absl::OkStatus();
}

absl::StatusOr<std::vector<CheckpointManifest::ShardFile>> WriteRemoteParts(
    const std::vector<std::shared_ptr<RemoteShard>>& remotes, uint64_t sequence, uint64_t delta_of,
    absl::Duration timeout) {
  std::vector<CheckpointManifest::ShardFile> files(remotes.size());
  // Every shard writes at once.
  std::vector<absl::StatusOr<CheckpointManifest::ShardFile>> written(
      remotes.size(), absl::UnknownError("not asked"));
  std::vector<std::thread> calls;
  for (size_t i = 1; i < remotes.size(); ++i) {
    calls.emplace_back(
        [&, i] { written[i] = remotes[i]->WriteCheckpoint(sequence, delta_of, timeout); });
  }
  for (std::thread& call : calls) call.join();
  for (size_t i = 1; i < remotes.size(); ++i) {
    if (!written[i].ok()) {
      const absl::Status& s = written[i].status();
      return absl::Status(s.code(), absl::StrCat("shard ", i, ": ", s.message()));
    }
    files[i] = *written[i];
  }
  return files;
}

absl::StatusOr<CheckpointInfo> JobCheckpointer::Checkpoint() {
  if (store_ == nullptr) {
    return absl::FailedPreconditionError("this ps_server has no --checkpoint_dir");
  }
  absl::MutexLock lock(&mu_);
  const absl::Time started = absl::Now();
  const uint32_t num_shards = shards_->num_shards();
  absl::StatusOr<CheckpointInfo> info = [&]() -> absl::StatusOr<CheckpointInfo> {
    FULCRUM_ASSIGN_OR_RETURN(const uint64_t sequence, store_->NextSequence());
    const uint64_t delta_of = DeltaOf();
    // Progress first: partitions it counts as trained are in the snapshots.
    const CoordinatorCheckpoint progress = coordinator_->SaveProgress();
    // The other shards write their parts meanwhile.
    absl::StatusOr<std::vector<CheckpointManifest::ShardFile>> files;
    std::thread remote([&] {
      absl::StatusOr<std::vector<std::shared_ptr<RemoteShard>>> remotes = shards_->ReadyRemotes();
      files = remotes.ok() ? WriteRemoteParts(*remotes, sequence, delta_of, options_.part_timeout)
                           : remotes.status();
    });
    if (own_parts_ == nullptr) {
      own_parts_ = std::make_unique<ShardPartWriter>(shards_->local(), store_, 0, num_shards);
    }
    int64_t version = 0;
    absl::StatusOr<CheckpointManifest::ShardFile> own =
        own_parts_->Write(sequence, delta_of, &version);
    remote.join();
    if (!own.ok()) return own.status();
    if (!files.ok()) {
      store_->Abandon(sequence);
      return files.status();
    }
    (*files)[0] = *own;
    CheckpointManifest manifest;
    manifest.set_format_version(kCheckpointFormatVersion);
    manifest.set_sequence(sequence);
    manifest.set_unix_seconds(absl::ToDoubleSeconds(started - absl::UnixEpoch()));
    manifest.set_round(version);
    manifest.set_num_shards(num_shards);
    for (const CheckpointManifest::ShardFile& file : *files) *manifest.add_shards() = file;
    *manifest.mutable_coordinator() = progress;
    FULCRUM_ASSIGN_OR_RETURN(CheckpointInfo written, store_->Commit(manifest, started));
    shards_->SetCommitted(manifest);
    last_committed_ = manifest;
    return written;
  }();
  if (!info.ok()) {
    FULCRUM_LOG(ERROR) << "checkpoint failed (training goes on): " << info.status();
    coordinator_->RecordCheckpointFailure(info.status());
    failures_->Increment();
    return info.status();
  }
  coordinator_->RecordCheckpoint(*info);
  written_->Increment();
  seconds_->Set(info->duration_seconds());
  bytes_->Set(info->bytes());
  FULCRUM_LOG(INFO) << "checkpoint " << info->path() << " at version " << info->round() << ": "
                    << info->bytes() << " bytes in "
                    << absl::StrFormat("%.3f", info->duration_seconds()) << " s";
  return info;
}

uint64_t JobCheckpointer::DeltaOf() const {
  if (last_committed_.sequence() == 0) return 0;
  // Whole every full_every-th: when the chain would reach that length.
  size_t chain = 0;
  for (const CheckpointManifest::ShardFile& file : last_committed_.shards()) {
    chain = std::max<size_t>(chain, file.delta_chain_size());
  }
  return chain + 2 > static_cast<size_t>(std::max(1, options_.full_every))
             ? 0
             : last_committed_.sequence();
}

void JobCheckpointer::Start() {
  if (store_ == nullptr || (options_.every <= absl::ZeroDuration() && options_.every_steps <= 0)) {
    return;
  }
  periodic_ = std::thread([this] { PeriodicLoop(); });
}

void JobCheckpointer::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (periodic_.joinable()) periodic_.join();
}

void JobCheckpointer::PeriodicLoop() {
  ParameterShard* shard = shards_->local();
  absl::Time last_time = absl::Now();
  int64_t last_version = shard->version().version;
  bool final_written = false;
  while (!stop_.WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
    const JobState state = coordinator_->state();
    if (state == WAITING_FOR_WORKERS) continue;
    const int64_t version = shard->version().version;
    const bool over = state == FINISHED || state == STOPPED;
    const bool due =
        (options_.every > absl::ZeroDuration() && absl::Now() - last_time >= options_.every) ||
        (options_.every_steps > 0 && version - last_version >= options_.every_steps);
    if (over ? final_written : (!due || version == last_version)) continue;
    Checkpoint().IgnoreError();  // failures are logged and in status
    last_time = absl::Now();
    last_version = version;
    if (over) final_written = true;
  }
}

}  // namespace fulcrum
