#!/usr/bin/env bash
# Installs the Python package `fulcrum` for Debian's /usr/bin/python3:
# builds its native module (the C++ worker library under pybind11) and copies
# the package into /usr/local/lib/python3.X/dist-packages/fulcrum. Its
# dependencies are Debian's packages (tools/install_deps.sh installs them).
# Without installing, scripts can use the checkout: PYTHONPATH=python.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/install_deps.sh python
bazel build --noshow_progress //python:_native.so
site="$(/usr/bin/python3 -c 'import sys; print("/usr/local/lib/python%d.%d/dist-packages" % sys.version_info[:2])')"
SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO="sudo"
$SUDO mkdir -p "$site/fulcrum"
$SUDO cp python/fulcrum/*.py "$site/fulcrum/"
$SUDO install -m 0755 bazel-bin/python/_native.so "$site/fulcrum/_native.so"
/usr/bin/python3 -c 'import fulcrum; print("fulcrum: installed in", fulcrum.__file__.rsplit("/", 1)[0])'
