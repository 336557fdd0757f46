#include "common/data/ctr.h"

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "common/data/line_range.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fulcrum {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Write(const std::string& name, const std::string& text) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(dir ? dir : "/tmp") + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(CtrTest, ReadsLabelsNumbersAndIds) {
  const CtrFormat format{2, 3};
  const std::string path = Write("a.tsv",
                                 "1\t5\t-2\t0a\tffffffffffffffff\t\n"
                                 "0\t\t7\tABC\t0\t1\r\n"
                                 "\n");
  absl::StatusOr<CtrDataset> d = ReadCtr(path, format);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->size(), 2u);
  EXPECT_THAT(d->labels, ElementsAre(1.0f, 0.0f));
  EXPECT_THAT(d->numeric, ElementsAre(5.0f, -2.0f, 0.0f, 7.0f));
  EXPECT_THAT(d->ids, ElementsAre(0x0a, 0xffffffffffffffffull, 0, 0xabc, 0, 1));
}

TEST(CtrTest, ByteRanges_EveryLineInExactlyOnePartition) {
  std::string text;
  for (int i = 0; i < 100; ++i) {
    text += std::to_string(i % 2) + "\t" + std::to_string(i) + "\t" + std::to_string(i) + "\n";
  }
  const std::string path = Write("b.tsv", text);
  const uint64_t size = *FileSize(path);
  for (int parts : {1, 2, 3, 7, 13}) {
    std::vector<float> seen;
    for (int p = 0; p < parts; ++p) {
      absl::StatusOr<CtrDataset> d =
          ReadCtr(path, CtrFormat{1, 1}, size * p / parts, size * (p + 1) / parts);
      ASSERT_TRUE(d.ok()) << d.status();
      seen.insert(seen.end(), d->numeric.begin(), d->numeric.end());
    }
    ASSERT_EQ(seen.size(), 100u) << parts;
    for (int i = 0; i < 100; ++i) EXPECT_EQ(seen[i], i) << parts;
  }
}

TEST(CtrTest, MalformedLines_NameTheFileLineAndField) {
  const CtrFormat format{1, 2};
  struct Case {
    std::string line;
    std::string message;
  } cases[] = {
      {"2\t1\ta\tb", "the label must be 0 or 1"},
      {"1\tx\ta\tb", "numeric field 1 is not an integer"},
      {"1\t1\ta\tg", "categorical field 2 is not a hexadecimal id"},
      {"1\t1\ta\t12345678901234567", "categorical field 2 is not a hexadecimal id"},
      {"1\t1\ta", "has 1 categorical fields; expected 2"},
      {"1", "has 0 numeric fields"},
      {"1\t1\ta\tb\tc", "has more than 1 numeric and 2 categorical fields"},
  };
  for (const Case& c : cases) {
    const std::string path = Write("bad.tsv", "0\t1\t2\t3\n" + c.line + "\n");
    absl::StatusOr<CtrDataset> d = ReadCtr(path, format);
    ASSERT_FALSE(d.ok()) << c.line;
    EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << c.line;
    EXPECT_THAT(d.status().message(), HasSubstr(path + ": line 2")) << c.line;
    EXPECT_THAT(d.status().message(), HasSubstr(c.message)) << c.line;
  }
}

TEST(CtrTest, MissingFileAndFormatWithoutFields) {
  EXPECT_EQ(ReadCtr("/nonexistent/x.tsv").status().code(), absl::StatusCode::kNotFound);
  const std::string path = Write("c.tsv", "1\n");
  EXPECT_EQ(ReadCtr(path, CtrFormat{0, 0}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fulcrum
