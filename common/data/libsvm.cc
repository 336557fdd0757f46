#include "common/data/libsvm.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace fulcrum {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};

}  // namespace

absl::StatusOr<uint64_t> FileSize(const std::string& path) {
  std::unique_ptr<FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  std::fseek(f.get(), 0, SEEK_END);
  return static_cast<uint64_t>(std::ftell(f.get()));
}

absl::StatusOr<SparseDataset> ReadLibsvm(const std::string& path, uint64_t begin, uint64_t end) {
  std::unique_ptr<FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  std::fseek(f.get(), 0, SEEK_END);
  const uint64_t size = std::ftell(f.get());
  if (end == 0 || end > size) end = size;
  SparseDataset data;
  if (begin >= end) return data;
  // Start at the first line beginning at or after `begin`: step back one
  // byte and skip to the end of that line.
  uint64_t pos = begin;
  if (begin > 0) {
    std::fseek(f.get(), begin - 1, SEEK_SET);
    int c;
    pos = begin - 1;
    while ((c = std::fgetc(f.get())) != EOF) {
      ++pos;
      if (c == '\n') break;
    }
  } else {
    std::fseek(f.get(), 0, SEEK_SET);
  }
  char* line = nullptr;
  size_t capacity = 0;
  ssize_t length;
  uint64_t line_number = 0;  // within the partition, for messages
  absl::Status error;
  while (pos < end && (length = ::getline(&line, &capacity, f.get())) > 0) {
    pos += length;
    ++line_number;
    char* p = line;
    while (*p == ' ' || *p == '\t') ++p;
    if (*p == '\n' || *p == '\r' || *p == '\0' || *p == '#') continue;
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
      if (*p == '\n' || *p == '\r' || *p == '\0' || *p == '#') break;
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
  std::free(line);
  if (!error.ok()) return error;
  return data;
}

}  // namespace fulcrum
