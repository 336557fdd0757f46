// GrpcPsClient: a PsClient over gRPC.
#ifndef FULCRUM_WORKER_GRPC_PS_CLIENT_H_
#define FULCRUM_WORKER_GRPC_PS_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/rpc/security.h"
#include "grpcpp/channel.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/generic/generic_stub.h"
#include "proto/parameter_service.pb.h"
#include "worker/ps_client.h"

namespace fulcrum {

// A PsClient over gRPC for any number of shards: dense tensors are split by
// element range and sparse keys by hash (common/shard_map.h), and every
// call goes to all shards at once (asynchronous API, one completion queue
// the caller polls), so a step waits for the slowest shard, not their sum. Every shard gets a
// request each step (possibly empty): sync rounds count every worker on every shard.
// Thread-compatible. Every call carries a deadline of `rpc_timeout`.
class GrpcPsClient final : public PsClient {
 public:
  // `coordinator` serves shard 0; other shards are dialled with `security`
  // (its bearer token included).
  GrpcPsClient(std::shared_ptr<grpc::Channel> coordinator, absl::Duration rpc_timeout,
               ClientSecurityOptions security = {});
  ~GrpcPsClient() override;

  absl::Status Connect(const std::vector<std::string>& shard_addresses,
                       const std::vector<std::string>& backup_addresses) override;
  int num_shards() const override { return static_cast<int>(shards_.size()); }
  absl::StatusOr<ServerVersion> Pull(const WorkerIdentity& worker, absl::Span<const int64_t> clocks,
                                     ParameterBatch* batch) override;
  absl::StatusOr<ServerVersion> Push(const WorkerIdentity& worker, absl::Span<const int64_t> clocks,
                                     uint64_t request_id, const ParameterBatch& batch,
                                     uint32_t batch_examples) override;
  absl::StatusOr<ServerVersion> PushPull(const WorkerIdentity& worker,
                                         absl::Span<const int64_t> push_clocks, uint64_t request_id,
                                         const ParameterBatch& gradients, uint32_t batch_examples,
                                         absl::Span<const int64_t> pull_clocks,
                                         ParameterBatch* params) override;
  std::vector<int> TakeRestartedShards() override { return std::exchange(restarted_, {}); }
  std::vector<uint64_t> PushesAcknowledged() const override;
  void set_gradient_encoding(Encoding encoding) override {
    gradient_encoding_ = encoding == ENCODING_UNSPECIFIED ? FLOAT32 : encoding;
  }

 private:
  struct Shard {
    std::string address;  // "" for the coordinator's channel
    // Request and reply bytes are built and read by hand (common/rpc/wire.h).
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<grpc::GenericStub> generic;
    uint64_t last_incarnation = 0;
    // The shard's other process (its backup, or the primary once calls
    // moved to the backup); null: none. Calls move to it when the current
    // one is unavailable (see MoveIfUnavailable).
    std::string other_address;
    std::shared_ptr<grpc::Channel> other_channel;
    std::unique_ptr<grpc::GenericStub> other;
    absl::Time moved_at = absl::InfinitePast();
    // Whether the shard answered the latest call OK.
    bool last_call_ok = false;
    // Pushes it acknowledged, and the newest request id counted.
    uint64_t pushes_acknowledged = 0;
    uint64_t last_acknowledged_request = 0;
  };
  // After a push's call: counts it on every shard that answered OK.
  void CountAcknowledged(uint64_t request_id);
  // After a call to shard `index` failed with `status`: moves the shard's
  // calls to its other process when the current one is unreachable, or is a
  // backup that has not taken over for longer than a takeover takes.
  void MoveIfUnavailable(size_t index, const grpc::Status& status);
  // After a call to shard `index` failed with `status` (unavailable, or past
  // its deadline) while its channel is not connected: dials the address
  // afresh, so its name is looked up again (a process replaced under the
  // same name may have a new address, and the old one may swallow packets).
  void RedialIfNotConnected(size_t index, const grpc::Status& status);
  // Where each sparse key of one table went: (shard, position there).
  struct KeyPlacement {
    std::vector<uint32_t> shard;
    std::vector<uint32_t> position;
  };
  void PlaceKeys(const ParameterBatch& batch, std::vector<KeyPlacement>* placements) const;
  // One request per shard reading `batch`'s tensors and keys.
  void BuildPullRequests(const WorkerIdentity& worker, absl::Span<const int64_t> clocks,
                         const ParameterBatch& batch, const std::vector<KeyPlacement>& placements,
                         std::vector<PullRequest>* requests) const;
  // Sizes `batch`'s outputs for the values a pull reads.
  static void SizeOutputs(ParameterBatch* batch);
  // Where the values of each dense entry of `request` go in `batch` (sized).
  static std::vector<absl::Span<float>> DenseTargets(const PullRequest& request,
                                                     ParameterBatch* batch);
  // One shard's answer to a pull: what was asked, where its dense values go,
  // the reply as read (common/rpc/wire.h) and which values are in place.
  struct PullReply {
    const PullRequest* request = nullptr;
    std::vector<absl::Span<float>> targets;
    PullResponse response;
    std::vector<bool> in_place;
  };
  // Fills the rest of `batch` (sized) from every shard's reply (dense
  // values not read in place, sparse rows); notes each shard's incarnation.
  absl::StatusOr<ServerVersion> ReadPullResponses(const std::vector<PullReply>& replies,
                                                  const std::vector<KeyPlacement>& placements,
                                                  ParameterBatch* batch);
  // Per shard, the float32 payloads of its push's dense entries, in order.
  using DenseViews = std::vector<absl::Span<const float>>;
  // One request per shard carrying its part of `batch`'s gradients. With
  // float32 gradients the dense entries' data is left empty and `views` gets
  // the values (sent by reference, common/rpc/wire.h); otherwise `views` is
  // empty and the data is encoded into the requests.
  absl::Status BuildPushRequests(const WorkerIdentity& worker, absl::Span<const int64_t> clocks,
                                 uint64_t request_id, const ParameterBatch& batch,
                                 uint32_t batch_examples, std::vector<PushRequest>* requests,
                                 std::vector<DenseViews>* views) const;
  // CallAll with request bytes built by hand, to `method`; reply bytes.
  absl::Status CallAllRaw(const std::string& method, const std::vector<grpc::ByteBuffer>& requests,
                          std::vector<grpc::ByteBuffer>* replies);
  template <typename Response, typename Request, typename Start>
  absl::Status CallAll(const std::vector<Request>& requests, std::vector<Response>* responses,
                       Start start);

  const std::shared_ptr<grpc::Channel> coordinator_;
  const absl::Duration rpc_timeout_;
  const ClientSecurityOptions security_;
  std::vector<Shard> shards_;
  std::unique_ptr<grpc::CompletionQueue> cq_;
  std::vector<int> restarted_;  // not yet taken
  Encoding gradient_encoding_ = FLOAT32;
};

}  // namespace fulcrum

#endif  // FULCRUM_WORKER_GRPC_PS_CLIENT_H_
