// gRPC adapters: ParameterService over a ParameterShard, Coordinator and
// ShardRegistry over a JobCoordinator, ShardControl over a shard other than
// the coordinator's. They translate messages and statuses and nothing else:
// the bearer token is checked before any of them sees a call, by the
// server's credentials (common/rpc/security.h).
#ifndef FULCRUM_SERVER_RPC_GRPC_SERVICES_H_
#define FULCRUM_SERVER_RPC_GRPC_SERVICES_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/base/blocking_pool.h"
#include "common/metrics.h"
#include "common/rpc/security.h"
#include "common/rpc/wire.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/support/byte_buffer.h"
#include "proto/checkpoint.pb.h"
#include "proto/coordinator.grpc.pb.h"
#include "proto/parameter_service.grpc.pb.h"
#include "proto/shard_control.grpc.pb.h"
#include "server/coordinator/coordinator.h"
#include "server/shard/parameter_shard.h"

namespace fulcrum {

// The parameter service's Prometheus metrics (owned by a MetricsRegistry).
struct ServiceMetrics {
  Counter* pushes = nullptr;
  Counter* pulls = nullptr;
  Counter* push_bytes = nullptr;  // payload bytes received
  Counter* pull_bytes = nullptr;  // payload bytes sent
  Counter* rejected = nullptr;    // calls answered with an error
  Histogram* push_latency = nullptr;
  Histogram* pull_latency = nullptr;
  Histogram* pull_wait = nullptr;  // time pulls waited for a round/clock

  // Registers the metrics above in `registry`.
  static ServiceMetrics Register(MetricsRegistry* registry);
};

// The parameter service, served with gRPC's asynchronous API: each of a few
// threads polls a completion queue of its own and answers the calls it reads
// there itself. A call that would wait (a pull for a round not yet complete,
// an ssp worker too far ahead, a worker a remote shard does not know yet)
// moves to a thread of its own from a pool, so waiting never holds up the
// polling threads. (gRPC 1.51's pollers still wake a few threads per call:
// bench/FIGURES.md has the profile.)
//
// Thread-safe. `shard` is not owned and must outlive the service.
class ParameterServiceImpl final {
 public:
  // `max_wait` caps how long a pull waits for its round when the client set
  // no deadline (or a later one).
  // `metrics` may be null (no metrics); else it must outlive the service.
  // `max_response_bytes` bounds a pull's payload: a larger one is refused
  // with RESOURCE_EXHAUSTED before anything is allocated.
  // `max_waiting_calls` bounds the calls waiting at once (each holds a
  // thread); more are refused with RESOURCE_EXHAUSTED.
  ParameterServiceImpl(ParameterShard* shard, uint64_t incarnation, absl::Duration max_wait,
                       uint64_t max_response_bytes, const ServiceMetrics* metrics = nullptr,
                       int max_waiting_calls = 4096);
  // Calls Shutdown.
  ~ParameterServiceImpl();

  // Adds the service and `threads` completion queues to `builder`; once,
  // before BuildAndStart.
  void Register(grpc::ServerBuilder* builder, int threads);
  // Starts the polling threads; after BuildAndStart.
  void Start();
  // After the shard's Shutdown (which ends the waits), before the server's:
  // answers the calls waiting in the pool (they fail UNAVAILABLE, which
  // workers retry, rather than being cancelled with the server). Calls that
  // would wait from now on are answered at once.
  void FinishWaitingCalls();
  // After the server's Shutdown: finishes any calls left in the pool, drains
  // the queues, joins the threads.
  void Shutdown();

  // The incarnation replies carry and requests are checked against: a backup
  // that takes over serves under its primary's, so workers see no restart.
  void set_incarnation(uint64_t incarnation) { incarnation_.store(incarnation); }

  // The RPCs' logic without the transport (the polling threads call these;
  // so does tests/fuzz/parameter_service_fuzzer.cc): validate, size, apply
  // or read, answer. A pull may block until its round or the context's
  // deadline. Replies carrying parameters are the bytes sent (a
  // PullResponse / PushPullResponse on the wire): the values are read from
  // the store straight into gRPC's buffers (common/rpc/wire.h).
  grpc::Status HandlePull(const grpc::ServerContextBase& context, const PullRequest& request,
                          grpc::ByteBuffer* reply);
  grpc::Status HandlePush(const grpc::ServerContextBase& context, const PushRequest& request,
                          PushResponse* response);
  grpc::Status HandlePushPull(const grpc::ServerContextBase& context,
                              const PushPullRequest& request, grpc::ByteBuffer* reply);

 private:
  // Pull and PushPull are served raw (their replies built by hand).
  using Service = ParameterService::WithRawMethod_Pull<
      ParameterService::WithRawMethod_PushPull<ParameterService::AsyncService>>;
  class Call;
  template <typename Request, typename WireRequest, typename Response>
  class UnaryCall;

  bool PullReady(const PullRequest& request) const;
  bool PushReady(const PushRequest& request) const;
  bool PushPullReady(const PushPullRequest& request) const;
  // Runs `fn` on a pool thread (inline once FinishWaitingCalls ran); false if
  // the pool is full.
  bool Defer(std::function<void()> fn);

  void FillHeader(const ShardVersion& version, ResponseHeader* header) const;

  // Fills `response` but for its dense entries' data, which go to `values`
  // (one per entry, FloatPayload::Allocate'd).
  grpc::Status DoPull(const grpc::ServerContextBase& context, const PullRequest* request,
                      PullResponse* response, std::vector<FloatPayload>* values);
  grpc::Status DoPush(const PushRequest& request, ResponseHeader* header);
  void RecordPull(absl::Time start, const grpc::Status& status, const PullResponse& response,
                  const std::vector<FloatPayload>& values) const;
  void RecordPush(absl::Time start, const grpc::Status& status, const PushRequest& request) const;
  // ABORTED for a request carrying another process's incarnation.
  grpc::Status CheckIncarnation(const RequestHeader& header) const;

  ParameterShard* const shard_;
  // Changes once, when a backup takes over its primary's incarnation.
  std::atomic<uint64_t> incarnation_;
  const absl::Duration max_wait_;
  const uint64_t max_response_bytes_;
  const ServiceMetrics* const metrics_;
  Service service_;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues_;
  std::vector<std::thread> threads_;
  absl::Mutex pool_mu_;
  // Reset (joined) by FinishWaitingCalls, before the queues close.
  std::unique_ptr<BlockingPool> waiting_ ABSL_GUARDED_BY(pool_mu_);
  bool shut_down_ = false;
};

// Thread-safe; `coordinator` is not owned and must outlive the service.
// `checkpoint` writes a checkpoint on demand (the Checkpoint RPC).
// UNAVAILABLE from a coordinator's backup that has not taken over.
grpc::Status StandbyCoordinatorStatus();

class CoordinatorServiceImpl final : public fulcrum::Coordinator::Service {
 public:
  // A null `coordinator`: a standby (the coordinator's backup) answering
  // UNAVAILABLE until Serve.
  CoordinatorServiceImpl(JobCoordinator* coordinator,
                         std::function<absl::StatusOr<CheckpointInfo>()> checkpoint);
  // The standby took over: serves `coordinator` (not owned) from now on.
  // Once only.
  void Serve(JobCoordinator* coordinator,
             std::function<absl::StatusOr<CheckpointInfo>()> checkpoint);

  // Ends open WatchStatus streams (before the server shuts down).
  void Shutdown() { shutting_down_ = true; }

  // A standby's witnesses: the workers whose calls came here at or after
  // `since` — workers that could not get an answer from the coordinator
  // (their clients try the other addresses only then). By worker id; a
  // registration, which has none yet, counts as id 0.
  absl::flat_hash_set<uint64_t> WorkersCalledSince(absl::Time since) const {
    return standby_calls_.Since(since);
  }

  grpc::Status RegisterWorker(grpc::ServerContext* context, const RegisterWorkerRequest* request,
                              RegisterWorkerResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context, const HeartbeatRequest* request,
                         HeartbeatResponse* response) override;
  grpc::Status AcquirePartition(grpc::ServerContext* context,
                                const AcquirePartitionRequest* request,
                                AcquirePartitionResponse* response) override;
  grpc::Status CompletePartition(grpc::ServerContext* context,
                                 const CompletePartitionRequest* request,
                                 CompletePartitionResponse* response) override;
  grpc::Status ReportEval(grpc::ServerContext* context, const ReportEvalRequest* request,
                          ReportEvalResponse* response) override;
  grpc::Status GetStatus(grpc::ServerContext* context, const GetStatusRequest* request,
                         JobStatus* response) override;
  grpc::Status WatchStatus(grpc::ServerContext* context, const WatchStatusRequest* request,
                           grpc::ServerWriter<JobStatus>* writer) override;
  grpc::Status Stop(grpc::ServerContext* context, const StopRequest* request,
                    StopResponse* response) override;
  grpc::Status Checkpoint(grpc::ServerContext* context, const CheckpointRequest* request,
                          CheckpointInfo* response) override;

 private:
  static grpc::Status Standby() { return StandbyCoordinatorStatus(); }
  // Standby() for a worker's call, which is noted (WorkersCalledSince).
  grpc::Status StandbyFor(uint64_t worker_id);

  WorkerSightings standby_calls_;  // by worker id; 0: a registration
  // Written before coordinator_ is published, read after it is seen.
  std::function<absl::StatusOr<CheckpointInfo>()> checkpoint_;
  std::atomic<JobCoordinator*> coordinator_;
  std::atomic<bool> shutting_down_{false};
};

// ShardRegistry on the coordinator: the other shards' start and heartbeat.
// Thread-safe; `coordinator` is not owned and must outlive the service.
class ShardRegistryServiceImpl final : public ShardRegistry::Service {
 public:
  // A null `coordinator`: a standby, as for CoordinatorServiceImpl.
  explicit ShardRegistryServiceImpl(JobCoordinator* coordinator) : coordinator_(coordinator) {}
  void Serve(JobCoordinator* coordinator) {
    coordinator_.store(coordinator, std::memory_order_release);
  }

  grpc::Status RegisterShard(grpc::ServerContext* context, const RegisterShardRequest* request,
                             RegisterShardResponse* response) override;
  grpc::Status PromoteBackup(grpc::ServerContext* context, const PromoteBackupRequest* request,
                             PromoteBackupResponse* response) override;
  grpc::Status DropBackup(grpc::ServerContext* context, const DropBackupRequest* request,
                          DropBackupResponse* response) override;

 private:
  static grpc::Status Standby() { return StandbyCoordinatorStatus(); }

  std::atomic<JobCoordinator*> coordinator_;
};

// ShardControl on a shard other than the coordinator's: membership from the
// coordinator, and this shard's part of each checkpoint. Thread-safe; `shard`
// is not owned and must outlive the service. `write_checkpoint` writes this
// shard's part of checkpoint `sequence` (a delta on `delta_of` if it can).
class ShardControlServiceImpl final : public ShardControl::Service {
 public:
  using WriteCheckpointFn = std::function<absl::StatusOr<CheckpointManifest::ShardFile>(
      uint64_t sequence, uint64_t delta_of)>;
  // OK when the coordinator process at `address` (own id `process`, 0:
  // unknown) answers a call and this shard vouches for it.
  using ReachFn = std::function<absl::Status(const std::string& address, uint64_t process)>;
  ShardControlServiceImpl(ParameterShard* shard, WriteCheckpointFn write_checkpoint,
                          ReachFn reach_coordinator);

  grpc::Status SetMembership(grpc::ServerContext* context, const Membership* request,
                             MembershipAck* response) override;
  grpc::Status WriteCheckpoint(grpc::ServerContext* context,
                               const WriteShardCheckpointRequest* request,
                               CheckpointManifest::ShardFile* response) override;
  grpc::Status ReachCoordinator(grpc::ServerContext* context,
                                const ReachCoordinatorRequest* request,
                                ReachCoordinatorResponse* response) override;

 private:
  ParameterShard* const shard_;
  const WriteCheckpointFn write_checkpoint_;
  const ReachFn reach_coordinator_;
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_RPC_GRPC_SERVICES_H_
