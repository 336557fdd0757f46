#!/usr/bin/env bash
# DLRM through Fulcrum (ps_server + 2 Python workers) against one PyTorch
# process (bench/dlrm_torch.py, nn.EmbeddingBag(sparse=True)) on the same
# click logs, alternating, RUNS times each. Prints each run's wall time and
# test AUC; the figures go to bench/FIGURES.md.
#
#   bench/dlrm.sh [RUNS=3] [baseline flags, e.g. --table_learning_rate=0.1]
#
# Needs: bazel build -c opt //server:ps_server //python:_native.so
# //tools:gen_ctr_data, and the logs in .demo-data/ctr (./demo.sh
# --model=dlrm makes them).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
shift || true
data=.demo-data/ctr
[[ -s "$data/true_auc.txt" ]] || bazel-bin/tools/gen_ctr_data --out_dir="$data" >/dev/null
echo "true model's test AUC: $(cat "$data/true_auc.txt")"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
# Four evaluations in the pass, as the baseline's.
/usr/bin/python3 python/examples/dlrm.py --write_job="$dir/dlrm.json" --evals_per_pass=4
for run in $(seq "$runs"); do
  start=$(date +%s.%N)
  # The baseline at its fastest here: one thread, and OpenBLAS's pool cut
  # to one (two threads ran at half the speed).
  OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/dlrm_torch.py --data_dir="$data" --threads=1 \
    --evals_per_epoch=4 "$@" >"$dir/torch.out"
  wall=$(echo "$(date +%s.%N) - $start" | bc)
  echo "run $run pytorch: wall=${wall}s $(grep '^eval:' "$dir/torch.out" | tr '\n' ';') $(tail -1 "$dir/torch.out")"

  start=$(date +%s.%N)
  bazel-bin/server/ps_server --job="$dir/dlrm.json" --host=127.0.0.1 --port=0 \
    --port_file="$dir/port" --exit_when_done --status_interval=0 >"$dir/ps.out" 2>"$dir/ps.err" &
  ps_pid=$!
  while [[ ! -s "$dir/port" ]]; do sleep 0.05; done
  for w in 0 1; do
    /usr/bin/python3 python/examples/dlrm.py --coordinator="127.0.0.1:$(cat "$dir/port")" \
      --data_dir="$data" --worker_name="w$w" --evals_per_pass=4 >"$dir/w$w.log" 2>&1 &
  done
  wait
  rm -f "$dir/port"
  wall=$(echo "$(date +%s.%N) - $start" | bc)
  # Each evaluation's time since the start, from the coordinator's log.
  evals=$(grep 'evaluation after epoch' "$dir/ps.err" | while read -r line; do
    t=$(date -d "$(awk '{print $2}' <<<"$line")" +%s.%N)
    printf 'wall=%.1f %s; ' "$(echo "$t - $start" | bc)" "$(grep -o 'test_auc=[0-9.]*' <<<"$line")"
  done)
  echo "run $run fulcrum: wall=${wall}s $evals $(grep '^result:' "$dir/ps.out")"
done
