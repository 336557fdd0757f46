// Transport security: TLS (optionally mutual) credentials from PEM files,
// and a bearer token checked on every RPC (server side, by gRPC before any
// handler; client side, set once on the channel: ChannelOpener).
#ifndef FULCRUM_COMMON_RPC_SECURITY_H_
#define FULCRUM_COMMON_RPC_SECURITY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/client_context.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace fulcrum {

struct ServerSecurityOptions {
  // PEM files. Both empty: plaintext. Both set: TLS.
  std::string tls_cert;
  std::string tls_key;
  // PEM CA bundle; set: clients must present a certificate it signed
  // (mutual TLS). Needs tls_cert/tls_key.
  std::string tls_client_ca;
};

// Credentials for a server's ports: plaintext, or TLS (optionally mutual).
// With a non-empty `auth_token`, gRPC itself refuses every call that does
// not carry "authorization: Bearer <auth_token>" with UNAUTHENTICATED before
// any service sees it (an auth metadata processor: one check for every
// service and method, current and future); the standard health service
// stays open. INVALID_ARGUMENT for an inconsistent combination, NOT_FOUND /
// a read error naming the file otherwise.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerSecurityOptions& options, const std::string& auth_token = "");

struct ClientSecurityOptions {
  // PEM CA bundle to verify the server; set: TLS. Empty: plaintext.
  std::string tls_ca;
  // PEM client certificate and key for mutual TLS (both or neither).
  std::string tls_cert;
  std::string tls_key;
  // Name the server's certificate must carry, when it differs from the host
  // dialled (e.g. dialling an IP address).
  std::string tls_server_name;
  // Bearer token every call on the channel carries ("authorization: Bearer
  // <token>"); empty: none. The token itself, not a file.
  std::string auth_token;
};

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ClientSecurityOptions& options);

// gRPC channel arguments that go with the credentials (the TLS server name
// override).
void AddSecurityChannelArguments(const ClientSecurityOptions& options,
                                 grpc::ChannelArguments* args);

// Reads a bearer token (surrounding whitespace trimmed). INVALID_ARGUMENT if
// the file is empty; its error (naming the file) if unreadable. The token
// itself never appears in an error.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// Sets an outgoing call's deadline `timeout` from now. (The token travels
// with the channel: ClientSecurityOptions::auth_token.)
void SetTimeout(absl::Duration timeout, grpc::ClientContext* context);

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_RPC_SECURITY_H_
