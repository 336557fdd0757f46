#!/usr/bin/python3
"""A small CNN on Fashion-MNIST, written as ordinary PyTorch, trained through
Fulcrum: the parameters live on ps_server, each worker process trains its
partitions and pushes its gradients.

    cnn.py --write_job=cnn.json [--epochs=3 --workers=2]   # the job, for ps_server --job
    ps_server --job=cnn.json
    cnn.py --coordinator=HOST:PORT                        # once per worker
"""

import argparse
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fulcrum  # noqa: E402
import fulcrum.datasets  # noqa: E402
import fulcrum.torch  # noqa: E402


class Cnn(nn.Module):
    """Two 3x3 convolutions with max-pooling, then two dense layers."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc1 = nn.Linear(64 * 5 * 5, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--coordinator", default="127.0.0.1:50051")
    parser.add_argument("--write_job", help="write the job file here and exit")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mode", default="ASYNC", help="ASYNC, SYNC or SSP")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--lr_decay", type=float, default=0.6,
                        help="learning rate multiplier per epoch (1: constant)")
    parser.add_argument("--data_dir", default=fulcrum.datasets.FASHION_MNIST_DIR)
    parser.add_argument("--train_examples", type=int, default=0, help="0: all 60,000")
    parser.add_argument("--worker_name", default="")
    args = parser.parse_args()
    torch.manual_seed(1)
    torch.set_num_threads(1)  # one core per worker process
    model = Cnn()

    if args.write_job:
        # The server counts updates: every push in async jobs, a round of
        # every worker's push in sync ones.
        batches = -(-60000 // args.batch_size)
        updates_per_epoch = batches // args.workers if args.mode.upper() == "SYNC" else batches
        optimizer = {"kind": "ADAM", "learning_rate": args.learning_rate}
        if args.lr_decay != 1:
            optimizer.update(lr_decay_rate=args.lr_decay, lr_decay_steps=str(updates_per_epoch))
        job = fulcrum.torch.job_for(
            model,
            model="cnn",
            mode=args.mode.upper(),
            optimizer=optimizer,
            epochs=args.epochs,
            batch_size=args.batch_size,
            partitions_per_epoch=4 * args.workers,
            num_workers=args.workers,
        )
        fulcrum.torch.write_job(args.write_job, job)
        return

    x, y = fulcrum.datasets.fashion_mnist("train", args.data_dir)
    if args.train_examples:
        x, y = x[: args.train_examples], y[: args.train_examples]
    x_test, y_test = fulcrum.datasets.fashion_mnist("t10k", args.data_dir)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    x_test, y_test = torch.from_numpy(x_test), torch.from_numpy(y_test)
    fulcrum.torch.train(
        model,
        (x, y),
        evaluate=lambda m: fulcrum.torch.accuracy(m, x_test, y_test),
        coordinator=args.coordinator,
        worker_name=args.worker_name,
    )


if __name__ == "__main__":
    try:
        main()
    except fulcrum.FulcrumError as e:
        sys.exit(f"cnn.py: {e}")
