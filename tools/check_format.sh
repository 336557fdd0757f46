#!/usr/bin/env bash
# Checks that every C++ file tracked by git is formatted as .clang-format
# says (Google style, 100 columns) and every Go file as gofmt does. Prints
# the files that are not and how to fix them; exit 1 if any.
# `tools/check_format.sh --fix` formats them.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! command -v clang-format >/dev/null 2>&1; then
  echo "check_format: clang-format is not installed (tools/install_deps.sh installs it)" >&2
  exit 1
fi
mapfile -t files < <(git ls-files '*.cc' '*.h' | grep -v '^third_party/')
mapfile -t go_files < <(git ls-files '*.go')
gofmt_bin="$(command -v gofmt || echo /usr/local/go/bin/gofmt)"
if ((${#go_files[@]} > 0)) && [[ ! -x "$gofmt_bin" ]]; then
  echo "check_format: gofmt is not installed (Go at /usr/local/go)" >&2
  exit 1
fi
if [[ "${1:-}" == "--fix" ]]; then
  clang-format -i "${files[@]}"
  ((${#go_files[@]} == 0)) || "$gofmt_bin" -w "${go_files[@]}"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
    bad+=("$f")
  fi
done
if ((${#go_files[@]} > 0)); then
  mapfile -t bad_go < <("$gofmt_bin" -l "${go_files[@]}")
  bad+=("${bad_go[@]}")
fi
if ((${#bad[@]} > 0)); then
  echo "check_format: not formatted (run tools/check_format.sh --fix): ${bad[*]}" >&2
  exit 1
fi
echo "check_format: ${#files[@]} C++ and ${#go_files[@]} Go files formatted"
