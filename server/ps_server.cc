#include "server/ps_server.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/model_spec.h"
#include "common/status_macros.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace fulcrum {

absl::Status CompleteJobSpec(JobSpec* job) {
  if (job->model().empty()) job->set_model("softmax");
  if (job->mode() == CONSISTENCY_UNSPECIFIED) job->set_mode(SYNC);
  if (job->optimizer().kind() == OPTIMIZER_UNSPECIFIED) {
    job->mutable_optimizer()->set_kind(ADAM);
  }
  if (job->batch_size() == 0) job->set_batch_size(64);
  if (job->epochs() == 0) job->set_epochs(1);
  if (job->num_workers() == 0) job->set_num_workers(1);
  if (job->partitions_per_epoch() == 0) {
    job->set_partitions_per_epoch(4 * job->num_workers());
  }
  if (job->tensors().empty()) {
    FULCRUM_ASSIGN_OR_RETURN(std::vector<TensorSpec> tensors,
                             ModelTensors(job->model()));
    for (TensorSpec& t : tensors) *job->add_tensors() = std::move(t);
  }
  // Validates the optimizer settings.
  return CreateOptimizer(job->optimizer()).status();
}

absl::StatusOr<std::unique_ptr<ParameterServer>> ParameterServer::Create(
    const ServerOptions& options) {
  std::unique_ptr<ParameterServer> server(new ParameterServer());
  server->options_ = options;
  server->job_ = options.job;
  FULCRUM_RETURN_IF_ERROR(CompleteJobSpec(&server->job_));
  const JobSpec& job = server->job_;

  std::random_device entropy;
  server->incarnation_ =
      (uint64_t{entropy()} << 32 | entropy()) | 1;  // never 0

  FULCRUM_ASSIGN_OR_RETURN(std::unique_ptr<Optimizer> optimizer,
                           CreateOptimizer(job.optimizer()));
  ParameterStoreOptions store_options = options.store;
  store_options.seed = job.seed();
  FULCRUM_ASSIGN_OR_RETURN(
      std::unique_ptr<ParameterStore> store,
      ParameterStore::Create(store_options, std::move(optimizer),
                             {job.tensors().begin(), job.tensors().end()}));
  server->shard_ = std::make_unique<ParameterShard>(std::move(store), job.mode(),
                                                    job.staleness());

  CoordinatorOptions coordinator_options;
  coordinator_options.job = job;
  coordinator_options.shard_addresses = options.shard_addresses;
  coordinator_options.incarnation = server->incarnation_;
  coordinator_options.heartbeat_interval = options.heartbeat_interval;
  coordinator_options.worker_timeout = options.worker_timeout;
  server->coordinator_ = std::make_unique<JobCoordinator>(
      coordinator_options, server->shard_.get());
  server->parameter_service_ = std::make_unique<ParameterServiceImpl>(
      server->shard_.get(), server->incarnation_, options.max_pull_wait);
  server->coordinator_service_ =
      std::make_unique<CoordinatorServiceImpl>(server->coordinator_.get());
  return server;
}

ParameterServer::~ParameterServer() { Shutdown(); }

absl::Status ParameterServer::Start() {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.listen_address,
                           grpc::InsecureServerCredentials(), &bound_port_);
  builder.SetMaxReceiveMessageSize(options_.max_message_bytes);
  builder.SetMaxSendMessageSize(options_.max_message_bytes);
  builder.RegisterService(parameter_service_.get());
  builder.RegisterService(coordinator_service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || bound_port_ == 0) {
    server_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.listen_address,
                     " (address in use or not local?)"));
  }
  FULCRUM_LOG(INFO) << "ps_server listening on port " << bound_port_
                    << ": model " << job_.model() << ", "
                    << shard_->store().TotalElements() << " parameters, mode "
                    << ConsistencyMode_Name(job_.mode()) << ", "
                    << shard_->store().optimizer().Describe() << ", waiting for "
                    << job_.num_workers() << " workers";
  reaper_ = std::thread([this] {
    const absl::Duration period =
        std::max(absl::Milliseconds(50), options_.heartbeat_interval / 2);
    while (!stop_reaper_.WaitForNotificationWithTimeout(period)) {
      coordinator_->ReapSilentWorkers();
    }
  });
  return absl::OkStatus();
}

void ParameterServer::Shutdown() {
  {
    absl::MutexLock lock(&shutdown_mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  stop_reaper_.Notify();
  if (reaper_.joinable()) reaper_.join();
  if (coordinator_service_) coordinator_service_->Shutdown();  // ends watches
  if (shard_) shard_->Shutdown();  // wakes pulls waiting for a round
  if (server_) server_->Shutdown(std::chrono::system_clock::now() +
                                 std::chrono::seconds(5));
}

void ParameterServer::Wait() {
  if (server_) server_->Wait();
}

}  // namespace fulcrum
