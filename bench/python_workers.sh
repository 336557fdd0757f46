#!/usr/bin/env bash
# python_workers: what a Python/PyTorch worker costs against Fulcrum's C++
# worker, and Fulcrum's Python workers against PyTorch alone.
#
#  1. The MLP (784-256-10, batch 64, Adam, async, no evaluation tasks), one
#     worker: the C++ `worker` and the Python worker
#     (python/examples/image_workloads.py, PyTorch maths) alternately against
#     the same ps_server settings, and one PyTorch process with no parameter
#     server; examples/s of each run.
#  2. The CNN of python/examples/cnn.py to 0.90 test accuracy: 2 Python
#     workers + ps_server (async) against PyTorch DDP with 2 processes (gloo),
#     same per-worker batch and optimizer; training seconds to the first
#     epoch at 0.90.
#
#   bazel build //server:ps_server //worker:worker //python:_native.so
#   bench/python_workers.sh [--repeat=3] [--mlp_epochs=2] [--cnn_epochs=5] [--skip_mlp]
#                           [--skip_cnn]
set -euo pipefail
cd "$(dirname "$0")/.."

repeat=3
mlp_epochs=2
cnn_epochs=5
skip_cnn=0
skip_mlp=0
for arg in "$@"; do
  case "$arg" in
    --repeat=*) repeat="${arg#*=}" ;;
    --mlp_epochs=*) mlp_epochs="${arg#*=}" ;;
    --cnn_epochs=*) cnn_epochs="${arg#*=}" ;;
    --skip_cnn) skip_cnn=1 ;;
    --skip_mlp) skip_mlp=1 ;;
    *) echo "python_workers.sh: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done
run=$(mktemp -d /tmp/fulcrum_pyw.XXXXXX)
trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$run"' EXIT
export PYTHONPATH="$PWD/python"

# Starts ps_server with job file $1 and extra flags; sets $address and $ps_pid.
start_server() {
  local job="$1"
  shift
  rm -f "$run/port" "$run/ps.out"
  bazel-bin/server/ps_server --host=127.0.0.1 --port=0 --port_file="$run/port" --job="$job" \
    --status_interval=0 --exit_when_done "$@" >"$run/ps.out" 2>"$run/ps.err" &
  ps_pid=$!
  for _ in $(seq 100); do [[ -s "$run/port" ]] && break; sleep 0.1; done
  address="127.0.0.1:$(cat "$run/port")"
}

# The MLP's shipped job, async, without evaluation tasks.
{ grep -v -e '^mode:' -e '^epochs:' server/jobs/mlp.textproto; echo "mode: ASYNC"
  echo "num_workers: 1"; echo "epochs: $mlp_epochs"; echo "skip_evaluation: true"; } >"$run/mlp.textproto"

wall() { sed -n 's/^result: .*wall_seconds=\([0-9.]*\).*/\1/p' "$run/ps.out"; }
((skip_mlp)) || echo "== MLP, one worker, async, $mlp_epochs epochs, batch 64 (examples/s; $repeat runs each, alternating)"
for r in $(seq "$repeat"); do
  ((skip_mlp)) && break
  start_server "$run/mlp.textproto"
  bazel-bin/worker/worker --coordinator="$address" 2>"$run/cpp.err"
  wait "$ps_pid"
  printf "run %d  cpp_worker     examples/s=%.0f\n" "$r" "$(awk -v e="$mlp_epochs" -v w="$(wall)" 'BEGIN {print 60000 * e / w}')"
  start_server "$run/mlp.textproto"
  /usr/bin/python3 python/examples/image_workloads.py --coordinator="$address" 2>"$run/py.err"
  wait "$ps_pid"
  printf "run %d  python_worker  examples/s=%.0f\n" "$r" "$(awk -v e="$mlp_epochs" -v w="$(wall)" 'BEGIN {print 60000 * e / w}')"
  printf "run %d  " "$r"
  /usr/bin/python3 bench/pytorch_baselines.py mlp --epochs="$mlp_epochs"
done

((skip_cnn)) && exit 0
echo "== CNN to 0.90 test accuracy, 2 workers, async (training seconds)"
to_target() {  # the server's first evaluation at >= 0.90
  awk '/done: test_accuracy=|final model: test_accuracy=/ {
         split($0, a, "test_accuracy="); split(a[2], b, " "); split($0, c, "elapsed=");
         if (b[1] + 0 >= 0.90) { sub("s", "", c[2]); print c[2]; exit } }' "$run/ps.out"
}
for r in $(seq "$repeat"); do
  /usr/bin/python3 python/examples/cnn.py --write_job="$run/cnn.json" --epochs="$cnn_epochs" --workers=2
  start_server "$run/cnn.json"
  for i in 1 2; do
    /usr/bin/python3 python/examples/cnn.py --coordinator="$address" 2>"$run/cnn$i.err" &
  done
  wait "$ps_pid"
  wait
  echo "run $r  fulcrum_cnn: workers=2 to_0.9_s=$(to_target) ($(grep '^result:' "$run/ps.out"))"
  printf "run %d  " "$r"
  /usr/bin/python3 bench/pytorch_baselines.py ddp --procs=2 --epochs="$cnn_epochs" | grep '^ddp_cnn'
done
