#!/usr/bin/python3
"""PyTorch with no parameter server, on the same cores, for comparison with
Fulcrum (bench/python_workers.sh runs these):

  mlp   one process trains the 784-256-10 MLP (batch 64, Adam 3e-4, the
        C++ worker's standardised features) for --epochs; prints examples/s.
  to_target
        one process trains --model (softmax: 784-10 with Adagrad 0.01; mlp:
        as above), the optimizers and batch of server/jobs/*.textproto,
        evaluating on the test set after every epoch as Fulcrum does, until
        --target test accuracy; prints the seconds to it (evaluations
        included) and examples/s. bench/train.sh --baseline runs it
        alternately with Fulcrum.
  ddp   --procs processes (torch.distributed, gloo) train the CNN of
        python/examples/cnn.py with its optimizer (per-process batch 64, Adam
        2e-3 decayed continuously by 0.6 per epoch, each process on its
        1/procs of the data), rank 0 evaluating after every epoch; prints the
        training seconds to the first epoch at --target test accuracy.

Debian's PyTorch uses libopenblas0-pthread when it is installed
(tools/install_deps.sh installs it); the reference BLAS is ~30x slower.
"""

import argparse
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "python", "examples"))
import fulcrum.datasets  # noqa: E402
import fulcrum.torch  # noqa: E402
from cnn import Cnn  # noqa: E402
from image_workloads import flat_fashion_mnist  # noqa: E402


def _model_and_optimizer(name):
    """The model of server/jobs/<name>.textproto with its optimizer."""
    if name == "mlp":
        model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
        return model, torch.optim.Adam(model.parameters(), lr=3e-4)
    model = torch.nn.Linear(784, 10)
    return model, torch.optim.Adagrad(model.parameters(), lr=0.01, initial_accumulator_value=0.1)


def _train_epoch(model, opt, x, y):
    """One pass over (x, y) in a fresh random order, batch 64."""
    order = torch.randperm(len(x))
    for i in range(0, len(x), 64):
        index = order[i : i + 64]
        opt.zero_grad()
        F.cross_entropy(model(x[index]), y[index]).backward()
        opt.step()


def mlp(args):
    torch.set_num_threads(args.threads)
    x, y, xt, yt = (torch.from_numpy(a) for a in flat_fashion_mnist())
    torch.manual_seed(1)
    model, opt = _model_and_optimizer("mlp")
    start = time.perf_counter()
    for epoch in range(args.epochs):
        _train_epoch(model, opt, x, y)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        accuracy = fulcrum.torch.accuracy(model, xt, yt)["accuracy"]
    print(f"pytorch_mlp: threads={args.threads} epochs={args.epochs} "
          f"examples/s={args.epochs * len(x) / seconds:.0f} test_accuracy={accuracy:.4f}")


def to_target(args):
    torch.set_num_threads(args.threads)
    x, y, xt, yt = (torch.from_numpy(a) for a in flat_fashion_mnist())
    torch.manual_seed(args.seed)
    model, opt = _model_and_optimizer(args.model)
    start = time.perf_counter()
    examples = 0
    for epoch in range(1, args.epochs + 1):
        _train_epoch(model, opt, x, y)
        examples += len(x)
        with torch.no_grad():
            accuracy = fulcrum.torch.accuracy(model, xt, yt)["accuracy"]
        elapsed = time.perf_counter() - start
        if accuracy >= args.target:
            print(f"pytorch_to_target: model={args.model} threads={args.threads} "
                  f"to_target_s={elapsed:.2f} epoch={epoch} examples/s={examples / elapsed:.0f} "
                  f"test_accuracy={accuracy:.4f}")
            return
    print(f"pytorch_to_target: model={args.model} threads={args.threads} to_target_s=not_reached "
          f"epochs={args.epochs} test_accuracy={accuracy:.4f}")


def _ddp_worker(rank, args):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(args.port)
    dist.init_process_group("gloo", rank=rank, world_size=args.procs)
    torch.set_num_threads(1)
    torch.manual_seed(1)
    x, y = (torch.from_numpy(a) for a in fulcrum.datasets.fashion_mnist("train"))
    xt, yt = (torch.from_numpy(a) for a in fulcrum.datasets.fashion_mnist("t10k"))
    n = len(x)
    x, y = x[n * rank // args.procs : n * (rank + 1) // args.procs], y[n * rank // args.procs : n * (rank + 1) // args.procs]
    model = torch.nn.parallel.DistributedDataParallel(Cnn())
    opt = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    steps_per_epoch = len(x) // 64
    decay = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: args.lr_decay ** (step / steps_per_epoch))
    dist.barrier()
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        model.train()
        for i in range(0, len(x) - 63, 64):  # equal step counts on every rank
            index = order[i : i + 64]
            opt.zero_grad()
            F.cross_entropy(model(x[index]), y[index]).backward()
            opt.step()
            decay.step()
        reached = torch.zeros(1)
        if rank == 0:
            model.eval()
            with torch.no_grad():
                accuracy = fulcrum.torch.accuracy(model.module, xt, yt)["accuracy"]
            elapsed = time.perf_counter() - start
            print(f"ddp: epoch {epoch} test_accuracy={accuracy:.4f} elapsed={elapsed:.1f}s", flush=True)
            if accuracy >= args.target:
                print(f"ddp_cnn: procs={args.procs} to_{args.target}_s={elapsed:.1f}", flush=True)
                reached[0] = 1
            elif epoch == args.epochs:
                print(f"ddp_cnn: procs={args.procs} to_{args.target}_s=not_reached", flush=True)
        dist.broadcast(reached, 0)
        if reached[0]:
            break
    dist.barrier()
    # Debian's PyTorch 1.13 crashes (SIGSEGV) tearing gloo down at exit;
    # the work is done, so leave without the teardown.
    os._exit(0)


def ddp(args):
    mp.spawn(_ddp_worker, args=(args,), nprocs=args.procs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["mlp", "ddp", "to_target"])
    parser.add_argument("--model", choices=["softmax", "mlp"], default="mlp")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--target", type=float, default=0.90)
    parser.add_argument("--port", type=int, default=29517)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--lr_decay", type=float, default=0.6, help="per epoch")
    args = parser.parse_args()
    {"mlp": mlp, "ddp": ddp, "to_target": to_target}[args.what](args)


if __name__ == "__main__":
    main()
