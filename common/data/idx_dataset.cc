#include "common/data/idx_dataset.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"

namespace fulcrum {
namespace {

// IDX magic: two zero bytes, a type code (0x08 = unsigned byte), the number
// of dimensions.
constexpr uint8_t kTypeUnsignedByte = 0x08;
// No IDX file Fulcrum reads has more elements than this (guards allocation
// against a corrupt header): 1 G elements.
constexpr uint64_t kMaxElements = uint64_t{1} << 30;

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// Reads exactly `size` bytes or fails with DATA_LOSS naming `path`.
absl::Status ReadExactly(gzFile file, const std::string& path, void* buffer, size_t size) {
  char* dst = static_cast<char*>(buffer);
  while (size > 0) {
    const unsigned chunk = size > (1u << 30) ? (1u << 30) : size;
    const int n = gzread(file, dst, chunk);
    if (n < 0) {
      int errnum = 0;
      const char* message = gzerror(file, &errnum);
      return absl::DataLossError(
          absl::StrCat(path, ": read error: ", message ? message : "unknown"));
    }
    if (n == 0) {
      return absl::DataLossError(
          absl::StrCat(path, ": truncated (", size, " more bytes expected)"));
    }
    dst += n;
    size -= n;
  }
  return absl::OkStatus();
}

struct IdxFile {
  std::vector<uint32_t> dims;
  std::vector<uint8_t> data;
};

absl::StatusOr<IdxFile> ReadIdx(const std::string& path, uint32_t expected_rank) {
  errno = 0;
  GzFile file(gzopen(path.c_str(), "rb"));
  if (file == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(path, ": cannot open: ", errno ? std::strerror(errno) : "gzopen failed"));
  }
  uint8_t magic[4];
  FULCRUM_RETURN_IF_ERROR(ReadExactly(file.get(), path, magic, sizeof(magic)));
  if (magic[0] != 0 || magic[1] != 0 || magic[2] != kTypeUnsignedByte ||
      magic[3] != expected_rank) {
    return absl::DataLossError(absl::StrCat(path, ": not an IDX file of unsigned bytes with ",
                                            expected_rank, " dimensions (magic ", magic[0], " ",
                                            magic[1], " ", magic[2], " ", magic[3], ")"));
  }
  IdxFile idx;
  uint64_t elements = 1;
  for (uint32_t i = 0; i < expected_rank; ++i) {
    uint8_t be[4];
    FULCRUM_RETURN_IF_ERROR(ReadExactly(file.get(), path, be, sizeof(be)));
    const uint32_t dim = (uint32_t{be[0]} << 24) | (uint32_t{be[1]} << 16) |
                         (uint32_t{be[2]} << 8) | uint32_t{be[3]};
    if (dim == 0) {
      return absl::DataLossError(absl::StrCat(path, ": dimension ", i, " is zero"));
    }
    elements *= dim;
    if (elements > kMaxElements) {
      return absl::DataLossError(absl::StrCat(path, ": implausibly large (over ", kMaxElements,
                                              " elements); corrupt header?"));
    }
    idx.dims.push_back(dim);
  }
  idx.data.resize(elements);
  FULCRUM_RETURN_IF_ERROR(ReadExactly(file.get(), path, idx.data.data(), idx.data.size()));
  return idx;
}

}  // namespace

absl::StatusOr<ImageDataset> ReadIdxDataset(const std::string& images_path,
                                            const std::string& labels_path) {
  FULCRUM_ASSIGN_OR_RETURN(IdxFile images, ReadIdx(images_path, 3));
  FULCRUM_ASSIGN_OR_RETURN(IdxFile labels, ReadIdx(labels_path, 1));
  if (images.dims[0] != labels.dims[0]) {
    return absl::DataLossError(absl::StrCat(images_path, " holds ", images.dims[0], " images but ",
                                            labels_path, " holds ", labels.dims[0], " labels"));
  }
  ImageDataset dataset;
  dataset.num_examples = images.dims[0];
  dataset.num_features = int64_t{images.dims[1]} * images.dims[2];
  dataset.features.resize(images.data.size());
  for (size_t i = 0; i < images.data.size(); ++i) {
    dataset.features[i] = images.data[i] * (1.0f / 255.0f);
  }
  dataset.labels = std::move(labels.data);
  int max_label = 0;
  for (uint8_t label : dataset.labels) max_label = std::max<int>(max_label, label);
  dataset.num_classes = max_label + 1;
  return dataset;
}

absl::Status StandardizeFeatures(const ImageDataset& reference, ImageDataset* data) {
  const int64_t d = reference.num_features;
  if (data->num_features != d) {
    return absl::InvalidArgumentError(absl::StrCat("cannot standardise ", data->num_features,
                                                   " features with statistics of ", d));
  }
  std::vector<double> sum(d, 0.0), sum_sq(d, 0.0);
  for (int64_t i = 0; i < reference.num_examples; ++i) {
    const float* row = &reference.features[i * d];
    for (int64_t j = 0; j < d; ++j) {
      sum[j] += row[j];
      sum_sq[j] += double{row[j]} * row[j];
    }
  }
  std::vector<float> mean(d), inv_std(d);
  const double n = std::max<int64_t>(1, reference.num_examples);
  for (int64_t j = 0; j < d; ++j) {
    mean[j] = static_cast<float>(sum[j] / n);
    const double var = std::max(0.0, sum_sq[j] / n - double{mean[j]} * mean[j]);
    inv_std[j] = var > 1e-12 ? static_cast<float>(1.0 / std::sqrt(var)) : 1.0f;
  }
  for (int64_t i = 0; i < data->num_examples; ++i) {
    float* row = &data->features[i * d];
    for (int64_t j = 0; j < d; ++j) row[j] = (row[j] - mean[j]) * inv_std[j];
  }
  return absl::OkStatus();
}

absl::StatusOr<ImageDataset> ReadFashionMnist(const std::string& dir, absl::string_view split) {
  if (split != "train" && split != "t10k") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown split '", split, "'; expected train or t10k"));
  }
  return ReadIdxDataset(absl::StrCat(dir, "/", split, "-images-idx3-ubyte.gz"),
                        absl::StrCat(dir, "/", split, "-labels-idx1-ubyte.gz"));
}

}  // namespace fulcrum
