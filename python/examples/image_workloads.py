#!/usr/bin/python3
"""Fulcrum's built-in image models (server/jobs/softmax.textproto and
mlp.textproto) as Python workloads: the same tensors, layouts and data as the
C++ worker's, so Python and C++ workers can share one job.

    /usr/bin/python3 image_workloads.py --coordinator=HOST:PORT   # model from the job
"""

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fulcrum  # noqa: E402
import fulcrum.datasets  # noqa: E402


def flat_fashion_mnist(data_dir=fulcrum.datasets.FASHION_MNIST_DIR):
    """(train x, train y, test x, test y): 784 features per image, each
    standardised with the training set's per-feature mean and deviation, as
    the C++ worker does."""
    x, y = fulcrum.datasets.fashion_mnist("train", data_dir)
    xt, yt = fulcrum.datasets.fashion_mnist("t10k", data_dir)
    # fashion_mnist() standardised globally; the C++ worker standardises per
    # feature from the raw [0, 1] pixels. Undo, then do the same.
    raw = lambda a: a.reshape(len(a), 784) * 0.3530 + 0.2860  # noqa: E731
    x, xt = raw(x), raw(xt)
    mean = x.mean(axis=0, dtype=np.float64)
    std = np.sqrt(np.maximum(0.0, (x.astype(np.float64) ** 2).mean(axis=0) - mean**2))
    inv = np.where(std > 1e-6, 1.0 / np.maximum(std, 1e-6), 1.0)
    norm = lambda a: ((a - mean) * inv).astype(np.float32)  # noqa: E731
    return norm(x), y, norm(xt), yt


class ImageWorkload(fulcrum.Workload):
    """softmax (784->10) or mlp (784->256 ReLU->10), by the job's tensors.
    The maths is PyTorch's, on tensors that share memory with the arrays
    Fulcrum pulls into and pushes from (no copies), with the backward pass
    written out (two matrix products per layer) rather than recorded by
    autograd: for a model this small, autograd's bookkeeping would cost as
    much as the products."""

    def __init__(self, data):
        self.x, self.y, self.xt, self.yt = (torch.from_numpy(a) for a in data)
        self.params, self.grads = {}, {}
        self.begin = 0

    def configure(self, job):
        if job.get("model") not in ("softmax", "mlp"):
            raise ValueError(f"model {job.get('model')!r}: this worker trains softmax and mlp")
        shapes = {t["name"]: [int(d) for d in t["shape"]] for t in job["tensors"]}
        self.params = {n: np.zeros(shape, np.float32) for n, shape in shapes.items()}
        self.grads = {n: np.zeros(shape, np.float32) for n, shape in shapes.items()}
        # Torch views of the same memory.
        self.p = {n: torch.from_numpy(a) for n, a in self.params.items()}
        self.g = {n: torch.from_numpy(a) for n, a in self.grads.items()}
        self.layers = [(n, n.replace("/w", "/b")) for n in shapes if "/w" in n]

    def load_partition(self, partition):
        n = len(self.x)
        self.begin = n * partition.index // partition.count
        return n * (partition.index + 1) // partition.count - self.begin

    def parameters(self):
        return self.params

    def _forward(self, x):
        """The logits, and each layer's input."""
        inputs = []
        for i, (w, b) in enumerate(self.layers):
            inputs.append(x)
            x = torch.addmm(self.p[b], x, self.p[w])
            if i + 1 < len(self.layers):
                x = torch.relu_(x)
        return x, inputs

    def compute_gradients(self, examples, sparse_rows):
        index = torch.from_numpy(examples + self.begin)
        logits, inputs = self._forward(self.x[index])
        labels = self.y[index]
        rows = torch.arange(len(labels))
        log_p = torch.log_softmax(logits, dim=1)
        loss = -float(log_p[rows, labels].mean())
        d = log_p.exp_()  # softmax; its gradient is (p - onehot) / n
        d[rows, labels] -= 1
        d /= len(labels)
        for i in reversed(range(len(self.layers))):
            w, b = self.layers[i]
            torch.mm(inputs[i].t(), d, out=self.g[w])
            torch.sum(d, dim=0, out=self.g[b])
            if i > 0:
                d = (d @ self.p[w].t()).mul_(inputs[i] > 0)
        return loss, self.grads, {}

    def evaluate(self, pull):
        pull()
        with torch.no_grad():
            out, _ = self._forward(self.xt)
            loss = float(torch.nn.functional.cross_entropy(out, self.yt))
            accuracy = float((out.argmax(dim=1) == self.yt).float().mean())
        return {"accuracy": accuracy, "loss": loss}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--coordinator", default="127.0.0.1:50051")
    parser.add_argument("--worker_name", default="")
    parser.add_argument("--data_dir", default=fulcrum.datasets.FASHION_MNIST_DIR)
    args = parser.parse_args()
    torch.set_num_threads(1)
    workload = ImageWorkload(flat_fashion_mnist(args.data_dir))
    fulcrum.run_worker(workload, coordinator=args.coordinator, worker_name=args.worker_name)


if __name__ == "__main__":
    try:
        main()
    except fulcrum.FulcrumError as e:
        sys.exit(f"image_workloads.py: {e}")
