#!/usr/bin/env bash
# Fulcrum demo: installs what is missing, builds, starts a local cluster on
# 127.0.0.1 (a ps_server as coordinator and shard 0, --ps=N - 1 more shards,
# N workers), trains and ends with a machine-readable "result:" line.
# Models: softmax and mlp on Fashion-MNIST; sparse_lr on generated click
# data; the learners of worker/examples/: linear_svm (click data), kmeans,
# pca and gbdt (Fashion-MNIST), mf (generated ratings); cnn, a PyTorch CNN
# trained by Python workers (python/examples/cnn.py); dlrm, a PyTorch DLRM
# whose embedding tables live on the servers, on generated click logs
# (python/examples/dlrm.py).
#
#   ./demo.sh [--model=softmax|mlp|sparse_lr|linear_svm|kmeans|pca|mf|gbdt|cnn|dlrm]
#             [--mode=sync|async|ssp:S] [--workers=N] [--ps=N]
#             [--epochs=E] [--optimizer=NAME] [--learning_rate=LR]
#             [--batch_size=B] [--seed=S] [--port=P]
#             [--checkpoint_dir=DIR] [--checkpoint_every=5s]
#
# With --checkpoint_dir, kill -9 the ps_server while it trains: it is
# restarted, resumes from its newest checkpoint, and the workers carry on.
# Every process it starts is stopped when it ends or is interrupted.
set -euo pipefail
cd "$(dirname "$0")"

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }
for arg in "$@"; do
  case "$arg" in
    --model=*|--mode=*|--workers=*|--ps=*|--port=*|--epochs=*|--optimizer=*|\
    --learning_rate=*|--batch_size=*|--seed=*|--momentum=*|\
    --checkpoint_dir=*|--checkpoint_every=*|--keep_checkpoints=*) ;;
    -h|--help) usage; exit 0 ;;
    *) echo "demo.sh: unknown flag '$arg'" >&2; usage >&2; exit 2 ;;
  esac
done

model=""
for arg in "$@"; do [[ "$arg" == --model=* ]] && model="${arg#*=}"; done
# Only what the chosen model needs is installed and built; ./test.sh
# installs the rest.
targets=(//server:ps_server //worker:worker //tools:psctl)
groups=(build)
case "$model" in
  sparse_lr) targets+=(//tools:gen_click_data) ;;
  linear_svm) targets+=(//tools:gen_click_data //worker/examples/linear_svm:linear_svm_worker) ;;
  mf) targets+=(//tools:gen_ratings //worker/examples/mf:mf_worker) ;;
  kmeans|pca|gbdt) targets+=("//worker/examples/$model:${model}_worker") ;;
  cnn) targets+=(//python:_native.so); groups+=(python) ;;
  dlrm) targets+=(//python:_native.so //tools:gen_ctr_data); groups+=(python) ;;
esac
./tools/install_deps.sh "${groups[@]}"
echo "demo: building (bazel, -c opt) ..."
bazel build --noshow_progress "${targets[@]}"

extra=()
if [[ "$model" == sparse_lr || "$model" == linear_svm ]]; then
  # Synthetic click data (200,000 examples over 2^20 features), made once.
  data=".demo-data/click"
  if [[ ! -s "$data/true_auc.txt" ]]; then
    echo "demo: generating click data in $data ..."
    bazel-bin/tools/gen_click_data --out_dir="$data" >/dev/null
  fi
  echo "demo: the true model's test AUC (the best any learner can do): $(cat "$data/true_auc.txt")"
  extra=(--train_file="$data/train.libsvm" --test_file="$data/test.libsvm")
fi
if [[ "$model" == mf ]]; then
  # Low-rank ratings with known noise (1,000 users x 1,000 items), made once.
  data=".demo-data/ratings"
  if [[ ! -s "$data/noise_floor.txt" ]]; then
    echo "demo: generating ratings in $data ..."
    bazel-bin/tools/gen_ratings --out_dir="$data" >/dev/null
  fi
  echo "demo: the noise floor (the test RMSE of the true model): $(cat "$data/noise_floor.txt")"
  extra=(--train_file="$data/train.tsv" --test_file="$data/test.tsv")
fi
for learner in linear_svm kmeans pca mf gbdt; do
  if [[ "$model" == "$learner" ]]; then
    # A learner Fulcrum does not build in: its own job file and worker
    # program, in worker/examples/.
    args=()
    for arg in "$@"; do [[ "$arg" == --model=* ]] || args+=("$arg"); done
    exec deploy/local_cluster.sh --bin=bazel-bin --run_dir=.demo \
      --job="worker/examples/$learner/$learner.textproto" \
      --worker_cmd="bazel-bin/worker/examples/$learner/${learner}_worker" "${args[@]}" \
      "${extra[@]}"
  fi
done
if [[ "$model" == cnn || "$model" == dlrm ]]; then
  # A PyTorch model: its job file is made from the module (fulcrum.torch),
  # and the workers are Python processes. Async; cnn trains 5 epochs, dlrm
  # one (a click model overfits in a second).
  mkdir -p .demo-data
  epochs=5
  worker=(/usr/bin/python3 "python/examples/$model.py")
  if [[ "$model" == dlrm ]]; then
    # Criteo-shaped click logs (1,000,000 examples, 26 id fields), made once.
    data=".demo-data/ctr"
    if [[ ! -s "$data/true_auc.txt" ]]; then
      echo "demo: generating click logs in $data ..."
      bazel-bin/tools/gen_ctr_data --out_dir="$data" >/dev/null
    fi
    echo "demo: the true model's test AUC (the best any model can do): $(cat "$data/true_auc.txt")"
    epochs=1
    worker+=(--data_dir="$data")
  fi
  args=(--mode=async --epochs="$epochs")
  workers=2
  for arg in "$@"; do
    case "$arg" in
      --model=*) ;;
      --workers=*) workers="${arg#*=}"; args+=("$arg") ;;
      *) args+=("$arg") ;;
    esac
  done
  for arg in "${args[@]}"; do [[ "$arg" == --epochs=* ]] && epochs="${arg#*=}"; done
  mode=async
  for arg in "${args[@]}"; do [[ "$arg" == --mode=* ]] && mode="${arg#*=}"; done
  "${worker[@]}" --write_job=".demo-data/$model.json" \
    --epochs="$epochs" --workers="$workers" --mode="${mode%%:*}"
  exec deploy/local_cluster.sh --bin=bazel-bin --run_dir=.demo --job=".demo-data/$model.json" \
    --worker_cmd="${worker[*]}" "${args[@]}"
fi
exec deploy/local_cluster.sh --bin=bazel-bin --run_dir=.demo "$@" "${extra[@]}"
