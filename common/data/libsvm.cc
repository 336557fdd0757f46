#include "common/data/libsvm.h"

#include <cerrno>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/data/line_range.h"

namespace fulcrum {

absl::StatusOr<SparseDataset> ReadLibsvm(const std::string& path, uint64_t begin, uint64_t end) {
  absl::StatusOr<LineRange> lines = LineRange::Open(path, begin, end);
  if (!lines.ok()) return lines.status();
  SparseDataset data;
  absl::string_view view;
  std::string line;  // NUL-terminated for strtod
  absl::Status error;
  while (lines->Next(&view)) {
    line.assign(view.data(), view.size());
    const uint64_t line_number = lines->line_number();
    const char* p = line.c_str();
    while (*p == ' ' || *p == '\t') ++p;
    if (*p == '\0' || *p == '#') continue;
    char* next;
    errno = 0;
    const double label = std::strtod(p, &next);
    if (next == p || errno != 0 || !(label == 0 || label == 1 || label == -1)) {
      error = absl::DataLossError(absl::StrCat(path, ": line ", line_number, " after byte ", begin,
                                               ": label must be 0, 1, -1 or +1"));
      break;
    }
    data.labels.push_back(label > 0 ? 1 : 0);
    p = next;
    while (true) {
      while (*p == ' ' || *p == '\t') ++p;
      if (*p == '\0' || *p == '#') break;
      errno = 0;
      const unsigned long long index = std::strtoull(p, &next, 10);
      if (next == p || *next != ':' || errno != 0) {
        error = absl::DataLossError(absl::StrCat(path, ": line ", line_number, " after byte ",
                                                 begin, ": expected index:value"));
        break;
      }
      p = next + 1;
      const float value = std::strtof(p, &next);
      if (next == p) {
        error = absl::DataLossError(absl::StrCat(path, ": line ", line_number, " after byte ",
                                                 begin, ": bad feature value"));
        break;
      }
      p = next;
      data.indices.push_back(index);
      data.values.push_back(value);
    }
    if (!error.ok()) break;
    data.offsets.push_back(data.indices.size());
  }
  if (!error.ok()) return error;
  return data;
}

}  // namespace fulcrum
