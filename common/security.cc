#include "common/security.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/file_system.h"
#include "common/status_macros.h"

namespace fulcrum {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  absl::StatusOr<std::string> data = PosixFileSystem()->ReadFile(path);
  if (!data.ok()) {
    return absl::Status(data.status().code(),
                        absl::StrCat(what, ": ", data.status().message()));
  }
  if (data->find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", path, " is not PEM"));
  }
  return data;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerSecurityOptions& options) {
  if (options.tls_cert.empty() && options.tls_key.empty()) {
    if (!options.tls_client_ca.empty()) {
      return absl::InvalidArgumentError("--tls_client_ca needs --tls_cert and --tls_key");
    }
    return grpc::InsecureServerCredentials();
  }
  if (options.tls_cert.empty() || options.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  grpc::SslServerCredentialsOptions ssl(
      options.tls_client_ca.empty()
          ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
          : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  FULCRUM_ASSIGN_OR_RETURN(pair.cert_chain, ReadPem(options.tls_cert, "--tls_cert"));
  FULCRUM_ASSIGN_OR_RETURN(pair.private_key, ReadPem(options.tls_key, "--tls_key"));
  ssl.pem_key_cert_pairs.push_back(pair);
  if (!options.tls_client_ca.empty()) {
    FULCRUM_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                             ReadPem(options.tls_client_ca, "--tls_client_ca"));
  }
  return grpc::SslServerCredentials(ssl);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ClientSecurityOptions& options) {
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  if (options.tls_ca.empty()) {
    if (!options.tls_cert.empty()) {
      return absl::InvalidArgumentError("a client certificate needs --tls_ca");
    }
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions ssl;
  FULCRUM_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPem(options.tls_ca, "--tls_ca"));
  if (!options.tls_cert.empty()) {
    FULCRUM_ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadPem(options.tls_cert, "--tls_cert"));
    FULCRUM_ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPem(options.tls_key, "--tls_key"));
  }
  return grpc::SslCredentials(ssl);
}

void AddSecurityChannelArguments(const ClientSecurityOptions& options,
                                 grpc::ChannelArguments* args) {
  if (!options.tls_server_name.empty()) {
    args->SetSslTargetNameOverride(options.tls_server_name);
  }
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  FULCRUM_ASSIGN_OR_RETURN(std::string data, PosixFileSystem()->ReadFile(path));
  std::string token(absl::StripAsciiWhitespace(data));
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("token file ", path, " is empty"));
  }
  return token;
}

void AttachToken(const std::string& token, grpc::ClientContext* context) {
  if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
}

grpc::Status TokenAuthenticator::Check(const grpc::ServerContextBase& context) const {
  if (token_.empty()) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "missing bearer token (authorization metadata)");
  }
  const std::string expected = "Bearer " + token_;
  const grpc::string_ref& got = it->second;
  // Constant time in the token's content.
  unsigned char diff = got.size() != expected.size();
  for (size_t i = 0; i < expected.size(); ++i) {
    diff |= static_cast<unsigned char>(expected[i]) ^
            static_cast<unsigned char>(i < got.size() ? got.data()[i] : 0);
  }
  if (diff != 0) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "wrong bearer token");
  }
  return grpc::Status::OK;
}

}  // namespace fulcrum
