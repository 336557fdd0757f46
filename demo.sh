#!/usr/bin/env bash
# Fulcrum demo: installs what is missing, builds, starts a local cluster on
# 127.0.0.1 (one ps_server as coordinator and only shard, N workers), trains
# on Fashion-MNIST and ends with a machine-readable "result:" line.
#
#   ./demo.sh [--model=softmax|mlp] [--mode=sync|async] [--workers=N]
#             [--epochs=E] [--optimizer=NAME] [--learning_rate=LR]
#             [--batch_size=B] [--seed=S] [--port=P]
#
# Every process it starts is stopped when it ends or is interrupted.
set -euo pipefail
cd "$(dirname "$0")"

model=softmax
mode=sync
workers=2
port=0
server_flags=()
usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }
for arg in "$@"; do
  case "$arg" in
    --model=*) model="${arg#*=}" ;;
    --mode=*) mode="${arg#*=}" ;;
    --workers=*) workers="${arg#*=}" ;;
    --port=*) port="${arg#*=}" ;;
    --epochs=*|--optimizer=*|--learning_rate=*|--batch_size=*|--seed=*|--momentum=*)
      server_flags+=("$arg") ;;
    -h|--help) usage; exit 0 ;;
    *) echo "demo.sh: unknown flag '$arg'" >&2; usage >&2; exit 2 ;;
  esac
done
if ! [[ "$workers" =~ ^[1-9][0-9]*$ ]]; then
  echo "demo.sh: --workers must be a positive integer, got '$workers'" >&2
  exit 2
fi

./tools/install_deps.sh
echo "demo: building (bazel, -c opt) ..."
bazel build --noshow_progress //server:ps_server //worker:worker //tools:psctl

run_dir=".demo"
rm -rf "$run_dir"
mkdir -p "$run_dir"
pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'echo "demo: interrupted" >&2; exit 130' INT TERM

bin="bazel-bin"
"$bin/server/ps_server" --host=127.0.0.1 --port="$port" \
  --port_file="$run_dir/port" --model="$model" --mode="$mode" \
  --num_workers="$workers" --status_interval=1 --exit_when_done \
  "${server_flags[@]}" >"$run_dir/ps_server.out" 2>"$run_dir/ps_server.log" &
ps_pid=$!
pids+=("$ps_pid")
for _ in $(seq 100); do
  [[ -s "$run_dir/port" ]] && break
  if ! kill -0 "$ps_pid" 2>/dev/null; then
    echo "demo: ps_server failed to start:" >&2
    cat "$run_dir/ps_server.log" >&2
    exit 1
  fi
  sleep 0.1
done
address="127.0.0.1:$(cat "$run_dir/port")"
echo "demo: ps_server on $address; $workers workers; model=$model mode=$mode"
echo "demo: watch it with: $bin/tools/psctl status --coordinator=$address"
echo "demo: logs in $run_dir/"

worker_pids=()
for i in $(seq "$workers"); do
  "$bin/worker/worker" --coordinator="$address" --worker_name="worker-$i" \
    >"$run_dir/worker-$i.log" 2>&1 &
  pids+=("$!")
  worker_pids+=("$!")
done

# Progress from the coordinator, as it comes.
tail -n +1 -f "$run_dir/ps_server.out" --pid="$ps_pid" | grep --line-buffered -v "^result:" &
pids+=("$!")

failed=0
for i in "${!worker_pids[@]}"; do
  if ! wait "${worker_pids[$i]}"; then
    echo "demo: worker-$((i + 1)) failed; its log:" >&2
    tail -n 20 "$run_dir/worker-$((i + 1)).log" >&2
    failed=1
  fi
done
if ((failed)); then exit 1; fi
if ! wait "$ps_pid"; then
  echo "demo: ps_server failed; its log:" >&2
  tail -n 20 "$run_dir/ps_server.log" >&2
  exit 1
fi
sleep 0.2
result="$(grep '^result:' "$run_dir/ps_server.out" || true)"
if [[ -z "$result" ]]; then
  echo "demo: the job ended without a result; see $run_dir/" >&2
  exit 1
fi
echo "$result"
