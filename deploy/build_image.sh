#!/usr/bin/env bash
# Builds the fully static release binaries and the Fulcrum image FROM scratch.
#
#   deploy/build_image.sh [TAG]      (default fulcrum:latest)
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-fulcrum:latest}"

bazel build --noshow_progress --config=release //server:ps_server //worker:worker //tools:psctl
bin="$(bazel info --config=release bazel-bin 2>/dev/null)"
for b in server/ps_server worker/worker tools/psctl; do
  if ! file "$bin/$b" | grep -q "statically linked"; then
    echo "build_image.sh: $bin/$b is not statically linked" >&2
    exit 1
  fi
done

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$bin/server/ps_server" "$bin/worker/worker" "$bin/tools/psctl" "$context/"
mkdir -m 1777 "$context/tmp"
mkdir "$context/checkpoints"
docker build --quiet -t "$tag" -f deploy/Dockerfile "$context" >/dev/null
echo "built image $tag ($(docker image inspect -f '{{.Size}}' "$tag") bytes)"
