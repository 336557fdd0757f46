#include "common/payload.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "absl/base/config.h"
#include "absl/strings/str_cat.h"

namespace fulcrum {
namespace {

static_assert(sizeof(float) == 4, "float must be IEEE-754 binary32");

inline uint32_t ByteSwap(uint32_t v) { return __builtin_bswap32(v); }

}  // namespace

void EncodeFloat32(absl::Span<const float> values, std::string* out) {
  const size_t old_size = out->size();
  out->resize(old_size + values.size() * sizeof(float));
  char* dst = &(*out)[old_size];
#ifdef ABSL_IS_LITTLE_ENDIAN
  if (!values.empty()) std::memcpy(dst, values.data(), values.size() * 4);
#else
  for (size_t i = 0; i < values.size(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, &values[i], 4);
    bits = ByteSwap(bits);
    std::memcpy(dst + 4 * i, &bits, 4);
  }
#endif
}

absl::StatusOr<size_t> PayloadElementCount(Encoding encoding,
                                           absl::string_view data) {
  if (encoding != FLOAT32) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported payload encoding ", Encoding_Name(encoding),
                     " (", static_cast<int>(encoding), "); expected FLOAT32"));
  }
  if (data.size() % sizeof(float) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("FLOAT32 payload of ", data.size(),
                     " bytes is not a multiple of 4"));
  }
  return data.size() / sizeof(float);
}

absl::Status DecodeFloat32(Encoding encoding, absl::string_view data,
                           absl::Span<float> out, bool require_finite) {
  absl::StatusOr<size_t> count = PayloadElementCount(encoding, data);
  if (!count.ok()) return count.status();
  if (*count != out.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "payload holds ", *count, " elements, expected ", out.size()));
  }
#ifdef ABSL_IS_LITTLE_ENDIAN
  if (!out.empty()) std::memcpy(out.data(), data.data(), data.size());
#else
  for (size_t i = 0; i < out.size(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, data.data() + 4 * i, 4);
    bits = ByteSwap(bits);
    std::memcpy(&out[i], &bits, 4);
  }
#endif
  if (require_finite) {
    for (size_t i = 0; i < out.size(); ++i) {
      if (!std::isfinite(out[i])) {
        return absl::InvalidArgumentError(absl::StrCat(
            "non-finite value ", out[i], " at element ", i));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::Span<const float>> Float32View(Encoding encoding,
                                                    absl::string_view data,
                                                    size_t expected, bool require_finite,
                                                    std::vector<float>* scratch) {
#ifdef ABSL_IS_LITTLE_ENDIAN
  if (reinterpret_cast<uintptr_t>(data.data()) % alignof(float) == 0) {
    absl::StatusOr<size_t> count = PayloadElementCount(encoding, data);
    if (!count.ok()) return count.status();
    if (*count != expected) {
      return absl::InvalidArgumentError(absl::StrCat(
          "payload holds ", *count, " elements, expected ", expected));
    }
    absl::Span<const float> view(reinterpret_cast<const float*>(data.data()), expected);
    if (require_finite) {
      for (size_t i = 0; i < view.size(); ++i) {
        if (!std::isfinite(view[i])) {
          return absl::InvalidArgumentError(
              absl::StrCat("non-finite value ", view[i], " at element ", i));
        }
      }
    }
    return view;
  }
#endif
  scratch->resize(expected);
  absl::Status s = DecodeFloat32(encoding, data, absl::MakeSpan(*scratch), require_finite);
  if (!s.ok()) return s;
  return absl::Span<const float>(*scratch);
}

}  // namespace fulcrum
