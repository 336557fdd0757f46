#include "common/rpc/wire.h"

#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "absl/base/config.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "grpc/slice.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "grpcpp/support/slice.h"

namespace fulcrum {
namespace {

#ifndef ABSL_IS_LITTLE_ENDIAN
#error "wire.cc sends float32 payloads from memory as little-endian bytes; port it."
#endif

void AppendVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// A serialised message with a repeated DenseValues field `dense`
// (PushRequest, PullResponse) as slices: the bytes of every field but the
// payloads, and the payloads as given (referenced or owned). Field order on
// the wire does not matter to parsers (repeated fields keep their order).
template <typename Message>
WireSlices DensePieces(Message* message, std::vector<grpc::Slice> payloads) {
  WireSlices pieces;
  // Every field but the dense entries, then each entry around its payload.
  google::protobuf::RepeatedPtrField<DenseValues> dense;
  dense.Swap(message->mutable_dense());
  pieces.Add(message->SerializeAsString());
  message->mutable_dense()->Swap(&dense);
  for (size_t i = 0; i < payloads.size(); ++i) {
    pieces.Add(DenseEntryHead(Message::kDenseFieldNumber, message->dense(i), payloads[i].size()));
    if (payloads[i].size() > 0) pieces.Add(std::move(payloads[i]));
  }
  return pieces;
}

// The float32 values by reference.
std::vector<grpc::Slice> ReferTo(absl::Span<const absl::Span<const float>> values) {
  std::vector<grpc::Slice> slices;
  slices.reserve(values.size());
  for (absl::Span<const float> v : values) {
    slices.emplace_back(v.data(), v.size() * sizeof(float), grpc::Slice::STATIC_SLICE);
  }
  return slices;
}

// `message` serialised as field `field` of an enclosing message.
template <typename Message>
std::string Field(int field, const Message& message) {
  const std::string bytes = message.SerializeAsString();
  return LengthDelimitedHead(field, bytes.size()) + bytes;
}

}  // namespace

WireSlices WireSlices::Of(const google::protobuf::MessageLite& message) {
  WireSlices bytes;
  bytes.Add(message.SerializeAsString());
  return bytes;
}

void WireSlices::Add(std::string bytes) {
  if (bytes.empty()) return;
  size_ += bytes.size();
  slices_.emplace_back(std::move(bytes));
}

void WireSlices::Add(grpc::Slice slice) {
  size_ += slice.size();
  slices_.push_back(std::move(slice));
}

void WireSlices::Append(WireSlices other) {
  size_ += other.size_;
  for (grpc::Slice& slice : other.slices_) slices_.push_back(std::move(slice));
}

void WireSlices::Prepend(std::string bytes) {
  size_ += bytes.size();
  slices_.insert(slices_.begin(), grpc::Slice(std::move(bytes)));
}

void WireSlices::Enclose(int field) { Prepend(LengthDelimitedHead(field, size_)); }

grpc::ByteBuffer WireSlices::Buffer() const {
  return grpc::ByteBuffer(slices_.data(), slices_.size());
}

absl::Status WireSlices::ParseTo(google::protobuf::MessageLite* message) const {
  std::string bytes;
  bytes.reserve(size_);
  for (const grpc::Slice& slice : slices_) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  if (!message->ParseFromString(bytes)) {
    return absl::DataLossError(
        absl::StrCat("the bytes do not parse as a ", message->GetTypeName()));
  }
  return absl::OkStatus();
}

std::string VarintFieldBytes(int field, uint64_t value) {
  std::string bytes;
  AppendVarint(static_cast<uint64_t>(field) << 3, &bytes);  // wire type 0
  AppendVarint(value, &bytes);
  return bytes;
}

std::string DenseEntryHead(int field, const DenseValues& meta, size_t data_bytes) {
  const std::string data_head = LengthDelimitedHead(DenseValues::kDataFieldNumber, data_bytes);
  std::string entry = meta.SerializeAsString();
  const size_t inner = entry.size() + data_head.size() + data_bytes;
  return LengthDelimitedHead(field, inner) + entry + data_head;
}

std::string LengthDelimitedHead(int field, size_t size) {
  std::string head;
  AppendVarint((static_cast<uint64_t>(field) << 3) | 2, &head);
  AppendVarint(size, &head);
  return head;
}

grpc::ByteBuffer PushBytes(PushRequest* request, absl::Span<const absl::Span<const float>> values) {
  return DensePieces(request, ReferTo(values)).Buffer();
}

grpc::ByteBuffer PushPullBytes(PushPullRequest* request,
                               absl::Span<const absl::Span<const float>> values) {
  WireSlices pieces = DensePieces(request->mutable_push(), ReferTo(values));
  pieces.Enclose(PushPullRequest::kPushFieldNumber);
  pieces.Add(Field(PushPullRequest::kPullFieldNumber, request->pull()));
  return pieces.Buffer();
}

FloatPayload FloatPayload::Allocate(size_t count) {
  FloatPayload payload;
  // Uninitialised, and always on the heap: a small slice would otherwise
  // keep its bytes inside the grpc_slice, which moves.
  grpc_slice slice = grpc_slice_malloc_large(count * sizeof(float));
  uint8_t* bytes = GRPC_SLICE_START_PTR(slice);
  payload.slice = grpc::Slice(slice, grpc::Slice::STEAL_REF);
  payload.values = absl::MakeSpan(reinterpret_cast<float*>(bytes), count);
  return payload;
}

namespace {

std::vector<grpc::Slice> SlicesOf(std::vector<FloatPayload> values) {
  std::vector<grpc::Slice> slices;
  slices.reserve(values.size());
  for (FloatPayload& v : values) slices.push_back(std::move(v.slice));
  return slices;
}

}  // namespace

grpc::ByteBuffer PullResponseBytes(PullResponse* response, std::vector<FloatPayload> values) {
  return DensePieces(response, SlicesOf(std::move(values))).Buffer();
}

grpc::ByteBuffer PushPullResponseBytes(PushPullResponse* response,
                                       std::vector<FloatPayload> values) {
  WireSlices pieces = DensePieces(response->mutable_pull(), SlicesOf(std::move(values)));
  pieces.Enclose(PushPullResponse::kPullFieldNumber);
  pieces.Prepend(Field(PushPullResponse::kPushHeaderFieldNumber, response->push_header()));
  return pieces.Buffer();
}

namespace {

using google::protobuf::internal::WireFormatLite;
using google::protobuf::io::CodedInputStream;

constexpr uint32_t LengthDelimited(int field) {
  return (field << 3) | WireFormatLite::WIRETYPE_LENGTH_DELIMITED;
}
constexpr uint32_t Varint(int field) { return (field << 3) | WireFormatLite::WIRETYPE_VARINT; }

// Parses the length-delimited message at `in` into `message`.
template <typename Message>
bool ReadMessage(CodedInputStream* in, Message* message) {
  uint32_t length = 0;
  if (!in->ReadVarint32(&length)) return false;
  const CodedInputStream::Limit limit = in->PushLimit(length);
  // A stream that ends early also ends the message: the limit must be met.
  const bool ok = message->MergePartialFromCodedStream(in) && in->ConsumedEntireMessage() &&
                  in->BytesUntilLimit() == 0;
  in->PopLimit(limit);
  return ok;
}

// A DenseValues; its FLOAT32 data into `out` when sized like it.
bool ReadDense(CodedInputStream* in, absl::Span<float> out, bool has_out, DenseValues* values,
               bool* in_place) {
  uint32_t length = 0;
  if (!in->ReadVarint32(&length)) return false;
  const CodedInputStream::Limit limit = in->PushLimit(length);
  *in_place = false;
  while (uint32_t tag = in->ReadTag()) {
    switch (tag) {
      case LengthDelimited(1):  // slice
        if (!ReadMessage(in, values->mutable_slice())) return false;
        break;
      case Varint(2): {  // encoding
        uint32_t encoding = 0;
        if (!in->ReadVarint32(&encoding)) return false;
        values->set_encoding(static_cast<Encoding>(encoding));
        break;
      }
      case LengthDelimited(3): {  // data
        uint32_t bytes = 0;
        if (!in->ReadVarint32(&bytes)) return false;
        if (has_out && values->encoding() == FLOAT32 && bytes == out.size() * sizeof(float)) {
          if (!in->ReadRaw(out.data(), bytes)) return false;
          values->clear_data();
          *in_place = true;
        } else {
          if (!in->ReadString(values->mutable_data(), bytes)) return false;
          *in_place = false;
        }
        break;
      }
      default:
        if (!WireFormatLite::SkipField(in, tag)) return false;
    }
  }
  if (*in_place && values->encoding() != FLOAT32) {
    // The encoding changed after the payload was read as FLOAT32 (a field
    // repeated): the payload goes back into the message, as protobuf has it.
    values->set_data(reinterpret_cast<const char*>(out.data()), out.size() * sizeof(float));
    *in_place = false;
  }
  const bool ok = in->ConsumedEntireMessage() && in->BytesUntilLimit() == 0;
  in->PopLimit(limit);
  return ok;
}

// The fields of a PullResponse up to the current limit (or the end).
bool ReadPullFields(CodedInputStream* in, absl::Span<const absl::Span<float>> dense_out,
                    PullResponse* response, std::vector<bool>* in_place) {
  while (uint32_t tag = in->ReadTag()) {
    switch (tag) {
      case LengthDelimited(1):  // header
        if (!ReadMessage(in, response->mutable_header())) return false;
        break;
      case LengthDelimited(2): {  // dense
        const size_t i = response->dense_size();
        const bool has_out = i < dense_out.size();
        bool read_in_place = false;
        if (!ReadDense(in, has_out ? dense_out[i] : absl::Span<float>(), has_out,
                       response->add_dense(), &read_in_place)) {
          return false;
        }
        in_place->push_back(read_in_place);
        break;
      }
      case LengthDelimited(3):  // sparse
        if (!ReadMessage(in, response->add_sparse())) return false;
        break;
      default:
        if (!WireFormatLite::SkipField(in, tag)) return false;
    }
  }
  return in->ConsumedEntireMessage();
}

absl::Status Unreadable() { return absl::DataLossError("unreadable reply from the server"); }

// Whatever length a field claims, no more than the reply holds is read (or
// allocated for: protobuf reserves a string's claimed length below this
// limit). One past the end: ending exactly at the limit is an error to
// protobuf.
void LimitToReply(const grpc::ByteBuffer& reply, CodedInputStream* in) {
  in->SetTotalBytesLimit(static_cast<int>(std::min<size_t>(reply.Length() + 1, INT_MAX)));
}

}  // namespace

absl::Status ReadPullResponse(grpc::ByteBuffer* reply,
                              absl::Span<const absl::Span<float>> dense_out, PullResponse* response,
                              std::vector<bool>* in_place) {
  response->Clear();
  in_place->clear();
  grpc::ProtoBufferReader reader(reply);
  if (!reader.status().ok()) return Unreadable();
  CodedInputStream in(&reader);
  LimitToReply(*reply, &in);
  if (!ReadPullFields(&in, dense_out, response, in_place)) return Unreadable();
  return absl::OkStatus();
}

absl::Status ReadPushPullResponse(grpc::ByteBuffer* reply,
                                  absl::Span<const absl::Span<float>> dense_out,
                                  PushPullResponse* response, std::vector<bool>* in_place) {
  response->Clear();
  in_place->clear();
  grpc::ProtoBufferReader reader(reply);
  if (!reader.status().ok()) return Unreadable();
  CodedInputStream in(&reader);
  LimitToReply(*reply, &in);
  while (uint32_t tag = in.ReadTag()) {
    switch (tag) {
      case LengthDelimited(1):  // push_header
        if (!ReadMessage(&in, response->mutable_push_header())) return Unreadable();
        break;
      case LengthDelimited(2): {  // pull (a repeated one merges into it, as in protobuf)
        uint32_t length = 0;
        if (!in.ReadVarint32(&length)) return Unreadable();
        const CodedInputStream::Limit limit = in.PushLimit(length);
        if (!ReadPullFields(&in, dense_out, response->mutable_pull(), in_place) ||
            in.BytesUntilLimit() != 0) {
          return Unreadable();
        }
        in.PopLimit(limit);
        break;
      }
      default:
        if (!WireFormatLite::SkipField(&in, tag)) return Unreadable();
    }
  }
  if (!in.ConsumedEntireMessage()) return Unreadable();
  return absl::OkStatus();
}

}  // namespace fulcrum
