// libFuzzer target: payload decoding (common/payload.h) of every encoding.
// Input: byte 0 picks the encoding, bytes 1-2 the element count the caller
// expects (little-endian, < 65536), byte 3 whether values must be finite;
// the rest is the payload. A decode must fail cleanly or fill exactly the
// expected count; no crash, leak or allocation beyond the count.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/payload.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const auto encoding = static_cast<fulcrum::Encoding>(data[0] % 6);
  const size_t expected = data[1] | (size_t{data[2]} << 8);
  const bool require_finite = data[3] & 1;
  const absl::string_view payload(reinterpret_cast<const char*>(data + 4), size - 4);

  absl::StatusOr<size_t> count = fulcrum::PayloadElementCount(encoding, payload);
  std::vector<float> out(expected);
  const absl::Status decoded =
      fulcrum::DecodeFloat32(encoding, payload, absl::MakeSpan(out), require_finite);
  // A payload that decodes holds exactly the count it claims.
  if (decoded.ok() && (!count.ok() || *count != expected)) __builtin_trap();
  std::vector<float> scratch;
  absl::StatusOr<absl::Span<const float>> view =
      fulcrum::Float32View(encoding, payload, expected, require_finite, &scratch);
  if (view.ok() != decoded.ok()) __builtin_trap();  // the two readers agree
  if (view.ok() && view->size() != expected) __builtin_trap();
  return 0;
}
