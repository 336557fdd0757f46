// ServingClient: reads a model served by `ps_server --serve=DIR` (rows of its
// sparse tables by id, dense tensors by name). Read only: the serving
// process has no method that writes.
//
//   fulcrum::ServingClientOptions options;
//   options.address = "127.0.0.1:50060";
//   auto client = fulcrum::ServingClient::Connect(options);
//   std::vector<float> rows;  // ids.size() x dim
//   absl::Status s = (*client)->Lookup("user", ids, &rows);
#ifndef FULCRUM_WORKER_SERVING_CLIENT_H_
#define FULCRUM_WORKER_SERVING_CLIENT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace fulcrum {

struct ServingClientOptions {
  // host:port of the serving process.
  std::string address = "127.0.0.1:50060";
  // Bearer token it requires ("" when none); TLS: a PEM CA bundle to verify
  // it with ("" = plaintext), a client certificate and key for mutual TLS,
  // and the name its certificate carries if not the host dialled. Paths.
  std::string auth_token;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  // Deadline of each call.
  absl::Duration timeout = absl::Seconds(10);
};

// One table's part of a LookupBatch, and its answer.
struct TableLookup {
  std::string table;
  std::vector<uint64_t> ids;
  uint32_t dim = 0;  // 0: the table's; another is checked
};
struct TableRows {
  uint32_t dim = 0;
  std::vector<float> rows;  // ids x dim
  std::vector<bool> found;  // per id: it has a row
};

// A dense tensor as served.
struct ServedTensorValues {
  std::vector<int64_t> shape;
  std::vector<float> values;  // row-major
};

// Thread-safe; calls may run concurrently. Errors are the server's status
// (NOT_FOUND for an unknown table or tensor, INVALID_ARGUMENT for a wrong
// dim or too many ids, UNAVAILABLE while it serves no checkpoint yet).
class ServingClient {
 public:
  // The error names a certificate file that could not be read. Connects
  // lazily: a server that is not up fails the first call, not this.
  static absl::StatusOr<std::unique_ptr<ServingClient>> Connect(
      const ServingClientOptions& options);
  virtual ~ServingClient() = default;

  // Rows of `table` for `ids` into `rows` (ids.size() x the table's dim;
  // `dim` 0 takes the table's, another is checked), and per id whether it
  // has a row (`found`, if not null; else its initial value was read).
  // `checkpoint` (if not null) gets the checkpoint answered from.
  virtual absl::Status Lookup(const std::string& table, absl::Span<const uint64_t> ids,
                              std::vector<float>* rows, uint32_t dim = 0,
                              std::vector<bool>* found = nullptr,
                              uint64_t* checkpoint = nullptr) = 0;
  // Several tables' lookups answered from one checkpoint (a model's every
  // table for a batch, in one call): `out` gets each one's rows, in order.
  virtual absl::Status LookupBatch(absl::Span<const TableLookup> lookups,
                                   std::vector<TableRows>* out, uint64_t* checkpoint = nullptr) = 0;
  // Dense tensors by name (empty: all of them).
  virtual absl::StatusOr<std::map<std::string, ServedTensorValues>> ReadTensors(
      const std::vector<std::string>& names = {}) = 0;
  // ServingStatus (proto/serving.proto) as JSON.
  virtual absl::StatusOr<std::string> StatusJson() = 0;
};

}  // namespace fulcrum

#endif  // FULCRUM_WORKER_SERVING_CLIENT_H_
