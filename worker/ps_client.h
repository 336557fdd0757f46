// PsClient: how a worker reads parameters from and sends gradients to the
// parameter servers, apart from the transport (worker/grpc_ps_client.h
// talks gRPC).
#ifndef FULCRUM_WORKER_PS_CLIENT_H_
#define FULCRUM_WORKER_PS_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/worker_identity.h"
#include "proto/job.pb.h"
#include "worker/parameter_batch.h"

namespace fulcrum {

// What the servers said about themselves in a reply.
struct ServerVersion {
  int64_t version = 0;       // shard 0's
  int64_t round = 0;         // shard 0's
  uint64_t incarnation = 0;  // shard 0's
  double wait_seconds = 0;   // longest any shard waited for its round or clock
  // Per shard, by index: the round each is collecting (sync workers follow
  // every shard's rounds; a restarted shard may count from another number).
  std::vector<int64_t> rounds;
};

// Implementations must be safe to call from one thread at a time.
class PsClient {
 public:
  virtual ~PsClient() = default;

  // Takes the shard map a registration returned: shard addresses by index,
  // an empty one (or an empty list) meaning the coordinator's own process;
  // and each shard's backup address ("" or missing: none), which a call that
  // finds its shard unavailable moves to.
  virtual absl::Status Connect(const std::vector<std::string>& shard_addresses,
                               const std::vector<std::string>& backup_addresses) = 0;
  // Shards the client talks to; clocks and rounds are per shard.
  virtual int num_shards() const = 0;

  // Every call names the worker as its registration did (id and coordinator
  // incarnation); FAILED_PRECONDITION when a server no longer knows it (the
  // worker registers again).
  //
  // ABORTED when a shard restarted since the last call (see RequestHeader),
  // or a sync push named another round than the shard's: the caller pulls
  // again at those shards' current rounds (TakeRestartedShards). ABORTED
  // wins over any other shard's error in the same call.
  //
  // Fills batch->dense (resized) and each batch->sparse[i].values from the
  // servers, reading every tensor in batch->tensors and every key. `clocks`
  // (one per shard, or one for all) is the round (sync) or clock (ssp) each
  // shard's reply waits for, or -1 for "now".
  virtual absl::StatusOr<ServerVersion> Pull(const WorkerIdentity& worker,
                                             absl::Span<const int64_t> clocks,
                                             ParameterBatch* batch) = 0;

  // Sends the gradients in `batch`. `request_id` makes a retry idempotent;
  // `batch_examples` is how many examples produced it. ABORTED as Pull; the
  // shards that did not abort applied the push.
  virtual absl::StatusOr<ServerVersion> Push(const WorkerIdentity& worker,
                                             absl::Span<const int64_t> clocks, uint64_t request_id,
                                             const ParameterBatch& batch,
                                             uint32_t batch_examples) = 0;

  // Push, then Pull, in one round trip per shard: sends `gradients` as Push
  // does (with `push_clocks`), then fills `params` as Pull does (waiting for
  // `pull_clocks`). Returns the pull's versions. On an error the push may
  // have been applied on some shards; a retry with the same `request_id`
  // applies it at most once. The default calls Push, then Pull.
  virtual absl::StatusOr<ServerVersion> PushPull(
      const WorkerIdentity& worker, absl::Span<const int64_t> push_clocks, uint64_t request_id,
      const ParameterBatch& gradients, uint32_t batch_examples,
      absl::Span<const int64_t> pull_clocks, ParameterBatch* params) {
    absl::StatusOr<ServerVersion> pushed =
        Push(worker, push_clocks, request_id, gradients, batch_examples);
    if (!pushed.ok()) return pushed.status();
    return Pull(worker, pull_clocks, params);
  }

  // After an ABORTED call: the shards that restarted since the last time
  // this was asked (so none is missed, whatever calls came between).
  virtual std::vector<int> TakeRestartedShards() { return {}; }

  // Per shard, the pushes it acknowledged (Push and PushPull calls answered
  // OK there), each request id counted once however often it was sent.
  // Empty when the client does not count.
  virtual std::vector<uint64_t> PushesAcknowledged() const { return {}; }

  // How dense gradients travel (the job's gradient_encoding); FLOAT32 until
  // set.
  virtual void set_gradient_encoding(Encoding encoding) {}
};

}  // namespace fulcrum

#endif  // FULCRUM_WORKER_PS_CLIENT_H_
