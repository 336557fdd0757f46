#!/usr/bin/env bash
# The Docker Compose deployment, tested on a real engine: builds the image
# FROM scratch, brings the stack up (the coordinator with its backup, a
# second shard with its backup, 3 workers), waits until training progresses
# over both shards with a checkpoint on the volumes, crashes the
# coordinator's ps_server and checks that its backup takes over as the job's
# coordinator, and that the restart policy brings the coordinator back as
# the new coordinator's backup; then crashes shard 1's primary and checks
# that its backup takes over (workers move to it, nothing restarted by hand)
# and that the job finishes with the usual accuracy. Tears everything down
# (down -v) however it ends.
#
# Prints "compose_test: PASS" or "compose_test: FAIL: why"; exit status 0/1.
#
# Why the crash is a SIGKILL of the process and not `docker kill`: Docker
# marks a container stopped by `docker kill` as manually stopped, and restart
# policies ignore manually stopped containers; a crash is what the policy is
# for.
set -uo pipefail
cd "$(dirname "$0")/.."

project="fulcrumtest$$"
compose=(docker-compose -p "$project" -f deploy/docker-compose.yml)
export FULCRUM_IMAGE="fulcrum:test"
export FULCRUM_MODEL=softmax FULCRUM_MODE=sync FULCRUM_WORKERS=3
export FULCRUM_CHECKPOINT_EVERY=1s FULCRUM_STEP_DELAY_MS=2
min_accuracy=0.83

fail() {
  echo "compose_test: FAIL: $*"
  # Every service's whole log stays in a folder; the parameter servers' last
  # lines (status lines left out) are printed.
  local logs
  logs="$(mktemp -d /tmp/compose_test_logs.XXXXXX)"
  "${compose[@]}" logs --no-color >"$logs/all.log" 2>&1
  for service in coordinator coordinator-backup shard1 shard1-backup worker; do
    echo "--- $service log (tail, status lines left out):"
    grep -v "RUNNING round=" "$logs/all.log" | grep "^${service}_[0-9]" | tail -25 | sed 's/^/    /'
  done
  echo "--- every service's log: $logs/all.log"
  exit 1
}
cleanup() { "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT
# Interrupted (a CI timeout, ^C): still clean up.
trap 'exit 1' INT TERM

# From whichever of the two coordinator processes serves the job.
status_json() {
  "${compose[@]}" exec -T coordinator /fulcrum/psctl status --json 2>/dev/null ||
    "${compose[@]}" exec -T coordinator-backup /fulcrum/psctl status --json 2>/dev/null
}
# field, wait_for
source deploy/test_helpers.sh

build_log="$(mktemp)"
deploy/build_image.sh "$FULCRUM_IMAGE" >"$build_log" 2>&1 || { cat "$build_log"; fail "image build failed"; }
rm -f "$build_log"
"${compose[@]}" up -d --scale worker=3 >/dev/null 2>&1 || fail "compose up failed"

wait_for '[[ "$(field state <<<"$json")" == RUNNING && -n "$(field sequence <<<"$json")" ]]' 120 ||
  fail "no training progress with a checkpoint within 120 s"
grep -q '"address": "shard1:50051"' <<<"$json" || fail "status does not list shard 1 at shard1:50051"
before_examples="$(field examples_seen <<<"$json")"
container="$("${compose[@]}" ps -q coordinator)"
restarts_before="$(docker inspect -f '{{.RestartCount}}' "$container")"
pid="$(docker inspect -f '{{.State.Pid}}' "$container")"
# The image runs as nobody (65534), not root, on a read-only root file
# system.
uid="$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")"
if [[ "$uid" != 65534 ]]; then
  echo "compose_test: FAIL: ps_server runs as uid $uid, not 65534" >&2
  exit 1
fi
if [[ "$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$container")" != true ]]; then
  echo "compose_test: FAIL: the ps_server's root file system is writable" >&2
  exit 1
fi
wait_for 'grep -A1 "\"backup_address\": \"coordinator-backup:50051\"" <<<"$json" |
          grep -q "\"backup_up\": true"' 90 ||
  fail "coordinator-backup did not become the coordinator's backup"
echo "compose_test: training ($before_examples examples seen); crashing the coordinator (host pid $pid)"
kill -9 "$pid" || fail "could not kill pid $pid"

# Its backup takes over (shard 0 is then listed at its address) ...
wait_for 'grep -q "\"address\": \"coordinator-backup:50051\"" <<<"$json" &&
          [[ "$(field state <<<"$json")" == RUNNING ]]' 60 ||
  fail "coordinator-backup did not take over from the crashed coordinator within 60 s"
# (grep -c, not -q: with pipefail, grep -q quitting early fails the pipe.)
(($("${compose[@]}" logs --no-color coordinator-backup 2>&1 | grep -c "this process is the coordinator now") > 0)) ||
  fail "coordinator-backup does not say it took over"
echo "compose_test: coordinator-backup took over"
# ... and the restarted coordinator becomes its backup.
deadline=$((SECONDS + 60))
while ((SECONDS < deadline)); do
  restarts="$(docker inspect -f '{{.RestartCount}}' "$container" 2>/dev/null || echo 0)"
  health="$(docker inspect -f '{{.State.Health.Status}}' "$container" 2>/dev/null || true)"
  ((restarts > restarts_before)) && [[ "$health" == healthy ]] && break
  sleep 0.5
done
((restarts > restarts_before)) || fail "the coordinator was not restarted by its restart policy"
[[ "$health" == healthy ]] || fail "the restarted coordinator is not healthy ($health)"
wait_for 'grep -A1 "\"backup_address\": \"coordinator:50051\"" <<<"$json" |
          grep -q "\"backup_up\": true"' 60 ||
  fail "the restarted coordinator did not become the new coordinator's backup"
echo "compose_test: the restarted coordinator ($restarts restart(s)) is the new coordinator's backup"

# Shard 1's primary crashes: its backup (paired again with the new
# coordinator) has every update and takes over; workers move to it.
# The new coordinator took shard 1's pair over with the job state: its
# backup goes on as the backup, with the state it has (had it been refused,
# it would join again and need the primary's state afresh).
backup_state() { "${compose[@]}" logs --no-color shard1-backup 2>&1 | grep -c "took the primary's state"; }
backup_joins() { "${compose[@]}" logs --no-color shard1-backup 2>&1 | grep -c "this process is its backup now"; }
wait_for 'grep -q "\"backup_address\": \"shard1-backup:50051\"" <<<"$json" &&
          grep -q "\"backup_up\": true" <<<"$json" && (( $(backup_state) > $(backup_joins) ))' 90 ||
  fail "shard1-backup did not become shard 1's backup with its state"
(($(backup_joins) == 0)) || fail "shard1-backup had to join again after the coordinator's takeover"
container="$("${compose[@]}" ps -q shard1)"
pid="$(docker inspect -f '{{.State.Pid}}' "$container")"
echo "compose_test: crashing shard 1's primary (host pid $pid)"
kill -9 "$pid" || fail "could not kill pid $pid"
wait_for 'grep -A20 "\"address\": \"shard1-backup:50051\"" <<<"$json" | grep -q "\"failovers\": \"1\""' 30 ||
  fail "shard1-backup did not take over from the crashed primary within 30 s"
echo "compose_test: shard1-backup took over"

wait_for '[[ "$(field state <<<"$json")" == FINISHED ]]' 300 || fail "the job did not finish within 300 s"
# Shard 1 served the whole job (at its backup since the crash) and took
# pushes from the workers.
shard1="$(grep -A20 '"address": "shard1-backup:50051"' <<<"$json")"
[[ "$(field up <<<"$shard1")" == true && "$(field pushes <<<"$shard1")" -gt 0 ]] ||
  fail "shard 1 is not up at its backup or took no pushes"
accuracy="$(grep -A3 '"last_eval"' <<<"$json" | field test_accuracy)"
echo "compose_test: job finished, test_accuracy=$accuracy"
awk -v a="$accuracy" -v m="$min_accuracy" 'BEGIN { exit !(a >= m) }' ||
  fail "test accuracy $accuracy below $min_accuracy"
# The serving service follows the checkpoints of both shards (at whichever
# process wrote them) and serves the trained model.
serving_json() { "${compose[@]}" exec -T serving /fulcrum/psctl serving --json --coordinator=127.0.0.1:50060 2>/dev/null; }
wait_for '[[ "$(serving_json | field checkpoint)" -gt 0 ]]' 60 ||
  fail "the serving service serves no checkpoint: $(serving_json)"
served="$(serving_json)"
grep -q '"name": "softmax/w"' <<<"$served" ||
  fail "the serving service does not serve the model's tensors: $served"
echo "compose_test: serving checkpoint $(field checkpoint <<<"$served")"
echo "compose_test: PASS"
