#include "common/data/idx_dataset.h"

#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace fulcrum {
namespace {

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/" + name;
}

std::vector<uint8_t> Header(uint8_t rank, std::vector<uint32_t> dims) {
  std::vector<uint8_t> out = {0, 0, 0x08, rank};
  for (uint32_t d : dims) {
    out.push_back(d >> 24);
    out.push_back(d >> 16);
    out.push_back(d >> 8);
    out.push_back(d);
  }
  return out;
}

void WriteGz(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), bytes.size()), static_cast<int>(bytes.size()));
  gzclose(f);
}

void WritePlain(const std::string& path, const std::vector<uint8_t>& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
}

// Three 2x2 images with pixel values 0..11 and labels 0, 9, 4.
struct SmallSet {
  std::vector<uint8_t> images;
  std::vector<uint8_t> labels;
  SmallSet() {
    images = Header(3, {3, 2, 2});
    for (int i = 0; i < 12; ++i) images.push_back(i * 20);
    labels = Header(1, {3});
    for (uint8_t l : {0, 9, 4}) labels.push_back(l);
  }
};

TEST(IdxDatasetTest, ReadGzipped_ScalesPixelsAndKeepsLabels) {
  SmallSet set;
  WriteGz(TempPath("a-img.gz"), set.images);
  WriteGz(TempPath("a-lab.gz"), set.labels);
  absl::StatusOr<ImageDataset> d = ReadIdxDataset(TempPath("a-img.gz"), TempPath("a-lab.gz"));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->num_examples, 3);
  EXPECT_EQ(d->num_features, 4);
  EXPECT_EQ(d->num_classes, 10);
  ASSERT_EQ(d->features.size(), 12u);
  EXPECT_FLOAT_EQ(d->features[0], 0.0f);
  EXPECT_FLOAT_EQ(d->features[5], 100.0f / 255.0f);
  EXPECT_EQ(d->labels, (std::vector<uint8_t>{0, 9, 4}));
}

TEST(IdxDatasetTest, ReadUncompressed_Works) {
  SmallSet set;
  WritePlain(TempPath("b-img"), set.images);
  WritePlain(TempPath("b-lab"), set.labels);
  absl::StatusOr<ImageDataset> d = ReadIdxDataset(TempPath("b-img"), TempPath("b-lab"));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->num_examples, 3);
}

TEST(IdxDatasetTest, MissingFile_NotFoundNamingTheFile) {
  absl::StatusOr<ImageDataset> d =
      ReadIdxDataset(TempPath("no-such-images.gz"), TempPath("no-such-labels.gz"));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(d.status().message().find("no-such-images.gz"), std::string::npos);
}

TEST(IdxDatasetTest, TruncatedImages_DataLossNamingTheFile) {
  SmallSet set;
  set.images.resize(set.images.size() - 3);
  WriteGz(TempPath("c-img.gz"), set.images);
  WriteGz(TempPath("c-lab.gz"), set.labels);
  absl::StatusOr<ImageDataset> d = ReadIdxDataset(TempPath("c-img.gz"), TempPath("c-lab.gz"));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(d.status().message().find("c-img.gz"), std::string::npos);
  EXPECT_NE(d.status().message().find("truncated"), std::string::npos);
}

TEST(IdxDatasetTest, WrongMagic_DataLoss) {
  SmallSet set;
  set.images[2] = 0x0D;  // float data, not unsigned bytes
  WriteGz(TempPath("d-img.gz"), set.images);
  WriteGz(TempPath("d-lab.gz"), set.labels);
  absl::StatusOr<ImageDataset> d = ReadIdxDataset(TempPath("d-img.gz"), TempPath("d-lab.gz"));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(d.status().message().find("d-img.gz"), std::string::npos);
}

TEST(IdxDatasetTest, LabelsSwappedForImages_DataLoss) {
  SmallSet set;
  WriteGz(TempPath("e-img.gz"), set.images);
  WriteGz(TempPath("e-lab.gz"), set.labels);
  EXPECT_EQ(ReadIdxDataset(TempPath("e-lab.gz"), TempPath("e-img.gz")).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(IdxDatasetTest, CountMismatch_DataLoss) {
  SmallSet set;
  std::vector<uint8_t> labels = Header(1, {2});
  labels.push_back(1);
  labels.push_back(2);
  WriteGz(TempPath("f-img.gz"), set.images);
  WriteGz(TempPath("f-lab.gz"), labels);
  absl::StatusOr<ImageDataset> d = ReadIdxDataset(TempPath("f-img.gz"), TempPath("f-lab.gz"));
  EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss);
}

TEST(IdxDatasetTest, HugeDimensions_DataLossWithoutAllocating) {
  std::vector<uint8_t> images = Header(3, {0xFFFFFFFF, 0xFFFF, 0xFFFF});
  WriteGz(TempPath("g-img.gz"), images);
  SmallSet set;
  WriteGz(TempPath("g-lab.gz"), set.labels);
  EXPECT_EQ(ReadIdxDataset(TempPath("g-img.gz"), TempPath("g-lab.gz")).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(IdxDatasetTest, Standardize_ZeroMeanUnitVariancePerFeature) {
  ImageDataset d;
  d.num_examples = 4;
  d.num_features = 2;
  d.features = {0, 5, 2, 5, 4, 5, 6, 5};  // feature 1 is constant
  ASSERT_TRUE(StandardizeFeatures(d, &d).ok());
  double mean = 0, sq = 0;
  for (int i = 0; i < 4; ++i) {
    mean += d.features[2 * i];
    sq += d.features[2 * i] * d.features[2 * i];
    EXPECT_FLOAT_EQ(d.features[2 * i + 1], 0.0f);
  }
  EXPECT_NEAR(mean / 4, 0.0, 1e-6);
  EXPECT_NEAR(sq / 4, 1.0, 1e-5);
}

TEST(IdxDatasetTest, Standardize_FeatureCountMismatch_InvalidArgument) {
  ImageDataset a, b;
  a.num_features = 2;
  b.num_features = 3;
  EXPECT_EQ(StandardizeFeatures(a, &b).code(), absl::StatusCode::kInvalidArgument);
}

TEST(IdxDatasetTest, ReadFashionMnist_UnknownSplit_InvalidArgument) {
  EXPECT_EQ(ReadFashionMnist("/nowhere", "validation").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fulcrum
