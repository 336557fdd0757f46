#!/usr/bin/python3
"""The baseline for Fulcrum's DLRM: the same model (python/examples/dlrm.py)
trained by one PyTorch process with nn.EmbeddingBag(sparse=True) tables over a
vocabulary built from the training log (unseen ids share one row per
field), sparse Adagrad for the tables and Adam for the dense layers, as
PyTorch users train it on one machine.

    bench/dlrm_torch.py --data_dir=.demo-data/ctr [--epochs=1 --batch_size=512]

Prints one line per evaluation: "eval: seconds=S wall=W examples=N
test_auc=A" (S counts training steps only; W is the wall time since the
process started: reading the logs, building the vocabulary and the
evaluations included), and a last "result:" line.
"""

import argparse
import os
import sys
import time

PROCESS_START = time.time()

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, os.path.join(HERE, "..", "python", "examples"))
import dlrm  # noqa: E402
import fulcrum.torch  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=".demo-data/ctr")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=512)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--table_learning_rate", type=float, default=0.05)
    parser.add_argument("--evals_per_epoch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default (every core)")
    args = parser.parse_args()
    torch.manual_seed(1)
    if args.threads:
        torch.set_num_threads(args.threads)

    start = time.time()
    (numeric, ids), labels = dlrm.read(os.path.join(args.data_dir, "train.tsv"))
    (test_numeric, test_ids), test_labels = dlrm.read(os.path.join(args.data_dir, "test.tsv"))
    # A vocabulary per field: the training log's ids, sorted; row len(vocab)
    # is every unseen id's.
    vocabs = [np.unique(ids[:, f].numpy()) for f in range(dlrm.FIELDS)]

    def to_rows(x):
        out = np.empty(x.shape, np.int64)
        for f, vocab in enumerate(vocabs):
            pos = np.searchsorted(vocab, x[:, f].numpy())
            pos[pos == len(vocab)] = 0
            out[:, f] = np.where(vocab[pos] == x[:, f].numpy(), pos, len(vocab))
        return torch.from_numpy(out)

    rows, test_rows = to_rows(ids), to_rows(test_ids)
    scale = 1.0 / dlrm.DIM  # fulcrum.torch.EmbeddingBag's default initializer

    def bag(field):
        b = nn.EmbeddingBag(len(vocabs[field]) + 1, dlrm.DIM, mode="sum", sparse=True)
        nn.init.uniform_(b.weight, -scale, scale)
        return b

    model = dlrm.Dlrm(embedding=bag)
    print(f"vocabulary: {sum(len(v) for v in vocabs)} rows, built in {time.time() - start:.1f} s",
          flush=True)
    table_params = list(model.embeddings.parameters())
    dense_params = [p for n, p in model.named_parameters() if not n.startswith("embeddings.")]
    optimizers = [
        torch.optim.Adagrad(table_params, lr=args.table_learning_rate),
        torch.optim.Adam(dense_params, lr=args.learning_rate),
    ]
    n = len(labels)
    steps_per_epoch = -(-n // args.batch_size)
    eval_every = max(1, steps_per_epoch // args.evals_per_epoch)
    trained, examples, best = 0.0, 0, 0.0
    for epoch in range(args.epochs):
        order = torch.randperm(n)
        for step in range(steps_per_epoch):
            t0 = time.time()
            index = order[step * args.batch_size : (step + 1) * args.batch_size]
            model.train()
            for o in optimizers:
                o.zero_grad()
            loss = dlrm.loss_fn(model(numeric[index], rows[index]), labels[index])
            loss.backward()
            for o in optimizers:
                o.step()
            trained += time.time() - t0
            examples += len(index)
            if (step + 1) % eval_every == 0 or step == steps_per_epoch - 1:
                model.eval()
                with torch.no_grad():
                    m = fulcrum.torch.binary_metrics(model, (test_numeric, test_rows), test_labels)
                best = max(best, m["auc"])
                print(f"eval: seconds={trained:.1f} wall={time.time() - PROCESS_START:.1f} "
                      f"examples={examples} test_auc={m['auc']:.4f} "
                      f"test_loss={m['loss']:.4f} examples_per_second={examples / trained:.0f}",
                      flush=True)
    print(f"result: best_test_auc={best:.4f} examples_per_second={examples / trained:.0f}")


if __name__ == "__main__":
    main()
