// Minimal leveled logging to stderr: one line per message, with the wall time,
// severity and the source location. Thread-safe (one write(2) per line).
//
//   FULCRUM_LOG(INFO) << "listening on " << port;
#ifndef FULCRUM_COMMON_BASE_LOG_H_
#define FULCRUM_COMMON_BASE_LOG_H_

#include <sstream>

namespace fulcrum {

enum class LogSeverity { kInfo, kWarning, kError, kFatal };

// Collects one message and writes it when destroyed. kFatal aborts: only for
// the program's own invariants, never for input from the network or disk.
class LogMessage {
 public:
  LogMessage(LogSeverity severity, const char* file, int line);
  ~LogMessage();
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;

  std::ostream& stream() { return stream_; }

 private:
  LogSeverity severity_;
  std::ostringstream stream_;
};

}  // namespace fulcrum

#define FULCRUM_LOG_SEVERITY_INFO ::fulcrum::LogSeverity::kInfo
#define FULCRUM_LOG_SEVERITY_WARNING ::fulcrum::LogSeverity::kWarning
#define FULCRUM_LOG_SEVERITY_ERROR ::fulcrum::LogSeverity::kError
#define FULCRUM_LOG_SEVERITY_FATAL ::fulcrum::LogSeverity::kFatal

#define FULCRUM_LOG(severity) \
  ::fulcrum::LogMessage(FULCRUM_LOG_SEVERITY_##severity, __FILE__, __LINE__).stream()

#endif  // FULCRUM_COMMON_BASE_LOG_H_
