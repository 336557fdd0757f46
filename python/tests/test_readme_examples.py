"""The README's "Your own model" workers: each is quoted there verbatim, and
each learns what it should through a real ps_server (y = 2x + 1; the
two-tower model's hidden clicks)."""

import os
import re
import subprocess
import sys

from conftest import HERE, _binary

ROOT = os.path.join(HERE, "..", "..")


def _read(relative):
    with open(os.path.join(ROOT, relative)) as f:
        return f.read()


def _fit(output):
    match = re.search(r"w=(-?[0-9.]+) b=(-?[0-9.]+)", output)
    assert match, output
    return float(match.group(1)), float(match.group(2))


def test_readme_quotes_both_workers_verbatim():
    readme = _read("README.md")
    for example in ("worker/examples/hello/hello_worker.cc", "python/examples/hello.py",
                    "python/examples/two_tower.py",
                    "worker/examples/hello/embedding_worker.cc"):
        assert _read(example).strip() in readme, example + " is not quoted in README.md"


def test_cpp_hello_worker_learns_the_line(start_server):
    server = start_server(_read("worker/examples/hello/hello.textproto"), ["--exit_when_done"])
    out = subprocess.run([_binary("worker/examples/hello/hello_worker"), server.address],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    w, b = _fit(out.stdout)
    assert abs(w - 2) < 0.05 and abs(b - 1) < 0.05, out.stdout
    assert server.process.wait(timeout=30) == 0, server.log()


def test_cpp_embedding_worker_learns_a_value_per_id(start_server):
    server = start_server(_read("worker/examples/hello/embedding.textproto"), ["--exit_when_done"])
    out = subprocess.run([_binary("worker/examples/hello/embedding_worker"), server.address],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    match = re.search(r"rows=(-?[0-9.]+) (-?[0-9.]+) (-?[0-9.]+)", out.stdout)
    assert match, out.stdout
    rows = [float(v) for v in match.groups()]
    assert all(abs(r - t) < 0.05 for r, t in zip(rows, [1, -2, 3])), out.stdout
    assert server.process.wait(timeout=30) == 0, server.log()


def test_python_hello_worker_learns_the_line(start_server, tmp_path):
    script = os.path.join(ROOT, "python", "examples", "hello.py")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
    job = tmp_path / "hello.json"
    subprocess.run([sys.executable, script, "--write_job=" + str(job)], check=True, env=env)
    server = start_server(job.read_text(), ["--exit_when_done"], suffix=".json")
    out = subprocess.run([sys.executable, script, server.address], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    w, b = _fit(out.stdout)
    assert abs(w - 2) < 0.05 and abs(b - 1) < 0.05, out.stdout
    assert server.process.wait(timeout=30) == 0, server.log()


def test_two_tower_embeddings_learn_the_hidden_clicks(start_server, tmp_path):
    script = os.path.join(ROOT, "python", "examples", "two_tower.py")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
    job = tmp_path / "two_tower.json"
    subprocess.run([sys.executable, script, "--write_job=" + str(job)], check=True, env=env)
    server = start_server(job.read_text(), ["--exit_when_done"], suffix=".json")
    out = subprocess.run([sys.executable, script, server.address], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert server.process.wait(timeout=30) == 0, server.log()
    match = re.search(r"^result: .*test_auc=([0-9.]+)", server.output(), re.M)
    assert match and float(match.group(1)) > 0.95, server.output()
