// The lines of a byte range of a text file: how the data readers cut a file
// into partitions without an index.
#ifndef FULCRUM_COMMON_DATA_LINE_RANGE_H_
#define FULCRUM_COMMON_DATA_LINE_RANGE_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fulcrum {

// Reads the lines of bytes [begin, end) of a file: the range starts at the
// first line that starts at or after `begin` and ends with the line holding
// byte end - 1, so every line belongs to exactly one of the ranges that
// cut a file, the one its first byte is in. Not thread-safe; owns the open
// file.
class LineRange {
 public:
  // end = 0 (or past the end) means the end of the file. NOT_FOUND if the
  // file cannot be opened.
  static absl::StatusOr<LineRange> Open(const std::string& path, uint64_t begin, uint64_t end);

  LineRange(LineRange&& other) noexcept;
  LineRange& operator=(LineRange&&) = delete;
  ~LineRange();

  // The next line without its line break; false at the range's end. The
  // view lives until the next call.
  bool Next(absl::string_view* line);
  // The number of the line Next returned last, counted from 1 at the
  // range's first line (for messages).
  uint64_t line_number() const { return line_number_; }

 private:
  struct FileCloser {
    void operator()(FILE* f) const { std::fclose(f); }
  };
  LineRange(std::unique_ptr<FILE, FileCloser> file, uint64_t pos, uint64_t end)
      : file_(std::move(file)), pos_(pos), end_(end) {}

  std::unique_ptr<FILE, FileCloser> file_;
  uint64_t pos_;
  uint64_t end_;
  uint64_t line_number_ = 0;
  char* buffer_ = nullptr;
  size_t capacity_ = 0;
};

// Size of a file in bytes; NOT_FOUND if it cannot be opened.
absl::StatusOr<uint64_t> FileSize(const std::string& path);

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_DATA_LINE_RANGE_H_
