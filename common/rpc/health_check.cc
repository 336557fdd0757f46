#include "common/rpc/health_check.h"

#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "common/rpc/grpc_status.h"
#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"

namespace fulcrum {

// Through a generic stub, to need no generated health code: the request
// HealthCheckRequest{service: ""} is empty, and HealthCheckResponse{status:
// SERVING} encodes as the two bytes 0x08 0x01.
absl::Status CheckServing(const std::shared_ptr<grpc::Channel>& channel, absl::Duration timeout) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  grpc::Slice empty;
  grpc::ByteBuffer request(&empty, 1), response;
  grpc::Status rpc;
  absl::Notification done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) {
                   rpc = std::move(s);
                   done.Notify();
                 });
  done.WaitForNotification();
  if (!rpc.ok()) return FromGrpcStatus(rpc);
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (response.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) {
      bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  if (bytes != std::string("\x08\x01", 2)) {
    return absl::UnavailableError("the health service does not say SERVING");
  }
  return absl::OkStatus();
}

}  // namespace fulcrum
