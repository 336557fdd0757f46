"""fulcrum.serving against a real serving process (ps_server --serve)
following a real training server's checkpoint folder while it trains."""

import subprocess
import time

import numpy as np
import pytest

import fulcrum
import fulcrum.serving
from conftest import _binary

JOB = """
model: "serving_test"
mode: ASYNC
num_workers: 1
partitions_per_epoch: 1
tensors { name: "w" shape: [2, 3] initializer: ZEROS }
sparse_tables {
  name: "emb" dim: 4 initializer: UNIFORM scale: 0.1
  eviction { when_full: LEAST_RECENTLY_UPDATED } max_rows: 100
}
sparse_tables { name: "tag" dim: 2 initializer: ZEROS }
optimizer { kind: ADAGRAD learning_rate: 0.1 }
"""


def _wait(predicate, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


@pytest.fixture
def trained(start_server, tmp_path):
    """A training server with a checkpoint folder, a session on it, and a
    serving process following the folder."""
    folder = tmp_path / "ckpt"
    server = start_server(JOB, ["--checkpoint_dir=" + str(folder), "--checkpoint_full_every=4"])
    session = fulcrum.Session(server.address, worker_name="trainer")
    assert session.next_task().kind == "train"
    serving = start_server(None, ["--serve=" + str(folder), "--serve_poll_ms=50"])
    return server, session, serving


def _checkpoint(server):
    subprocess.run([_binary("tools/psctl"), "checkpoint", "--coordinator=" + server.address],
                   check=True, capture_output=True)


def _train(session, ids):
    dense = {"w": np.zeros((2, 3), np.float32)}
    keys = np.asarray(ids, np.uint64)
    session.pull(dense, {"emb": (keys, np.zeros((len(keys), 4), np.float32))})
    grads = np.linspace(-1, 1, len(keys) * 4, dtype=np.float32).reshape(len(keys), 4)
    session.push({"w": np.ones((2, 3), np.float32)}, 1, sparse={"emb": (keys, grads)})


def _trained_rows(session, ids):
    rows = np.zeros((len(ids), 4), np.float32)
    session.pull_for_eval({"w": np.zeros((2, 3), np.float32)},
                          {"emb": (np.asarray(ids, np.uint64), rows)})
    return rows


def test_serving_follows_a_whole_checkpoint_and_two_deltas_while_the_job_trains(trained,
                                                                                  start_server):
    server, session, serving = trained
    client = fulcrum.serving.Client(serving.address)
    ids = list(range(1, 40))
    with pytest.raises(fulcrum.FulcrumError) as none_yet:
        client.lookup("emb", ids)
    assert none_yet.value.code == "UNAVAILABLE"

    for step, batch in enumerate([ids[:20], ids[10:30], ids[25:]]):
        _train(session, batch)
        _checkpoint(server)
        status = _wait(lambda: (lambda s: s if int(s.get("checkpoint", 0)) == step + 1 else None)(
            client.status()), f"checkpoint {step + 1} served")
        rows, found = client.lookup("emb", ids)
        assert client.checkpoint == step + 1
        np.testing.assert_array_equal(rows, _trained_rows(session, ids))
        trained_so_far = set().union(*[set(b) for b in [ids[:20], ids[10:30], ids[25:]][:step + 1]])
        assert found.tolist() == [i in trained_so_far for i in ids]
    assert int(status["deltas_applied"]) == 2 and int(status["whole_loads"]) == 1, status
    # Another serving process follows the same folder: the same answers.
    other = start_server(None, ["--serve=" + status["folder"]])
    second = fulcrum.serving.Client(other.address)
    _wait(lambda: int(second.status().get("checkpoint", 0)) == 3, "the second server's load")
    np.testing.assert_array_equal(second.lookup("emb", ids)[0], rows)
    assert {t["name"]: int(t["rows"]) for t in status["tables"]} == {"emb": len(ids), "tag": 0}
    # Both tables at once, from one checkpoint.
    batch = client.lookup_batch({"emb": ids, "tag": [5, 6]})
    assert client.checkpoint == 3
    np.testing.assert_array_equal(batch["emb"][0], rows)
    assert batch["tag"][0].shape == (2, 2) and batch["tag"][1].tolist() == [False, False]
    tensors = client.tensors()
    assert list(tensors) == ["w"] and tensors["w"].shape == (2, 3)
    dense = {"w": np.zeros((2, 3), np.float32)}
    session.pull_for_eval(dense)
    np.testing.assert_array_equal(tensors["w"], dense["w"])


def test_serving_refuses_writes_and_bad_lookups_with_clear_statuses(trained):
    server, session, serving = trained
    _train(session, [1, 2])
    _checkpoint(server)
    client = fulcrum.serving.Client(serving.address)
    _wait(lambda: int(client.status().get("checkpoint", 0)) == 1, "the checkpoint served")
    # No method writes: a worker cannot even register.
    with pytest.raises(fulcrum.FulcrumError) as write:
        fulcrum.Session(serving.address, worker_name="intruder")
    assert write.value.code == "UNIMPLEMENTED", write.value
    with pytest.raises(fulcrum.FulcrumError) as table:
        client.lookup("user", [1])
    assert table.value.code == "NOT_FOUND" and "the model has: emb" in table.value.message
    with pytest.raises(fulcrum.FulcrumError) as dim:
        client.lookup("emb", [1], dim=8)
    assert dim.value.code == "INVALID_ARGUMENT" and "4 floats, not 8" in dim.value.message
    with pytest.raises(fulcrum.FulcrumError) as many:
        client.lookup("emb", np.arange(10_000_000, dtype=np.int64))
    assert many.value.code == "INVALID_ARGUMENT" and "split the call" in many.value.message
    with pytest.raises(fulcrum.FulcrumError) as batch:
        client.lookup_batch({"emb": [1], "user": [1]})
    assert batch.value.code == "NOT_FOUND" and "lookup 1:" in batch.value.message
    with pytest.raises(fulcrum.FulcrumError) as tensor:
        client.tensors(["nope"])
    assert tensor.value.code == "NOT_FOUND"
    # Still serving after all that.
    rows, found = client.lookup("emb", [1, 2, 3])
    assert rows.shape == (3, 4) and found.tolist() == [True, True, False]
