#include "common/payload.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "absl/base/config.h"
#include "absl/strings/str_cat.h"

namespace fulcrum {
namespace {

// The index of the first value that is not finite (NaN or infinite), or
// values.size(). Blocks are checked without branches on the values' bits
// (all exponent bits set), which the compiler turns into vector code; only
// a block holding a bad value is looked at one element at a time. A
// gradient is checked before any of it is applied, so this runs once per
// pushed float: std::isfinite element by element took as long as the
// optimizer's update.
size_t FirstNonFinite(absl::Span<const float> values) {
  constexpr size_t kBlock = 256;
  constexpr uint32_t kExponent = 0x7f800000u;
  const size_t n = values.size();
  size_t start = 0;
  for (; start + kBlock <= n; start += kBlock) {
    uint32_t bits[kBlock];
    std::memcpy(bits, values.data() + start, sizeof(bits));
    uint32_t bad = 0;
    for (size_t i = 0; i < kBlock; ++i) bad |= (bits[i] & kExponent) == kExponent;
    if (bad != 0) break;
  }
  for (size_t i = start; i < n; ++i) {
    if (!std::isfinite(values[i])) return i;
  }
  return n;
}

absl::Status NonFiniteError(absl::Span<const float> values, size_t at) {
  return absl::InvalidArgumentError(
      absl::StrCat("non-finite value ", values[at], " at element ", at));
}

static_assert(sizeof(float) == 4, "float must be IEEE-754 binary32");

inline uint32_t ByteSwap(uint32_t v) { return __builtin_bswap32(v); }

uint32_t LoadU32(const char* p) {
  uint32_t bits;
  std::memcpy(&bits, p, 4);
#ifndef ABSL_IS_LITTLE_ENDIAN
  bits = ByteSwap(bits);
#endif
  return bits;
}

void StoreU32(uint32_t bits, char* p) {
#ifndef ABSL_IS_LITTLE_ENDIAN
  bits = ByteSwap(bits);
#endif
  std::memcpy(p, &bits, 4);
}

float LoadF32(const char* p) {
  const uint32_t bits = LoadU32(p);
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

void StoreF32(float f, char* p) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  StoreU32(bits, p);
}

// Bytes of an INT8_BLOCK payload of n elements.
size_t Int8BlockBytes(size_t n) {
  return n + 4 * ((n + kInt8BlockElements - 1) / kInt8BlockElements);
}

// IEEE half <-> float, rounding to nearest even (beyond the half range:
// infinity). F16C where the target has it (x86-64-v3, the default build);
// otherwise GCC's _Float16.
#if defined(__F16C__)
uint16_t FloatToHalfBits(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }
float HalfBitsToFloat(uint16_t bits) { return _cvtsh_ss(bits); }
#else
uint16_t FloatToHalfBits(float f) {
  const _Float16 h = static_cast<_Float16>(f);
  uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
}
float HalfBitsToFloat(uint16_t bits) {
  _Float16 h;
  std::memcpy(&h, &bits, 2);
  return static_cast<float>(h);
}
#endif

void EncodeFloat16(absl::Span<const float> values, std::string* out) {
  const size_t old_size = out->size();
  out->resize(old_size + 2 * values.size());
  char* dst = &(*out)[old_size];
  for (size_t i = 0; i < values.size(); ++i) {
    const uint16_t bits = FloatToHalfBits(values[i]);
    dst[2 * i] = static_cast<char>(bits & 0xff);
    dst[2 * i + 1] = static_cast<char>(bits >> 8);
  }
}

void EncodeInt8Block(absl::Span<const float> values, std::string* out) {
  const size_t old_size = out->size();
  out->resize(old_size + Int8BlockBytes(values.size()));
  char* dst = &(*out)[old_size];
  for (size_t begin = 0; begin < values.size(); begin += kInt8BlockElements) {
    const size_t n = std::min(kInt8BlockElements, values.size() - begin);
    float max_abs = 0;
    for (size_t i = 0; i < n; ++i) max_abs = std::max(max_abs, std::fabs(values[begin + i]));
    const float scale = max_abs / 127.0f;
    StoreF32(scale, dst);
    dst += 4;
    const float inverse = scale > 0 ? 1.0f / scale : 0.0f;
    for (size_t i = 0; i < n; ++i) {
      const float q = std::nearbyint(values[begin + i] * inverse);
      dst[i] = static_cast<char>(static_cast<int8_t>(std::max(-127.0f, std::min(127.0f, q))));
    }
    dst += n;
  }
}

void EncodeIndexedNonzeros(absl::Span<const float> values, std::string* out) {
  size_t nonzeros = 0;
  for (float v : values) nonzeros += v != 0.0f;
  const size_t old_size = out->size();
  out->resize(old_size + 8 + 8 * nonzeros);
  char* header = &(*out)[old_size];
  StoreU32(static_cast<uint32_t>(values.size()), header);
  StoreU32(static_cast<uint32_t>(nonzeros), header + 4);
  char* indices = header + 8;
  char* data = indices + 4 * nonzeros;
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] == 0.0f) continue;
    StoreU32(static_cast<uint32_t>(i), indices);
    StoreF32(values[i], data);
    indices += 4;
    data += 4;
  }
}

// Scatters an INDEXED_NONZEROS payload (its size already checked) into `out`,
// zero elsewhere.
absl::Status DecodeIndexedNonzeros(absl::string_view data, absl::Span<float> out) {
  const size_t k = LoadU32(data.data() + 4);
  const char* indices = data.data() + 8;
  const char* values = indices + 4 * k;
  std::fill(out.begin(), out.end(), 0.0f);
  int64_t previous = -1;
  for (size_t j = 0; j < k; ++j) {
    const uint32_t index = LoadU32(indices + 4 * j);
    if (index >= out.size() || static_cast<int64_t>(index) <= previous) {
      return absl::InvalidArgumentError(
          absl::StrCat("INDEXED_NONZEROS index ", index, " (entry ", j, ") is ",
                       index >= out.size() ? absl::StrCat("beyond the ", out.size(), " elements")
                                           : "not above the one before it"));
    }
    previous = index;
    out[index] = LoadF32(values + 4 * j);
  }
  return absl::OkStatus();
}

}  // namespace

void EncodeValues(Encoding encoding, absl::Span<const float> values, std::string* out) {
  switch (encoding) {
    case FLOAT16:
      EncodeFloat16(values, out);
      return;
    case INT8_BLOCK:
      EncodeInt8Block(values, out);
      return;
    case INDEXED_NONZEROS:
      EncodeIndexedNonzeros(values, out);
      return;
    default:
      EncodeFloat32(values, out);
  }
}

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

absl::StatusOr<size_t> PayloadElementCount(Encoding encoding, absl::string_view data) {
  if (encoding == FLOAT16) {
    if (data.size() % 2 != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("FLOAT16 payload of ", data.size(), " bytes is not a multiple of 2"));
    }
    return data.size() / 2;
  }
  if (encoding == INT8_BLOCK) {
    // Whole blocks of 4 + 256 bytes, then possibly a shorter one.
    const size_t block_bytes = 4 + kInt8BlockElements;
    const size_t whole = data.size() / block_bytes;
    const size_t rest = data.size() % block_bytes;
    if (rest != 0 && rest <= 4) {
      return absl::InvalidArgumentError(absl::StrCat("INT8_BLOCK payload of ", data.size(),
                                                     " bytes ends in a block without values"));
    }
    return whole * kInt8BlockElements + (rest == 0 ? 0 : rest - 4);
  }
  if (encoding == INDEXED_NONZEROS) {
    if (data.size() < 8) {
      return absl::InvalidArgumentError(
          absl::StrCat("INDEXED_NONZEROS payload of ", data.size(), " bytes has no header"));
    }
    const uint64_t k = LoadU32(data.data() + 4);
    if (data.size() != 8 + 8 * k) {
      return absl::InvalidArgumentError(absl::StrCat("INDEXED_NONZEROS payload of ", data.size(),
                                                     " bytes does not hold the ", k,
                                                     " entries its header announces"));
    }
    return size_t{LoadU32(data.data())};
  }
  if (encoding != FLOAT32) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unsupported payload encoding ", Encoding_Name(encoding), " (", static_cast<int>(encoding),
        "); expected FLOAT32, FLOAT16, INT8_BLOCK or INDEXED_NONZEROS"));
  }
  if (data.size() % sizeof(float) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("FLOAT32 payload of ", data.size(), " bytes is not a multiple of 4"));
  }
  return data.size() / sizeof(float);
}

absl::Status DecodeFloat32(Encoding encoding, absl::string_view data, absl::Span<float> out,
                           bool require_finite) {
  absl::StatusOr<size_t> count = PayloadElementCount(encoding, data);
  if (!count.ok()) return count.status();
  if (*count != out.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("payload holds ", *count, " elements, expected ", out.size()));
  }
  if (encoding == FLOAT16) {
    for (size_t i = 0; i < out.size(); ++i) {
      const uint16_t bits = static_cast<uint8_t>(data[2 * i]) |
                            static_cast<uint16_t>(static_cast<uint8_t>(data[2 * i + 1])) << 8;
      out[i] = HalfBitsToFloat(bits);
    }
  } else if (encoding == INT8_BLOCK) {
    const char* src = data.data();
    for (size_t begin = 0; begin < out.size(); begin += kInt8BlockElements) {
      const size_t n = std::min(kInt8BlockElements, out.size() - begin);
      const float scale = LoadF32(src);
      src += 4;
      for (size_t i = 0; i < n; ++i) out[begin + i] = scale * static_cast<int8_t>(src[i]);
      src += n;
    }
  } else if (encoding == INDEXED_NONZEROS) {
    absl::Status s = DecodeIndexedNonzeros(data, out);
    if (!s.ok()) return s;
  } else {
#ifdef ABSL_IS_LITTLE_ENDIAN
    if (!out.empty()) std::memcpy(out.data(), data.data(), data.size());
#else
    for (size_t i = 0; i < out.size(); ++i) out[i] = LoadF32(data.data() + 4 * i);
#endif
  }
  if (require_finite) {
    const size_t bad = FirstNonFinite(out);
    if (bad != out.size()) return NonFiniteError(out, bad);
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::Span<const float>> Float32View(Encoding encoding, absl::string_view data,
                                                    size_t expected, bool require_finite,
                                                    std::vector<float>* scratch) {
#ifdef ABSL_IS_LITTLE_ENDIAN
  if (encoding == FLOAT32 && reinterpret_cast<uintptr_t>(data.data()) % alignof(float) == 0) {
    absl::StatusOr<size_t> count = PayloadElementCount(encoding, data);
    if (!count.ok()) return count.status();
    if (*count != expected) {
      return absl::InvalidArgumentError(
          absl::StrCat("payload holds ", *count, " elements, expected ", expected));
    }
    absl::Span<const float> view(reinterpret_cast<const float*>(data.data()), expected);
    if (require_finite) {
      const size_t bad = FirstNonFinite(view);
      if (bad != view.size()) return NonFiniteError(view, bad);
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
