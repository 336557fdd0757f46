#include "server/serving/model_server.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "common/rpc/channel.h"
#include "common/rpc/grpc_status.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server_builder.h"

namespace fulcrum {

// The gRPC face of the model: read-only.
class ModelServer::Service final : public ModelServing::Service {
 public:
  explicit Service(ModelServer* server) : server_(server) {}

  grpc::Status Lookup(grpc::ServerContext*, const LookupRequest* request,
                      LookupResponse* response) override {
    const absl::Time start = absl::Now();
    absl::Status status = DoLookup(*request, response);
    server_->lookups_->Increment();
    server_->lookup_seconds_->Observe(absl::ToDoubleSeconds(absl::Now() - start));
    if (!status.ok()) server_->refused_->Increment();
    return ToGrpcStatus(status);
  }

  grpc::Status LookupBatch(grpc::ServerContext*, const LookupBatchRequest* request,
                           LookupBatchResponse* response) override {
    const absl::Time start = absl::Now();
    absl::Status status = absl::OkStatus();
    size_t ids = 0;
    for (const LookupRequest& lookup : request->lookups()) ids += lookup.ids_size();
    if (ids > server_->options_.max_ids) {
      status = absl::InvalidArgumentError(
          absl::StrCat(ids, " ids in one lookup batch; this server takes at most ",
                       server_->options_.max_ids, " (--serve_max_ids): split the call"));
    } else {
      status = server_->model_.LookupBatch(*request, response);
    }
    server_->lookups_->Increment();
    server_->lookup_seconds_->Observe(absl::ToDoubleSeconds(absl::Now() - start));
    if (!status.ok()) server_->refused_->Increment();
    return ToGrpcStatus(status);
  }

  grpc::Status ReadTensors(grpc::ServerContext*, const ReadTensorsRequest* request,
                           ReadTensorsResponse* response) override {
    return ToGrpcStatus(server_->model_.ReadTensors(
        std::vector<std::string>(request->names().begin(), request->names().end()), response));
  }

  grpc::Status GetServingStatus(grpc::ServerContext*, const ServingStatusRequest*,
                                ServingStatus* response) override {
    *response = server_->model_.Status();
    return grpc::Status::OK;
  }

 private:
  absl::Status DoLookup(const LookupRequest& request, LookupResponse* response) {
    if (request.ids_size() > static_cast<int>(server_->options_.max_ids)) {
      return absl::InvalidArgumentError(
          absl::StrCat(request.ids_size(), " ids in one lookup; this server takes at most ",
                       server_->options_.max_ids, " (--serve_max_ids): split the call"));
    }
    std::vector<float> rows;
    std::vector<bool> found;
    uint64_t checkpoint = 0;
    absl::Status status = server_->model_.Lookup(
        request.table(), absl::MakeConstSpan(request.ids().data(), request.ids_size()),
        request.dim(), &rows, &found, &checkpoint);
    if (!status.ok()) return status;
    response->set_dim(request.ids_size() == 0 ? request.dim() : rows.size() / request.ids_size());
    response->set_rows(reinterpret_cast<const char*>(rows.data()), rows.size() * sizeof(float));
    response->mutable_found()->Reserve(found.size());
    for (bool f : found) response->add_found(f);
    response->set_checkpoint(checkpoint);
    return absl::OkStatus();
  }

  ModelServer* const server_;
};

ModelServer::ModelServer(const ModelServerOptions& options)
    : options_(options), model_(ServingModelOptions{options.dirs, nullptr, nullptr}) {
  lookups_ = metrics_.AddCounter("fulcrum_serving_lookups_total", "Lookup calls answered.");
  refused_ = metrics_.AddCounter("fulcrum_serving_refused_total", "Lookup calls refused.");
  lookup_seconds_ = metrics_.AddHistogram("fulcrum_serving_lookup_seconds", "Lookup handling time.",
                                          LatencyBuckets());
  staleness_ = metrics_.AddGauge("fulcrum_serving_staleness_seconds",
                                 "From the served checkpoint's start to this process serving it.");
  ServingModel* model = &model_;
  metrics_.AddCallbackGauge("fulcrum_serving_checkpoint", "Sequence of the checkpoint served.",
                            [model] { return double(model->checkpoint()); });
  service_ = std::make_unique<Service>(this);
}

absl::StatusOr<std::unique_ptr<ModelServer>> ModelServer::Create(
    const ModelServerOptions& options) {
  if (options.dirs.empty()) {
    return absl::InvalidArgumentError("--serve needs the checkpoint folders to follow");
  }
  if (options.max_ids == 0) return absl::InvalidArgumentError("--serve_max_ids must be positive");
  return std::unique_ptr<ModelServer>(new ModelServer(options));
}

ModelServer::~ModelServer() { Shutdown(); }

absl::Status ModelServer::Start() {
  absl::StatusOr<bool> first = model_.Follow();
  if (!first.ok()) {
    FULCRUM_LOG(WARNING) << "serving: " << first.status().message()
                         << "; lookups are refused until a checkpoint loads";
  }
  FULCRUM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                           MakeServerCredentials(options_.security, options_.auth_token));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.listen_address, credentials, &bound_port_);
  builder.SetMaxReceiveMessageSize(options_.max_message_bytes);
  builder.SetMaxSendMessageSize(options_.max_message_bytes);
  AddServerKeepaliveArguments(&builder);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || bound_port_ == 0) {
    server_.reset();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options_.listen_address,
                                               " (address in use or not local?)"));
  }
  if (options_.metrics_port >= 0) {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> metrics =
        MetricsHttpServer::Start(&metrics_, options_.metrics_host, options_.metrics_port);
    if (!metrics.ok()) {
      Shutdown();
      return metrics.status();
    }
    metrics_server_ = std::move(*metrics);
    FULCRUM_LOG(INFO) << "metrics at http://" << options_.metrics_host << ":"
                      << metrics_server_->port() << "/metrics";
  }
  follower_ = std::thread([this] { FollowLoop(); });
  FULCRUM_LOG(INFO) << "serving " << absl::StrJoin(options_.dirs, ", ") << " on port "
                    << bound_port_ << " (read only; following new checkpoints every "
                    << absl::FormatDuration(options_.poll) << ")";
  return absl::OkStatus();
}

void ModelServer::FollowLoop() {
  while (!stop_.WaitForNotificationWithTimeout(options_.poll)) {
    absl::StatusOr<bool> changed = model_.Follow();
    if (changed.ok() && *changed) {
      staleness_->Set(absl::ToDoubleSeconds(absl::Now() - model_.checkpoint_time()));
    }
  }
}

void ModelServer::Shutdown() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (follower_.joinable()) follower_.join();
  if (metrics_server_) metrics_server_->Stop();
  if (server_) server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
}

}  // namespace fulcrum
