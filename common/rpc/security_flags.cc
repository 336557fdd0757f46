#include "common/rpc/security_flags.h"

#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA bundle to verify the servers dialled with: connect over TLS (ps_server: "
          "to the other ps_servers).");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate (chain) this process presents: ps_server serves TLS with it (and "
          "presents it to the other ps_servers with --tls_ca); a worker or psctl presents it "
          "for mutual TLS.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name the servers' certificates carry, when it is not the host dialled (e.g. an IP "
          "address is dialled).");
ABSL_FLAG(std::string, auth_token_file, "",
          "File holding the bearer token: every call this process makes carries it, and a "
          "ps_server requires it of every RPC but health.");

namespace fulcrum {

void ListSecurityFlagsInHelp(absl::string_view main_file) {
  absl::FlagsUsageConfig config;
  const std::string main(main_file);
  config.contains_help_flags = [main](absl::string_view file) {
    return absl::EndsWith(file, main) || absl::EndsWith(main, file) ||
           absl::EndsWith(file, "common/rpc/security_flags.cc");
  };
  absl::SetFlagsUsageConfig(config);
}

absl::StatusOr<ClientSecurityOptions> ClientSecurityFromFlags() {
  ClientSecurityOptions security;
  security.tls_ca = absl::GetFlag(FLAGS_tls_ca);
  security.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  security.tls_key = absl::GetFlag(FLAGS_tls_key);
  security.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  const std::string token_file = absl::GetFlag(FLAGS_auth_token_file);
  if (!token_file.empty()) {
    absl::StatusOr<std::string> token = ReadTokenFile(token_file);
    if (!token.ok()) {
      return absl::Status(token.status().code(),
                          absl::StrCat("--auth_token_file: ", token.status().message()));
    }
    security.auth_token = *std::move(token);
  }
  return security;
}

}  // namespace fulcrum
