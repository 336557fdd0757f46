// The public worker API over gRPC: RunWorker drives a Trainer, a Session
// wraps a WorkerSession; both talk to the servers through the gRPC clients.
#include "worker/fulcrum_worker.h"

#include <unistd.h>

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "common/metrics.h"
#include "common/model_spec.h"
#include "common/rpc/channel.h"
#include "common/rpc/security.h"
#include "worker/grpc_coordinator_client.h"
#include "worker/grpc_ps_client.h"
#include "worker/trainer.h"
#include "worker/worker_session.h"

namespace fulcrum {
namespace {

// The gRPC clients of one worker. The coordinator's process serves shard 0
// too: one channel for both; the other shards' addresses come with the
// registration.
struct Clients {
  std::unique_ptr<GrpcCoordinatorClient> coordinator;
  std::unique_ptr<GrpcPsClient> ps;
};

absl::StatusOr<Clients> Connect(const ConnectionOptions& options) {
  ClientSecurityOptions security;
  security.tls_ca = options.tls_ca;
  security.tls_cert = options.tls_cert;
  security.tls_key = options.tls_key;
  security.tls_server_name = options.tls_server_name;
  security.auth_token = options.auth_token;
  // A replicated coordinator: "coordinator,backup".
  const std::vector<std::string> addresses = absl::StrSplit(options.coordinator, ',');
  FULCRUM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                           OpenChannel(addresses[0], security));
  Clients clients;
  FULCRUM_ASSIGN_OR_RETURN(clients.coordinator, GrpcCoordinatorClient::Create(
                                                    channel, addresses,
                                                    [security](const std::string& address) {
                                                      return OpenChannel(address, security);
                                                    },
                                                    options.rpc_timeout));
  clients.ps = std::make_unique<GrpcPsClient>(channel, options.rpc_timeout, security);
  return clients;
}

WorkerSessionOptions SessionOptions(const ConnectionOptions& options) {
  char host[256] = "unknown";
  gethostname(host, sizeof(host) - 1);
  WorkerSessionOptions session;
  session.host = host;
  session.worker_name =
      options.worker_name.empty() ? absl::StrCat(host, ":", getpid()) : options.worker_name;
  session.start_timeout = options.start_timeout;
  session.retry.max_attempts = std::max(1, options.max_attempts);
  session.retry.max_backoff = std::max(absl::Milliseconds(100), options.max_backoff);
  return session;
}

Task ToTask(const AcquirePartitionResponse& lease) {
  Task task;
  task.lease_id = lease.lease_id();
  switch (lease.kind()) {
    case AcquirePartitionResponse::TRAIN:
      task.kind = Task::kTrain;
      task.partition = lease.partition();
      break;
    case AcquirePartitionResponse::EVALUATE:
      task.kind = Task::kEvaluate;
      task.eval_epoch = lease.eval_epoch();
      task.eval_final = lease.eval_final();
      break;
    case AcquirePartitionResponse::WAIT:
      task.kind = Task::kWait;
      task.retry_after = absl::Seconds(std::max(0.01, lease.retry_after_seconds()));
      break;
    default:
      task.kind = Task::kDone;
  }
  return task;
}

// What the coordinator leased, as the session's calls want it back.
AcquirePartitionResponse ToLease(const Task& task) {
  AcquirePartitionResponse lease;
  lease.set_lease_id(task.lease_id);
  lease.set_eval_epoch(task.eval_epoch);
  lease.set_eval_final(task.eval_final);
  return lease;
}

class GrpcSession final : public Session {
 public:
  GrpcSession(Clients clients, const WorkerSessionOptions& options)
      : clients_(std::move(clients)),
        session_(options, clients_.ps.get(), clients_.coordinator.get()) {}

  absl::Status Register() {
    FULCRUM_RETURN_IF_ERROR(session_.Register());
    IndexJob();
    return absl::OkStatus();
  }

  const JobSpec& job() const override { return session_.job(); }
  int64_t worker_id() const override { return session_.worker().id; }

  absl::StatusOr<Task> NextTask() override {
    const int64_t registrations = session_.stats().registrations;
    FULCRUM_ASSIGN_OR_RETURN(const AcquirePartitionResponse lease, session_.NextTask());
    if (session_.stats().registrations != registrations) IndexJob();
    if (lease.kind() == AcquirePartitionResponse::TRAIN) step_start_ = absl::Now();
    return ToTask(lease);
  }

  absl::Status Pull(const Buffers& params) override {
    FULCRUM_RETURN_IF_ERROR(Plan(params, &pull_));
    FULCRUM_RETURN_IF_ERROR(session_.Pull(&pull_).status());
    CopyOut(pull_, params);
    return absl::OkStatus();
  }

  absl::Status PushPull(const Buffers& grads, int64_t examples, double loss,
                        const Buffers& params) override {
    FULCRUM_RETURN_IF_ERROR(CopyIn(grads, &push_));
    FULCRUM_RETURN_IF_ERROR(Plan(params, &pull_));
    FULCRUM_RETURN_IF_ERROR(CheckExamples(examples));
    FULCRUM_RETURN_IF_ERROR(session_.PushPull(push_, examples, &pull_).status());
    CopyOut(pull_, params);
    StepDone(examples, loss);
    return absl::OkStatus();
  }

  absl::Status Push(const Buffers& grads, int64_t examples, double loss) override {
    FULCRUM_RETURN_IF_ERROR(CopyIn(grads, &push_));
    FULCRUM_RETURN_IF_ERROR(CheckExamples(examples));
    FULCRUM_RETURN_IF_ERROR(session_.Push(push_, examples).status());
    StepDone(examples, loss);
    return absl::OkStatus();
  }

  absl::Status PullForEval(const Buffers& params) override {
    FULCRUM_RETURN_IF_ERROR(Plan(params, &pull_));
    FULCRUM_RETURN_IF_ERROR(session_.PullLatest(&pull_).status());
    CopyOut(pull_, params);
    return absl::OkStatus();
  }

  absl::Status Complete(const Task& task) override {
    if (task.kind != Task::kTrain) {
      return absl::InvalidArgumentError("Complete takes a training task");
    }
    return session_.Complete(ToLease(task));
  }

  absl::Status ReportEval(const Task& task, const EvalResult& eval) override {
    if (task.kind != Task::kEvaluate) {
      return absl::InvalidArgumentError("ReportEval takes an evaluation task");
    }
    return session_.ReportEval(ToLease(task), eval);
  }

 private:
  // Tensor and table shapes by name, from the job.
  void IndexJob() {
    tensors_.clear();
    tables_.clear();
    for (const TensorSpec& t : session_.job().tensors()) tensors_[t.name()] = t;
    for (const SparseTableSpec& t : session_.job().sparse_tables()) tables_[t.name()] = t.dim();
  }

  // Checks `buffers` against the job and sets up `batch` to read into them
  // (tensors and keys; values sized).
  absl::Status Plan(const Buffers& buffers, ParameterBatch* batch) const {
    batch->tensors.resize(buffers.dense.size());
    batch->dense.resize(buffers.dense.size());
    for (size_t i = 0; i < buffers.dense.size(); ++i) {
      FULCRUM_ASSIGN_OR_RETURN(const TensorSpec* spec, FindTensor(buffers.dense[i]));
      batch->tensors[i] = *spec;
      batch->dense[i].resize(buffers.dense[i].values.size());
    }
    batch->sparse.resize(buffers.sparse.size());
    for (size_t i = 0; i < buffers.sparse.size(); ++i) {
      const SparseBuffer& in = buffers.sparse[i];
      FULCRUM_ASSIGN_OR_RETURN(const uint32_t dim, FindTable(in));
      SparseRows& rows = batch->sparse[i];
      rows.table = in.table;
      rows.dim = dim;
      rows.keys.assign(in.keys.begin(), in.keys.end());
      rows.values.resize(in.values.size());
      rows.read_only = in.read_only;
    }
    return absl::OkStatus();
  }

  // Plan, with the buffers' values copied in (a push).
  absl::Status CopyIn(const Buffers& buffers, ParameterBatch* batch) const {
    FULCRUM_RETURN_IF_ERROR(Plan(buffers, batch));
    for (size_t i = 0; i < buffers.dense.size(); ++i) {
      std::copy(buffers.dense[i].values.begin(), buffers.dense[i].values.end(),
                batch->dense[i].begin());
    }
    for (size_t i = 0; i < buffers.sparse.size(); ++i) {
      std::copy(buffers.sparse[i].values.begin(), buffers.sparse[i].values.end(),
                batch->sparse[i].values.begin());
    }
    return absl::OkStatus();
  }

  static void CopyOut(const ParameterBatch& batch, const Buffers& buffers) {
    for (size_t i = 0; i < buffers.dense.size(); ++i) {
      std::copy(batch.dense[i].begin(), batch.dense[i].end(), buffers.dense[i].values.begin());
    }
    for (size_t i = 0; i < buffers.sparse.size(); ++i) {
      std::copy(batch.sparse[i].values.begin(), batch.sparse[i].values.end(),
                buffers.sparse[i].values.begin());
    }
  }

  absl::StatusOr<const TensorSpec*> FindTensor(const DenseBuffer& buffer) const {
    auto it = tensors_.find(buffer.name);
    if (it == tensors_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the job has no dense tensor \"", buffer.name, "\""));
    }
    const uint64_t elements = static_cast<uint64_t>(ElementCount(it->second));
    if (buffer.values.size() != elements) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", buffer.name, "\" has ", elements,
                                                     " elements; the buffer holds ",
                                                     buffer.values.size()));
    }
    return &it->second;
  }

  absl::StatusOr<uint32_t> FindTable(const SparseBuffer& buffer) const {
    auto it = tables_.find(buffer.table);
    if (it == tables_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the job has no sparse table \"", buffer.table, "\""));
    }
    if (buffer.values.size() != buffer.keys.size() * it->second) {
      return absl::InvalidArgumentError(
          absl::StrCat("table \"", buffer.table, "\": ", buffer.keys.size(), " keys of dim ",
                       it->second, " need ", buffer.keys.size() * it->second,
                       " floats; the buffer holds ", buffer.values.size()));
    }
    return it->second;
  }

  static absl::Status CheckExamples(int64_t examples) {
    if (examples <= 0 || examples > UINT32_MAX) {
      return absl::InvalidArgumentError(
          absl::StrCat("a step's examples must be in [1, 2^32): ", examples));
    }
    return absl::OkStatus();
  }

  void StepDone(int64_t examples, double loss) {
    session_.RecordStep(examples, loss, step_start_);
    step_start_ = absl::Now();
  }

  Clients clients_;
  WorkerSession session_;
  absl::flat_hash_map<std::string, TensorSpec> tensors_;
  absl::flat_hash_map<std::string, uint32_t> tables_;
  ParameterBatch pull_;
  ParameterBatch push_;
  absl::Time step_start_ = absl::Now();
};

}  // namespace

absl::StatusOr<std::unique_ptr<Session>> Session::Open(const ConnectionOptions& options) {
  FULCRUM_ASSIGN_OR_RETURN(Clients clients, Connect(options));
  auto session = std::make_unique<GrpcSession>(std::move(clients), SessionOptions(options));
  FULCRUM_RETURN_IF_ERROR(session->Register());
  return session;
}

absl::Status RunWorker(const WorkerOptions& options, const WorkloadFactory& factory) {
  FULCRUM_ASSIGN_OR_RETURN(Clients clients, Connect(options.connection));
  TrainerOptions trainer_options;
  trainer_options.session = SessionOptions(options.connection);
  trainer_options.session.max_reregistrations = options.max_reregistrations;
  trainer_options.step_delay = options.step_delay;

  MetricsRegistry registry;
  const WorkerMetrics metrics = WorkerMetrics::Register(&registry);
  std::unique_ptr<MetricsHttpServer> metrics_server;
  if (options.metrics_port >= 0) {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> started =
        MetricsHttpServer::Start(&registry, "0.0.0.0", options.metrics_port);
    if (!started.ok()) {
      return absl::Status(started.status().code(),
                          absl::StrCat("metrics port: ", started.status().message()));
    }
    metrics_server = std::move(*started);
    FULCRUM_LOG(INFO) << "metrics at http://0.0.0.0:" << metrics_server->port() << "/metrics";
    trainer_options.session.metrics = &metrics;
  }
  Trainer trainer(trainer_options, clients.ps.get(), clients.coordinator.get(), factory);
  return trainer.Run();
}

}  // namespace fulcrum
