"""Fulcrum's built-in image models (server/jobs/softmax.textproto and
mlp.textproto) as Python workloads: the same tensors, layouts and data as the
C++ worker's, so Python and C++ workers can share one job.

    python3 image_workloads.py --coordinator=HOST:PORT   # model from the job
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
    """softmax (784->10) or mlp (784->256 ReLU->10), by the job's tensors;
    forward and backward in PyTorch on the pulled arrays (shared, no copy)."""

    def __init__(self, data):
        self.x, self.y, self.xt, self.yt = (torch.from_numpy(a) for a in data)
        self.params = {}
        self.begin = 0

    def configure(self, job):
        names = [t["name"] for t in job["tensors"]]
        if job.get("model") not in ("softmax", "mlp"):
            raise ValueError(f"model {job.get('model')!r}: this worker trains softmax and mlp")
        self.params = {
            t["name"]: np.zeros([int(d) for d in t["shape"]], np.float32) for t in job["tensors"]
        }
        self.layers = [(n, n.replace("/w", "/b")) for n in names if "/w" in n]

    def load_partition(self, partition):
        n = len(self.x)
        self.begin = n * partition.index // partition.count
        return n * (partition.index + 1) // partition.count - self.begin

    def parameters(self):
        return self.params

    def _forward(self, x, tensors):
        for i, (w, b) in enumerate(self.layers):
            x = x @ tensors[w] + tensors[b]
            if i + 1 < len(self.layers):
                x = torch.relu(x)
        return x

    def compute_gradients(self, examples, sparse_rows):
        index = torch.from_numpy(examples + self.begin)
        tensors = {n: torch.from_numpy(a).requires_grad_() for n, a in self.params.items()}
        loss = torch.nn.functional.cross_entropy(self._forward(self.x[index], tensors), self.y[index])
        loss.backward()
        return float(loss), {n: t.grad.numpy() for n, t in tensors.items()}, {}

    def evaluate(self, pull):
        pull()
        tensors = {n: torch.from_numpy(a) for n, a in self.params.items()}
        with torch.no_grad():
            out = self._forward(self.xt, tensors)
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
