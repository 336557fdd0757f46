// Message bytes that leave dense float32 payloads where they were written,
// and replies read with their payloads copied once, to where they belong.
//
// A dense push or pull holds megabytes of float32: encoding them into the
// protobuf message and serialising the message into gRPC's buffers copies
// them twice (and zero-fills the message's bytes first), and parsing a reply
// copies them into a string before they are decoded into place. These build
// the same wire bytes as a gRPC ByteBuffer whose payload slices are the
// floats themselves (the caller's, for requests; slices the server filled,
// for replies), and read replies' payloads straight from gRPC's slices into
// the caller's memory (little-endian hosts: FLOAT32 is the in-memory layout).
#ifndef FULCRUM_COMMON_RPC_WIRE_H_
#define FULCRUM_COMMON_RPC_WIRE_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "google/protobuf/message_lite.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"
#include "proto/job.pb.h"
#include "proto/parameter_service.pb.h"

namespace fulcrum {

// A protobuf message's wire bytes as a list of slices: fields serialised into
// owned bytes, large payloads as slices of their own (owned by gRPC, or
// referenced). Concatenated they parse as the message; nothing is copied to
// join them, and a ByteBuffer of them is sent as is. Not thread-safe.
class WireSlices {
 public:
  WireSlices() = default;
  // `message` serialised, as one slice.
  static WireSlices Of(const google::protobuf::MessageLite& message);

  void Add(std::string bytes);
  void Add(grpc::Slice slice);
  void Append(WireSlices other);
  // Puts `bytes` before everything added so far.
  void Prepend(std::string bytes);
  // Makes everything added so far field `field` (length-delimited) of an
  // enclosing message.
  void Enclose(int field);

  size_t size() const { return size_; }
  grpc::ByteBuffer Buffer() const;
  // Parses the bytes as `message`: DATA_LOSS if they do not parse.
  absl::Status ParseTo(google::protobuf::MessageLite* message) const;

 private:
  std::vector<grpc::Slice> slices_;
  size_t size_ = 0;
};

// Wire bytes of one field: `field` as a varint; the tag and length of a
// length-delimited field of `size` bytes.
std::string VarintFieldBytes(int field, uint64_t value);
std::string LengthDelimitedHead(int field, size_t size);
// A DenseValues entry as field `field` of its message, up to its payload:
// the entry's head, `meta` (the entry without data) and the head of a data
// field of `data_bytes` bytes; the payload's bytes follow.
std::string DenseEntryHead(int field, const DenseValues& meta, size_t data_bytes);

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

// Uninitialised gRPC-owned memory for `count` float32 values, to be filled
// and then sent by PullResponseBytes / PushPullResponseBytes.
struct FloatPayload {
  static FloatPayload Allocate(size_t count);

  grpc::Slice slice;
  absl::Span<float> values;  // into `slice`
};

// The bytes of `response` with response->dense(i).data() taken to be
// values[i] (one per dense entry; the entries' own data must be empty and
// their encoding FLOAT32). `response` is left as it was.
grpc::ByteBuffer PullResponseBytes(PullResponse* response, std::vector<FloatPayload> values);

// The same for a PushPullResponse: `values` fill its pull's dense payloads.
grpc::ByteBuffer PushPullResponseBytes(PushPullResponse* response,
                                       std::vector<FloatPayload> values);

// Parses a PullResponse from `reply` (consumed), except that a dense entry's
// FLOAT32 payload of exactly dense_out[i].size() values (entry i, in order)
// is copied from gRPC's slices straight into dense_out[i] and left out of
// `response` ((*in_place)[i] is set). Other payloads (another encoding or
// size, entries past dense_out) stay in `response` for the caller to decode.
// DATA_LOSS for bytes that do not parse; dense_out may then be partly
// written.
absl::Status ReadPullResponse(grpc::ByteBuffer* reply,
                              absl::Span<const absl::Span<float>> dense_out, PullResponse* response,
                              std::vector<bool>* in_place);

// The same for a PushPullResponse: dense_out are its pull's entries.
absl::Status ReadPushPullResponse(grpc::ByteBuffer* reply,
                                  absl::Span<const absl::Span<float>> dense_out,
                                  PushPullResponse* response, std::vector<bool>* in_place);

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_RPC_WIRE_H_
