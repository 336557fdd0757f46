// ServerOptions: everything a ps_server process is started with, and the
// checks of their ranges and combinations.
#ifndef FULCRUM_SERVER_SERVER_OPTIONS_H_
#define FULCRUM_SERVER_SERVER_OPTIONS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/rpc/security.h"
#include "proto/job.pb.h"
#include "server/job_spec.h"
#include "server/store/parameter_store.h"

namespace fulcrum {

struct ServerOptions {
  // host:port to listen on; port 0 picks a free one (see bound_port()).
  std::string listen_address = "0.0.0.0:0";
  // Also listen on this Unix domain socket (empty: none), for workers on the
  // same machine: no TCP stack in the way. Same credentials as the TCP port.
  std::string unix_socket;
  // The job, complete (Job::Complete; ps_server: --job or --model). Needed
  // by the coordinator (shard 0; ParameterServer::Create refuses one
  // without); the other shards, and the coordinator's backup, take it from
  // the coordinator.
  Job job;
  // Rows a sparse table may hold unless its spec says (RESOURCE_EXHAUSTED
  // beyond). 2^26 rows of dim 8 with Adagrad are 4 GiB.
  uint64_t max_sparse_rows = uint64_t{1} << 26;
  // Live workers accepted at once (RESOURCE_EXHAUSTED beyond).
  uint32_t max_workers = 1024;
  // Worker liveness (see CoordinatorOptions): heartbeat every
  // heartbeat_interval, dead after worker_timeout of silence.
  absl::Duration heartbeat_interval = absl::Seconds(1);
  absl::Duration worker_timeout = absl::Seconds(5);
  ParameterStoreOptions store;
  // This process serves shard `shard_index` of `num_shards`
  // (common/shard_map.h). Shard 0 is the coordinator. Any other registers
  // with the coordinator at `coordinator_address` and takes the job from it.
  uint32_t num_shards = 1;
  uint32_t shard_index = 0;
  // Comma-separated: the coordinator's processes (a replicated coordinator's
  // two; calls move to the next when one is unreachable). Shard 0: set on
  // the coordinator's backup, naming the coordinator.
  std::string coordinator_address;
  // Shard 0, the coordinator: where its backup runs. Named in the shard
  // lists workers get; and a coordinator started while that backup serves
  // the job (it took over) becomes its backup instead.
  std::string coordinator_backup_address;
  // Shards but 0: where workers and the coordinator reach this one. Empty:
  // "<listen host>:<bound port>", or "<hostname>:<bound port>" when
  // listening on every address.
  std::string advertise_address;
  // How this process dials the other ps_servers (TLS CA and client
  // certificate when they serve TLS; plaintext by default). Its auth_token
  // is set from `auth_token` by ParameterServer::Create.
  ClientSecurityOptions peer_security;
  // Shards but 0: how long Create keeps trying to reach the coordinator.
  absl::Duration coordinator_wait = absl::Minutes(2);
  // Largest gRPC message accepted or sent. 256 MiB holds a 64M-float slice.
  int max_message_bytes = 256 << 20;
  // Replicated shards (a second process started for a shard index becomes
  // its backup): a backup whose primary has been silent this long asks the
  // coordinator to take over; a push waits at most replication_timeout for
  // the backup to have it (then UNAVAILABLE: the worker retries).
  absl::Duration failover_after = absl::Milliseconds(500);
  absl::Duration replication_timeout = absl::Seconds(5);
  // Threads serving push and pull calls, each polling a completion queue of
  // its own; 0: one per core, at least 2.
  int service_threads = 0;
  // Longest a pull waits for its round or the job start when the client's
  // deadline is later. The worker retries after it.
  absl::Duration max_pull_wait = absl::Seconds(60);

  // Checkpoints (server/checkpoint/checkpoint.h). Empty dir: none are written, and none
  // restored unless `restore` names one.
  std::string checkpoint_dir;
  // Periodic checkpoints: every this long and/or every this many shard
  // versions (rounds in sync, pushes otherwise); zero disables each.
  absl::Duration checkpoint_every = absl::ZeroDuration();
  int64_t checkpoint_every_steps = 0;
  int keep_checkpoints = 3;
  // Every this-many-th checkpoint is whole; the others are deltas (dense
  // tensors, and the sparse rows changed or evicted since the one before).
  int checkpoint_full_every = 8;
  // "" restores the newest complete checkpoint in checkpoint_dir (if any);
  // "none" starts fresh; anything else is the path of a checkpoint folder.
  std::string restore;
  // Test hook: pause halfway through writing each checkpoint.
  absl::Duration debug_checkpoint_delay = absl::ZeroDuration();
  // Test hook: a backup waits this long before applying each batch of its
  // primary's updates (a slow backup or link).
  absl::Duration debug_replication_delay = absl::ZeroDuration();

  // Prometheus metrics at http://metrics_host:metrics_port/metrics; a
  // negative port serves none, 0 picks a free one (see metrics_port()).
  std::string metrics_host = "0.0.0.0";
  int metrics_port = -1;

  // TLS (optionally mutual) for the gRPC port; plaintext when unset.
  ServerSecurityOptions security;
  // Non-empty: every Fulcrum RPC must carry "authorization: Bearer <token>"
  // (UNAUTHENTICATED otherwise). The gRPC health service stays open. This
  // process presents the same token to the other ps_servers.
  std::string auth_token;

  // OK, or INVALID_ARGUMENT naming the first setting (and its ps_server
  // flag) out of range or inconsistent with another. ParameterServer::Create
  // checks; main turns a failure into exit code 2.
  absl::Status Validate() const;
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_SERVER_OPTIONS_H_
