// Reading image-classification data sets stored as IDX files (the MNIST and
// Fashion-MNIST format), gzipped or not.
#ifndef FULCRUM_COMMON_DATA_IDX_DATASET_H_
#define FULCRUM_COMMON_DATA_IDX_DATASET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fulcrum {

// Labelled examples held in memory. Pixels are scaled to [0, 1].
// A plain value type; not synchronised.
struct ImageDataset {
  int64_t num_examples = 0;
  int64_t num_features = 0;     // rows * cols per image
  std::vector<float> features;  // num_examples * num_features, row-major
  std::vector<uint8_t> labels;  // num_examples
  int num_classes = 0;          // 1 + the largest label
};

// Reads an IDX3 image file and the matching IDX1 label file. Files may be
// gzipped (detected by content). Errors name the file: NOT_FOUND if it cannot
// be opened, DATA_LOSS if it is truncated or malformed (wrong magic, wrong
// dimensions, image and label counts that differ).
absl::StatusOr<ImageDataset> ReadIdxDataset(const std::string& images_path,
                                            const std::string& labels_path);

// Rescales every feature to zero mean and unit variance using the mean and
// standard deviation of `reference` (the training set), applied to `data`.
// Features constant in `reference` are only centred. Both must have the same
// number of features (INVALID_ARGUMENT otherwise).
absl::Status StandardizeFeatures(const ImageDataset& reference, ImageDataset* data);

// Where Debian's dataset-fashion-mnist package puts the data.
inline constexpr absl::string_view kDefaultFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// Reads split "train" or "t10k" of Fashion-MNIST from `dir`
// (<split>-images-idx3-ubyte.gz and <split>-labels-idx1-ubyte.gz).
absl::StatusOr<ImageDataset> ReadFashionMnist(const std::string& dir, absl::string_view split);

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_DATA_IDX_DATASET_H_
