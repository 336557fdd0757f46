#include "bench/ps_process.h"

#include <stdlib.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace fulcrum {

absl::StatusOr<std::string> StartPsServer(const std::string& binary,
                                          const std::vector<std::string>& flags,
                                          Subprocess* process, absl::Duration timeout) {
  char port_file[] = "/tmp/fulcrum_bench_port_XXXXXX";
  const int fd = mkstemp(port_file);
  if (fd < 0) return absl::InternalError("cannot create a port file in /tmp");
  close(fd);
  unlink(port_file);  // ps_server writes it once it listens
  std::vector<std::string> argv = {binary, "--host=127.0.0.1", "--port=0",
                                   absl::StrCat("--port_file=", port_file), "--status_interval=0"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  absl::Status started = process->Start(argv, "/dev/null", "/dev/null");
  if (!started.ok()) return started;
  absl::StatusOr<int> port = WaitForPortFile(port_file, timeout);
  unlink(port_file);
  if (!port.ok()) {
    return absl::UnavailableError(absl::StrCat(binary, " did not start serving"));
  }
  return absl::StrCat("127.0.0.1:", *port);
}

}  // namespace fulcrum
