#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz/ with clang (Debian's clang-14
# and libclang-rt-14-dev: libFuzzer, AddressSanitizer, LeakSanitizer) and
# runs each for --seconds on its seed corpus (made by tests/fuzz:fuzz_seeds).
# A crash, a leak, or an allocation over --malloc_limit_mb stops a fuzzer
# and is reported with the input that caused it (in --out/crashes/).
# Prints one line per fuzzer, "fuzz: NAME: OK (N runs)" or "...: FAILED".
#
#   tools/fuzz.sh [--seconds=20] [--malloc_limit_mb=256] [--out=/tmp/fulcrum-fuzz]
#   tools/fuzz.sh --list     # the fuzzers' names, one a line
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=20
malloc_limit_mb=256
out=/tmp/fulcrum-fuzz
list=false
for arg in "$@"; do
  case "$arg" in
    --seconds=*) seconds="${arg#*=}" ;;
    --malloc_limit_mb=*) malloc_limit_mb="${arg#*=}" ;;
    --out=*) out="${arg#*=}" ;;
    --list) list=true ;;
    *) echo "fuzz.sh: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done
fuzzers=(payload_fuzzer checkpoint_fuzzer parameter_service_fuzzer reply_fuzzer)
corpus=(payload checkpoint parameter_service reply)
if $list; then
  printf '%s\n' "${fuzzers[@]}"
  exit 0
fi

if ! command -v clang++-14 >/dev/null; then
  echo "fuzz.sh: clang++-14 is missing (tools/install_deps.sh installs clang-14 and libclang-rt-14-dev)" >&2
  exit 1
fi
# The gcc build's output base, with "-fuzz" after it: the clang build keeps
# its own cache.
base="$(bazel info output_base 2>/dev/null)-fuzz"
if ! bazel --output_base="$base" build --noshow_progress --config=fuzz \
    "${fuzzers[@]/#///tests/fuzz:}"; then
  echo "fuzz.sh: building the fuzzers failed" >&2
  exit 1
fi
bin="$(bazel --output_base="$base" info --config=fuzz bazel-bin 2>/dev/null)"
bazel build --noshow_progress //tests/fuzz:fuzz_seeds || exit 1
rm -rf "$out"
mkdir -p "$out/crashes"
bazel-bin/tests/fuzz/fuzz_seeds "$out/seeds" || exit 1

failed=0
for i in "${!fuzzers[@]}"; do
  name="${fuzzers[$i]}"
  work="$out/corpus/${corpus[$i]}"
  mkdir -p "$work"
  log="$out/$name.log"
  if ASAN_OPTIONS=detect_leaks=1 "$bin/tests/fuzz/$name" "$work" "$out/seeds/${corpus[$i]}" \
      -max_total_time="$seconds" -malloc_limit_mb="$malloc_limit_mb" -rss_limit_mb=2048 \
      -artifact_prefix="$out/crashes/$name-" -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz: $name: OK (${runs:-?} runs in ${seconds}s)"
  else
    echo "fuzz: $name: FAILED (log: $log)"
    grep -E "ERROR|SUMMARY|==[0-9]+==" "$log" | head -5
    failed=$((failed + 1))
  fi
done
exit $((failed > 0))
