// Subprocess: starts a real program for process-level tests (and the
// benchmarks' servers), with its
// stdout and stderr sent to files, and stops it when destroyed.
#ifndef FULCRUM_TESTS_SUBPROCESS_H_
#define FULCRUM_TESTS_SUBPROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace fulcrum {

// Not thread-safe. The destructor SIGKILLs a child still running.
class Subprocess {
 public:
  Subprocess() = default;
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  // Starts argv[0] with `argv`; output goes to the two files (truncated).
  absl::Status Start(const std::vector<std::string>& argv, const std::string& stdout_path,
                     const std::string& stderr_path);

  // Waits for the exit and returns the exit code (128 + signal if killed);
  // DEADLINE_EXCEEDED if it is still running after `timeout`.
  absl::StatusOr<int> Wait(absl::Duration timeout);

  void Signal(int sig);
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

// The path of a binary built by Bazel, from the test's runfiles
// ("server/ps_server").
std::string RunfilePath(const std::string& relative);

// A fresh folder under TEST_TMPDIR.
std::string TestDir(const std::string& name);

// The whole contents of a file ("" if unreadable).
std::string ReadFileOrEmpty(const std::string& path);

// Runs `argv` to its end (within `timeout`) and returns its stdout; its
// output is kept in `log_prefix`.out and .err. An exit other than 0 is an
// error carrying the program's stderr.
absl::StatusOr<std::string> RunToCompletion(const std::vector<std::string>& argv,
                                            const std::string& log_prefix, absl::Duration timeout);

// Waits until `path` holds a port number, or the timeout.
absl::StatusOr<int> WaitForPortFile(const std::string& path, absl::Duration timeout);

}  // namespace fulcrum

#endif  // FULCRUM_TESTS_SUBPROCESS_H_
