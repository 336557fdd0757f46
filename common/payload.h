// Packing dense float32 values into wire payloads and back.
//
// Dense values travel as packed little-endian IEEE-754 float32 (Encoding
// FLOAT32), not `repeated float`: one memcpy each way on little-endian hosts.
#ifndef FULCRUM_COMMON_PAYLOAD_H_
#define FULCRUM_COMMON_PAYLOAD_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "proto/job.pb.h"

namespace fulcrum {

// Elements per INT8_BLOCK block: a little-endian float32 scale (the block's
// largest magnitude / 127), then one int8 per element (value / scale,
// rounded); the last block may be shorter.
inline constexpr size_t kInt8BlockElements = 256;

// Appends `values` to `*out` encoded as `encoding`: FLOAT32 (exact), FLOAT16
// (IEEE half, little-endian, round to nearest even; beyond +-65504 becomes
// infinite and is refused where finiteness is required), or INT8_BLOCK (4.06
// times smaller than FLOAT32, error at most half a step of its block's
// scale), or INDEXED_NONZEROS (8 bytes per nonzero plus 8: smaller than
// FLOAT32 while fewer than half the values are nonzero; exact). Anything else
// encodes as FLOAT32.
void EncodeValues(Encoding encoding, absl::Span<const float> values, std::string* out);

// Appends `values` to `*out` as packed little-endian float32.
void EncodeFloat32(absl::Span<const float> values, std::string* out);

// Decodes `data` (any Encoding but UNSPECIFIED) into exactly `out.size()`
// floats.
// INVALID_ARGUMENT if the encoding is not supported, the byte length does not
// fit the encoding, the element count is not out.size(), or (INDEXED_NONZEROS)
// an index is out of range or not ascending.
// With `require_finite`, also INVALID_ARGUMENT if any value is NaN or infinite
// (`out` may then hold partial results; callers must not use them).
absl::Status DecodeFloat32(Encoding encoding, absl::string_view data, absl::Span<float> out,
                           bool require_finite);

// The values of `data` without copying when it is FLOAT32 and its bytes are
// suitably aligned (little-endian hosts); otherwise decoded into `*scratch`. Checks
// the count (== expected) and, with `require_finite`, that no value is NaN or
// infinite, with the errors of DecodeFloat32.
absl::StatusOr<absl::Span<const float>> Float32View(Encoding encoding, absl::string_view data,
                                                    size_t expected, bool require_finite,
                                                    std::vector<float>* scratch);

// Number of elements `data` holds in `encoding`, or INVALID_ARGUMENT.
absl::StatusOr<size_t> PayloadElementCount(Encoding encoding, absl::string_view data);

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_PAYLOAD_H_
