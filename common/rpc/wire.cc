#include "common/rpc/wire.h"

#include <string>
#include <vector>

#include "absl/base/config.h"
#include "grpcpp/support/slice.h"

namespace fulcrum {
namespace {

#ifndef ABSL_IS_LITTLE_ENDIAN
#error "wire.cc sends float32 payloads from memory as little-endian bytes; port it."
#endif

// Protobuf wire tags (field number << 3 | 2, length-delimited).
constexpr char kPushDenseTag = (2 << 3) | 2;     // PushRequest.dense
constexpr char kDenseDataTag = (3 << 3) | 2;     // DenseValues.data
constexpr char kPushPullPushTag = (1 << 3) | 2;  // PushPullRequest.push
constexpr char kPushPullPullTag = (2 << 3) | 2;  // PushPullRequest.pull

void AppendVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

// A serialised PushRequest as slices: the bytes of every field but the
// zero-copy payloads, and those payloads by reference. Field order on the
// wire does not matter to parsers (repeated fields keep their order).
class PushPieces {
 public:
  PushPieces(PushRequest* request, absl::Span<const absl::Span<const float>> values) {
    // Every field but the dense entries, then each entry around its view.
    google::protobuf::RepeatedPtrField<DenseValues> dense;
    dense.Swap(request->mutable_dense());
    AddOwned(request->SerializeAsString());
    request->mutable_dense()->Swap(&dense);
    for (size_t i = 0; i < values.size(); ++i) {
      const std::string meta = request->dense(i).SerializeAsString();
      const size_t data_bytes = values[i].size() * sizeof(float);
      const size_t inner = meta.size() + 1 + VarintSize(data_bytes) + data_bytes;
      std::string head;
      head.push_back(kPushDenseTag);
      AppendVarint(inner, &head);
      head += meta;
      head.push_back(kDenseDataTag);
      AppendVarint(data_bytes, &head);
      AddOwned(std::move(head));
      if (data_bytes > 0) {
        slices_.emplace_back(values[i].data(), data_bytes, grpc::Slice::STATIC_SLICE);
        bytes_ += data_bytes;
      }
    }
  }

  void AddOwned(std::string bytes) {
    bytes_ += bytes.size();
    slices_.emplace_back(std::move(bytes));
  }
  // Puts `prefix` before the slices so far.
  void Prepend(std::string prefix) {
    bytes_ += prefix.size();
    slices_.insert(slices_.begin(), grpc::Slice(std::move(prefix)));
  }
  size_t bytes() const { return bytes_; }
  grpc::ByteBuffer Buffer() { return grpc::ByteBuffer(slices_.data(), slices_.size()); }

 private:
  std::vector<grpc::Slice> slices_;
  size_t bytes_ = 0;
};

}  // namespace

grpc::ByteBuffer PushBytes(PushRequest* request, absl::Span<const absl::Span<const float>> values) {
  PushPieces pieces(request, values);
  return pieces.Buffer();
}

grpc::ByteBuffer PushPullBytes(PushPullRequest* request,
                               absl::Span<const absl::Span<const float>> values) {
  PushPieces pieces(request->mutable_push(), values);
  std::string prefix;
  prefix.push_back(kPushPullPushTag);
  AppendVarint(pieces.bytes(), &prefix);
  pieces.Prepend(std::move(prefix));
  std::string pull;
  pull.push_back(kPushPullPullTag);
  const std::string pull_bytes = request->pull().SerializeAsString();
  AppendVarint(pull_bytes.size(), &pull);
  pull += pull_bytes;
  pieces.AddOwned(std::move(pull));
  return pieces.Buffer();
}

}  // namespace fulcrum
