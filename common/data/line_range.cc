#include "common/data/line_range.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace fulcrum {

absl::StatusOr<uint64_t> FileSize(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  std::fseek(f, 0, SEEK_END);
  const uint64_t size = static_cast<uint64_t>(std::ftell(f));
  std::fclose(f);
  return size;
}

absl::StatusOr<LineRange> LineRange::Open(const std::string& path, uint64_t begin, uint64_t end) {
  std::unique_ptr<FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  std::fseek(f.get(), 0, SEEK_END);
  const uint64_t size = std::ftell(f.get());
  if (end == 0 || end > size) end = size;
  uint64_t pos = begin;
  if (begin > 0 && begin < end) {
    // Step back one byte and skip to the end of that line: the range's
    // first line is the first that starts at or after `begin`.
    std::fseek(f.get(), begin - 1, SEEK_SET);
    pos = begin - 1;
    int c;
    while ((c = std::fgetc(f.get())) != EOF) {
      ++pos;
      if (c == '\n') break;
    }
  } else {
    std::fseek(f.get(), begin, SEEK_SET);
  }
  return LineRange(std::move(f), pos, end);
}

LineRange::LineRange(LineRange&& other) noexcept
    : file_(std::move(other.file_)),
      pos_(other.pos_),
      end_(other.end_),
      line_number_(other.line_number_),
      buffer_(std::exchange(other.buffer_, nullptr)),
      capacity_(std::exchange(other.capacity_, 0)) {}

LineRange::~LineRange() { std::free(buffer_); }

bool LineRange::Next(absl::string_view* line) {
  if (file_ == nullptr || pos_ >= end_) return false;
  const ssize_t length = ::getline(&buffer_, &capacity_, file_.get());
  if (length <= 0) return false;
  pos_ += length;
  ++line_number_;
  size_t n = length;
  while (n > 0 && (buffer_[n - 1] == '\n' || buffer_[n - 1] == '\r')) --n;
  *line = absl::string_view(buffer_, n);
  return true;
}

}  // namespace fulcrum
