"""fulcrum.Session and fulcrum.run_worker against a real ps_server."""

import numpy as np
import pytest

import fulcrum

JOB = """
model: "py_session"
mode: ASYNC
tensors { name: "w" shape: [2, 3] initializer: ZEROS }
sparse_tables { name: "emb" dim: 2 initializer: ZEROS }
optimizer { kind: SGD learning_rate: 0.5 }
epochs: 2
partitions_per_epoch: 2
batch_size: 4
num_workers: 1
"""


def test_own_loop_trains_every_partition_evaluates_and_finishes(start_server):
    server = start_server(JOB, ["--exit_when_done"])
    session = fulcrum.Session(server.address, worker_name="py")
    assert session.job["model"] == "py_session"
    assert session.job["tensors"][0]["shape"] == ["2", "3"]  # int64 in JSON: strings
    w = np.full((2, 3), 99.0, np.float32)
    ones = np.ones((2, 3), np.float32)
    trained, evaluated, seen = 0, 0, None
    while True:
        task = session.next_task()
        if task.kind == "done":
            break
        if task.kind == "wait":
            continue
        if task.kind == "evaluate":
            session.pull_for_eval({"w": w})
            seen = w.copy()
            evaluated += 1
            session.report_eval(task, accuracy=0.25 * evaluated, loss=1.0)
            continue
        assert task.kind == "train"
        assert task.partition.count == 2
        session.pull({"w": w})
        session.push_pull({"w": ones}, 4, {"w": w}, loss=0.5)
        session.push({"w": ones}, 4, loss=0.5)
        session.complete(task)
        trained += 1
    assert (trained, evaluated) == (4, 2)
    # Eight pushes of ones at learning rate 0.5, read by the final evaluation.
    np.testing.assert_array_equal(seen, np.full((2, 3), -4.0, np.float32))
    assert server.process.wait(timeout=30) == 0
    assert "test_accuracy=0.5000" in server.output()


def test_eval_metrics_reach_the_result_line_and_bad_names_are_refused(start_server):
    server = start_server(JOB.replace("epochs: 2", "epochs: 1"), ["--exit_when_done"])
    session = fulcrum.Session(server.address, worker_name="py")
    w = np.zeros((2, 3), np.float32)
    while True:
        task = session.next_task()
        if task.kind == "done":
            break
        if task.kind == "wait":
            continue
        if task.kind == "evaluate":
            with pytest.raises(fulcrum.FulcrumError) as refused:
                session.report_eval(task, metrics={"RMSE": 0.5})
            assert refused.value.code == "INVALID_ARGUMENT"
            assert "RMSE" in refused.value.message
            session.report_eval(task, loss=0.25, metrics={"rmse": 0.5})
            continue
        session.pull({"w": w})
        session.push({"w": w}, 4)
        session.complete(task)
    assert server.process.wait(timeout=30) == 0
    result = [line for line in server.output().splitlines() if line.startswith("result:")]
    assert result and " rmse=0.5 " in result[0] and "test_accuracy" not in result[0], result


def test_sparse_rows_pulled_pushed_and_read_back(start_server):
    server = start_server(JOB)
    session = fulcrum.Session(server.address)
    assert session.next_task().kind == "train"
    keys = np.array([7, 9, 7], np.uint64)
    rows = np.full((3, 2), 99.0, np.float32)
    session.pull({}, {"emb": (keys, rows)})
    np.testing.assert_array_equal(rows, np.zeros((3, 2), np.float32))
    grad = np.array([[1, 2], [0, 0], [1, 2]], np.float32)
    session.push_pull({}, 1, {}, sparse_grads={"emb": (keys, grad)}, sparse_params={"emb": (keys, rows)})
    np.testing.assert_array_equal(rows, np.array([[-1, -2], [0, 0], [-1, -2]], np.float32))


def test_errors_carry_the_status_code_and_message(start_server):
    server = start_server(JOB)
    session = fulcrum.Session(server.address)
    assert session.next_task().kind == "train"
    with pytest.raises(fulcrum.FulcrumError) as e:
        session.pull({"v": np.zeros(6, np.float32)})
    assert e.value.code == "INVALID_ARGUMENT"
    assert 'no dense tensor "v"' in e.value.message
    with pytest.raises(fulcrum.FulcrumError) as e:
        session.push({"w": np.zeros(5, np.float32)}, 1)
    assert e.value.code == "INVALID_ARGUMENT"
    assert "has 6 elements; the buffer holds 5" in e.value.message
    with pytest.raises(TypeError, match="got dtype float64"):
        session.pull({"w": np.zeros(6, np.float64)})
    with pytest.raises(TypeError, match="C-contiguous float32 array, got a strided view"):
        session.pull({"w": np.zeros((3, 4), np.float32)[:, ::2]})
    # The right size in another shape is refused, not read or written in the
    # wrong order (a flat array is fine: see below).
    with pytest.raises(fulcrum.FulcrumError) as e:
        session.pull({"w": np.zeros((3, 2), np.float32)})
    assert e.value.code == "INVALID_ARGUMENT"
    assert "tensor w is shaped [2, 3]; the array is (3, 2)" in e.value.message
    with pytest.raises(fulcrum.FulcrumError) as e:
        session.push({}, 1, sparse={"emb": (np.array([1, 2], np.uint64), np.zeros((1, 4), np.float32))})
    assert "table emb's row buffer is shaped [2, 2]; the array is (1, 4)" in e.value.message
    # None of it reached the model.
    w = np.full(6, 9.0, np.float32)
    session.pull({"w": w})
    np.testing.assert_array_equal(w, np.zeros(6, np.float32))


def test_no_server_unavailable():
    with pytest.raises(fulcrum.FulcrumError) as e:
        fulcrum.Session("127.0.0.1:1", max_attempts=2, max_backoff=0.1, rpc_timeout=2)
    assert e.value.code == "UNAVAILABLE"


def test_wrong_token_unauthenticated_with_the_servers_message(start_server, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    server = start_server(JOB, ["--auth_token_file=" + str(token)])
    with pytest.raises(fulcrum.FulcrumError) as e:
        fulcrum.Session(server.address, auth_token="wrong", max_attempts=1)
    assert e.value.code == "UNAUTHENTICATED"
    assert "token" in e.value.message
    session = fulcrum.Session(server.address, auth_token_file=str(token))
    assert session.next_task().kind == "train"


class LeastSquares(fulcrum.Workload):
    """y = X w_true; a numpy workload for run_worker."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(512, 4)).astype(np.float32)
        self.w_true = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
        self.y = self.x @ self.w_true
        self.w = np.zeros(4, np.float32)
        self.begin = 0

    def load_partition(self, partition):
        self.begin = partition.index * 512 // partition.count
        return 512 // partition.count

    def parameters(self):
        return {"w": self.w}

    def compute_gradients(self, examples, sparse_rows):
        x = self.x[self.begin + examples]
        err = x @ self.w - self.y[self.begin + examples]
        return float(np.mean(err**2)), {"w": (2 * x.T @ err / len(examples)).astype(np.float32)}, {}

    def evaluate(self, pull):
        pull()
        return {"accuracy": 0.0, "loss": float(np.mean((self.x @ self.w - self.y) ** 2))}


JOB_LEAST_SQUARES = """
model: "least_squares"
mode: SYNC
tensors { name: "w" shape: [4] initializer: ZEROS }
optimizer { kind: SGD learning_rate: 0.05 }
epochs: 10
partitions_per_epoch: 4
batch_size: 16
num_workers: 1
"""


def test_run_worker_trains_a_numpy_workload(start_server):
    server = start_server(JOB_LEAST_SQUARES, ["--exit_when_done"])
    workload = LeastSquares()
    fulcrum.run_worker(workload, coordinator=server.address)
    assert server.process.wait(timeout=30) == 0
    np.testing.assert_allclose(workload.w, workload.w_true, atol=1e-2)
    assert "result: model=least_squares" in server.output()


class FailingLeastSquares(LeastSquares):
    """Raises from its third step."""

    def __init__(self):
        super().__init__()
        self.steps = 0

    def compute_gradients(self, examples, sparse_rows):
        self.steps += 1
        if self.steps == 3:
            raise ValueError("bad batch file")
        return super().compute_gradients(examples, sparse_rows)


def test_run_worker_raises_the_workloads_own_exception(start_server):
    server = start_server(JOB_LEAST_SQUARES)
    workload = FailingLeastSquares()
    with pytest.raises(ValueError, match="bad batch file"):
        fulcrum.run_worker(workload, coordinator=server.address, max_attempts=1)
    assert workload.steps == 3
