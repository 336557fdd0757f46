#include "common/data/libsvm.h"

#include <cstdlib>
#include <fstream>

#include "gtest/gtest.h"

namespace fulcrum {
namespace {

std::string Write(const std::string& name, const std::string& text) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(dir ? dir : "/tmp") + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(LibsvmTest, ReadsLabelsAndFeatures) {
  const std::string path =
      Write("a.svm", "1 3:1 18446744073709551615:0.5\n-1 7:2\n\n0 1:1 2:1\n+1\n");
  absl::StatusOr<SparseDataset> d = ReadLibsvm(path);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->labels, (std::vector<uint8_t>{1, 0, 0, 1}));
  EXPECT_EQ(d->offsets, (std::vector<uint64_t>{0, 2, 3, 5, 5}));
  EXPECT_EQ(d->indices[1], 18446744073709551615ull);
  EXPECT_FLOAT_EQ(d->values[1], 0.5f);
}

TEST(LibsvmTest, ByteRanges_EveryLineInExactlyOnePartition) {
  std::string text;
  for (int i = 0; i < 100; ++i) text += std::to_string(i % 2) + " " + std::to_string(i) + ":1\n";
  const std::string path = Write("b.svm", text);
  const uint64_t size = *FileSize(path);
  for (int parts : {1, 2, 3, 7, 13}) {
    std::vector<uint64_t> seen;
    for (int p = 0; p < parts; ++p) {
      SparseDataset d = *ReadLibsvm(path, size * p / parts, size * (p + 1) / parts);
      seen.insert(seen.end(), d.indices.begin(), d.indices.end());
    }
    ASSERT_EQ(seen.size(), 100u) << parts;
    for (int i = 0; i < 100; ++i) EXPECT_EQ(seen[i], uint64_t(i)) << parts;
  }
}

TEST(LibsvmTest, Malformed_DataLossNamingTheFile) {
  const std::string path = Write("c.svm", "1 3:1\n2 4:1\n");
  absl::Status s = ReadLibsvm(path).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("c.svm: line 2"), std::string::npos) << s;
  EXPECT_EQ(ReadLibsvm(Write("d.svm", "1 3=1\n")).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ReadLibsvm("/no/such.svm").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace fulcrum
