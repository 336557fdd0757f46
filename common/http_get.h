// HttpGet: fetches http://127.0.0.1:PORT/PATH, for tests that scrape
// /metrics. Returns the status line's code and the body.
#ifndef FULCRUM_COMMON_HTTP_GET_H_
#define FULCRUM_COMMON_HTTP_GET_H_

#include <string>

#include "absl/status/statusor.h"

namespace fulcrum {

struct HttpResponse {
  int code = 0;
  std::string body;
};

absl::StatusOr<HttpResponse> HttpGet(int port, const std::string& path);

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_HTTP_GET_H_
