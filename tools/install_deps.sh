#!/usr/bin/env bash
# Installs the Debian 12 packages Fulcrum needs to build, test and run.
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

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "fulcrum: installing missing Debian packages: ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  SUDO="sudo"
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "fulcrum: packages installed" >&2
