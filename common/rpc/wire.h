// Request bytes that leave dense float32 payloads in the caller's memory.
//
// A dense push holds megabytes of float32: encoding them into the protobuf
// message and serialising the message into gRPC's buffers copies them twice.
// These build the same wire bytes as a gRPC ByteBuffer whose payload slices
// point at the caller's floats instead (little-endian hosts: FLOAT32 is the
// in-memory layout).
#ifndef FULCRUM_COMMON_RPC_WIRE_H_
#define FULCRUM_COMMON_RPC_WIRE_H_

#include "absl/types/span.h"
#include "grpcpp/support/byte_buffer.h"
#include "proto/job.pb.h"
#include "proto/parameter_service.pb.h"

namespace fulcrum {

// The bytes of `request` with request->dense(i).data() taken to be the
// float32 values `values[i]` (one per dense entry; the entries' own data must
// be empty and their encoding FLOAT32). The values are referenced, not
// copied: they must stay alive and unchanged until the call sending the
// buffer has finished. `request` is left as it was (it is modified while
// being serialised).
grpc::ByteBuffer PushBytes(PushRequest* request, absl::Span<const absl::Span<const float>> values);

// The same for a PushPullRequest: `values` fill its push's dense payloads.
grpc::ByteBuffer PushPullBytes(PushPullRequest* request,
                               absl::Span<const absl::Span<const float>> values);

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_RPC_WIRE_H_
