"""fulcrum.torch's Embedding and EmbeddingBag against PyTorch's own modules,
with their rows on a real ps_server."""

import json
import re
import subprocess

import numpy as np
import pytest
import torch

import fulcrum
import fulcrum.torch as ft
from conftest import _binary

DIM = 4
LR = 0.1
# Ids without a vocabulary: negative, huge, repeated within and across bags.
IDS = np.array([7, -3, 2**62 + 5, 11, 0, 123456789, -2**63], np.int64)


class Model(torch.nn.Module):
    """A bag of ids and a single id per example, through a linear layer."""

    def __init__(self, bag, single):
        super().__init__()
        self.bag = bag
        self.single = single
        self.linear = torch.nn.Linear(2 * DIM, 1)

    def forward(self, bag_ids, single_ids):
        x = torch.cat([self.bag(bag_ids), self.single(single_ids)], dim=1)
        return self.linear(x).squeeze(1)


def _mse(output, target):
    return ((output - target) ** 2).mean()


def _data(n=64, bag=5, seed=0):
    rng = np.random.default_rng(seed)
    bags = torch.from_numpy(rng.choice(IDS, size=(n, bag)))
    singles = torch.from_numpy(rng.choice(IDS, size=n))
    targets = torch.from_numpy(rng.normal(size=n).astype(np.float32))
    return (bags, singles), targets


def _start(start_server, model):
    job = ft.job_for(model, optimizer={"kind": "SGD", "learning_rate": LR}, batch_size=8,
                     partitions_per_epoch=1)
    server = start_server(json.dumps(job), suffix=".json")
    session = fulcrum.Session(server.address, worker_name="test")
    task = session.next_task()
    assert task.kind == "train", task
    return session, task


def _initial_rows(session, table):
    """The rows the server gives IDS before any push (read only)."""
    with ft.rows_from(session), torch.no_grad():
        return ft.Embedding(DIM, table=table)(torch.from_numpy(IDS))


def _reference(fulcrum_model, session, mode):
    """PyTorch's own modules over a vocabulary of IDS, starting from the rows
    and weights the server starts from; and the ids-to-vocabulary map."""
    bag = torch.nn.EmbeddingBag(len(IDS), DIM, mode=mode)
    single = torch.nn.Embedding(len(IDS), DIM)
    model = Model(bag, single)
    dense = {n: np.zeros(p.shape, np.float32) for n, p in fulcrum_model.named_parameters()}
    session.pull_for_eval(dense)
    with torch.no_grad():
        bag.weight.copy_(_initial_rows(session, "bag"))
        single.weight.copy_(_initial_rows(session, "single"))
        for n, p in model.linear.named_parameters():
            p.copy_(torch.from_numpy(dense["linear." + n]))
    vocab = {int(i): v for v, i in enumerate(IDS)}
    return model, lambda t: torch.tensor([vocab[int(i)] for i in t.reshape(-1)]).reshape(t.shape)


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_bag_and_embedding_train_as_pytorchs_own_for_20_sgd_steps(start_server, mode):
    model = Model(ft.EmbeddingBag(DIM, mode=mode), ft.Embedding(DIM))
    session, task = _start(start_server, model)
    reference, to_vocab = _reference(model, session, mode)
    optimizer = torch.optim.SGD(reference.parameters(), lr=LR)
    (bags, singles), targets = _data()

    with torch.no_grad():
        before = _mse(reference(to_vocab(bags), to_vocab(singles)), targets).item()

    workload = ft.ModuleWorkload(model, ((bags, singles), targets), loss_fn=_mse)
    workload.configure(session.job)
    workload.load_partition(task.partition)
    dense = workload.parameters()
    for step in range(20):
        examples = np.arange(step * 3 % 56, step * 3 % 56 + 8, dtype=np.int64)
        keys = workload.sparse_keys(examples)
        rows = {t: (k, np.zeros((len(k), dim), np.float32)) for t, (k, dim) in keys.items()}
        session.pull(dense, rows)
        loss, grads, sparse_grads = workload.compute_gradients(examples, rows)
        assert set(sparse_grads) == {"bag", "single"}
        session.push(grads, len(examples), sparse=sparse_grads)

        index = torch.from_numpy(examples)
        optimizer.zero_grad()
        expected = _mse(reference(to_vocab(bags[index]), to_vocab(singles[index])), targets[index])
        expected.backward()
        optimizer.step()
        assert loss == pytest.approx(float(expected), rel=1e-6, abs=1e-6), step
    # The 20 steps trained: the whole set's loss fell.
    with torch.no_grad():
        after = _mse(reference(to_vocab(bags), to_vocab(singles)), targets).item()
    assert after < before


def test_offsets_and_per_sample_weights_match_pytorchs_bag(start_server):
    model = Model(ft.EmbeddingBag(DIM, mode="sum"), ft.Embedding(DIM))
    session, _ = _start(start_server, model)
    reference = torch.nn.EmbeddingBag(len(IDS), DIM, mode="sum")
    with torch.no_grad():
        reference.weight.copy_(_initial_rows(session, "bag"))
    vocab_ids = torch.tensor([0, 3, 3, 6, 1, 0, 2])  # bags [0, 3, 3], [], [6, 1, 0, 2]
    ids = torch.from_numpy(IDS[vocab_ids.numpy()])
    offsets = torch.tensor([0, 3, 3])
    weights = torch.linspace(0.5, 2.0, len(ids))
    with ft.rows_from(session), torch.no_grad():
        got = model.bag(ids, offsets, per_sample_weights=weights)
    expected = reference(vocab_ids, offsets, per_sample_weights=weights).detach()
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    assert float(got[1].abs().sum()) == 0.0  # the empty bag


def test_unseen_ids_read_the_tables_initializer_the_same_everywhere(start_server):
    model = Model(ft.EmbeddingBag(DIM, init_scale=0.5), ft.Embedding(DIM))
    first, _ = _start(start_server, model)
    second, _ = _start(start_server, model)  # another server of the same job
    rows = _initial_rows(first, "bag")
    assert rows.shape == (len(IDS), DIM)
    assert float(rows.abs().max()) <= 0.5
    assert len({tuple(r) for r in rows.tolist()}) == len(IDS)  # a row per id
    torch.testing.assert_close(_initial_rows(first, "bag"), rows, rtol=0, atol=0)
    torch.testing.assert_close(_initial_rows(second, "bag"), rows, rtol=0, atol=0)
    # A table's rows are its own: the same id reads other values in "single".
    assert not torch.equal(_initial_rows(first, "single"), rows)


def test_job_for_maps_embeddings_to_tables_and_the_rest_to_tensors(start_server):
    class Mixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.user = ft.Embedding(8, optimizer={"kind": "FTRL", "learning_rate": 0.05})
            self.fields = torch.nn.ModuleList(
                [ft.EmbeddingBag(4, mode="sum", table="category", max_rows=1000),
                 ft.EmbeddingBag(4)])
            self.top = torch.nn.Linear(16, 2)

    job = ft.job_for(Mixed(), optimizer={"kind": "ADAGRAD", "learning_rate": 0.1})
    assert [t["name"] for t in job["tensors"]] == ["top.weight", "top.bias"]
    tables = {t["name"]: t for t in job["sparse_tables"]}
    assert set(tables) == {"user", "category", "fields.1"}
    assert tables["user"]["dim"] == 8 and tables["user"]["optimizer"]["kind"] == "FTRL"
    assert tables["category"]["max_rows"] == "1000" and "optimizer" not in tables["category"]
    assert tables["fields.1"]["initializer"] == "UNIFORM" and tables["fields.1"]["scale"] == 0.25
    server = start_server(json.dumps(job), suffix=".json")
    served = fulcrum.Session(server.address).job
    assert {t["name"]: int(t["dim"]) for t in served["sparse_tables"]} == {
        "user": 8, "category": 4, "fields.1": 4}


def test_admission_drops_an_ids_gradients_until_its_second_push_and_status_counts_it(
        start_server):
    model = Model(ft.EmbeddingBag(DIM, admission={"min_count": 2}), ft.Embedding(DIM))
    job = ft.job_for(model, optimizer={"kind": "SGD", "learning_rate": LR})
    assert job["sparse_tables"][0]["admission"] == {"min_count": 2}
    server = start_server(json.dumps(job), suffix=".json")
    session = fulcrum.Session(server.address, worker_name="test")
    assert session.next_task().kind == "train"
    keys = np.array([5, 9], np.uint64)
    grads = np.ones((2, DIM), np.float32)
    dense = {n: np.zeros(p.shape, np.float32) for n, p in model.named_parameters()}

    def read():
        rows = np.zeros((len(keys), DIM), np.float32)
        session.pull_for_eval(dense, {"bag": (keys, rows)})
        return rows

    def push_and_read(push_keys):
        session.pull(dense, {"bag": (push_keys, np.zeros((len(push_keys), DIM), np.float32))})
        zero = {n: np.zeros_like(v) for n, v in dense.items()}
        session.push(zero, 1, sparse={"bag": (push_keys, np.ones((len(push_keys), DIM), np.float32))})
        return read()

    initial = read()

    np.testing.assert_array_equal(push_and_read(keys), initial)  # first push: dropped
    after = push_and_read(keys[:1])  # id 5's second push: admitted and applied
    np.testing.assert_allclose(after[0], initial[0] - LR * grads[0], rtol=1e-6)
    np.testing.assert_array_equal(after[1], initial[1])
    # psctl shows the table's counters, as text and as JSON.
    psctl = [_binary("tools/psctl"), "status", "--coordinator=" + server.address]
    text = subprocess.run(psctl, check=True, capture_output=True, text=True).stdout
    assert re.search(r"admitted 1\s+refused 2\s+evicted 0", text), text
    status = json.loads(subprocess.run(psctl + ["--json"], check=True, capture_output=True,
                                       text=True).stdout)
    table = {t["name"]: t for t in status["sparse_tables"]}["bag"]
    assert int(table["admitted"]) == 1 and int(table["refused"]) == 2, table
    assert int(table["rows"]) == 1 and int(table["pending_ids"]) == 1, table


def test_mistakes_are_clear_errors():
    bag = ft.EmbeddingBag(DIM, table="bag")
    with pytest.raises(fulcrum.FulcrumError) as outside:
        bag(torch.tensor([[1, 2]]))
    assert outside.value.code == "FAILED_PRECONDITION"
    assert "'bag'" in outside.value.message and "inside a Fulcrum worker" in outside.value.message

    rows = ft._StepRows({"bag": (np.array([1, 2], np.uint64), torch.zeros(2, DIM))})
    with ft._Using(rows):
        with pytest.raises(TypeError, match="'bag': ids must be an int64.*torch.float32"):
            bag(torch.tensor([[1.0, 2.0]]))
        with pytest.raises(fulcrum.FulcrumError, match="did not read before"):
            bag(torch.tensor([[1, 3]]))
        assert bag(torch.tensor([[1, 2]], dtype=torch.int32)).shape == (1, DIM)
    with pytest.raises(ValueError, match="mode must be"):
        ft.EmbeddingBag(DIM, mode="median")
    with pytest.raises(ValueError, match="two embedding modules name the table 'x'"):
        ft.sparse_modules(torch.nn.Sequential(ft.Embedding(2, table="x"), ft.Embedding(2, table="x")))
