"""Fulcrum's worker library for Python: train a model against ps_server.

Two levels, as in C++ (worker/fulcrum_worker.h), over the same native code:

* ``Session``: your own loop. ``next_task()``, then ``pull`` / ``push_pull`` /
  ``push`` numpy float32 arrays by tensor name (and sparse rows by key), then
  ``complete`` or ``report_eval``. Arrays are read and written in place.
* ``run_worker(workload, ...)``: implement a ``Workload`` (data and maths);
  the loop, restarts and evaluation tasks come from the library.

``fulcrum.torch`` maps a PyTorch ``nn.Module`` to a job and trains it.

The worker protocol (registration, heartbeats, leases, the clocks of sync and
ssp jobs, retries, deadlines) is the C++ library's, loaded as the native
module ``_native``; Python adds no second implementation of it. Server
errors are raised as ``FulcrumError`` with the gRPC status code name
(``e.code``, e.g. ``"INVALID_ARGUMENT"``) and the server's message.
"""

import importlib.machinery
import importlib.util
import json
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import numpy as np

__all__ = [
    "FulcrumError",
    "Partition",
    "Task",
    "Session",
    "Workload",
    "run_worker",
    "example_order",
]


def _load_native():
    """The native module: beside this file (an installed package), at
    $FULCRUM_NATIVE, or in the Bazel output tree of the checkout this file is
    in (bazel build //python:_native.so)."""
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.join(here, "_native.so")]
    if os.environ.get("FULCRUM_NATIVE"):
        candidates.insert(0, os.environ["FULCRUM_NATIVE"])
    candidates.append(os.path.join(here, "..", "..", "bazel-bin", "python", "_native.so"))
    for path in candidates:
        if os.path.exists(path):
            loader = importlib.machinery.ExtensionFileLoader("_native", path)
            spec = importlib.util.spec_from_loader("_native", loader)
            module = importlib.util.module_from_spec(spec)
            loader.exec_module(module)
            return module
    raise ImportError(
        "fulcrum: the native module _native.so is not built; run "
        "`bazel build //python:_native.so` in the checkout (or "
        "tools/install_python.sh), or set FULCRUM_NATIVE. Looked in: " + ", ".join(candidates)
    )


_native = _load_native()


class FulcrumError(Exception):
    """A call failed: ``code`` is the gRPC status code's name, ``message`` the
    server's (or the library's) explanation."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _call(fn, *args):
    try:
        return fn(*args)
    except _native.Error as e:
        raise FulcrumError(*e.args) from None


@dataclass(frozen=True)
class Partition:
    """A data partition: ``index`` of ``count`` in (0-based) ``epoch``."""

    index: int
    count: int
    epoch: int


@dataclass
class Task:
    """A piece of work: ``kind`` is "train" (train ``partition``, then
    ``complete``), "evaluate" (evaluate the model, then ``report_eval``),
    "wait" (ask again after ``retry_after`` seconds) or "done"."""

    kind: str
    partition: Partition
    eval_epoch: int = 0
    eval_final: bool = False
    retry_after: float = 0.0
    _native: dict = field(default_factory=dict, repr=False)


Dense = Dict[str, np.ndarray]
Sparse = Dict[str, Tuple[np.ndarray, np.ndarray]]


class Session:
    """A worker's connection to a job, for programs with their own loop.

    A training task's steps: ``pull`` the first step's parameters, then per
    step compute a gradient and ``push_pull`` it (the gradient out, the next
    step's parameters back in one round trip), ``push`` on the last step, then
    ``complete``. The session keeps the clocks of the job's mode.

    Dense buffers are ``{name: float32 C-contiguous array}`` sized to the
    tensor; sparse ones ``{table: (uint64 keys, float32 array of len(keys) x
    dim)}``. Pulls write into them, pushes read them.

    Errors (``FulcrumError.code``): INVALID_ARGUMENT for a name or size the
    job does not have (nothing sent); FAILED_PRECONDITION when the coordinator
    declared this worker dead (``next_task`` registers again); ABORTED when a
    shard restarted or the session's sync rounds fell out of step with a
    shard's (pull again and redo the step); UNAVAILABLE when retries
    ran out. Not thread-safe; heartbeats run on a thread of their own.
    """

    def __init__(self, coordinator: str = "127.0.0.1:50051", **settings):
        """``settings`` (keyword only): worker_name, auth_token or
        auth_token_file, tls_ca, tls_cert, tls_key, tls_server_name,
        rpc_timeout (s, 60), start_timeout (s, 600), max_attempts (10),
        max_backoff (s, 5)."""
        self._options = Session._connection_options(coordinator, **settings)
        self._session = _call(_native.Session, self._options)

    @staticmethod
    def _connection_options(
        coordinator: str = "127.0.0.1:50051",
        *,
        worker_name: str = "",
        auth_token: str = "",
        auth_token_file: str = "",
        tls_ca: str = "",
        tls_cert: str = "",
        tls_key: str = "",
        tls_server_name: str = "",
        rpc_timeout: float = 60.0,
        start_timeout: float = 600.0,
        max_attempts: int = 10,
        max_backoff: float = 5.0,
    ):
        options = _native.ConnectionOptions()
        options.coordinator = coordinator
        options.worker_name = worker_name
        if auth_token_file:
            with open(auth_token_file) as f:
                auth_token = f.read().strip()
        options.auth_token = auth_token
        options.tls_ca = tls_ca
        options.tls_cert = tls_cert
        options.tls_key = tls_key
        options.tls_server_name = tls_server_name
        options.rpc_timeout = rpc_timeout
        options.start_timeout = start_timeout
        options.max_attempts = max_attempts
        options.max_backoff = max_backoff
        return options

    @property
    def job(self) -> dict:
        """The job (protobuf's JSON mapping of JobSpec, field names as in a
        job file) of the last registration."""
        return json.loads(self._session.job_json())

    @property
    def worker_id(self) -> int:
        return self._session.worker_id

    def next_task(self) -> Task:
        t = _call(self._session.next_task)
        return Task(
            kind=t["kind"],
            partition=Partition(*t["partition"]),
            eval_epoch=t["eval_epoch"],
            eval_final=t["eval_final"],
            retry_after=t["retry_after"],
            _native=t,
        )

    def pull(self, params: Dense, sparse: Optional[Sparse] = None) -> None:
        _call(self._session.pull, params, sparse or {})

    def push_pull(
        self,
        grads: Dense,
        examples: int,
        params: Dense,
        *,
        loss: float = -1.0,
        sparse_grads: Optional[Sparse] = None,
        sparse_params: Optional[Sparse] = None,
    ) -> None:
        _call(
            self._session.push_pull,
            grads,
            sparse_grads or {},
            examples,
            loss,
            params,
            sparse_params or {},
        )

    def push(
        self, grads: Dense, examples: int, *, loss: float = -1.0, sparse: Optional[Sparse] = None
    ) -> None:
        _call(self._session.push, grads, sparse or {}, examples, loss)

    def pull_for_eval(self, params: Dense, sparse: Optional[Sparse] = None) -> None:
        """Reads the current parameters for an evaluation (no clocks to wait
        for). Sparse keys without a row read the table's initial values; no
        row is created."""
        _call(self._session.pull_for_eval, params, sparse or {})

    def complete(self, task: Task) -> None:
        _call(self._session.complete, task._native)

    def report_eval(self, task: Task, accuracy: float = 0.0, loss: float = 0.0, auc: float = 0.0,
                    metrics: Optional[Dict[str, float]] = None) -> None:
        """Reports an evaluation task's figures. ``metrics`` are further
        figures by name ([a-z][a-z0-9_]*, at most 16, finite), for models
        without an accuracy (an RMSE, an inertia); the result line prints
        them."""
        _call(self._session.report_eval, task._native, accuracy, loss, auc, metrics or {})

    def close(self) -> None:
        """Stops heartbeats (the coordinator then declares this worker dead
        unless the job is over)."""
        self._session = None


def example_order(job: dict, partition: Partition, num_examples: int) -> np.ndarray:
    """The order a partition's examples are trained in (fixed by the job's
    seed and the partition, as the C++ library trains them)."""
    return _call(
        _native.example_order,
        json.dumps(job),
        (partition.index, partition.count, partition.epoch),
        num_examples,
    )


class Workload:
    """What ``run_worker`` trains: the data and the maths.

    ``parameters()`` returns the dense arrays the steps read; the library
    pulls into them in place before each step. A step's sparse rows
    (optional) are asked for with ``sparse_keys``.
    """

    def configure(self, job: dict) -> None:
        """Adopts the job (after each registration); raise to refuse it."""

    def load_partition(self, partition: Partition) -> int:
        """Loads a partition's examples and returns how many there are."""
        raise NotImplementedError

    def parameters(self) -> Dense:
        """{tensor name: float32 array} the steps read, pulled in place."""
        raise NotImplementedError

    def sparse_keys(self, examples: np.ndarray) -> Dict[str, Tuple[np.ndarray, int]]:
        """{table: (uint64 keys, dim)} a step on ``examples`` reads."""
        return {}

    def compute_gradients(
        self, examples: np.ndarray, sparse_rows: Sparse
    ) -> Tuple[float, Dense, Sparse]:
        """(mean loss, {tensor: gradient}, {table: (keys, row gradients)})
        of a step on ``examples`` (positions in the partition)."""
        raise NotImplementedError

    def evaluate(self, pull: Callable[..., Sparse]) -> dict:
        """Evaluates after calling ``pull()``, which refreshes
        ``parameters()``; ``pull({table: uint64 keys})`` instead reads those
        rows and returns ``{table: float32 rows}`` (keys without a row read
        the table's initial values; none is created). Returns {"accuracy": ...,
        "loss": ..., "auc": ..., "metrics": {name: value}} (every key
        optional)."""
        raise NotImplementedError


class _LoopAdapter:
    """A Workload as the C++ loop (RunWorker) calls it: plain arguments and
    results."""

    def __init__(self, workload: Workload):
        self.workload = workload
        self.has_sparse = type(workload).sparse_keys is not Workload.sparse_keys

    def configure(self, job_json: str) -> Dense:
        self.workload.configure(json.loads(job_json))
        return self.workload.parameters()

    def load_partition(self, index: int, count: int, epoch: int) -> int:
        return int(self.workload.load_partition(Partition(index, count, epoch)))

    def sparse_keys(self, examples: np.ndarray) -> Dict[str, Tuple[np.ndarray, int]]:
        return {
            table: (np.ascontiguousarray(keys, dtype=np.uint64), int(dim))
            for table, (keys, dim) in self.workload.sparse_keys(examples).items()
        }

    def compute(self, examples: np.ndarray, rows: Sparse) -> Tuple[float, Dense, Sparse]:
        loss, grads, sparse_grads = self.workload.compute_gradients(examples, rows)
        return float(loss), grads, sparse_grads or {}

    def evaluate(self, pull: Callable[..., Sparse]) -> dict:
        return self.workload.evaluate(pull)


def run_worker(
    workload: Workload, session: Optional[Session] = None, *, metrics_port: int = -1, **connection
) -> None:
    """Trains whatever the coordinator leases to this worker until the job
    is over, in the C++ library's loop (the one the ``worker`` binary runs:
    retries, clocks, top-k compression and overlapped communication when the
    job asks for them). ``connection``: Session's keyword arguments
    (coordinator=...); a ``session`` given instead lends its settings and is
    closed (the loop registers a worker of its own). Raises the first
    exception the workload raised, or FulcrumError."""
    if session is not None:
        options = session._options
        session.close()
    else:
        options = Session._connection_options(**connection)
    _call(_native.run_worker, options, _LoopAdapter(workload), metrics_port)
