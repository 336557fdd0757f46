#include "common/rpc/security.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/base/file_system.h"
#include "common/base/status_macros.h"
#include "grpc/grpc.h"
#include "grpc/grpc_security.h"

namespace fulcrum {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  absl::StatusOr<std::string> data = PosixFileSystem()->ReadFile(path);
  if (!data.ok()) {
    return absl::Status(data.status().code(), absl::StrCat(what, ": ", data.status().message()));
  }
  if (data->find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", path, " is not PEM"));
  }
  return data;
}

absl::string_view View(const grpc_slice& slice) {
  return absl::string_view(reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(slice)),
                           GRPC_SLICE_LENGTH(slice));
}

// Equality taking a time independent of where `got` differs from `expected`.
bool ConstantTimeEquals(absl::string_view got, absl::string_view expected) {
  unsigned char diff = got.size() != expected.size();
  for (size_t i = 0; i < expected.size(); ++i) {
    diff |= static_cast<unsigned char>(expected[i]) ^
            static_cast<unsigned char>(i < got.size() ? got[i] : 0);
  }
  return diff == 0;
}

// The bearer-token check, run by gRPC core on every incoming call before any
// service sees it (an auth metadata processor): one place for every
// service, current and future. Health checks pass without a token. The
// token is consumed: no handler sees it.
class TokenProcessor {
 public:
  static constexpr absl::string_view kOpenPrefix = "/grpc.health.v1.Health/";

  explicit TokenProcessor(const std::string& token) : expected_("Bearer " + token) {}

  static void Process(void* state, grpc_auth_context* /*context*/, const grpc_metadata* md,
                      size_t num_md, grpc_process_auth_metadata_done_cb done, void* user_data) {
    const auto* self = static_cast<const TokenProcessor*>(state);
    absl::string_view path;
    const grpc_metadata* token = nullptr;
    for (size_t i = 0; i < num_md; ++i) {
      const absl::string_view key = View(md[i].key);
      if (key == ":path") path = View(md[i].value);
      if (key == "authorization") token = &md[i];
    }
    if (absl::StartsWith(path, kOpenPrefix)) {
      done(user_data, nullptr, 0, nullptr, 0, GRPC_STATUS_OK, nullptr);
    } else if (token == nullptr) {
      done(user_data, nullptr, 0, nullptr, 0, GRPC_STATUS_UNAUTHENTICATED,
           "missing bearer token (authorization metadata)");
    } else if (!ConstantTimeEquals(View(token->value), self->expected_)) {
      done(user_data, nullptr, 0, nullptr, 0, GRPC_STATUS_UNAUTHENTICATED, "wrong bearer token");
    } else {
      done(user_data, token, 1, nullptr, 0, GRPC_STATUS_OK, nullptr);
    }
  }
  static void Destroy(void* state) { delete static_cast<TokenProcessor*>(state); }

 private:
  const std::string expected_;
};

// grpc::ServerCredentials over gRPC core credentials: gRPC's C++ wrappers
// cannot carry an auth metadata processor on a plaintext port; core can.
class CoreServerCredentials final : public grpc::ServerCredentials {
 public:
  explicit CoreServerCredentials(grpc_server_credentials* credentials)
      : credentials_(credentials) {}
  ~CoreServerCredentials() override { grpc_server_credentials_release(credentials_); }

  void SetAuthMetadataProcessor(
      const std::shared_ptr<grpc::AuthMetadataProcessor>& /*processor*/) override {
    GPR_ASSERT(false && "the token processor is set when the credentials are made");
  }

 private:
  int AddPortToServer(const std::string& addr, grpc_server* server) override {
    return grpc_server_add_http2_port(server, addr.c_str(), credentials_);
  }

  grpc_server_credentials* const credentials_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerSecurityOptions& options, const std::string& auth_token) {
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  if (options.tls_cert.empty() && !options.tls_client_ca.empty()) {
    return absl::InvalidArgumentError("--tls_client_ca needs --tls_cert and --tls_key");
  }
  grpc_server_credentials* credentials = nullptr;
  if (options.tls_cert.empty()) {
    credentials = grpc_insecure_server_credentials_create();
  } else {
    std::string cert, key, client_ca;
    FULCRUM_ASSIGN_OR_RETURN(cert, ReadPem(options.tls_cert, "--tls_cert"));
    FULCRUM_ASSIGN_OR_RETURN(key, ReadPem(options.tls_key, "--tls_key"));
    if (!options.tls_client_ca.empty()) {
      FULCRUM_ASSIGN_OR_RETURN(client_ca, ReadPem(options.tls_client_ca, "--tls_client_ca"));
    }
    grpc_ssl_pem_key_cert_pair pair = {key.c_str(), cert.c_str()};
    credentials = grpc_ssl_server_credentials_create_ex(
        client_ca.empty() ? nullptr : client_ca.c_str(), &pair, 1,
        client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                          : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY,
        nullptr);
    if (credentials == nullptr) {
      return absl::InvalidArgumentError(
          "--tls_cert/--tls_key/--tls_client_ca: gRPC refused the certificates");
    }
  }
  if (!auth_token.empty()) {
    grpc_server_credentials_set_auth_metadata_processor(
        credentials,
        grpc_auth_metadata_processor{&TokenProcessor::Process, &TokenProcessor::Destroy,
                                     new TokenProcessor(auth_token)});
  }
  return std::make_shared<CoreServerCredentials>(credentials);
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

void SetTimeout(absl::Duration timeout, grpc::ClientContext* context) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

}  // namespace fulcrum
