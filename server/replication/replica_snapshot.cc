#include "server/replication/replica_snapshot.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/checkpoint/checkpoint.h"

namespace fulcrum {

ReplicaSnapshot EncodeReplicaState(const ReplicaState& state, uint32_t shard_index,
                                   uint32_t num_shards, uint64_t incarnation,
                                   uint64_t primary_process) {
  ReplicaSnapshot out;
  out.set_incarnation(incarnation);
  out.set_primary_process_incarnation(primary_process);
  out.set_sequence(state.sequence);
  out.set_shard(EncodeShardFile(state.snapshot, shard_index, num_shards));
  *out.mutable_membership() = state.membership.ToProto();
  for (const auto& [worker, ids] : state.recent_requests) {
    ReplicaSnapshot::Requests* requests = out.add_recent_requests();
    requests->set_worker_id(worker);
    requests->mutable_request_ids()->Add(ids.begin(), ids.end());
  }
  out.set_pushes(state.pushes);
  return out;
}

absl::StatusOr<ReplicaState> DecodeReplicaState(const ReplicaSnapshot& snapshot) {
  ReplicaState state;
  state.sequence = snapshot.sequence();
  absl::StatusOr<ShardSnapshot> shard = DecodeShardFile(snapshot.shard(), "replica snapshot");
  if (!shard.ok()) return shard.status();
  state.snapshot = std::move(*shard);
  state.membership = WorkerMembership::FromProto(snapshot.membership());
  state.pushes = snapshot.pushes();
  for (const ReplicaSnapshot::Requests& r : snapshot.recent_requests()) {
    state.recent_requests.emplace_back(
        r.worker_id(), std::vector<uint64_t>(r.request_ids().begin(), r.request_ids().end()));
  }
  return state;
}

}  // namespace fulcrum
