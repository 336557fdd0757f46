// libFuzzer target: the checkpoint shard-file decoder (server/checkpoint/checkpoint.h),
// which reads whatever is on disk after a crash. Any input must decode or be
// refused with DATA_LOSS; what decodes must encode back to a file that
// decodes to the same snapshot.
#include <cstddef>
#include <cstdint>
#include <string>

#include "server/checkpoint/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view file(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<fulcrum::ShardSnapshot> shard = fulcrum::DecodeShardFile(file, "fuzz");
  if (!shard.ok()) {
    if (shard.status().code() != absl::StatusCode::kDataLoss) __builtin_trap();
    return 0;
  }
  const std::string again = fulcrum::EncodeShardFile(*shard, 0, 1);
  absl::StatusOr<fulcrum::ShardSnapshot> round_trip = fulcrum::DecodeShardFile(again, "again");
  if (!round_trip.ok() || round_trip->version != shard->version ||
      round_trip->tensors.size() != shard->tensors.size() ||
      round_trip->tables.size() != shard->tables.size()) {
    __builtin_trap();
  }
  return 0;
}
