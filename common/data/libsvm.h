// Sparse examples in libsvm/svmlight text format ("label idx:val idx:val"),
// read in partitions by byte range.
#ifndef FULCRUM_COMMON_DATA_LIBSVM_H_
#define FULCRUM_COMMON_DATA_LIBSVM_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/data/line_range.h"  // FileSize, for partitioning

namespace fulcrum {

// Examples in compressed sparse rows. Plain value type.
struct SparseDataset {
  std::vector<uint8_t> labels;          // 0 or 1
  std::vector<uint64_t> offsets = {0};  // example i: [offsets[i], offsets[i+1])
  std::vector<uint64_t> indices;        // feature ids
  std::vector<float> values;
  size_t size() const { return labels.size(); }
};

// Reads the examples of bytes [begin, end) of `path`: a partition starts at
// the first line that starts at or after `begin` (so a line belongs to the
// partition its first byte is in), and ends with the line holding byte
// end - 1. end = 0 means the end of the file. Labels may be 0/1 or -1/+1.
// NOT_FOUND if the file cannot be opened; DATA_LOSS naming file:line for a
// malformed line.
absl::StatusOr<SparseDataset> ReadLibsvm(const std::string& path, uint64_t begin = 0,
                                         uint64_t end = 0);

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_DATA_LIBSVM_H_
