// ModelServer: the serving process (`ps_server --serve=DIR`): a ServingModel
// following a checkpoint folder, answered over gRPC (ModelServing in
// proto/serving.proto, health, reflection) with the same TLS and token
// rules as ps_server, and Prometheus metrics.
#ifndef FULCRUM_SERVER_SERVING_MODEL_SERVER_H_
#define FULCRUM_SERVER_SERVING_MODEL_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "common/rpc/security.h"
#include "grpcpp/server.h"
#include "proto/serving.grpc.pb.h"
#include "server/serving/serving_model.h"

namespace fulcrum {

struct ModelServerOptions {
  // The checkpoint folders to follow (ServingModelOptions::dirs).
  std::vector<std::string> dirs;
  // host:port to serve on (port 0: any free one; see bound_port()).
  std::string listen_address = "0.0.0.0:50060";
  ServerSecurityOptions security;
  // Required of every call but health when not empty.
  std::string auth_token;
  // Prometheus metrics on this port (-1: none; 0: any free one).
  int metrics_port = -1;
  std::string metrics_host = "0.0.0.0";
  // How often the folder is looked at for a newer checkpoint.
  absl::Duration poll = absl::Milliseconds(100);
  // Ids one Lookup may ask for (INVALID_ARGUMENT beyond).
  uint32_t max_ids = 1 << 20;
  // Largest message received or sent.
  int max_message_bytes = 256 << 20;
};

// Thread-safe. Start serves (and follows the folder from a thread of its
// own); Shutdown (or the destructor) stops both.
class ModelServer {
 public:
  // INVALID_ARGUMENT for an empty folder name or unusable TLS files.
  static absl::StatusOr<std::unique_ptr<ModelServer>> Create(const ModelServerOptions& options);
  ~ModelServer();

  // Loads what the folder has (a folder without a checkpoint yet is served
  // as UNAVAILABLE until one appears), then listens. UNAVAILABLE if the
  // port cannot be had.
  absl::Status Start();
  void Shutdown();
  int bound_port() const { return bound_port_; }
  int metrics_port() const { return metrics_server_ ? metrics_server_->port() : -1; }
  ServingModel& model() { return model_; }

 private:
  class Service;
  explicit ModelServer(const ModelServerOptions& options);
  void FollowLoop();

  const ModelServerOptions options_;
  ServingModel model_;
  MetricsRegistry metrics_;
  Counter* lookups_ = nullptr;
  Counter* refused_ = nullptr;
  Histogram* lookup_seconds_ = nullptr;
  // Seconds from a checkpoint's commit to this process serving it.
  Gauge* staleness_ = nullptr;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MetricsHttpServer> metrics_server_;
  int bound_port_ = 0;
  absl::Notification stop_;
  std::thread follower_;
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_SERVING_MODEL_SERVER_H_
