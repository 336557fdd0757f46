#!/usr/bin/env bash
# Runs the Python package's tests (python/tests) under Debian's
# /usr/bin/python3 as a Bazel test: the native module and ps_server come
# from the runfiles, and pytest's report is the test's XML (one case per
# pytest test, as test.sh counts them).
set -euo pipefail
root="$TEST_SRCDIR/fulcrum"
export FULCRUM_NATIVE="$root/python/_native.so"
export HOME="${TEST_TMPDIR:-/tmp}"
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider "$root/python/tests" \
  --junitxml="${XML_OUTPUT_FILE:-$TEST_TMPDIR/pytest.xml}" "$@"
