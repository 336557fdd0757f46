#include "common/base/crc32c.h"

#include <string>

#include "gtest/gtest.h"

namespace fulcrum {
namespace {

TEST(Crc32cTest, StandardCheckValue) {
  // The CRC-32C check value (RFC 3720 / the Rocksoft catalogue).
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(""), 0u);
}

TEST(Crc32cTest, Rfc3720Vectors) {
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
}

TEST(Crc32cTest, ExtendEqualsWhole) {
  std::string data;
  for (int i = 0; i < 1000; ++i) data.push_back(static_cast<char>(i * 31));
  for (size_t cut : {0u, 1u, 7u, 8u, 9u, 500u, 999u}) {
    uint32_t c = Crc32cExtend(0, data.data(), cut);
    c = Crc32cExtend(c, data.data() + cut, data.size() - cut);
    EXPECT_EQ(c, Crc32c(data)) << cut;
  }
}

TEST(Crc32cTest, OneFlippedBit_ChangesTheCrc) {
  std::string data(4096, 'x');
  const uint32_t before = Crc32c(data);
  data[2000] ^= 0x10;
  EXPECT_NE(Crc32c(data), before);
}

}  // namespace
}  // namespace fulcrum
