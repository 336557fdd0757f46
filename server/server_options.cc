#include "server/server_options.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"

namespace fulcrum {

absl::Status ServerOptions::Validate() const {
  auto bad = [](auto&&... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  if (num_shards == 0 || shard_index >= num_shards) {
    return bad("shard_index (--shard_index=", shard_index,
               ") must be in [0, num_shards) (--num_shards=", num_shards, ")");
  }
  if (shard_index > 0 && coordinator_address.empty()) {
    return bad("shard ", shard_index,
               " needs the coordinator's address (--coordinator=HOST:PORT of shard 0)");
  }
  if (heartbeat_interval <= absl::ZeroDuration() || worker_timeout <= heartbeat_interval) {
    return bad(
        "heartbeat_interval (--heartbeat_interval) must be positive and worker_timeout "
        "(--worker_timeout) longer than it");
  }
  if ((checkpoint_every > absl::ZeroDuration() || checkpoint_every_steps > 0) &&
      checkpoint_dir.empty()) {
    return bad(
        "periodic checkpoints (--checkpoint_every) need a checkpoint folder "
        "(--checkpoint_dir)");
  }
  if (checkpoint_every < absl::ZeroDuration() || checkpoint_every_steps < 0) {
    return bad("checkpoint_every (--checkpoint_every) must not be negative");
  }
  if (failover_after < absl::Milliseconds(50) || replication_timeout <= absl::ZeroDuration()) {
    return bad(
        "failover_after (--failover_after_ms) must be at least 50 ms and replication_timeout "
        "positive");
  }
  if (keep_checkpoints < 1) return bad("keep_checkpoints (--keep_checkpoints) must be at least 1");
  if (checkpoint_full_every < 1) {
    return bad("checkpoint_full_every (--checkpoint_full_every) must be at least 1");
  }
  if (max_message_bytes <= 0 || max_message_bytes > (2047 << 20)) {
    return bad("max_message_bytes (--max_message_mb) must be positive, at most 2047 MiB");
  }
  if (max_workers == 0) return bad("max_workers (--max_workers) must be positive");
  if (max_sparse_rows == 0) return bad("max_sparse_rows (--max_sparse_rows) must be positive");
  if (store.stripe_elements == 0 || store.max_tensor_elements == 0) {
    return bad(
        "stripe_elements (--stripe_elements) and max_tensor_elements "
        "(--max_tensor_elements) must be positive");
  }
  if (service_threads < 0) return bad("service_threads must not be negative");
  if (max_pull_wait <= absl::ZeroDuration()) return bad("max_pull_wait must be positive");
  return absl::OkStatus();
}

}  // namespace fulcrum
