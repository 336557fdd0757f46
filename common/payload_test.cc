#include "common/payload.h"

#include <cmath>
#include <limits>
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
  absl::Status s = DecodeFloat32(FLOAT32, std::string(5, '\0'),
                                 absl::MakeSpan(out), true);
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
  for (float bad : {std::numeric_limits<float>::quiet_NaN(),
                    std::numeric_limits<float>::infinity(),
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
    EXPECT_EQ(DecodeFloat32(e, std::string(4, '\0'), absl::MakeSpan(out), true)
                  .code(),
              absl::StatusCode::kInvalidArgument);
  }
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
