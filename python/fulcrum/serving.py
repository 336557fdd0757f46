"""Reading a model that a Fulcrum job trains, from a serving process
(``ps_server --serve=CHECKPOINT_DIR``): rows of its sparse tables by id and
its dense tensors by name, as the newest checkpoint (and the deltas after
it) holds them. Read only.

    client = fulcrum.serving.Client("127.0.0.1:50060")
    rows, found = client.lookup("user", np.array([7, 42], np.int64))
"""

import json
from typing import Dict, Iterable, Optional, Tuple

import numpy as np

from . import FulcrumError, _call, _native

__all__ = ["Client", "FulcrumError"]


class Client:
    """A connection to a serving process. ``auth_token``: the bearer token it
    requires; ``tls_ca`` (a PEM file): verify it over TLS, with ``tls_cert``
    and ``tls_key`` for mutual TLS and ``tls_server_name`` when its
    certificate names another host; ``timeout``: seconds per call. Errors are
    FulcrumError with the server's status (NOT_FOUND: unknown table or
    tensor; INVALID_ARGUMENT: wrong dim or too many ids; UNAVAILABLE: not
    serving a checkpoint yet, or not reachable)."""

    def __init__(self, address: str, *, auth_token: str = "", tls_ca: str = "",
                 tls_cert: str = "", tls_key: str = "", tls_server_name: str = "",
                 timeout: float = 10.0):
        options = _native.ServingClientOptions()
        options.address = address
        options.auth_token = auth_token
        options.tls_ca = tls_ca
        options.tls_cert = tls_cert
        options.tls_key = tls_key
        options.tls_server_name = tls_server_name
        options.timeout = float(timeout)
        self._client = _call(_native.ServingClient, options)
        self.checkpoint = 0  # the checkpoint the last lookup was answered from

    def lookup(self, table: str, ids, dim: int = 0) -> Tuple[np.ndarray, np.ndarray]:
        """``(rows, found)``: float32 rows ``[len(ids), dim]`` of ``table``
        for ``ids`` (int64 or uint64, any shape: flattened), and per id
        whether it has a row (an id without one reads the table's initial
        value for it, as in training). ``dim`` (0: the table's) is checked."""
        ids = np.asarray(ids)
        if ids.dtype not in (np.int64, np.uint64, np.int32):
            raise TypeError(f"ids must be int64 or uint64, got {ids.dtype}")
        keys = np.ascontiguousarray(ids.astype(np.int64, copy=False).reshape(-1)).view(np.uint64)
        rows, found, self.checkpoint = _call(self._client.lookup, table, keys, int(dim))
        return rows, found

    def lookup_batch(self, lookups: Dict[str, object]) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
        """``{table: (rows, found)}`` for ``{table: ids}``, every table from
        the same checkpoint, in one call (a model's tables for a batch)."""
        keys = {}
        for table, ids in lookups.items():
            ids = np.asarray(ids)
            if ids.dtype not in (np.int64, np.uint64, np.int32):
                raise TypeError(f"ids of {table!r} must be int64 or uint64, got {ids.dtype}")
            keys[table] = np.ascontiguousarray(
                ids.astype(np.int64, copy=False).reshape(-1)).view(np.uint64)
        results, self.checkpoint = _call(self._client.lookup_batch, keys)
        return results

    def tensors(self, names: Optional[Iterable[str]] = None) -> Dict[str, np.ndarray]:
        """Dense tensors by name, whole and shaped (none named: all)."""
        return _call(self._client.read_tensors, list(names or []))

    def status(self) -> dict:
        """What is served (ServingStatus in proto/serving.proto): the
        checkpoint, when it was taken and loaded, its tables and tensors."""
        return json.loads(_call(self._client.status_json))
