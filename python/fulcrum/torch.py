"""PyTorch through Fulcrum: an ``nn.Module``'s parameters live on ps_server.

    job = fulcrum.torch.job_for(model, optimizer={"kind": "ADAM", "learning_rate": 1e-3},
                                epochs=3, batch_size=64, num_workers=2)
    fulcrum.torch.write_job("cnn.json", job)       # ps_server --job=cnn.json
    fulcrum.torch.train(model, (x_train, y_train), coordinator="HOST:PORT",
                        evaluate=lambda m: accuracy_on(m, x_test, y_test))

Each worker pulls the parameters straight into the module's own storage
(no copy into the model), runs forward and backward on its partition's
batches and pushes the ``.grad`` tensors. Tensors keep the module's
``named_parameters()`` names.
"""

import json
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

import fulcrum


def _initializer(param: torch.Tensor) -> dict:
    """The server-side initializer that draws values like the module's own:
    a constant stays that constant (zeros, a normalisation layer's ones);
    anything else becomes U(-m, m) with m the largest magnitude PyTorch drew
    (its default Linear and Conv initialisations are uniform)."""
    values = param.detach()
    if values.numel() == 0 or bool((values == values.flatten()[0]).all()):
        first = float(values.flatten()[0]) if values.numel() else 0.0
        return {"initializer": "ZEROS"} if first == 0.0 else {"initializer": "CONSTANT", "scale": first}
    return {"initializer": "UNIFORM", "scale": float(values.abs().max())}


def job_for(
    module: torch.nn.Module,
    *,
    model: str = "torch",
    mode: str = "ASYNC",
    optimizer: Optional[dict] = None,
    epochs: int = 1,
    batch_size: int = 64,
    partitions_per_epoch: int = 8,
    num_workers: int = 1,
    seed: int = 1,
    **extra,
) -> dict:
    """A job (protobuf's JSON mapping of JobSpec) holding ``module``'s
    trainable parameters as dense tensors. ``optimizer`` is an
    OptimizerConfig as a dict (default Adam, lr 1e-3); ``extra`` adds any
    other JobSpec field (e.g. staleness=2 with mode="SSP")."""
    tensors = []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        tensors.append({"name": name, "shape": list(param.shape), **_initializer(param)})
    job = {
        "model": model,
        "mode": mode,
        "optimizer": optimizer or {"kind": "ADAM", "learning_rate": 1e-3},
        "epochs": epochs,
        "batch_size": batch_size,
        "partitions_per_epoch": partitions_per_epoch,
        "num_workers": num_workers,
        "seed": str(seed),
        "tensors": tensors,
    }
    job.update(extra)
    return job


def write_job(path: str, job: dict) -> None:
    """Writes ``job`` as a job file ps_server reads (``--job=path``)."""
    with open(path, "w") as f:
        json.dump(job, f, indent=2)


class ModuleWorkload(fulcrum.Workload):
    """Trains ``module`` on a partition of ``(inputs, targets)``: partition i
    of n is the i-th contiguous n-th of the examples. ``loss_fn(output,
    targets)`` gives the mean loss; ``evaluate(module)`` returns a dict with
    "accuracy" (and optionally "loss", "auc")."""

    def __init__(
        self,
        module: torch.nn.Module,
        data: Tuple[torch.Tensor, torch.Tensor],
        *,
        loss_fn: Callable = F.cross_entropy,
        evaluate: Optional[Callable[[torch.nn.Module], dict]] = None,
    ):
        self.module = module
        self.inputs, self.targets = data
        self.loss_fn = loss_fn
        self.evaluate_fn = evaluate
        self.named = {n: p for n, p in module.named_parameters() if p.requires_grad}
        for name, p in self.named.items():
            if p.dtype != torch.float32 or not p.is_contiguous():
                raise TypeError(f"parameter {name}: Fulcrum holds contiguous float32 tensors")
        # The module's own storage, seen as numpy: pulls write straight into
        # it.
        self.params = {n: p.detach().numpy() for n, p in self.named.items()}
        self.begin = 0

    def configure(self, job: dict) -> None:
        shapes = {t["name"]: [int(d) for d in t["shape"]] for t in job.get("tensors", [])}
        for name, p in self.named.items():
            if shapes.get(name) != list(p.shape):
                raise ValueError(
                    f"the job's tensor {name!r} is {shapes.get(name)}; the module's is "
                    f"{list(p.shape)}: was the job made from another module?"
                )

    def load_partition(self, partition: fulcrum.Partition) -> int:
        n = len(self.inputs)
        self.begin = n * partition.index // partition.count
        end = n * (partition.index + 1) // partition.count
        return end - self.begin

    def parameters(self) -> Dict[str, np.ndarray]:
        return self.params

    def compute_gradients(self, examples, sparse_rows):
        index = torch.from_numpy(examples + self.begin)
        self.module.train()
        self.module.zero_grad(set_to_none=False)
        loss = self.loss_fn(self.module(self.inputs[index]), self.targets[index])
        loss.backward()
        grads = {n: p.grad.numpy() for n, p in self.named.items()}
        return float(loss), grads, {}

    def evaluate(self, pull) -> dict:
        if self.evaluate_fn is None:
            raise fulcrum.FulcrumError("UNIMPLEMENTED", "train() was given no evaluate function")
        pull()
        self.module.eval()
        with torch.no_grad():
            return self.evaluate_fn(self.module)


def train(
    module: torch.nn.Module,
    data: Tuple[torch.Tensor, torch.Tensor],
    *,
    loss_fn: Callable = F.cross_entropy,
    evaluate: Optional[Callable[[torch.nn.Module], dict]] = None,
    session: Optional[fulcrum.Session] = None,
    **connection,
) -> None:
    """Trains ``module`` as one worker of the job until the job is over:
    ``data`` is this worker's view of the training set (every worker of a job
    passes the same), ``evaluate(module)`` answers evaluation tasks.
    ``connection``: fulcrum.Session's keyword arguments."""
    workload = ModuleWorkload(module, data, loss_fn=loss_fn, evaluate=evaluate)
    fulcrum.run_worker(workload, session=session, **connection)


def accuracy(module: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
             chunk: int = 2000) -> dict:
    """{"accuracy", "loss"} of a classifier on (inputs, integer targets)."""
    correct, loss_sum = 0, 0.0
    for start in range(0, len(inputs), chunk):
        out = module(inputs[start : start + chunk])
        y = targets[start : start + chunk]
        correct += int((out.argmax(dim=1) == y).sum())
        loss_sum += float(F.cross_entropy(out, y, reduction="sum"))
    return {"accuracy": correct / len(inputs), "loss": loss_sum / len(inputs)}
