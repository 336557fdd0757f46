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

``Embedding`` and ``EmbeddingBag`` stand where ``nn.Embedding`` and
``nn.EmbeddingBag`` would, without a vocabulary: ids are any int64, and the
rows live in a sparse table on the servers (one per module, named by the
module's path in the model unless given a ``table`` name). A step reads the
rows of its batch's distinct ids, every table's in the same round trip as
the dense tensors, and pushes one summed gradient row per id; the server
applies the table's optimizer.
"""

import ctypes
import json
import threading
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

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
    trainable parameters as dense tensors and each of its ``Embedding`` /
    ``EmbeddingBag`` modules as a sparse table (see ``sparse_modules``).
    ``optimizer`` is an OptimizerConfig as a dict (default Adam, lr 1e-3);
    a table with an ``optimizer`` of its own uses that. ``extra`` adds any
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
    tables = [m.table_spec() for m in sparse_modules(module).values()]
    if tables:
        job["sparse_tables"] = tables
    job.update(extra)
    return job


def write_job(path: str, job: dict) -> None:
    """Writes ``job`` as a job file ps_server reads (``--job=path``)."""
    with open(path, "w") as f:
        json.dump(job, f, indent=2)


# --------------------------------------------------------------------------
# Embeddings on sparse tables.


class _RowSource:
    """Where the embedding modules of a forward pass read rows from: the
    worker's step (rows pulled before the step), its evaluation (rows pulled
    when asked), or the pass that only collects a step's ids."""

    def lookup(self, module: "_SparseModule", ids: torch.Tensor):
        """(positions shaped like ``ids``, rows [n, dim]): row
        ``positions[i]`` of ``rows`` is id ``ids[i]``'s."""
        raise NotImplementedError


_active = threading.local()


class _Using:
    """Makes ``source`` the one embedding modules of this thread read from."""

    def __init__(self, source: _RowSource):
        self.source = source

    def __enter__(self):
        self.previous = getattr(_active, "source", None)
        _active.source = self.source

    def __exit__(self, *exc):
        _active.source = self.previous


def _as_keys(module: "_SparseModule", ids: torch.Tensor) -> np.ndarray:
    """The ids as the table's uint64 keys (the same 64 bits)."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{module._describe()}: ids must be a torch.Tensor, got {type(ids).__name__}")
    if ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{module._describe()}: ids must be an int64 (or int32) tensor, got {ids.dtype}")
    return ids.detach().to(torch.int64).contiguous().numpy().reshape(-1).view(np.uint64)


class _SparseModule(torch.nn.Module):
    """What Embedding and EmbeddingBag share: a table spec and a lookup."""

    def __init__(self, embedding_dim: int, table: Optional[str], init_scale: Optional[float],
                 optimizer: Optional[dict], max_rows: int, admission: Optional[dict] = None,
                 eviction: Optional[dict] = None):
        super().__init__()
        if int(embedding_dim) <= 0:
            raise ValueError(f"embedding_dim must be positive, got {embedding_dim}")
        self.embedding_dim = int(embedding_dim)
        self.table = table
        # U(-s, s) for ids the table has not seen: small, as DLRM's tables.
        self.init_scale = float(init_scale) if init_scale is not None else 1.0 / self.embedding_dim
        self.optimizer = optimizer
        self.max_rows = int(max_rows)
        self.admission = admission
        self.eviction = eviction

    def _describe(self) -> str:
        return f"fulcrum.torch.{type(self).__name__} {self.table or '(unnamed)'!r}"

    def _lookup(self, ids: torch.Tensor):
        source = getattr(_active, "source", None)
        if source is None:
            raise fulcrum.FulcrumError(
                "FAILED_PRECONDITION",
                f"{self._describe()} has no rows here: its rows live on the parameter servers, "
                "so it runs only inside a Fulcrum worker (fulcrum.torch.train, or "
                "fulcrum.torch.rows_from(session) for a loop of your own)",
            )
        if self.table is None:
            raise fulcrum.FulcrumError(
                "FAILED_PRECONDITION",
                f"{self._describe()} has no table: make the job with fulcrum.torch.job_for(model), "
                "which names each embedding's table after its path in the model",
            )
        return source.lookup(self, ids)

    def table_spec(self) -> dict:
        """The sparse table this module's rows live in (SparseTableSpec as a
        dict)."""
        spec = {
            "name": self.table,
            "dim": self.embedding_dim,
            "initializer": "UNIFORM",
            "scale": self.init_scale,
        }
        if self.max_rows:
            spec["max_rows"] = str(self.max_rows)
        if self.optimizer:
            spec["optimizer"] = self.optimizer
        if self.admission:
            spec["admission"] = self.admission
        if self.eviction:
            spec["eviction"] = self.eviction
        return spec


class Embedding(_SparseModule):
    """``nn.Embedding`` on a Fulcrum sparse table: ``forward(ids)`` returns
    ``ids.shape + (embedding_dim,)``. No ``num_embeddings``: ids are any
    int64. ``table`` names the table (default: the module's path in the
    model, set by ``job_for``); ``init_scale``: rows of unseen ids start
    U(-init_scale, init_scale) (default 1 / embedding_dim), the same for an
    id on every server and every run; ``optimizer``: this table's
    OptimizerConfig as a dict (default: the job's); ``max_rows``: rows the
    table may hold per server (0: the server's limit); ``admission`` and
    ``eviction``: the life of its ids, FeatureAdmission and FeatureEviction
    as dicts, e.g. ``{"min_count": 2}`` (an id gets a row at its second
    push; until then it reads its initial row and its gradients are
    dropped) and ``{"when_full": "LEAST_RECENTLY_UPDATED"}`` (past max_rows
    the stalest rows go instead of new ids being refused)."""

    def __init__(self, embedding_dim: int, *, table: Optional[str] = None,
                 init_scale: Optional[float] = None, optimizer: Optional[dict] = None,
                 max_rows: int = 0, admission: Optional[dict] = None,
                 eviction: Optional[dict] = None):
        super().__init__(embedding_dim, table, init_scale, optimizer, max_rows, admission,
                         eviction)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions, rows = self._lookup(ids)
        return F.embedding(positions, rows)

    def extra_repr(self) -> str:
        return f"{self.embedding_dim}, table={self.table!r}"


class EmbeddingBag(_SparseModule):
    """``nn.EmbeddingBag`` on a Fulcrum sparse table: sums or averages
    (``mode`` "sum", "mean" or "max") the rows of each bag.
    ``forward(ids, offsets=None, per_sample_weights=None)`` as
    ``nn.EmbeddingBag``'s: 2-D ids are bags of equal size; 1-D ids are cut
    into bags at ``offsets``; ``per_sample_weights`` (mode "sum") weighs each
    id. The other arguments are Embedding's."""

    def __init__(self, embedding_dim: int, mode: str = "mean", *,
                 include_last_offset: bool = False, table: Optional[str] = None,
                 init_scale: Optional[float] = None, optimizer: Optional[dict] = None,
                 max_rows: int = 0, admission: Optional[dict] = None,
                 eviction: Optional[dict] = None):
        super().__init__(embedding_dim, table, init_scale, optimizer, max_rows, admission,
                         eviction)
        if mode not in ("sum", "mean", "max"):
            raise ValueError(f"mode must be 'sum', 'mean' or 'max', got {mode!r}")
        self.mode = mode
        self.include_last_offset = include_last_offset

    def forward(self, ids: torch.Tensor, offsets: Optional[torch.Tensor] = None,
                per_sample_weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        positions, rows = self._lookup(ids)
        return F.embedding_bag(positions, rows, offsets, mode=self.mode,
                               per_sample_weights=per_sample_weights,
                               include_last_offset=self.include_last_offset)

    def extra_repr(self) -> str:
        return f"{self.embedding_dim}, mode={self.mode!r}, table={self.table!r}"


def sparse_modules(module: torch.nn.Module) -> Dict[str, _SparseModule]:
    """{table: module} of ``module``'s embeddings; a module without a
    ``table`` is given its path in the model. ValueError if two modules
    name the same table."""
    tables: Dict[str, _SparseModule] = {}
    for path, sub in module.named_modules():
        if not isinstance(sub, _SparseModule):
            continue
        if sub.table is None:
            sub.table = path or type(sub).__name__.lower()
        if sub.table in tables and tables[sub.table] is not sub:
            raise ValueError(f"two embedding modules name the table {sub.table!r}")
        tables[sub.table] = sub
    return tables


class _CollectKeys(_RowSource):
    """The pass before a step: records each table's ids and returns zeros.
    Ends the forward pass early (raising _KeysCollected) once every module
    has been called as often as in the first such pass."""

    class _KeysCollected(Exception):
        pass

    def __init__(self, calls_per_pass: Optional[Dict[str, int]]):
        self.keys: Dict[str, List[np.ndarray]] = {}
        self.calls: Dict[str, int] = {}
        self.calls_per_pass = calls_per_pass

    def lookup(self, module, ids):
        self.keys.setdefault(module.table, []).append(_as_keys(module, ids))
        self.calls[module.table] = self.calls.get(module.table, 0) + 1
        if self.calls_per_pass is not None and all(
            self.calls.get(t, 0) >= n for t, n in self.calls_per_pass.items()
        ):
            raise _CollectKeys._KeysCollected()
        return torch.zeros(ids.shape, dtype=torch.int64), torch.zeros(1, module.embedding_dim)

    def distinct_keys(self) -> Dict[str, np.ndarray]:
        return {t: np.unique(np.concatenate(parts)) for t, parts in self.keys.items()}


class _StepRows(_RowSource):
    """A step's rows: each table's distinct keys (sorted) and a leaf tensor of
    their rows, whose gradient backward fills."""

    def __init__(self, rows: Dict[str, Tuple[np.ndarray, torch.Tensor]]):
        self.rows = rows

    def lookup(self, module, ids):
        keys = _as_keys(module, ids)
        sorted_keys, rows = self.rows.get(module.table, (np.empty(0, np.uint64), None))
        positions = np.searchsorted(sorted_keys, keys)
        found = positions < len(sorted_keys)
        if not (found.all() and np.array_equal(sorted_keys[positions], keys)):
            raise fulcrum.FulcrumError(
                "INTERNAL",
                f"{module._describe()} was called with ids its step did not read before: "
                "the model's forward must look up the same ids when called twice on a batch",
            )
        return torch.from_numpy(positions.astype(np.int64)).reshape(ids.shape), rows


class _RowsOnDemand(_RowSource):
    """Rows pulled when a module asks (evaluation, or a loop of one's own):
    ``pull(table, uint64 keys) -> float32 [n, dim]``."""

    def __init__(self, pull: Callable[[str, np.ndarray], np.ndarray]):
        self.pull = pull

    def lookup(self, module, ids):
        keys, inverse = np.unique(_as_keys(module, ids), return_inverse=True)
        rows = torch.from_numpy(np.ascontiguousarray(self.pull(module.table, keys)))
        return torch.from_numpy(inverse.astype(np.int64)).reshape(ids.shape), rows


def rows_from(session: "fulcrum.Session"):
    """A context in which embedding modules read their rows through
    ``session`` (``pull_for_eval``: current values, unseen ids read their
    initial values): for evaluating or serving a model in a loop of one's
    own. ``with fulcrum.torch.rows_from(session): model(batch)``."""

    dims = {t["name"]: int(t["dim"]) for t in session.job.get("sparse_tables", [])}

    def pull(table: str, keys: np.ndarray) -> np.ndarray:
        if table not in dims:
            raise fulcrum.FulcrumError("INVALID_ARGUMENT", f"the job has no sparse table {table!r}")
        rows = np.empty((len(keys), dims[table]), np.float32)
        session.pull_for_eval({}, {table: (keys, rows)})
        return rows

    return _Using(_RowsOnDemand(pull))


def _match_blas_threads() -> None:
    """Gives OpenBLAS, if PyTorch runs its matrix products on it (Debian's
    does), as many threads as PyTorch has. OpenBLAS keeps a pool of one
    thread per core that torch.set_num_threads does not reach; its threads
    spin between calls, so two one-thread workers on two cores spent a
    quarter of their time in the kernel (the DLRM took 59 s instead of 42)."""
    try:
        blas = ctypes.CDLL("libopenblas.so.0")
    except OSError:
        return
    if hasattr(blas, "openblas_set_num_threads"):
        blas.openblas_set_num_threads(torch.get_num_threads())


Inputs = Union[torch.Tensor, Sequence[torch.Tensor]]
Examples = Tuple[Inputs, torch.Tensor]


class ModuleWorkload(fulcrum.Workload):
    """Trains ``module`` on ``data``: ``(inputs, targets)``, of which partition
    i of n is the i-th contiguous n-th of the examples, or a function
    ``data(partition) -> (inputs, targets)`` that loads a partition's
    examples itself (e.g. its byte range of a file). ``inputs`` is a tensor,
    or a tuple of tensors the module takes as its arguments (e.g. numeric
    features and ids). ``loss_fn(output, targets)`` gives the mean loss;
    ``evaluate(module)`` returns a dict with "accuracy" (and optionally
    "loss", "auc", "metrics"); the module's embeddings read their rows from
    the servers while it runs."""

    def __init__(
        self,
        module: torch.nn.Module,
        data: Union[Examples, Callable[[fulcrum.Partition], Examples]],
        *,
        loss_fn: Callable = F.cross_entropy,
        evaluate: Optional[Callable[[torch.nn.Module], dict]] = None,
    ):
        _match_blas_threads()
        self.module = module
        self.inputs: Tuple[torch.Tensor, ...] = ()
        self.targets = torch.empty(0)
        self.load = data if callable(data) else None
        if self.load is None:
            self._set_examples(data)
        self.loss_fn = loss_fn
        self.evaluate_fn = evaluate
        self.named = {n: p for n, p in module.named_parameters() if p.requires_grad}
        for name, p in self.named.items():
            if p.dtype != torch.float32 or not p.is_contiguous():
                raise TypeError(f"parameter {name}: Fulcrum holds contiguous float32 tensors")
        self.tables = sparse_modules(module)
        # The module's own storage, seen as numpy: pulls write straight into
        # it.
        self.params = {n: p.detach().numpy() for n, p in self.named.items()}
        self.begin = 0
        # The calls each table gets in one forward pass (learnt from the
        # first key pass, which runs the whole forward), and the examples
        # and batch of the step being planned.
        self.calls_per_pass: Optional[Dict[str, int]] = None
        self.step_examples: Optional[np.ndarray] = None
        self.step_batch: Tuple[torch.Tensor, ...] = ()

    def configure(self, job: dict) -> None:
        shapes = {t["name"]: [int(d) for d in t["shape"]] for t in job.get("tensors", [])}
        for name, p in self.named.items():
            if shapes.get(name) != list(p.shape):
                raise ValueError(
                    f"the job's tensor {name!r} is {shapes.get(name)}; the module's is "
                    f"{list(p.shape)}: was the job made from another module?"
                )
        dims = {t["name"]: int(t["dim"]) for t in job.get("sparse_tables", [])}
        for table, m in self.tables.items():
            if dims.get(table) != m.embedding_dim:
                raise ValueError(
                    f"the job's sparse table {table!r} has dim {dims.get(table)}; the module's "
                    f"embedding_dim is {m.embedding_dim}: was the job made from another module?"
                )

    def _set_examples(self, data: Examples) -> None:
        inputs, self.targets = data
        self.inputs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
        for x in self.inputs:
            if len(x) != len(self.targets):
                raise ValueError(f"{len(x)} inputs but {len(self.targets)} targets")

    def load_partition(self, partition: fulcrum.Partition) -> int:
        self.step_examples = None
        if self.load is not None:
            self._set_examples(self.load(partition))
            self.begin = 0
            return len(self.targets)
        n = len(self.targets)
        self.begin = n * partition.index // partition.count
        end = n * (partition.index + 1) // partition.count
        return end - self.begin

    def parameters(self) -> Dict[str, np.ndarray]:
        return self.params

    def _batch(self, examples: np.ndarray) -> Tuple[torch.Tensor, ...]:
        if self.step_examples is None or not np.array_equal(self.step_examples, examples):
            index = torch.from_numpy(examples + self.begin)
            self.step_batch = tuple(x[index] for x in self.inputs)
            self.step_examples = examples
        return self.step_batch

    def sparse_keys(self, examples: np.ndarray) -> Dict[str, Tuple[np.ndarray, int]]:
        """The distinct ids each table's module looks up on this batch,
        found by running the forward pass with the embeddings returning zeros
        (stopped once every embedding has been called)."""
        if not self.tables:
            return {}
        collect = _CollectKeys(self.calls_per_pass)
        with torch.no_grad(), _Using(collect):
            try:
                self.module(*self._batch(examples))
            except _CollectKeys._KeysCollected:
                pass
        if self.calls_per_pass is None:
            self.calls_per_pass = dict(collect.calls)
        return {t: (keys, self.tables[t].embedding_dim) for t, keys in collect.distinct_keys().items()}

    def compute_gradients(self, examples, sparse_rows):
        batch = self._batch(examples)
        index = torch.from_numpy(examples + self.begin)
        rows = {
            table: (keys, torch.from_numpy(values).requires_grad_())
            for table, (keys, values) in sparse_rows.items()
        }
        self.module.train()
        self.module.zero_grad(set_to_none=False)
        with _Using(_StepRows(rows)):
            loss = self.loss_fn(self.module(*batch), self.targets[index])
        loss.backward()
        grads = {n: p.grad.numpy() for n, p in self.named.items()}
        sparse_grads = {
            table: (keys, r.grad.numpy()) for table, (keys, r) in rows.items() if r.grad is not None
        }
        self.step_examples = None
        return float(loss), grads, sparse_grads

    def evaluate(self, pull) -> dict:
        if self.evaluate_fn is None:
            raise fulcrum.FulcrumError("UNIMPLEMENTED", "train() was given no evaluate function")
        pull()
        self.module.eval()
        with torch.no_grad(), _Using(_RowsOnDemand(lambda t, keys: pull({t: keys})[t])):
            return self.evaluate_fn(self.module)


def train(
    module: torch.nn.Module,
    data: Union[Examples, Callable[[fulcrum.Partition], Examples]],
    *,
    loss_fn: Callable = F.cross_entropy,
    evaluate: Optional[Callable[[torch.nn.Module], dict]] = None,
    session: Optional[fulcrum.Session] = None,
    **connection,
) -> None:
    """Trains ``module`` as one worker of the job until the job is over:
    ``data`` is this worker's view of the training set (every worker of a job
    passes the same; ``ModuleWorkload`` says what it may hold),
    ``evaluate(module)`` answers evaluation tasks.
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


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """The area under the ROC curve of ``scores`` for 0/1 ``labels`` (ties
    count half): the chance a random positive outscores a random negative."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1) > 0.5
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        raise ValueError("AUC needs both positive and negative labels")
    order = np.argsort(scores, kind="mergesort")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # 1-based, ties averaged
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def binary_metrics(module: torch.nn.Module, inputs: Inputs, targets: torch.Tensor,
                   chunk: int = 8192) -> dict:
    """{"auc", "loss", "accuracy"} of a module giving one logit per example,
    on (inputs, 0/1 targets); ``inputs`` as ModuleWorkload's."""
    inputs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    logits = []
    for start in range(0, len(targets), chunk):
        logits.append(module(*(x[start : start + chunk] for x in inputs)).reshape(-1))
    logit = torch.cat(logits)
    y = targets.to(torch.float32).reshape(-1)
    return {
        "auc": auc(logit.numpy(), y.numpy()),
        "loss": float(F.binary_cross_entropy_with_logits(logit, y)),
        "accuracy": float(((logit > 0).to(torch.float32) == y).to(torch.float32).mean()),
    }
