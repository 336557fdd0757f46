// Click logs in Criteo's text format, read in partitions by byte range.
//
// One example per line, tab-separated: the label (0 or 1), then
// `numeric_fields` integer features, then `categorical_fields` categorical
// ids written as hexadecimal (up to 16 digits, as Criteo's 8-digit hashes).
// An empty numeric field reads as 0; an empty categorical field as id 0.
// Ids are read as the 64 bits they spell (a signed int64 view of them may be
// negative): there is no vocabulary.
#ifndef FULCRUM_COMMON_DATA_CTR_H_
#define FULCRUM_COMMON_DATA_CTR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace fulcrum {

// The shape of a click log's lines. Defaults: Criteo's 13 and 26.
struct CtrFormat {
  int numeric_fields = 13;
  int categorical_fields = 26;
};

// Examples, row-major. Plain value type.
struct CtrDataset {
  CtrFormat format;
  std::vector<float> labels;   // 0 or 1
  std::vector<float> numeric;  // size() * numeric_fields, as written
  std::vector<uint64_t> ids;   // size() * categorical_fields
  size_t size() const { return labels.size(); }
};

// Reads the examples of bytes [begin, end) of `path`: a line belongs to the
// partition its first byte is in (as ReadLibsvm). end = 0 means the end of
// the file. NOT_FOUND if the file cannot be opened; INVALID_ARGUMENT for a
// format without fields; DATA_LOSS naming the file, the line (counted from
// the partition's first) and the field for a malformed line.
absl::StatusOr<CtrDataset> ReadCtr(const std::string& path, const CtrFormat& format = {},
                                   uint64_t begin = 0, uint64_t end = 0);

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_DATA_CTR_H_
