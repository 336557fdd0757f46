// Starting a real ps_server for a benchmark.
#ifndef FULCRUM_BENCH_PS_PROCESS_H_
#define FULCRUM_BENCH_PS_PROCESS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/subprocess.h"

namespace fulcrum {

// Starts `binary` in `process` as a ps_server listening on 127.0.0.1 (a free
// port, no progress lines, output discarded) with `flags` besides, and
// returns "127.0.0.1:PORT" once it serves; an error naming the binary if it
// does not within `timeout`. `process` stops it when destroyed.
absl::StatusOr<std::string> StartPsServer(const std::string& binary,
                                          const std::vector<std::string>& flags,
                                          Subprocess* process,
                                          absl::Duration timeout = absl::Minutes(1));

}  // namespace fulcrum

#endif  // FULCRUM_BENCH_PS_PROCESS_H_
