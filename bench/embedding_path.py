#!/usr/bin/python3
"""The embedding path alone: 26 fulcrum.torch.EmbeddingBags of dim 16 (the
DLRM's tables) on ps_server, against the same bags as PyTorch's own
nn.EmbeddingBag(sparse=True) with a sparse Adagrad step, on the same batches
of the click log's ids (Zipf within each field).

    bench/embedding_path.py --coordinator=HOST:PORT --data_dir=.demo-data/ctr
        [--batch_size=2048 --steps=200]

The server's job is written by --write_job=FILE (Adagrad 0.05 for every
table). One worker drives its steps through a Session, as the library's
loop does (learn the batch's ids, pull their rows, forward and backward,
push one gradient row per id), timing each part; the loss is the mean
squared norm of the bags. Prints distinct rows pulled and pushed per second
for both, and the share of a Fulcrum step in each part.
"""

import argparse
import os
import sys
import time

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import fulcrum  # noqa: E402
import fulcrum.datasets  # noqa: E402
import fulcrum.torch as ft  # noqa: E402

FIELDS, DIM = 26, 16
ADAGRAD = {"kind": "ADAGRAD", "learning_rate": 0.05}


class Bags(nn.Module):
    def __init__(self, bag):
        super().__init__()
        self.bags = nn.ModuleList([bag(f) for f in range(FIELDS)])

    def forward(self, ids):
        return torch.stack([b(ids[:, f : f + 1]) for f, b in enumerate(self.bags)], 1)


def loss_fn(out, _):
    return out.pow(2).sum(2).mean()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--coordinator", default="127.0.0.1:50051")
    parser.add_argument("--write_job")
    parser.add_argument("--data_dir", default=".demo-data/ctr")
    parser.add_argument("--batch_size", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = Bags(lambda f: ft.EmbeddingBag(DIM, mode="sum", optimizer=ADAGRAD))
    if args.write_job:
        ft.write_job(args.write_job, ft.job_for(model, model="embedding_path",
                                                 partitions_per_epoch=1))
        return
    _, _, ids = fulcrum.datasets.ctr(os.path.join(args.data_dir, "train.tsv"), (0, 2))
    ids = torch.from_numpy(ids)
    batches = [ids[s * args.batch_size : (s + 1) * args.batch_size] for s in range(args.steps)]
    targets = torch.zeros(args.batch_size)

    # Fulcrum: a Session loop over ModuleWorkload's steps.
    session = fulcrum.Session(args.coordinator, worker_name="bench")
    task = session.next_task()
    workload = ft.ModuleWorkload(model, lambda p: (ids, torch.zeros(len(ids))), loss_fn=loss_fn)
    workload.configure(session.job)
    workload.load_partition(task.partition)
    parts = dict(keys=0.0, pull=0.0, compute=0.0, push=0.0)
    rows = 0
    start = time.time()
    for s in range(args.steps):
        examples = np.arange(s * args.batch_size, (s + 1) * args.batch_size, dtype=np.int64)
        t0 = time.time()
        keys = workload.sparse_keys(examples)
        t1 = time.time()
        pulled = {t: (k, np.empty((len(k), d), np.float32)) for t, (k, d) in keys.items()}
        session.pull({}, pulled)
        t2 = time.time()
        _, _, grads = workload.compute_gradients(examples, pulled)
        t3 = time.time()
        session.push({}, len(examples), sparse=grads)
        t4 = time.time()
        parts["keys"] += t1 - t0
        parts["pull"] += t2 - t1
        parts["compute"] += t3 - t2
        parts["push"] += t4 - t3
        rows += sum(len(k) for k, _ in keys.values())
    fulcrum_seconds = time.time() - start

    # PyTorch: the same bags over a vocabulary of these batches' ids.
    vocabs = [np.unique(ids[:, f].numpy()) for f in range(FIELDS)]
    rows_of = torch.from_numpy(np.stack(
        [np.searchsorted(vocabs[f], ids[:, f].numpy()) for f in range(FIELDS)], 1))
    reference = Bags(lambda f: nn.EmbeddingBag(len(vocabs[f]), DIM, mode="sum", sparse=True))
    optimizer = torch.optim.Adagrad(reference.parameters(), lr=0.05)
    start = time.time()
    for s in range(args.steps):
        optimizer.zero_grad()
        loss_fn(reference(rows_of[s * args.batch_size : (s + 1) * args.batch_size]),
                targets).backward()
        optimizer.step()
    torch_seconds = time.time() - start

    total = sum(parts.values())
    print(f"fulcrum: {rows / fulcrum_seconds:,.0f} distinct rows pulled+pushed/s, "
          f"{args.steps / fulcrum_seconds:.1f} steps/s; step shares: "
          + ", ".join(f"{k} {v / total:.0%}" for k, v in parts.items()))
    print(f"pytorch: {rows / torch_seconds:,.0f} distinct rows updated/s, "
          f"{args.steps / torch_seconds:.1f} steps/s (forward, backward, sparse Adagrad)")
    print(f"distinct rows per step: {rows / args.steps:,.0f} of {args.batch_size * FIELDS:,} ids")


if __name__ == "__main__":
    main()
