#!/usr/bin/env bash
# Restart stress: a shard with no backup SIGKILLed and restarted from its
# checkpoint again and again under a running job, to find stalls after a
# restore (the new process is rounds behind the workers and the other
# shard). ./test.sh restarts a shard once per test (tests/sharding_test);
# this runs many restarts at random moments.
#
#   bazel build -c opt //server:ps_server //worker:worker //tools:psctl
#   bench/restart_stress.sh [--kills=30] [--mode=sync] [--workers=3]
#                           [--period=3] [--step_delay_ms=2] [--bin=bazel-bin]
#
# Runs a coordinator (shard 0) and shard 1 on 127.0.0.1, both checkpointing
# every second, and `--workers` softmax workers (a long job). Each round
# waits 0.5 s plus a random part of `--period` seconds, SIGKILLs shard 1,
# starts it again on the same port and folder (it restores the newest
# checkpoint) and watches shard 1's version in the coordinator's status: it
# prints the seconds from the restart to the first version past the
# restored one the new process reports (shards report once a heartbeat
# interval, 1 s by default, so the figure is coarse). A restart after which
# the shard applies nothing for 20 s is a stall: the script stops, keeps
# every process running for a look (`psctl status`, the logs) and exits 1.
# At the end: the median and the largest of those times.
set -uo pipefail
cd "$(dirname "$0")/.."

kills=30
mode=sync
workers=3
period=3
step_delay_ms=2
bin=bazel-bin
for arg in "$@"; do
  case "$arg" in
    --kills=*) kills="${arg#*=}" ;;
    --mode=*) mode="${arg#*=}" ;;
    --workers=*) workers="${arg#*=}" ;;
    --period=*) period="${arg#*=}" ;;
    --step_delay_ms=*) step_delay_ms="${arg#*=}" ;;
    --bin=*) bin="${arg#*=}" ;;
    *) echo "restart_stress.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done
for b in server/ps_server worker/worker tools/psctl; do
  [[ -x "$bin/$b" ]] || { echo "restart_stress.sh: $bin/$b not built (bazel build -c opt //$b)" >&2; exit 2; }
done

dir="$(mktemp -d /tmp/fulcrum-restart.XXXXXX)"
pids=()
keep=false  # a stall leaves the processes running
source bench/processes.sh
trap '$keep || kill_started' EXIT
trap 'exit 130' INT TERM
now() { date +%s.%N; }

"$bin/server/ps_server" --host=127.0.0.1 --port=0 --port_file="$dir/coordinator.port" \
  --model=softmax --mode="$mode" --num_workers="$workers" --num_shards=2 --epochs=100000 \
  --checkpoint_dir="$dir/ck0" --checkpoint_every=1s --status_interval=0 \
  >"$dir/coordinator.out" 2>"$dir/coordinator.log" &
pids+=($!)
coordinator="127.0.0.1:$(wait_port "$dir/coordinator.port" $!)" ||
  { echo "restart_stress.sh: the coordinator did not start: $(tail -3 "$dir/coordinator.log")" >&2; exit 1; }

shard_port=0
shard_pid=0
start_shard() {  # $1: generation
  rm -f "$dir/shard1.port"
  "$bin/server/ps_server" --host=127.0.0.1 --port="$shard_port" --port_file="$dir/shard1.port" \
    --num_shards=2 --shard_index=1 --coordinator="$coordinator" --checkpoint_dir="$dir/ck1" \
    --status_interval=0 >/dev/null 2>"$dir/shard1-$1.log" &
  shard_pid=$!
  pids+=($!)
  shard_port="$(wait_port "$dir/shard1.port" $!)" ||
    { echo "restart_stress.sh: shard 1 did not start: $(tail -3 "$dir/shard1-$1.log")" >&2; exit 1; }
}
start_shard 0
for i in $(seq "$workers"); do
  "$bin/worker/worker" --coordinator="$coordinator" --worker_name="w$i" \
    --debug_step_delay_ms="$step_delay_ms" >"$dir/worker$i.log" 2>&1 &
  pids+=($!)
done
# The restarted shard's version (rounds or pushes applied) as the
# coordinator reports it, once the new process has reported.
progress() {
  "$bin/tools/psctl" status --coordinator="$coordinator" --json 2>/dev/null |
    /usr/bin/python3 -c 'import json, sys
s = json.load(sys.stdin)["shards"][1]
print(s.get("version", 0) if s.get("incarnation") == sys.argv[1] else "")' "$1" 2>/dev/null
}
incarnation() {
  "$bin/tools/psctl" status --coordinator="$coordinator" --json 2>/dev/null |
    /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["shards"][1].get("incarnation", ""))' 2>/dev/null
}
for _ in $(seq 300); do
  (($(cat "$dir"/worker*.log | grep -c "registered as worker") >= workers)) && break
  sleep 0.1
done
echo "restart_stress.sh: mode $mode, $workers workers, $kills restarts of shard 1, logs in $dir"

took=()
for k in $(seq "$kills"); do
  sleep "$(awk -v seed="$RANDOM" -v p="$period" 'BEGIN { srand(seed); printf "%.2f", 0.5 + rand() * p }')"
  old_incarnation="$(incarnation)"
  kill -9 "$shard_pid"
  wait "$shard_pid" 2>/dev/null
  start_shard "$k"
  started="$(now)"
  restored=""
  progressed=""
  while [[ -z "$progressed" ]]; do
    sleep 0.1
    new_incarnation="$(incarnation)"
    if [[ -n "$new_incarnation" && "$new_incarnation" != "$old_incarnation" ]]; then
      version="$(progress "$new_incarnation")"
      if [[ -z "$restored" ]]; then
        restored="$version"
      elif [[ -n "$version" && "$version" != "$restored" ]]; then
        progressed="$(awk -v a="$(now)" -v b="$started" 'BEGIN { printf "%.3f", a - b }')"
      fi
    fi
    if [[ -z "$progressed" ]] && awk -v a="$(now)" -v b="$started" 'BEGIN { exit !(a - b > 20) }'; then
      keep=true
      echo "restart_stress.sh: restart $k: STALL, shard 1 restored version ${restored:-?} and" \
        "applied nothing for 20 s; processes left running: ${pids[*]}; logs in $dir" >&2
      exit 1
    fi
  done
  echo "restart $k: $(grep -o 'restored shard 1 of checkpoint [0-9]*' "$dir/shard1-$k.log" | head -1 |
    awk '{ print "checkpoint " $NF }') (version $restored), updates again after ${progressed} s"
  took+=("$progressed")
done
printf '%s\n' "${took[@]}" | sort -n | awk '{ v[NR] = $1 } END {
  m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
  printf "restart_stress.sh: restart to the restored shard\x27s first update reported: median %.3f s, max %.3f s over %d restarts, no stall\n", m, v[NR], NR }'
