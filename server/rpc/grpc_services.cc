#include "server/rpc/grpc_services.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <variant>
#include <vector>

#include "absl/base/config.h"
#include "absl/strings/str_cat.h"
#include "common/payload.h"
#include "common/replica.h"
#include "common/rpc/grpc_status.h"
#include "grpcpp/server_context.h"

namespace fulcrum {
namespace {

#ifndef ABSL_IS_LITTLE_ENDIAN
#error "Pull writes float32 values straight into the response bytes; port it."
#endif

SliceRef ToSliceRef(const DenseSlice& slice) {
  SliceRef ref;
  ref.tensor = slice.tensor();
  ref.offset = slice.offset();
  ref.length = slice.length();
  return ref;
}

absl::Time PullDeadline(const grpc::ServerContextBase& context, absl::Duration max_wait) {
  const absl::Time cap = absl::Now() + max_wait;
  const absl::Time client = absl::FromChrono(context.deadline());
  return std::min(cap, client);
}

}  // namespace

ServiceMetrics ServiceMetrics::Register(MetricsRegistry* registry) {
  ServiceMetrics m;
  m.pushes = registry->AddCounter("fulcrum_pushes_total", "Push RPCs served.");
  m.pulls = registry->AddCounter("fulcrum_pulls_total", "Pull RPCs served.");
  m.push_bytes =
      registry->AddCounter("fulcrum_push_bytes_total", "Gradient payload bytes received.");
  m.pull_bytes = registry->AddCounter("fulcrum_pull_bytes_total", "Parameter payload bytes sent.");
  m.rejected = registry->AddCounter("fulcrum_rejected_requests_total",
                                    "Push and pull RPCs answered with an error.");
  m.push_latency = registry->AddHistogram("fulcrum_push_latency_seconds", "Push RPC handling time.",
                                          LatencyBuckets());
  m.pull_latency = registry->AddHistogram(
      "fulcrum_pull_latency_seconds", "Pull RPC handling time, waits included.", LatencyBuckets());
  m.pull_wait = registry->AddHistogram("fulcrum_pull_wait_seconds",
                                       "Time pulls waited for a sync round or slower ssp workers.",
                                       LatencyBuckets());
  return m;
}

// One call's life on a completion queue: asked for, read, answered, gone.
class ParameterServiceImpl::Call {
 public:
  virtual ~Call() = default;
  // The queue's event for this call (`ok` as the queue reports it).
  virtual void Proceed(bool ok) = 0;
};

// Request is the message the handler reads; WireRequest is what gRPC hands
// over: the same message, or its bytes for a raw method (parsed here).
template <typename Request, typename WireRequest, typename Response>
class ParameterServiceImpl::UnaryCall final : public Call {
 public:
  using RequestFn = void (Service::*)(grpc::ServerContext*, WireRequest*,
                                      grpc::ServerAsyncResponseWriter<Response>*,
                                      grpc::CompletionQueue*, grpc::ServerCompletionQueue*, void*);
  using ReadyFn = bool (ParameterServiceImpl::*)(const Request&) const;
  using HandleFn = grpc::Status (ParameterServiceImpl::*)(const grpc::ServerContextBase&,
                                                          const Request&, Response*);

  // Asks the server for the next call of this method on `queue`.
  UnaryCall(ParameterServiceImpl* service, grpc::ServerCompletionQueue* queue, RequestFn request_fn,
            ReadyFn ready, HandleFn handle)
      : service_(service),
        queue_(queue),
        request_fn_(request_fn),
        ready_(ready),
        handle_(handle),
        responder_(&context_) {
    (service_->service_.*request_fn_)(&context_, &wire_request_, &responder_, queue_, queue_, this);
  }

  void Proceed(bool ok) override {
    if (answered_ || !ok) {  // answered, or the server is shutting down
      delete this;
      return;
    }
    // The next call of this method is read while this one is served.
    new UnaryCall(service_, queue_, request_fn_, ready_, handle_);
    answered_ = true;
    if constexpr (kRaw) {
      grpc::Status parsed =
          grpc::SerializationTraits<Request>::Deserialize(&wire_request_, &parsed_);
      if (!parsed.ok()) {
        if (service_->metrics_ != nullptr) service_->metrics_->rejected->Increment();
        responder_.FinishWithError(
            grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                         "the request is not a valid message: " + parsed.error_message()),
            this);
        return;
      }
    }
    if ((service_->*ready_)(request())) {
      Answer();
    } else if (!service_->Defer([this] { Answer(); })) {
      if (service_->metrics_ != nullptr) service_->metrics_->rejected->Increment();
      responder_.FinishWithError(
          grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                       "too many calls waiting for rounds or slower workers on this "
                       "parameter server; retry later"),
          this);
    }
  }

 private:
  const Request& request() const {
    if constexpr (kRaw) {
      return parsed_;
    } else {
      return wire_request_;
    }
  }

  void Answer() {
    const grpc::Status status = (service_->*handle_)(context_, request(), &response_);
    if (status.ok()) {
      responder_.Finish(response_, status, this);
    } else {
      responder_.FinishWithError(status, this);
    }
  }

  ParameterServiceImpl* const service_;
  grpc::ServerCompletionQueue* const queue_;
  const RequestFn request_fn_;
  const ReadyFn ready_;
  const HandleFn handle_;
  grpc::ServerContext context_;
  static constexpr bool kRaw = !std::is_same_v<Request, WireRequest>;

  WireRequest wire_request_;
  // Raw methods: wire_request_ parsed (nothing otherwise).
  std::conditional_t<kRaw, Request, std::monostate> parsed_;
  Response response_;
  grpc::ServerAsyncResponseWriter<Response> responder_;
  bool answered_ = false;
};

ParameterServiceImpl::ParameterServiceImpl(ParameterShard* shard, uint64_t incarnation,
                                           absl::Duration max_wait, uint64_t max_response_bytes,
                                           const ServiceMetrics* metrics, int max_waiting_calls)
    : shard_(shard),
      incarnation_(incarnation),
      max_wait_(max_wait),
      max_response_bytes_(max_response_bytes),
      metrics_(metrics),
      waiting_(std::make_unique<BlockingPool>(max_waiting_calls)) {}

ParameterServiceImpl::~ParameterServiceImpl() { Shutdown(); }

void ParameterServiceImpl::Register(grpc::ServerBuilder* builder, int threads) {
  builder->RegisterService(&service_);
  for (int i = 0; i < std::max(1, threads); ++i) {
    queues_.push_back(builder->AddCompletionQueue());
  }
}

void ParameterServiceImpl::Start() {
  for (const auto& queue : queues_) {
    grpc::ServerCompletionQueue* q = queue.get();
    new UnaryCall<PullRequest, grpc::ByteBuffer, grpc::ByteBuffer>(
        this, q, &Service::RequestPull, &ParameterServiceImpl::PullReady,
        &ParameterServiceImpl::HandlePull);
    new UnaryCall<PushRequest, PushRequest, PushResponse>(this, q, &Service::RequestPush,
                                                          &ParameterServiceImpl::PushReady,
                                                          &ParameterServiceImpl::HandlePush);
    new UnaryCall<PushPullRequest, grpc::ByteBuffer, grpc::ByteBuffer>(
        this, q, &Service::RequestPushPull, &ParameterServiceImpl::PushPullReady,
        &ParameterServiceImpl::HandlePushPull);
    threads_.emplace_back([q] {
      void* tag = nullptr;
      bool ok = false;
      while (q->Next(&tag, &ok)) static_cast<Call*>(tag)->Proceed(ok);
    });
  }
}

void ParameterServiceImpl::FinishWaitingCalls() {
  std::unique_ptr<BlockingPool> pool;
  {
    absl::MutexLock lock(&pool_mu_);
    pool.swap(waiting_);
  }
  pool.reset();  // joins: the calls in it answer (onto the queues, still polled)
}

void ParameterServiceImpl::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  FinishWaitingCalls();
  for (const auto& queue : queues_) queue->Shutdown();
  for (std::thread& t : threads_) t.join();
  if (threads_.empty()) {  // never started: drain here
    for (const auto& queue : queues_) {
      void* tag = nullptr;
      bool ok = false;
      while (queue->Next(&tag, &ok)) static_cast<Call*>(tag)->Proceed(false);
    }
  }
}

bool ParameterServiceImpl::Defer(std::function<void()> fn) {
  {
    absl::MutexLock lock(&pool_mu_);
    if (waiting_ != nullptr) return waiting_->Submit(std::move(fn));
  }
  // Shutting down: the shard no longer waits, so the call ends at once.
  fn();
  return true;
}

bool ParameterServiceImpl::PullReady(const PullRequest& request) const {
  return shard_->ReadyFor(SenderOf(request.header()), /*push=*/false, request.header().clock());
}

bool ParameterServiceImpl::PushReady(const PushRequest& request) const {
  return shard_->ReadyFor(SenderOf(request.header()), /*push=*/true, -1);
}

bool ParameterServiceImpl::PushPullReady(const PushPullRequest& request) const {
  const RequestHeader& push = request.push().header();
  const RequestHeader& pull = request.pull().header();
  // Two workers in one call is refused at once (HandlePushPull).
  if (SenderOf(push) != SenderOf(pull)) return true;
  // The push may close the round the pull waits for, but that is known only
  // after it: a pull with a round still to come goes to the pool.
  return shard_->ReadyFor(SenderOf(push), /*push=*/true, pull.clock());
}

grpc::Status ParameterServiceImpl::HandlePull(const grpc::ServerContextBase& context,
                                              const PullRequest& request, grpc::ByteBuffer* reply) {
  const absl::Time start = absl::Now();
  PullResponse response;
  std::vector<FloatPayload> values;
  grpc::Status status = DoPull(context, &request, &response, &values);
  RecordPull(start, status, response, values);
  if (status.ok()) *reply = PullResponseBytes(&response, std::move(values));
  return status;
}

grpc::Status ParameterServiceImpl::HandlePush(const grpc::ServerContextBase& context,
                                              const PushRequest& request, PushResponse* response) {
  const absl::Time start = absl::Now();
  grpc::Status status = DoPush(request, response->mutable_header());
  RecordPush(start, status, request);
  return status;
}

grpc::Status ParameterServiceImpl::HandlePushPull(const grpc::ServerContextBase& context,
                                                  const PushPullRequest& request,
                                                  grpc::ByteBuffer* reply) {
  const absl::Time start = absl::Now();
  PushPullResponse response;
  grpc::Status status;
  if (SenderOf(request.push().header()) != SenderOf(request.pull().header())) {
    status = grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        "a push-pull's push and pull must carry the same worker id and coordinator incarnation");
  }
  if (status.ok()) status = DoPush(request.push(), response.mutable_push_header());
  RecordPush(start, status, request.push());
  if (!status.ok()) return status;
  const absl::Time pull_start = absl::Now();
  std::vector<FloatPayload> values;
  status = DoPull(context, &request.pull(), response.mutable_pull(), &values);
  RecordPull(pull_start, status, response.pull(), values);
  if (status.ok()) *reply = PushPullResponseBytes(&response, std::move(values));
  return status;
}

void ParameterServiceImpl::RecordPull(absl::Time start, const grpc::Status& status,
                                      const PullResponse& response,
                                      const std::vector<FloatPayload>& values) const {
  if (metrics_ == nullptr) return;
  metrics_->pulls->Increment();
  metrics_->pull_latency->Observe(absl::ToDoubleSeconds(absl::Now() - start));
  if (!status.ok()) {
    metrics_->rejected->Increment();
    return;
  }
  metrics_->pull_wait->Observe(response.header().wait_seconds());
  double bytes = 0;
  for (const FloatPayload& v : values) bytes += v.slice.size();
  for (const SparseValues& v : response.sparse()) bytes += v.data().size();
  metrics_->pull_bytes->Increment(bytes);
}

void ParameterServiceImpl::RecordPush(absl::Time start, const grpc::Status& status,
                                      const PushRequest& request) const {
  if (metrics_ == nullptr) return;
  metrics_->pushes->Increment();
  metrics_->push_latency->Observe(absl::ToDoubleSeconds(absl::Now() - start));
  double bytes = 0;
  for (const DenseValues& v : request.dense()) bytes += v.data().size();
  for (const SparseValues& v : request.sparse()) bytes += v.data().size();
  metrics_->push_bytes->Increment(bytes);
  if (!status.ok()) metrics_->rejected->Increment();
}

void ParameterServiceImpl::FillHeader(const ShardVersion& version, ResponseHeader* header) const {
  header->set_version(version.version);
  header->set_round(version.round);
  header->set_incarnation(incarnation_.load(std::memory_order_relaxed));
  header->set_wait_seconds(version.wait_seconds);
}

grpc::Status ParameterServiceImpl::CheckIncarnation(const RequestHeader& header) const {
  if (header.incarnation() == 0 ||
      header.incarnation() == incarnation_.load(std::memory_order_relaxed)) {
    return grpc::Status::OK;  // the shard says whether it serves
  }
  // A backup answers "not serving", not "restarted": it has not taken over
  // the incarnation workers know yet. It notes the worker's call, a witness
  // that the primary is gone for that worker.
  if (absl::Status serving = shard_->CheckServingFor(SenderOf(header)); !serving.ok()) {
    return ToGrpcStatus(serving);
  }
  return grpc::Status(grpc::StatusCode::ABORTED,
                      "this parameter server restarted (and restored a checkpoint) since the "
                      "worker last heard from it: its rounds and values start over; pull "
                      "again at its current round");
}

grpc::Status ParameterServiceImpl::DoPull(const grpc::ServerContextBase& context,
                                          const PullRequest* request, PullResponse* response,
                                          std::vector<FloatPayload>* values) {
  // Rounds a worker waits for were counted by an earlier process.
  if (grpc::Status s = CheckIncarnation(request->header()); !s.ok()) return s;
  if (request->encoding() != ENCODING_UNSPECIFIED && request->encoding() != FLOAT32) {
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("unsupported pull encoding ", Encoding_Name(request->encoding())));
  }
  // Validate and size everything before allocating the response: neither a
  // bad slice nor a huge valid one may make us allocate it.
  std::vector<SliceRef> slices;
  slices.reserve(request->dense_size());
  uint64_t response_bytes = 0;
  for (const DenseSlice& slice : request->dense()) {
    slices.push_back(ToSliceRef(slice));
    absl::Status valid = shard_->store().Validate(slices.back());
    if (!valid.ok()) return ToGrpcStatus(valid);
    response_bytes += slice.length() * sizeof(float);
  }
  for (const SparseKeys& keys : request->sparse()) {
    const SparseTable* table = shard_->sparse_table(keys.table());
    if (table == nullptr) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("unknown sparse table '", keys.table(), "'"));
    }
    response_bytes += static_cast<uint64_t>(keys.keys_size()) * table->dim() * sizeof(float);
  }
  if (response_bytes > max_response_bytes_) {
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("the pull asks for ", response_bytes, " bytes, over the ", max_response_bytes_,
                     "-byte message limit (--max_message_mb); "
                     "pull fewer or smaller slices"));
  }
  // Dense values are read straight into the reply's buffers.
  std::vector<absl::Span<float>> out;
  out.reserve(slices.size());
  values->reserve(slices.size());
  for (const DenseSlice& slice : request->dense()) {
    DenseValues* entry = response->add_dense();
    *entry->mutable_slice() = slice;
    entry->set_encoding(FLOAT32);
    values->push_back(FloatPayload::Allocate(slice.length()));
    out.push_back(values->back().values);
  }
  std::vector<SparseRead> sparse;
  sparse.reserve(request->sparse_size());
  for (const SparseKeys& keys : request->sparse()) {
    const SparseTable* table = shard_->sparse_table(keys.table());  // checked above
    SparseValues* values = response->add_sparse();
    values->set_table(keys.table());
    *values->mutable_keys() = keys.keys();
    values->set_encoding(FLOAT32);
    std::string* data = values->mutable_data();
    data->resize(static_cast<size_t>(keys.keys_size()) * table->dim() * sizeof(float));
    sparse.push_back(
        SparseRead{keys.table(), absl::MakeConstSpan(keys.keys().data(), keys.keys_size()),
                   absl::MakeSpan(reinterpret_cast<float*>(data->data()),
                                  static_cast<size_t>(keys.keys_size()) * table->dim()),
                   !keys.read_only()});
  }
  absl::StatusOr<ShardVersion> version =
      shard_->Pull(SenderOf(request->header()), request->header().clock(), slices, out,
                   PullDeadline(context, max_wait_), sparse);
  if (!version.ok()) {
    response->Clear();
    values->clear();
    return ToGrpcStatus(version.status());
  }
  FillHeader(*version, response->mutable_header());
  return grpc::Status::OK;
}

grpc::Status ParameterServiceImpl::DoPush(const PushRequest& push, ResponseHeader* header) {
  const PushRequest* request = &push;
  // A gradient computed on parameters read from an earlier server process
  // (before a restart and restore) must not reach the restored model.
  if (grpc::Status s = CheckIncarnation(request->header()); !s.ok()) return s;
  std::vector<std::vector<float>> buffers(request->dense_size());
  std::vector<SliceGradient> gradients(request->dense_size());
  for (int i = 0; i < request->dense_size(); ++i) {
    const DenseValues& values = request->dense(i);
    SliceGradient& g = gradients[i];
    g.slice = ToSliceRef(values.slice());
    // The slice first: a payload is decoded into memory of the slice's size,
    // and an INDEXED_NONZEROS header may claim any size up to 2^32.
    if (absl::Status valid = shard_->store().Validate(g.slice); !valid.ok()) {
      return ToGrpcStatus(valid);
    }
    absl::StatusOr<size_t> count = PayloadElementCount(values.encoding(), values.data());
    if (!count.ok()) {
      return ToGrpcStatus(absl::InvalidArgumentError(
          absl::StrCat("tensor ", g.slice.tensor, ": ", count.status().message())));
    }
    if (*count != g.slice.length) {
      return ToGrpcStatus(absl::InvalidArgumentError(
          absl::StrCat("tensor ", g.slice.tensor, ": payload holds ", *count,
                       " elements but the slice has ", g.slice.length)));
    }
    // Read in place from the request's bytes where alignment allows.
    absl::StatusOr<absl::Span<const float>> view =
        Float32View(values.encoding(), values.data(), *count,
                    /*require_finite=*/true, &buffers[i]);
    if (!view.ok()) {
      return ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
          "tensor ", g.slice.tensor, ": ", view.status().message(), "; nothing applied")));
    }
    g.values = *view;
  }
  std::vector<std::vector<float>> sparse_buffers(request->sparse_size());
  std::vector<SparseGradient> sparse(request->sparse_size());
  for (int i = 0; i < request->sparse_size(); ++i) {
    const SparseValues& values = request->sparse(i);
    SparseTable* table = shard_->sparse_table(values.table());
    if (table == nullptr) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("unknown sparse table '", values.table(), "'"));
    }
    const size_t expected = static_cast<size_t>(values.keys_size()) * table->dim();
    absl::StatusOr<size_t> count = PayloadElementCount(values.encoding(), values.data());
    if (!count.ok() || *count != expected) {
      return grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("sparse table ", values.table(), ": ",
                       count.ok()
                           ? absl::StrCat("payload holds ", *count, " values, ", values.keys_size(),
                                          " keys of dim ", table->dim(), " need ", expected)
                           : std::string(count.status().message())));
    }
    absl::StatusOr<absl::Span<const float>> view =
        Float32View(values.encoding(), values.data(), expected, true, &sparse_buffers[i]);
    if (!view.ok()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("sparse table ", values.table(), ": ",
                                       view.status().message(), "; nothing applied"));
    }
    sparse[i] = SparseGradient{
        values.table(), absl::MakeConstSpan(values.keys().data(), values.keys_size()), *view};
  }
  absl::StatusOr<ShardVersion> version =
      shard_->Push(SenderOf(request->header()), request->header().request_id(),
                   request->header().clock(), gradients, sparse);
  if (!version.ok()) return ToGrpcStatus(version.status());
  FillHeader(*version, header);
  return grpc::Status::OK;
}

CoordinatorServiceImpl::CoordinatorServiceImpl(
    JobCoordinator* coordinator, std::function<absl::StatusOr<CheckpointInfo>()> checkpoint)
    : checkpoint_(std::move(checkpoint)), coordinator_(coordinator) {}

void CoordinatorServiceImpl::Serve(JobCoordinator* coordinator,
                                   std::function<absl::StatusOr<CheckpointInfo>()> checkpoint) {
  checkpoint_ = std::move(checkpoint);
  coordinator_.store(coordinator, std::memory_order_release);
}

grpc::Status StandbyCoordinatorStatus() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      absl::StrCat(kBackupNotServing,
                                   "this process is the coordinator's backup; it serves the job "
                                   "only once it takes over: call the coordinator"));
}

grpc::Status CoordinatorServiceImpl::StandbyFor(uint64_t worker_id) {
  standby_calls_.Note(worker_id);
  return Standby();
}

namespace {

// Runs a coordinator call returning StatusOr<T> into `response`.
template <typename T, typename Call>
grpc::Status Answer(T* response, Call call) {
  absl::StatusOr<T> result = call();
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

}  // namespace

grpc::Status CoordinatorServiceImpl::RegisterWorker(grpc::ServerContext* context,
                                                    const RegisterWorkerRequest* request,
                                                    RegisterWorkerResponse* response) {
  JobCoordinator* c = coordinator_.load(std::memory_order_acquire);
  if (c == nullptr) return StandbyFor(0);
  return Answer(response, [&] { return c->RegisterWorker(*request); });
}

grpc::Status CoordinatorServiceImpl::Heartbeat(grpc::ServerContext* context,
                                               const HeartbeatRequest* request,
                                               HeartbeatResponse* response) {
  JobCoordinator* c = coordinator_.load(std::memory_order_acquire);
  if (c == nullptr) return StandbyFor(request->worker_id());
  return Answer(response, [&] { return c->Heartbeat(*request); });
}

grpc::Status CoordinatorServiceImpl::AcquirePartition(grpc::ServerContext* context,
                                                      const AcquirePartitionRequest* request,
                                                      AcquirePartitionResponse* response) {
  JobCoordinator* c = coordinator_.load(std::memory_order_acquire);
  if (c == nullptr) return StandbyFor(request->worker_id());
  return Answer(response, [&] { return c->AcquirePartition(*request); });
}

grpc::Status CoordinatorServiceImpl::CompletePartition(grpc::ServerContext* context,
                                                       const CompletePartitionRequest* request,
                                                       CompletePartitionResponse*) {
  JobCoordinator* c = coordinator_.load(std::memory_order_acquire);
  if (c == nullptr) return StandbyFor(request->worker_id());
  return ToGrpcStatus(c->CompletePartition(*request));
}

grpc::Status CoordinatorServiceImpl::ReportEval(grpc::ServerContext* context,
                                                const ReportEvalRequest* request,
                                                ReportEvalResponse*) {
  JobCoordinator* c = coordinator_.load(std::memory_order_acquire);
  if (c == nullptr) return StandbyFor(request->worker_id());
  return ToGrpcStatus(c->ReportEval(*request));
}

grpc::Status CoordinatorServiceImpl::GetStatus(grpc::ServerContext* context,
                                               const GetStatusRequest*, JobStatus* response) {
  JobCoordinator* c = coordinator_.load(std::memory_order_acquire);
  if (c == nullptr) return Standby();
  *response = c->GetStatus();
  return grpc::Status::OK;
}

grpc::Status CoordinatorServiceImpl::WatchStatus(grpc::ServerContext* context,
                                                 const WatchStatusRequest* request,
                                                 grpc::ServerWriter<JobStatus>* writer) {
  JobCoordinator* c = coordinator_.load(std::memory_order_acquire);
  if (c == nullptr) return Standby();
  const double seconds = request->interval_seconds();
  if (!std::isfinite(seconds) || seconds < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "interval_seconds must be finite and non-negative");
  }
  const absl::Duration interval =
      seconds == 0 ? absl::Seconds(1) : std::max(absl::Seconds(seconds), absl::Milliseconds(50));
  while (!context->IsCancelled() && !shutting_down_) {
    const JobStatus status = c->GetStatus();
    if (!writer->Write(status)) break;  // the client went away
    if (status.state() == FINISHED || status.state() == STOPPED) break;
    // Sleep in short steps so cancellation and shutdown end the stream soon.
    const absl::Time next = absl::Now() + interval;
    while (absl::Now() < next && !context->IsCancelled() && !shutting_down_) {
      absl::SleepFor(std::min(next - absl::Now(), absl::Milliseconds(100)));
    }
  }
  return grpc::Status::OK;
}

grpc::Status CoordinatorServiceImpl::Checkpoint(grpc::ServerContext* context,
                                                const CheckpointRequest*,
                                                CheckpointInfo* response) {
  JobCoordinator* c = coordinator_.load(std::memory_order_acquire);
  if (c == nullptr) return Standby();
  return Answer(response, [&] { return checkpoint_(); });
}

grpc::Status ShardRegistryServiceImpl::RegisterShard(grpc::ServerContext* context,
                                                     const RegisterShardRequest* request,
                                                     RegisterShardResponse* response) {
  JobCoordinator* c = coordinator_.load(std::memory_order_acquire);
  if (c == nullptr) return Standby();
  return Answer(response, [&] { return c->RegisterShard(*request); });
}

grpc::Status ShardRegistryServiceImpl::PromoteBackup(grpc::ServerContext* context,
                                                     const PromoteBackupRequest* request,
                                                     PromoteBackupResponse*) {
  JobCoordinator* c = coordinator_.load(std::memory_order_acquire);
  if (c == nullptr) return Standby();
  return ToGrpcStatus(c->PromoteBackup(*request));
}

grpc::Status ShardRegistryServiceImpl::DropBackup(grpc::ServerContext* context,
                                                  const DropBackupRequest* request,
                                                  DropBackupResponse*) {
  JobCoordinator* c = coordinator_.load(std::memory_order_acquire);
  if (c == nullptr) return Standby();
  return ToGrpcStatus(c->DropBackup(*request));
}

grpc::Status CoordinatorServiceImpl::Stop(grpc::ServerContext* context, const StopRequest*,
                                          StopResponse*) {
  JobCoordinator* c = coordinator_.load(std::memory_order_acquire);
  if (c == nullptr) return Standby();
  c->Stop();
  return grpc::Status::OK;
}

ShardControlServiceImpl::ShardControlServiceImpl(ParameterShard* shard,
                                                 WriteCheckpointFn write_checkpoint,
                                                 ReachFn reach_coordinator)
    : shard_(shard),
      write_checkpoint_(std::move(write_checkpoint)),
      reach_coordinator_(std::move(reach_coordinator)) {}

grpc::Status ShardControlServiceImpl::ReachCoordinator(grpc::ServerContext* context,
                                                       const ReachCoordinatorRequest* request,
                                                       ReachCoordinatorResponse* response) {
  if (request->address().empty()) {
    return ToGrpcStatus(absl::InvalidArgumentError("no coordinator address to call"));
  }
  const absl::Status reached =
      reach_coordinator_(request->address(), request->process_incarnation());
  response->set_reached(reached.ok());
  if (!reached.ok()) response->set_detail(reached.ToString());
  return grpc::Status::OK;
}

grpc::Status ShardControlServiceImpl::SetMembership(grpc::ServerContext* context,
                                                    const Membership* request,
                                                    MembershipAck* response) {
  response->set_version(shard_->ApplyMembership(WorkerMembership::FromProto(*request)));
  return grpc::Status::OK;
}

grpc::Status ShardControlServiceImpl::WriteCheckpoint(grpc::ServerContext* context,
                                                      const WriteShardCheckpointRequest* request,
                                                      CheckpointManifest::ShardFile* response) {
  if (request->sequence() == 0) {
    return ToGrpcStatus(absl::InvalidArgumentError("checkpoint sequence 0 is not valid"));
  }
  return Answer(response,
                [&] { return write_checkpoint_(request->sequence(), request->delta_of()); });
}

}  // namespace fulcrum
