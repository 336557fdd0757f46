#!/usr/bin/env bash
# Installs what is missing, builds everything and runs every test
# (bazel test //...), the source format check, the fuzzers (briefly), the
# Kubernetes manifest check (tools/k8s_check, Go) and, when a Docker engine
# answers, the Compose and Swarm deployment tests; then prints
# "N passed, N failed": test cases summed over all test targets (GoogleTest's,
# pytest's and go test's reports), plus one each for the format check, each
# fuzzer and each deployment test. A target that fails to build or dies
# without a report counts as one failed case. Extra arguments go to
# `bazel test`.
set -uo pipefail
cd "$(dirname "$0")"

./tools/install_deps.sh || { echo "test.sh: installing packages failed" >&2; echo "0 passed, 1 failed"; exit 1; }

targets=$(bazel query 'tests(//...)' 2>/dev/null)
if [[ -z "$targets" ]]; then
  echo "test.sh: bazel query found no tests" >&2
  echo "0 passed, 1 failed"
  exit 1
fi

bazel test --noshow_progress "$@" //...
bazel_status=$?

testlogs="$(bazel info bazel-testlogs 2>/dev/null)"
passed=0
failed=0
# Sum one attribute over the <testsuite ...> elements of a report.
sum_attr() {
  grep -o "<testsuite [^>]*" "$1" | grep -o " $2=\"[0-9]*\"" |
    grep -o '[0-9]*' | awk '{s += $1} END {print s + 0}'
}
for target in $targets; do
  path="${target#//}"
  xml="$testlogs/${path/://}/test.xml"
  if [[ ! -s "$xml" ]]; then
    echo "test.sh: no report for $target (did not build or did not run)" >&2
    failed=$((failed + 1))
    continue
  fi
  tests=$(sum_attr "$xml" tests)
  bad=$(( $(sum_attr "$xml" failures) + $(sum_attr "$xml" errors) ))
  skipped=$(( $(sum_attr "$xml" disabled) + $(sum_attr "$xml" skipped) ))
  if ((tests == 0)); then
    echo "test.sh: $target ran no test case" >&2
    failed=$((failed + 1))
    continue
  fi
  passed=$((passed + tests - bad - skipped))
  failed=$((failed + bad))
done

# Source formatting (.clang-format, Google style): one check.
if tools/check_format.sh; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
fi

# The decoders fuzzed briefly (libFuzzer + AddressSanitizer, tools/fuzz.sh;
# longer runs: tools/fuzz.sh --seconds=600): one check per fuzzer.
fuzz_out="$(tools/fuzz.sh --seconds="${FUZZ_SECONDS:-20}")"
echo "$fuzz_out"
fuzz_ok=$(grep -c ': OK (' <<<"$fuzz_out")
fuzz_bad=$(($(tools/fuzz.sh --list | wc -l) - fuzz_ok))
passed=$((passed + fuzz_ok))
failed=$((failed + fuzz_bad))

# The Kubernetes manifests (deploy/k8s), checked offline with Kubernetes'
# own code and against the built binaries' flags: one per go test case.
# The first Go (on PATH, then /usr/local/go) at least as new as go.mod asks.
go_needed="$(awk '$1 == "go" {print $2; exit}' tools/k8s_check/go.mod)"
go_bin=""
for candidate in "$(command -v go)" /usr/local/go/bin/go; do
  [[ -n "$candidate" && -x "$candidate" ]] || continue
  have="$("$candidate" env GOVERSION 2>/dev/null)"
  have="${have#go}"
  if [[ -n "$have" && "$(printf '%s\n%s\n' "$go_needed" "$have" | sort -V | head -1)" == "$go_needed" ]]; then
    go_bin="$candidate"
    break
  fi
done
if [[ -n "$go_bin" ]]; then
  echo "test.sh: checking the Kubernetes manifests (tools/k8s_check)"
  k8s_out="$(cd tools/k8s_check && FULCRUM_BIN_DIR="$(bazel info bazel-bin 2>/dev/null)" \
    "$go_bin" test -count=1 -v . 2>&1)"
  k8s_status=$?
  grep -E -- '^\s*--- (FAIL|SKIP)|^(ok|FAIL)\s' <<<"$k8s_out"
  k8s_ok=$(grep -cE -- '^\s*--- PASS' <<<"$k8s_out")
  k8s_bad=$(grep -cE -- '^\s*--- FAIL' <<<"$k8s_out")
  if ((k8s_status != 0 && k8s_bad == 0)); then
    echo "$k8s_out" | tail -20
    k8s_bad=1
  fi
  passed=$((passed + k8s_ok))
  failed=$((failed + k8s_bad))
else
  echo "test.sh: SKIPPED the Kubernetes manifest check: no Go toolchain of version $go_needed or later (go on PATH or /usr/local/go; Debian 12's golang-go 1.19 is too old for k8s.io/kubernetes)"
fi

# The Docker Compose and Swarm deployments, on a real engine when one
# answers.
if docker_error="$(docker info 2>&1 >/dev/null)"; then
  echo "test.sh: running the Docker Compose test (deploy/compose_test.sh)"
  if deploy/compose_test.sh; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
  echo "test.sh: running the Docker Swarm test (deploy/swarm_test.sh)"
  deploy/swarm_test.sh
  case $? in
    0) passed=$((passed + 1)) ;;
    2) ;;  # skipped; the script printed the engine's reason
    *) failed=$((failed + 1)) ;;
  esac
else
  echo "test.sh: SKIPPED the Docker Compose and Swarm tests: no Docker engine answers (docker info: ${docker_error:-docker not installed})"
fi

if ((bazel_status != 0 && failed == 0)); then
  echo "test.sh: bazel test exited with $bazel_status" >&2
  failed=1
fi
echo "$passed passed, $failed failed"
((failed == 0))
