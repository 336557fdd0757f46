#include "common/payload.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace fulcrum {
namespace {

TEST(PayloadTest, EncodeDecode_RoundTrip_ExactValues) {
  const std::vector<float> values = {0.0f, -1.5f, 3.25e-8f, 1e30f, -0.0f};
  std::string data;
  EncodeFloat32(values, &data);
  ASSERT_EQ(data.size(), values.size() * 4);
  std::vector<float> out(values.size());
  ASSERT_TRUE(DecodeFloat32(FLOAT32, data, absl::MakeSpan(out), true).ok());
  EXPECT_EQ(out, values);
}

TEST(PayloadTest, Encode_IsLittleEndianIeee754) {
  std::string data;
  EncodeFloat32(std::vector<float>{1.0f}, &data);  // 0x3f800000
  ASSERT_EQ(data.size(), 4u);
  EXPECT_EQ(static_cast<unsigned char>(data[0]), 0x00);
  EXPECT_EQ(static_cast<unsigned char>(data[1]), 0x00);
  EXPECT_EQ(static_cast<unsigned char>(data[2]), 0x80);
  EXPECT_EQ(static_cast<unsigned char>(data[3]), 0x3f);
}

TEST(PayloadTest, Encode_AppendsToExistingBytes) {
  std::string data = "xy";
  EncodeFloat32(std::vector<float>{2.0f}, &data);
  EXPECT_EQ(data.size(), 6u);
  EXPECT_EQ(data.substr(0, 2), "xy");
}

TEST(PayloadTest, Decode_LengthNotMultipleOfFour_InvalidArgument) {
  std::vector<float> out(1);
  absl::Status s = DecodeFloat32(FLOAT32, std::string(5, '\0'), absl::MakeSpan(out), true);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("multiple of 4"), absl::string_view::npos);
}

TEST(PayloadTest, Decode_WrongElementCount_InvalidArgument) {
  std::string data;
  EncodeFloat32(std::vector<float>{1, 2, 3}, &data);
  std::vector<float> out(2);
  EXPECT_EQ(DecodeFloat32(FLOAT32, data, absl::MakeSpan(out), true).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PayloadTest, Decode_NonFinite_RejectedOnlyWhenRequired) {
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    std::string data;
    EncodeFloat32(std::vector<float>{1.0f, bad}, &data);
    std::vector<float> out(2);
    EXPECT_EQ(DecodeFloat32(FLOAT32, data, absl::MakeSpan(out), true).code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(DecodeFloat32(FLOAT32, data, absl::MakeSpan(out), false).ok());
  }
}

TEST(PayloadTest, Decode_UnsupportedEncoding_InvalidArgument) {
  std::vector<float> out(1);
  for (Encoding e : {ENCODING_UNSPECIFIED, FLOAT16, INT8_BLOCK}) {
    EXPECT_EQ(DecodeFloat32(e, std::string(4, '\0'), absl::MakeSpan(out), true).code(),
              absl::StatusCode::kInvalidArgument);
  }
}

// The finiteness check names the first bad element wherever it falls: in the
// first or a later block of the vectorised scan, at a block's edge, last.
TEST(PayloadTest, NonFiniteValuesAreFoundAtEveryPosition) {
  const float kInf = std::numeric_limits<float>::infinity();
  const float kNan = std::numeric_limits<float>::quiet_NaN();
  const size_t n = 1000;
  for (size_t at : {size_t{0}, size_t{1}, size_t{255}, size_t{256}, size_t{700}, n - 1}) {
    for (float bad : {kInf, -kInf, kNan}) {
      std::vector<float> values(n, 1.5f);
      values[at] = bad;
      if (at + 3 < n) values[at + 3] = kNan;  // a later one is not the one named
      std::string data;
      EncodeFloat32(values, &data);
      std::vector<float> scratch;
      absl::StatusOr<absl::Span<const float>> view =
          Float32View(FLOAT32, data, n, /*require_finite=*/true, &scratch);
      ASSERT_EQ(view.status().code(), absl::StatusCode::kInvalidArgument) << at;
      EXPECT_NE(view.status().message().find("at element " + std::to_string(at)), std::string::npos)
          << view.status();
      std::vector<float> out(n);
      absl::Status decoded = DecodeFloat32(FLOAT32, data, absl::MakeSpan(out), true);
      EXPECT_NE(decoded.message().find("at element " + std::to_string(at)), std::string::npos)
          << decoded;
      // Unchecked, the same bytes are accepted.
      EXPECT_TRUE(Float32View(FLOAT32, data, n, /*require_finite=*/false, &scratch).ok());
    }
  }
  // The largest finite values and subnormals are finite.
  std::vector<float> edge = {std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                             std::numeric_limits<float>::denorm_min(), -0.0f};
  std::string data;
  EncodeFloat32(edge, &data);
  std::vector<float> scratch;
  EXPECT_TRUE(Float32View(FLOAT32, data, edge.size(), true, &scratch).ok());
}

TEST(PayloadTest, Float32View_InPlaceWhenAlignedCopiedOtherwise) {
  std::string data;
  EncodeFloat32(std::vector<float>{1, 2, 3, 4}, &data);
  std::vector<float> scratch;
  absl::StatusOr<absl::Span<const float>> view = Float32View(FLOAT32, data, 4, true, &scratch);
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(std::vector<float>(view->begin(), view->end()), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(reinterpret_cast<const char*>(view->data()), data.data());  // no copy
  EXPECT_TRUE(scratch.empty());
  std::string shifted = "x" + data;  // misaligned by one byte
  view = Float32View(FLOAT32, absl::string_view(shifted).substr(1), 4, true, &scratch);
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(std::vector<float>(view->begin(), view->end()), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(view->data(), scratch.data());
  // The same checks either way.
  EXPECT_EQ(Float32View(FLOAT32, data, 3, true, &scratch).status().code(),
            absl::StatusCode::kInvalidArgument);
  std::string bad;
  EncodeFloat32(std::vector<float>{1, std::numeric_limits<float>::infinity()}, &bad);
  EXPECT_EQ(Float32View(FLOAT32, bad, 2, true, &scratch).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Float32View(FLOAT32, std::string(7, '\0'), 2, true, &scratch).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PayloadTest, ElementCount_CountsFloats) {
  absl::StatusOr<size_t> n = PayloadElementCount(FLOAT32, std::string(12, 'a'));
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 3u);
}

}  // namespace
}  // namespace fulcrum

namespace fulcrum {
namespace {

std::vector<float> Ramp(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::sin(0.37 * i) * (1.0 + i % 7);
  return v;
}

TEST(CompressedPayloadTest, Float16_HalfTheBytesWithinHalfPrecision) {
  const std::vector<float> values = Ramp(1001);
  std::string data;
  EncodeValues(FLOAT16, values, &data);
  EXPECT_EQ(data.size(), 2 * values.size());
  EXPECT_EQ(*PayloadElementCount(FLOAT16, data), values.size());
  std::vector<float> back(values.size());
  ASSERT_TRUE(DecodeFloat32(FLOAT16, data, absl::MakeSpan(back), true).ok());
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_NEAR(back[i], values[i], std::fabs(values[i]) * (1.0 / 1024) + 1e-7) << i;
  }
  // Exactly representable values survive exactly; overflow is refused.
  std::string exact;
  EncodeValues(FLOAT16, std::vector<float>{0.5f, -2.0f, 1024.0f}, &exact);
  ASSERT_TRUE(DecodeFloat32(FLOAT16, exact, absl::MakeSpan(back.data(), 3), true).ok());
  EXPECT_EQ(back[0], 0.5f);
  EXPECT_EQ(back[1], -2.0f);
  EXPECT_EQ(back[2], 1024.0f);
  std::string huge;
  EncodeValues(FLOAT16, std::vector<float>{1e6f}, &huge);
  EXPECT_FALSE(DecodeFloat32(FLOAT16, huge, absl::MakeSpan(back.data(), 1), true).ok());
  EXPECT_FALSE(PayloadElementCount(FLOAT16, "abc").ok());
}

TEST(CompressedPayloadTest, Int8Block_QuarterTheBytesWithinHalfAStepPerBlock) {
  for (size_t n : {size_t{1}, size_t{255}, size_t{256}, size_t{257}, size_t{1000}}) {
    const std::vector<float> values = Ramp(n);
    std::string data;
    EncodeValues(INT8_BLOCK, values, &data);
    EXPECT_EQ(data.size(), n + 4 * ((n + 255) / 256)) << n;
    ASSERT_EQ(*PayloadElementCount(INT8_BLOCK, data), n);
    std::vector<float> back(n);
    ASSERT_TRUE(DecodeFloat32(INT8_BLOCK, data, absl::MakeSpan(back), true).ok());
    for (size_t begin = 0; begin < n; begin += 256) {
      float max_abs = 0;
      for (size_t i = begin; i < std::min(n, begin + 256); ++i) {
        max_abs = std::max(max_abs, std::fabs(values[i]));
      }
      const float step = max_abs / 127;
      for (size_t i = begin; i < std::min(n, begin + 256); ++i) {
        EXPECT_NEAR(back[i], values[i], step / 2 + 1e-6) << "n=" << n << " i=" << i;
      }
    }
  }
  // All zeros stay zeros; a block holding only its scale is malformed.
  std::string zeros;
  EncodeValues(INT8_BLOCK, std::vector<float>(300, 0.0f), &zeros);
  std::vector<float> back(300, 1.0f);
  ASSERT_TRUE(DecodeFloat32(INT8_BLOCK, zeros, absl::MakeSpan(back), true).ok());
  for (float v : back) EXPECT_EQ(v, 0.0f);
  EXPECT_FALSE(PayloadElementCount(INT8_BLOCK, std::string(260 + 3, '\0')).ok());
  EXPECT_EQ(*PayloadElementCount(INT8_BLOCK, std::string(260 + 5, '\0')), 257u);
}

TEST(CompressedPayloadTest, IndexedNonzeros_ExactAndEightBytesPerNonzero) {
  std::vector<float> values(1000, 0.0f);
  values[0] = -1.5f;
  values[17] = 2.25f;
  values[999] = 1e-30f;
  std::string data = "xy";  // appended to
  EncodeValues(INDEXED_NONZEROS, values, &data);
  ASSERT_EQ(data.size(), 2 + 8 + 3 * 8u);
  const absl::string_view payload = absl::string_view(data).substr(2);
  ASSERT_EQ(*PayloadElementCount(INDEXED_NONZEROS, payload), 1000u);
  std::vector<float> back(1000, 7.0f);  // every other element is overwritten with 0
  ASSERT_TRUE(DecodeFloat32(INDEXED_NONZEROS, payload, absl::MakeSpan(back), true).ok());
  EXPECT_EQ(back, values);
  std::vector<float> scratch;
  absl::StatusOr<absl::Span<const float>> view =
      Float32View(INDEXED_NONZEROS, payload, 1000, true, &scratch);
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(std::vector<float>(view->begin(), view->end()), values);
  // The element count is the slice's, not the entries'.
  std::vector<float> wrong(999);
  EXPECT_FALSE(DecodeFloat32(INDEXED_NONZEROS, payload, absl::MakeSpan(wrong), true).ok());
}

TEST(CompressedPayloadTest, IndexedNonzeros_MalformedPayloadsRefused) {
  std::string good;
  EncodeValues(INDEXED_NONZEROS, std::vector<float>{0, 3, 0, 4}, &good);
  std::vector<float> out(4);
  // Truncated header, entries missing, one byte too many.
  EXPECT_FALSE(PayloadElementCount(INDEXED_NONZEROS, good.substr(0, 7)).ok());
  EXPECT_FALSE(PayloadElementCount(INDEXED_NONZEROS, good.substr(0, good.size() - 1)).ok());
  EXPECT_FALSE(PayloadElementCount(INDEXED_NONZEROS, good + "z").ok());
  // Index beyond the slice; indices out of order; a repeated index.
  auto with_indices = [&](uint32_t a, uint32_t b) {
    std::string d = good;
    std::memcpy(&d[8], &a, 4);
    std::memcpy(&d[12], &b, 4);
    return d;
  };
  for (const std::string& bad : {with_indices(1, 4), with_indices(3, 1), with_indices(1, 1)}) {
    absl::Status s = DecodeFloat32(INDEXED_NONZEROS, bad, absl::MakeSpan(out), true);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  }
  EXPECT_TRUE(DecodeFloat32(INDEXED_NONZEROS, with_indices(0, 2), absl::MakeSpan(out), true).ok());
  // A non-finite value is refused like any other encoding's.
  std::string inf;
  EncodeValues(INDEXED_NONZEROS, std::vector<float>{0, INFINITY}, &inf);
  std::vector<float> two(2);
  EXPECT_FALSE(DecodeFloat32(INDEXED_NONZEROS, inf, absl::MakeSpan(two), true).ok());
}

}  // namespace
}  // namespace fulcrum
