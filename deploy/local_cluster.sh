#!/usr/bin/env bash
# Starts a Fulcrum cluster on this machine (127.0.0.1): one ps_server as
# coordinator (shard 0), --ps=N - 1 more ps_server shards, and N workers. Shows the coordinator's progress,
# waits for the job to finish and prints its "result:" line last. Every
# process it starts is stopped when it ends or is interrupted.
#
#   deploy/local_cluster.sh [--bin=DIR] [--run_dir=DIR] [--workers=N] [--ps=N]
#       [--model=M] [--mode=sync|async|ssp:S] [--port=P]
#       [--checkpoint_dir=DIR [--checkpoint_every=5s]]
#       [--train_file=F --test_file=F (sparse_lr)] [--job=FILE]
#       [--worker_cmd="PROGRAM ARGS"] [--backups=1] [other ps_server flags]
#
# --bin is where ps_server, worker and psctl were built (default bazel-bin).
# --job runs a job file instead of the built-in --model; --worker_cmd starts
# each worker with another program (a Python worker, say), given
# --coordinator=ADDRESS and --worker_name=NAME after its own arguments.
# With --checkpoint_dir, a ps_server that dies (kill -9 it to try) is
# restarted on the same port and resumes from its newest checkpoint; the
# workers reconnect by themselves. Shard i > 0 keeps its part of the
# checkpoints in DIR/shard-i (the coordinator's are in DIR). --backups=1
# starts a backup for every shard but the coordinator's (a second ps_server
# for the same index): kill -9 a shard's process and its backup takes over.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="bazel-bin"
run_dir=".demo"
model=softmax
mode=""  # ps_server's own default (sync), or the job file's with --job
workers=2
ps=1
port=0
checkpoint_dir=""
job=""
worker_cmd=""
backups=0
server_flags=()
worker_flags=()
for arg in "$@"; do
  case "$arg" in
    --bin=*) bin="${arg#*=}" ;;
    --run_dir=*) run_dir="${arg#*=}" ;;
    --model=*) model="${arg#*=}" ;;
    --mode=*) mode="${arg#*=}" ;;
    --workers=*) workers="${arg#*=}" ;;
    --ps=*) ps="${arg#*=}" ;;
    --port=*) port="${arg#*=}" ;;
    --checkpoint_dir=*) checkpoint_dir="${arg#*=}"; server_flags+=("$arg") ;;
    --train_file=*|--test_file=*) worker_flags+=("$arg") ;;
    --job=*) job="${arg#*=}" ;;
    --worker_cmd=*) worker_cmd="${arg#*=}" ;;
    --backups=*) backups="${arg#*=}" ;;
    --*=*) server_flags+=("$arg") ;;
    *) echo "local_cluster.sh: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done
if ! [[ "$workers" =~ ^[1-9][0-9]*$ && "$ps" =~ ^[1-9][0-9]*$ ]]; then
  echo "local_cluster.sh: --workers and --ps must be positive integers, got '$workers' and '$ps'" >&2
  exit 2
fi
for b in server/ps_server worker/worker tools/psctl; do
  if [[ ! -x "$bin/$b" ]]; then
    echo "local_cluster.sh: $bin/$b is missing; build first" >&2
    exit 2
  fi
done

rm -rf "$run_dir"
mkdir -p "$run_dir"
pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'echo "local_cluster: interrupted" >&2; exit 130' INT TERM

job_flag=(--model="$model")
if [[ -n "$job" ]]; then job_flag=(--job="$job"); fi
start_ps_server() {  # $1: port
  rm -f "$run_dir/port"
  "$bin/server/ps_server" --host=127.0.0.1 --port="$1" \
    --port_file="$run_dir/port" "${job_flag[@]}" ${mode:+--mode="$mode"} \
    --num_workers="$workers" --num_shards="$ps" --status_interval=1 --exit_when_done \
    "${server_flags[@]}" >>"$run_dir/ps_server.out" 2>>"$run_dir/ps_server.log" &
  ps_pid=$!
  pids+=("$ps_pid")
  for _ in $(seq 100); do
    [[ -s "$run_dir/port" ]] && return 0
    if ! kill -0 "$ps_pid" 2>/dev/null; then
      echo "local_cluster: ps_server failed to start:" >&2
      tail -n 20 "$run_dir/ps_server.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "local_cluster: ps_server did not report its port" >&2
  exit 1
}
start_ps_server "$port"
address="127.0.0.1:$(cat "$run_dir/port")"
# The other shards register with the coordinator and take the job from it.
start_shard() {  # $1: shard index, $2: port
  local flags=()
  if [[ -n "$checkpoint_dir" ]]; then flags+=("--checkpoint_dir=$checkpoint_dir/shard-$1"); fi
  rm -f "$run_dir/shard-$1.port"
  "$bin/server/ps_server" --host=127.0.0.1 --port="$2" --port_file="$run_dir/shard-$1.port" \
    --num_shards="$ps" --shard_index="$1" --coordinator="$address" --exit_when_done \
    "${flags[@]}" >>"$run_dir/shard-$1.out" 2>>"$run_dir/shard-$1.log" &
  pids+=("$!")
  shard_pids[$1]=$!
}
shard_pids=()
for i in $(seq 1 $((ps - 1))); do start_shard "$i" 0; done
# A second process for a shard index becomes that shard's backup once the
# first serves.
start_backup() {  # $1: shard index
  for _ in $(seq 100); do [[ -s "$run_dir/shard-$1.port" ]] && break; sleep 0.1; done
  rm -f "$run_dir/backup-$1.port"
  "$bin/server/ps_server" --host=127.0.0.1 --port=0 --port_file="$run_dir/backup-$1.port" \
    --num_shards="$ps" --shard_index="$1" --coordinator="$address" --exit_when_done \
    >>"$run_dir/backup-$1.out" 2>>"$run_dir/backup-$1.log" &
  pids+=("$!")
}
if [[ "$backups" == 1 ]]; then
  for i in $(seq 1 $((ps - 1))); do start_backup "$i"; done
fi
what="model=$model"
if [[ -n "$job" ]]; then what="job=$job"; fi
echo "local_cluster: ps_server on $address ($ps shards); $workers workers; $what mode=${mode:-default}"
echo "local_cluster: watch it with: $bin/tools/psctl status --coordinator=$address"
echo "local_cluster: logs in $run_dir/"

worker_pids=()
read -r -a worker_program <<<"${worker_cmd:-$bin/worker/worker}"
for i in $(seq "$workers"); do
  "${worker_program[@]}" --coordinator="$address" --worker_name="worker-$i" \
    "${worker_flags[@]}" >"$run_dir/worker-$i.log" 2>&1 &
  pids+=("$!")
  worker_pids+=("$!")
done

# Progress from the coordinator, as it comes.
# (tail -F follows a restarted ps_server too; $! is the tail, so cleanup ends
# it, and the grep ends with it.)
tail -n +1 -F "$run_dir/ps_server.out" 2>/dev/null > >(grep --line-buffered -v "^result:") &
pids+=("$!")

# The job ends when ps_server exits (--exit_when_done). Workers may die on
# the way (the coordinator reassigns their work): report it and go on, unless
# none is left to finish the job.
reported=()
all_gone_since=""
while true; do
  if ! kill -0 "$ps_pid" 2>/dev/null; then
    ps_status=0
    wait "$ps_pid" || ps_status=$?
    if ((ps_status == 0)); then break; fi
    if [[ -n "$checkpoint_dir" ]]; then
      echo "local_cluster: ps_server died (status $ps_status); restarting it on port ${address##*:} from its newest checkpoint" >&2
      start_ps_server "${address##*:}"
      continue
    fi
    echo "local_cluster: ps_server failed (status $ps_status); its log:" >&2
    tail -n 20 "$run_dir/ps_server.log" >&2
    exit 1
  fi
  alive=0
  for i in "${!worker_pids[@]}"; do
    if kill -0 "${worker_pids[$i]}" 2>/dev/null; then
      alive=$((alive + 1))
    elif [[ -z "${reported[$i]:-}" ]]; then
      reported[$i]=1
      if ! wait "${worker_pids[$i]}"; then
        echo "local_cluster: worker-$((i + 1)) exited abnormally (log: $run_dir/worker-$((i + 1)).log); the others carry on" >&2
      fi
    fi
  done
  if ((alive == 0)); then
    all_gone_since="${all_gone_since:-$SECONDS}"
    if ((SECONDS - all_gone_since > 15)); then
      echo "local_cluster: every worker is gone but the job has not finished; see $run_dir/" >&2
      exit 1
    fi
  fi
  sleep 0.5
done
sleep 0.2
result="$(grep '^result:' "$run_dir/ps_server.out" || true)"
if [[ -z "$result" ]]; then
  echo "local_cluster: the job ended without a result; see $run_dir/" >&2
  exit 1
fi
echo "$result"
