#!/usr/bin/python3
"""DLRM (Naumov et al., 2019) on Criteo-shaped click logs, written as
ordinary PyTorch apart from its embedding class, trained through Fulcrum:
the 26 embedding tables live on ps_server as sparse tables (no vocabulary:
ids are the logs' 64-bit hashes), the dense layers as dense tensors, and
each worker reads its partitions of the log by byte range.

    gen_ctr_data --out_dir=DATA                             # the logs
    dlrm.py --write_job=dlrm.json [--epochs=1 --workers=2]  # the job, for ps_server --job
    ps_server --job=dlrm.json
    dlrm.py --coordinator=HOST:PORT --data_dir=DATA         # once per worker
"""

import argparse
import os
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fulcrum  # noqa: E402
import fulcrum.datasets  # noqa: E402
import fulcrum.torch  # noqa: E402

NUMERIC, FIELDS, DIM = 13, 26, 16


def mlp(sizes, last_activation=True):
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if last_activation or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Dlrm(nn.Module):
    """A bottom MLP over the numeric fields, an embedding bag per categorical
    field, the pairwise dot products of all 27 vectors, and a top MLP giving
    the click logit. ``embedding(field)`` makes a field's bag (Fulcrum's by
    default; the benchmark passes PyTorch's)."""

    def __init__(self, embedding=None, bottom=(64, DIM), top=(128, 64)):
        super().__init__()
        embedding = embedding or (lambda field: fulcrum.torch.EmbeddingBag(DIM, mode="sum"))
        self.embeddings = nn.ModuleList([embedding(f) for f in range(FIELDS)])
        self.bottom = mlp((NUMERIC,) + tuple(bottom))
        vectors = FIELDS + 1
        self.top = mlp((DIM + vectors * (vectors - 1) // 2,) + tuple(top) + (1,),
                       last_activation=False)
        rows, cols = torch.tril_indices(vectors, vectors, offset=-1)
        self.register_buffer("pair_rows", rows, persistent=False)
        self.register_buffer("pair_cols", cols, persistent=False)

    def forward(self, numeric, ids):
        # A bag of one id per field and example: ids[:, f:f + 1].
        sparse = [bag(ids[:, f : f + 1]) for f, bag in enumerate(self.embeddings)]
        dense = self.bottom(numeric)
        vectors = torch.stack([dense] + sparse, dim=1)
        dots = torch.bmm(vectors, vectors.transpose(1, 2))[:, self.pair_rows, self.pair_cols]
        return self.top(torch.cat([dense, dots], dim=1)).squeeze(1)


def read(path, partition=None):
    """((log(1 + numeric) float32, ids int64), labels float32) of a log."""
    labels, numeric, ids = fulcrum.datasets.ctr(path, partition)
    numeric = np.log1p(np.maximum(numeric, 0))
    return (torch.from_numpy(numeric), torch.from_numpy(ids)), torch.from_numpy(labels)


def chunk(partition, evals_per_pass):
    """The share of the log a partition reads: with k evaluations a pass,
    epoch e of the job trains the (e mod k)-th k-th of the log."""
    k = evals_per_pass
    return ((partition.epoch % k) * partition.count + partition.index, k * partition.count)


def loss_fn(logits, labels):
    return nn.functional.binary_cross_entropy_with_logits(logits, labels)


def evaluate(model, inputs, labels, true_auc=None):
    """The test AUC, loss and accuracy; with the generator's true AUC as a
    named metric beside them, so the result line shows both."""
    result = fulcrum.torch.binary_metrics(model, inputs, labels)
    if true_auc is not None:
        result["metrics"] = {"true_auc": true_auc}
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--coordinator", default="127.0.0.1:50051")
    parser.add_argument("--write_job", help="write the job file here and exit")
    parser.add_argument("--data_dir", default=".demo-data/ctr",
                        help="train.tsv and test.tsv (tools/gen_ctr_data)")
    parser.add_argument("--epochs", type=int, default=1, help="passes over the training log")
    parser.add_argument("--evals_per_pass", type=int, default=1,
                        help="evaluate this many times a pass: a job epoch is then this share of "
                        "the log (give the job and its workers the same)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mode", default="ASYNC", help="ASYNC, SYNC or SSP")
    parser.add_argument("--batch_size", type=int, default=512)
    parser.add_argument("--partitions_per_epoch", type=int, default=0, help="0: 8 per worker")
    parser.add_argument("--learning_rate", type=float, default=3e-3, help="Adam's, dense layers")
    parser.add_argument("--table_learning_rate", type=float, default=0.05,
                        help="Adagrad's, embedding tables")
    parser.add_argument("--admit_after", type=int, default=2,
                        help="an id gets an embedding row at its this-many-th push (1: at once)")
    parser.add_argument("--max_rows", type=int, default=0,
                        help="rows per table and server; past it the least recently updated "
                        "rows are evicted (0: the server's --max_sparse_rows)")
    parser.add_argument("--test_examples", type=int, default=0, help="0: the whole test file")
    parser.add_argument("--worker_name", default="")
    args = parser.parse_args()
    torch.manual_seed(1)
    torch.set_num_threads(1)  # one core per worker process
    model = Dlrm()

    if args.write_job:
        table_optimizer = {"kind": "ADAGRAD", "learning_rate": args.table_learning_rate}
        for bag in model.embeddings:
            bag.optimizer = table_optimizer
            # Most ids of a click log appear once: they get no row (and their
            # gradients are dropped) until seen again; a full table drops its
            # stalest rows rather than refusing new ids.
            bag.admission = {"min_count": args.admit_after, "counter": "COUNTING_BLOOM",
                             "bloom_cells": str(1 << 20)}
            bag.eviction = {"when_full": "LEAST_RECENTLY_UPDATED"}
            bag.max_rows = args.max_rows
        job = fulcrum.torch.job_for(
            model,
            model="dlrm",
            mode=args.mode.upper(),
            optimizer={"kind": "ADAM", "learning_rate": args.learning_rate},
            epochs=args.epochs * args.evals_per_pass,
            batch_size=args.batch_size,
            partitions_per_epoch=args.partitions_per_epoch or 8 * args.workers,
            num_workers=args.workers,
        )
        fulcrum.torch.write_job(args.write_job, job)
        return

    train_file = os.path.join(args.data_dir, "train.tsv")
    true_auc = None
    if os.path.exists(os.path.join(args.data_dir, "true_auc.txt")):
        with open(os.path.join(args.data_dir, "true_auc.txt")) as f:
            true_auc = float(f.read())
    test_inputs, test_labels = read(os.path.join(args.data_dir, "test.tsv"))
    if args.test_examples:
        test_inputs = tuple(x[: args.test_examples] for x in test_inputs)
        test_labels = test_labels[: args.test_examples]
    fulcrum.torch.train(
        model,
        lambda p: read(train_file, chunk(p, args.evals_per_pass)),
        loss_fn=loss_fn,
        evaluate=lambda m: evaluate(m, test_inputs, test_labels, true_auc),
        coordinator=args.coordinator,
        worker_name=args.worker_name,
    )


if __name__ == "__main__":
    try:
        main()
    except fulcrum.FulcrumError as e:
        sys.exit(f"dlrm.py: {e}")
