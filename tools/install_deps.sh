#!/usr/bin/env bash
# Installs the Debian 12 packages Fulcrum needs to build, test and run, and
# grpcurl (Go module proxy) for the reflection test.
# Idempotent: apt-get runs only when a package is missing. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  bazel-bootstrap bazel-rules-java
  build-essential pkg-config zlib1g-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libeigen3-dev libgtest-dev libgmock-dev
  libbenchmark-dev prometheus-cpp-dev
  dataset-fashion-mnist
  openssl file
  clang-format
  # The Python package (python/fulcrum): a pybind11 module over the C++
  # worker library, numpy, PyTorch on OpenBLAS (the reference BLAS is ~30x
  # slower), pytest. They belong to /usr/bin/python3.
  python3-dev pybind11-dev python3-numpy python3-pytest python3-torch libopenblas0-pthread
  # The fuzzers (tools/fuzz.sh): clang with libFuzzer and the sanitizers.
  clang-14 libclang-rt-14-dev
  # The classic learners' oracles (issue 16): liblinear for the linear SVM,
  # scikit-learn for k-means, XGBoost for boosted trees.
  liblinear-tools python3-sklearn python3-xgboost
  # promtool, which checks the /metrics output and deploy/prometheus.
  prometheus
  # The network fault tests' hosts (tests/netlab.h): namespaces, veth,
  # iptables, sysctl.
  iproute2 iptables procps
)
# The Compose deployment needs docker-compose wherever a Docker engine is.
if command -v docker >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
  PACKAGES+=(docker-compose)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  SUDO="sudo"
fi
if ((${#missing[@]} > 0)); then
  echo "fulcrum: installing missing Debian packages: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "fulcrum: packages installed" >&2
fi

# grpcurl, the generic gRPC client the reflection test drives, from the Go
# module proxy when Go is here. Optional: without it that test is skipped.
GRPCURL_VERSION=v1.9.4
if [[ ! -x /usr/local/bin/grpcurl ]]; then
  go_bin="$(command -v go || true)"
  [[ -z "$go_bin" && -x /usr/local/go/bin/go ]] && go_bin=/usr/local/go/bin/go
  if [[ -n "$go_bin" ]]; then
    echo "fulcrum: installing grpcurl $GRPCURL_VERSION with $go_bin" >&2
    if ! $SUDO env GOBIN=/usr/local/bin GOPATH="${GOPATH:-/root/go}" GOFLAGS=-mod=mod \
        "$go_bin" install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION" >/dev/null 2>&1; then
      echo "fulcrum: grpcurl could not be installed; its test will be skipped" >&2
    fi
  fi
fi
exit 0
