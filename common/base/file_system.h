// FileSystem: the file operations checkpoints need, behind an interface so
// tests can make them fail on cue (leveldb's Env pattern). PosixFileSystem is
// the real one.
#ifndef FULCRUM_COMMON_BASE_FILE_SYSTEM_H_
#define FULCRUM_COMMON_BASE_FILE_SYSTEM_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fulcrum {

// A file being written. Not thread-safe.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual absl::Status Append(absl::string_view data) = 0;
  // Flushes to stable storage (fsync).
  virtual absl::Status Sync() = 0;
  virtual absl::Status Close() = 0;
};

// Implementations are thread-safe. Errors name the path and the OS reason.
class FileSystem {
 public:
  virtual ~FileSystem() = default;
  // Creates or truncates.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::string& path) = 0;
  virtual absl::StatusOr<std::string> ReadFile(const std::string& path) = 0;
  virtual absl::Status Rename(const std::string& from, const std::string& to) = 0;
  // Creates the folder (and its parents); OK if it exists.
  virtual absl::Status CreateDir(const std::string& path) = 0;
  // fsyncs a folder, making renames and creations in it durable.
  virtual absl::Status SyncDir(const std::string& path) = 0;
  // Names (not paths) of the entries in a folder.
  virtual absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) = 0;
  // Removes a folder and everything in it.
  virtual absl::Status DeleteRecursively(const std::string& path) = 0;
  virtual bool Exists(const std::string& path) = 0;
};

// The process's file system. A process-wide instance; never deleted.
FileSystem* PosixFileSystem();

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_BASE_FILE_SYSTEM_H_
