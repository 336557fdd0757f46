"""The Python image workload's written-out backward pass equals autograd's."""

import os
import sys

import numpy as np
import torch

from conftest import HERE

sys.path.insert(0, os.path.join(HERE, "..", "examples"))
from image_workloads import ImageWorkload  # noqa: E402

import fulcrum  # noqa: E402


def _job(model):
    hidden = [("mlp/w1", [784, 256]), ("mlp/b1", [256]), ("mlp/w2", [256, 10]), ("mlp/b2", [10])]
    tensors = hidden if model == "mlp" else [("softmax/w", [784, 10]), ("softmax/b", [10])]
    return {"model": model, "tensors": [{"name": n, "shape": [str(d) for d in s]} for n, s in tensors]}


def test_gradients_match_autograd():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 784)).astype(np.float32)
    y = rng.integers(0, 10, size=100).astype(np.int64)
    for model in ("softmax", "mlp"):
        workload = ImageWorkload((x, y, x, y))
        workload.configure(_job(model))
        for a in workload.parameters().values():
            a[...] = rng.normal(scale=0.1, size=a.shape)
        assert workload.load_partition(fulcrum.Partition(1, 2, 0)) == 50
        examples = np.array([3, 1, 4, 15, 9, 26], np.int64)
        loss, grads, _ = workload.compute_gradients(examples, {})

        tensors = {n: torch.tensor(a, requires_grad=True) for n, a in workload.parameters().items()}
        h = torch.from_numpy(x[50 + examples])
        for i, (w, b) in enumerate(workload.layers):
            h = h @ tensors[w] + tensors[b]
            if i + 1 < len(workload.layers):
                h = torch.relu(h)
        expected = torch.nn.functional.cross_entropy(h, torch.from_numpy(y[50 + examples]))
        expected.backward()
        assert abs(loss - float(expected)) < 1e-5, model
        for name, t in tensors.items():
            np.testing.assert_allclose(grads[name], t.grad.numpy(), rtol=1e-4, atol=1e-6,
                                       err_msg=f"{model} {name}")
