# Shell helpers of the deployment tests (compose_test.sh, swarm_test.sh),
# sourced by them. The sourcing script defines status_json, which prints
# the coordinator's `psctl status --json` (or fails).

# Value of a JSON field (first occurrence) in status; numbers may be quoted.
field() { grep -o "\"$1\": \"*[^,\"]*" | head -1 | sed 's/.*: "*//'; }

# Waits until `$1` (a shell condition over $json, the latest status) holds,
# at most $2 seconds.
wait_for() {
  local deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    json="$(status_json || true)"
    if eval "$1"; then return 0; fi
    sleep 0.5
  done
  return 1
}
