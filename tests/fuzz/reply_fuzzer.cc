// libFuzzer target: the worker's reading of pull and push-pull replies
// (common/rpc/wire.h ReadPullResponse, ReadPushPullResponse), which copy
// float32 payloads from gRPC's slices straight into the worker's tensors.
// Input: byte 0 picks the reply type (bit 0) and the slice size gRPC hands
// the bytes over in (bits 1-7: 1 to 128 bytes); bytes 1-2 the float counts
// of the two tensors read into; the rest is the reply. No crash or leak, and
// a reply protobuf parses must be read, and read the same, payloads
// included (fields unknown to this version aside). The reader may accept
// bytes protobuf refuses (it skips what it does not know more leniently).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/rpc/wire.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"

namespace {

// Puts the payloads read in place back into `pull` (as FLOAT32 bytes).
void Restore(const std::vector<std::vector<float>>& targets, const std::vector<bool>& in_place,
             fulcrum::PullResponse* pull) {
  for (size_t i = 0; i < in_place.size(); ++i) {
    if (!in_place[i]) continue;
    if (i >= targets.size()) __builtin_trap();  // only entries with a target
    pull->mutable_dense(i)->set_data(reinterpret_cast<const char*>(targets[i].data()),
                                     targets[i].size() * sizeof(float));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const bool push_pull = data[0] & 1;
  const size_t piece = (data[0] >> 1) + 1;
  std::vector<std::vector<float>> targets = {std::vector<float>(data[1]),
                                             std::vector<float>(data[2])};
  std::vector<absl::Span<float>> spans;
  for (std::vector<float>& t : targets) spans.push_back(absl::MakeSpan(t));
  const std::string reply(reinterpret_cast<const char*>(data + 3), size - 3);

  std::vector<grpc::Slice> slices;
  for (size_t at = 0; at < reply.size(); at += piece) slices.emplace_back(reply.substr(at, piece));
  grpc::ByteBuffer bytes(slices.data(), slices.size());
  std::vector<bool> in_place;
  if (push_pull) {
    fulcrum::PushPullResponse read;
    const bool read_ok = fulcrum::ReadPushPullResponse(&bytes, spans, &read, &in_place).ok();
    fulcrum::PushPullResponse parsed;
    if (!parsed.ParseFromString(reply)) return 0;
    if (!read_ok) __builtin_trap();
    if (read.has_pull()) Restore(targets, in_place, read.mutable_pull());
    parsed.DiscardUnknownFields();  // skipped by the reader
    read.DiscardUnknownFields();
    if (parsed.SerializeAsString() != read.SerializeAsString()) __builtin_trap();
  } else {
    fulcrum::PullResponse read;
    const bool read_ok = fulcrum::ReadPullResponse(&bytes, spans, &read, &in_place).ok();
    fulcrum::PullResponse parsed;
    if (!parsed.ParseFromString(reply)) return 0;
    if (!read_ok) __builtin_trap();
    Restore(targets, in_place, &read);
    parsed.DiscardUnknownFields();  // skipped by the reader
    read.DiscardUnknownFields();
    if (parsed.SerializeAsString() != read.SerializeAsString()) __builtin_trap();
  }
  return 0;
}
