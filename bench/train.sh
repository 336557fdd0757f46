#!/usr/bin/env bash
# train: Fashion-MNIST time-to-accuracy. For each model (softmax regression,
# target 0.84; the MLP, target 0.88), each worker count and each mode, runs a
# local cluster (deploy/local_cluster.sh: one ps_server and the workers on
# 127.0.0.1, sharing this machine's cores) and prints the training seconds
# until the first evaluation at or above the target (evaluations follow
# every epoch), the job's examples/s, and the bytes a worker moves per step
# (a whole-model pull of float32 and a push of the gradient as
# --gradient_compression encodes it).
#
#   bazel build -c opt //server:ps_server //worker:worker //tools:psctl
#   bench/train.sh [--models=softmax,mlp] [--workers=1,2] [--modes=sync,async] [--ps=1]
#                  [other ps_server flags, e.g. --learning_rate=0.001 --batch_size=128]
set -euo pipefail
cd "$(dirname "$0")/.."

models=softmax,mlp
worker_counts=1,2
modes=sync,async
ps=1
server_flags=()
for arg in "$@"; do
  case "$arg" in
    --models=*) models="${arg#*=}" ;;
    --workers=*) worker_counts="${arg#*=}" ;;
    --modes=*) modes="${arg#*=}" ;;
    --ps=*) ps="${arg#*=}" ;;
    --*=*) server_flags+=("$arg") ;;
    *) echo "train.sh: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

declare -A target=([softmax]=0.84 [mlp]=0.88)
declare -A params=([softmax]=7850 [mlp]=203530)

printf "%-8s %-6s %-8s %3s  %14s  %10s  %12s  %14s  %s\n" model mode workers ps \
  "to_target_s" "epochs" "examples/s" "bytes/step" "final_accuracy"
compression=none
topk_ratio=0.01
for flag in "${server_flags[@]}"; do
  [[ "$flag" == --gradient_compression=* ]] && compression="${flag#*=}"
  [[ "$flag" == --topk_ratio=* ]] && topk_ratio="${flag#*=}"
done
declare -A tensor_sizes=([softmax]="7840 10" [mlp]="200704 256 2560 10")
# Payload bytes of one step: pull (float32) plus push (as encoded).
step_bytes() {  # $1: model
  local p="${params[$1]}"
  case "$compression" in
    fp16) echo $((4 * p + 2 * p)) ;;
    int8) echo $((4 * p + p + 4 * ((p + 255) / 256))) ;;
    topk)  # per tensor: 8 header bytes and 8 per kept element (index, value)
      awk -v p="$p" -v r="$topk_ratio" -v sizes="${tensor_sizes[$1]}" 'BEGIN {
        n = split(sizes, s, " "); b = 4 * p
        for (i = 1; i <= n; i++) { k = int(s[i] * r * (1 - 1e-6)); if (k < s[i] * r * (1 - 1e-6)) k++
                                   if (k < 1) k = 1; b += 8 + 8 * k }
        print b }' ;;
    *) echo $((8 * p)) ;;
  esac
}
IFS=, read -ra model_list <<<"$models"
IFS=, read -ra worker_list <<<"$worker_counts"
IFS=, read -ra mode_list <<<"$modes"
for model in "${model_list[@]}"; do
  for mode in "${mode_list[@]}"; do
    for workers in "${worker_list[@]}"; do
      run_dir=".bench-train/$model-$mode-$workers"
      out="$(deploy/local_cluster.sh --bin=bazel-bin --run_dir="$run_dir" --model="$model" \
               --mode="$mode" --workers="$workers" --ps="$ps" "${server_flags[@]}" 2>/dev/null)" || {
        echo "train.sh: $model $mode $workers workers failed; see $run_dir/" >&2
        continue
      }
      # First evaluation at or above the target: its training time and epoch.
      hit="$(grep -E '^epoch [0-9]+/[0-9]+ (done|final model): ' <<<"$out" |
             awk -v t="${target[$model]}" '{
               split($2, e, "/"); acc = $0; sub(/.*test_accuracy=/, "", acc); sub(/ .*/, "", acc);
               el = $0; sub(/.*elapsed=/, "", el); sub(/s$/, "", el);
               if (acc + 0 >= t + 0) { print el, e[1]; exit } }')"
      result="$(grep '^result:' <<<"$out")"
      wall="$(sed 's/.*wall_seconds=//' <<<"$result")"
      accuracy="$(sed 's/.*test_accuracy=\([0-9.]*\).*/\1/' <<<"$result")"
      epochs="$(sed 's/.*epochs=\([0-9]*\).*/\1/' <<<"$result")"
      examples_per_s="$(awk -v e="$epochs" -v w="$wall" 'BEGIN { printf "%.0f", e * 60000 / w }')"
      printf "%-8s %-6s %-8s %3s  %14s  %10s  %12s  %14s  %s\n" "$model" "$mode" "$workers" "$ps" \
        "${hit% *}" "${hit#* }" "$examples_per_s" "$(step_bytes "$model")" "$accuracy"
      [[ -n "$hit" ]] || echo "  ($model $mode $workers workers never reached ${target[$model]})"
    done
  done
done
