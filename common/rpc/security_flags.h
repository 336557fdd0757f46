// The transport-security flags every Fulcrum binary that dials another
// shares (ps_server, worker, psctl): one definition of each, one reading.
//
//   --tls_ca           PEM CA bundle to verify the servers dialled: TLS
//   --tls_cert/--tls_key  the certificate presented (a ps_server's serving
//                      one; a client's for mutual TLS)
//   --tls_server_name  the name the servers' certificates carry
//   --auth_token_file  the bearer token, presented with every call (and a
//                      ps_server requires it of every call but health)
//
// Linking this library defines the flags; a binary reads them after
// absl::ParseCommandLine.
#ifndef FULCRUM_COMMON_RPC_SECURITY_FLAGS_H_
#define FULCRUM_COMMON_RPC_SECURITY_FLAGS_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/rpc/security.h"

namespace fulcrum {

// Makes --help list these flags with those of `main_file` (pass __FILE__):
// Abseil lists only the flags of the file named like the program by default.
// Call before absl::ParseCommandLine.
void ListSecurityFlagsInHelp(absl::string_view main_file);

// The flags as a client's setting, the token read from --auth_token_file.
// The token file's error names the flag (INVALID_ARGUMENT for an empty
// file, its read error otherwise). Certificates are read later, when
// channels are opened (ChannelOpener::Create).
absl::StatusOr<ClientSecurityOptions> ClientSecurityFromFlags();

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_RPC_SECURITY_FLAGS_H_
