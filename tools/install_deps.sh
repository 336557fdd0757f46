#!/usr/bin/env bash
# Installs the Debian 12 packages Fulcrum needs, by what they are for:
#
#   tools/install_deps.sh [GROUP...]     (no GROUP: all of them)
#
#   build   Bazel, a C++ toolchain, gRPC, protobuf, Abseil, Eigen,
#           prometheus-cpp and Fashion-MNIST: enough to build and run
#           ps_server, the workers, psctl and every C++ demo.
#   python  the Python package's native module and PyTorch: python3-dev,
#           pybind11, numpy, PyTorch on OpenBLAS (the reference BLAS is
#           ~30x slower).
#   test    what only the tests need: GoogleTest, Google Benchmark, pytest,
#           clang-14 with libFuzzer, clang-format, the learners' oracles
#           (liblinear, scikit-learn, XGBoost), promtool, the network-fault
#           tests' tools, docker-compose, and grpcurl (Go module proxy).
#
# `python` and `test` include `build`. Idempotent: apt-get runs only when a
# package is missing. Needs root (or sudo). When it installs a library the
# build reads through pkg-config, it refreshes Bazel's view of the system
# (@system, third_party/system_libs.bzl), which records what it found.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_PACKAGES=(
  bazel-bootstrap bazel-rules-java
  build-essential pkg-config zlib1g-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libeigen3-dev prometheus-cpp-dev
  dataset-fashion-mnist
)
PYTHON_PACKAGES=(
  python3-dev pybind11-dev python3-numpy python3-torch libopenblas0-pthread
)
TEST_PACKAGES=(
  libgtest-dev libgmock-dev libbenchmark-dev
  python3-pytest
  openssl file clang-format
  # The fuzzers (tools/fuzz.sh): clang with libFuzzer and the sanitizers.
  clang-14 libclang-rt-14-dev
  # The classic learners' oracles: liblinear for the linear SVM,
  # scikit-learn for k-means, XGBoost for boosted trees.
  liblinear-tools python3-sklearn python3-xgboost
  # promtool, which checks the /metrics output and deploy/prometheus.
  prometheus
  # The network fault tests' hosts (tests/netlab.h): namespaces, veth,
  # iptables, sysctl.
  iproute2 iptables procps
)

groups=("$@")
((${#groups[@]} > 0)) || groups=(build python test)
packages=("${BUILD_PACKAGES[@]}")
want_grpcurl=0
for group in "${groups[@]}"; do
  case "$group" in
    build) ;;
    python) packages+=("${PYTHON_PACKAGES[@]}") ;;
    test)
      packages+=("${PYTHON_PACKAGES[@]}" "${TEST_PACKAGES[@]}")
      # The Compose deployment test needs docker-compose wherever a Docker
      # engine is.
      if command -v docker >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
        packages+=(docker-compose)
      fi
      want_grpcurl=1
      ;;
    *) echo "install_deps: unknown group '$group' (build, python or test)" >&2; exit 2 ;;
  esac
done

missing=()
declare -A seen=()
for p in "${packages[@]}"; do
  [[ -n "${seen[$p]:-}" ]] && continue
  seen[$p]=1
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
  # Bazel caches which libraries pkg-config found; ask again if a workspace
  # already has an output base (a fresh checkout fetches it anyway).
  if [[ -e bazel-out ]]; then
    bazel sync --only=system >/dev/null 2>&1 ||
      echo "fulcrum: 'bazel sync --only=system' failed; run it to see the new libraries" >&2
  fi
fi

# grpcurl, the generic gRPC client the reflection test drives, from the Go
# module proxy when Go is here. Optional: without it that test is skipped.
GRPCURL_VERSION=v1.9.4
if ((want_grpcurl)) && [[ ! -x /usr/local/bin/grpcurl ]]; then
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
