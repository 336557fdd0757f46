// PsClient: how a worker reads parameters from and sends gradients to the
// parameter servers, apart from the transport. GrpcPsClient talks gRPC.
#ifndef FULCRUM_WORKER_PS_CLIENT_H_
#define FULCRUM_WORKER_PS_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/generic/generic_stub.h"
#include "absl/types/span.h"
#include "common/security.h"
#include "common/worker_identity.h"
#include "proto/job.pb.h"
#include "proto/parameter_service.grpc.pb.h"
#include "worker/model.h"

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

// Rows of a sparse table, by key (keys need not be unique).
struct SparseRows {
  std::string table;
  uint32_t dim = 0;
  std::vector<uint64_t> keys;
  std::vector<float> values;  // keys.size() * dim: rows (pull) or gradients (push)
  // Pull only: do not create missing rows (read their initial values).
  bool read_only = false;
};

// What a step reads or writes: whole dense tensors and sparse rows.
struct ParameterBatch {
  // Dense tensors, whole, in the order of `tensors`; `dense[i]` holds
  // tensors[i]'s values (pull) or gradient (push).
  std::vector<TensorSpec> tensors;
  ParameterSet dense;
  std::vector<SparseRows> sparse;
};

// Implementations must be safe to call from one thread at a time.
class PsClient {
 public:
  virtual ~PsClient() = default;

  // Takes the shard map a registration returned: shard addresses by index,
  // an empty one (or an empty list) meaning the coordinator's own process.
  virtual absl::Status Connect(const std::vector<std::string>& shard_addresses) = 0;
  // Shards the client talks to; clocks and rounds are per shard.
  virtual int num_shards() const = 0;

  // Every call names the worker as its registration did (id and coordinator
  // incarnation); FAILED_PRECONDITION when a server no longer knows it (the
  // worker registers again).
  //
  // ABORTED when a shard restarted since the last call (see RequestHeader):
  // the caller pulls again at the current rounds.
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
                                             absl::Span<const int64_t> clocks,
                                             uint64_t request_id, const ParameterBatch& batch,
                                             uint32_t batch_examples) = 0;

  // Push, then Pull, in one round trip per shard: sends `gradients` as Push
  // does (with `push_clocks`), then fills `params` as Pull does (waiting for
  // `pull_clocks`). Returns the pull's versions. On an error the push may
  // have been applied on some shards; a retry with the same `request_id`
  // applies it at most once. The default calls Push, then Pull.
  virtual absl::StatusOr<ServerVersion> PushPull(const WorkerIdentity& worker,
                                                 absl::Span<const int64_t> push_clocks,
                                                 uint64_t request_id,
                                                 const ParameterBatch& gradients,
                                                 uint32_t batch_examples,
                                                 absl::Span<const int64_t> pull_clocks,
                                                 ParameterBatch* params) {
    absl::StatusOr<ServerVersion> pushed =
        Push(worker, push_clocks, request_id, gradients, batch_examples);
    if (!pushed.ok()) return pushed.status();
    return Pull(worker, pull_clocks, params);
  }

  // After an ABORTED call: the shards that restarted.
  virtual std::vector<int> restarted_shards() const { return {}; }

  // How dense gradients travel (the job's gradient_encoding); FLOAT32 until
  // set.
  virtual void set_gradient_encoding(Encoding encoding) {}
};

// A PsClient over gRPC for any number of shards: dense tensors are split by
// element range and sparse keys by hash (common/shard_map.h), and every
// call goes to all shards at once (asynchronous API, one completion queue
// the caller polls), so a step waits for the slowest shard, not their sum. Every shard gets a request each step
// (possibly empty): sync rounds count every worker on every shard.
// Thread-compatible. Every call carries a deadline of `rpc_timeout`.
class GrpcPsClient final : public PsClient {
 public:
  // `coordinator` serves shard 0; other shards are dialled with `security`.
  // `auth_token` (may be empty) goes with every call as a bearer token.
  GrpcPsClient(std::shared_ptr<grpc::Channel> coordinator, absl::Duration rpc_timeout,
               std::string auth_token = "", ClientSecurityOptions security = {});
  ~GrpcPsClient() override;

  absl::Status Connect(const std::vector<std::string>& shard_addresses) override;
  int num_shards() const override { return static_cast<int>(shards_.size()); }
  absl::StatusOr<ServerVersion> Pull(const WorkerIdentity& worker, absl::Span<const int64_t> clocks,
                                     ParameterBatch* batch) override;
  absl::StatusOr<ServerVersion> Push(const WorkerIdentity& worker, absl::Span<const int64_t> clocks,
                                     uint64_t request_id, const ParameterBatch& batch,
                                     uint32_t batch_examples) override;
  absl::StatusOr<ServerVersion> PushPull(const WorkerIdentity& worker,
                                         absl::Span<const int64_t> push_clocks,
                                         uint64_t request_id, const ParameterBatch& gradients,
                                         uint32_t batch_examples,
                                         absl::Span<const int64_t> pull_clocks,
                                         ParameterBatch* params) override;
  std::vector<int> restarted_shards() const override { return restarted_; }
  void set_gradient_encoding(Encoding encoding) override {
    gradient_encoding_ = encoding == ENCODING_UNSPECIFIED ? FLOAT32 : encoding;
  }

 private:
  struct Shard {
    std::string address;  // "" for the coordinator's channel
    std::unique_ptr<ParameterService::Stub> stub;
    // The same channel for calls whose request bytes are built by hand.
    std::unique_ptr<grpc::GenericStub> generic;
    uint64_t last_incarnation = 0;
  };
  // Where each sparse key of one table went: (shard, position there).
  struct KeyPlacement {
    std::vector<uint32_t> shard;
    std::vector<uint32_t> position;
  };
  void PlaceKeys(const ParameterBatch& batch, std::vector<KeyPlacement>* placements) const;
  // One request per shard reading `batch`'s tensors and keys.
  void BuildPullRequests(const WorkerIdentity& worker, absl::Span<const int64_t> clocks,
                         const ParameterBatch& batch,
                         const std::vector<KeyPlacement>& placements,
                         std::vector<PullRequest>* requests) const;
  // Fills `batch` from every shard's reply to requests[s]; notes each
  // shard's incarnation.
  absl::StatusOr<ServerVersion> ReadPullResponses(
      absl::Span<const PullRequest* const> requests,
      absl::Span<const PullResponse* const> responses,
      const std::vector<KeyPlacement>& placements, ParameterBatch* batch);
  // Per shard, the float32 payloads of its push's dense entries, in order.
  using DenseViews = std::vector<absl::Span<const float>>;
  // One request per shard carrying its part of `batch`'s gradients. With
  // float32 gradients the dense entries' data is left empty and `views` gets
  // the values (sent by reference, common/wire.h); otherwise `views` is
  // empty and the data is encoded into the requests.
  absl::Status BuildPushRequests(const WorkerIdentity& worker, absl::Span<const int64_t> clocks,
                                 uint64_t request_id, const ParameterBatch& batch,
                                 uint32_t batch_examples, std::vector<PushRequest>* requests,
                                 std::vector<DenseViews>* views) const;
  // CallAll with request bytes built by hand, to `method`; replies parsed.
  template <typename Response>
  absl::Status CallAllRaw(const std::string& method,
                          const std::vector<grpc::ByteBuffer>& requests,
                          std::vector<Response>* responses);
  template <typename Response, typename Request, typename Start>
  absl::Status CallAll(const std::vector<Request>& requests, std::vector<Response>* responses,
                       Start start);

  const std::shared_ptr<grpc::Channel> coordinator_;
  const absl::Duration rpc_timeout_;
  const std::string auth_token_;
  const ClientSecurityOptions security_;
  std::vector<Shard> shards_;
  std::unique_ptr<grpc::CompletionQueue> cq_;
  std::vector<int> restarted_;  // of the last call
  Encoding gradient_encoding_ = FLOAT32;
};

}  // namespace fulcrum

#endif  // FULCRUM_WORKER_PS_CLIENT_H_
