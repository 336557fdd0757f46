"""Fixtures: a real ps_server process on 127.0.0.1, an ephemeral port."""

import os
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))


def _binary(relative):
    """A Bazel-built binary: from the test's runfiles, else the checkout's
    bazel-bin."""
    for root in (os.environ.get("TEST_SRCDIR", "") + "/fulcrum", os.path.join(HERE, "..", "..", "bazel-bin")):
        path = os.path.join(root, relative)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{relative}: build it with bazel first")


class Server:
    """ps_server started with a job file (none: `flags` say the job, e.g.
    --model); `address` once it listens."""

    def __init__(self, job_text, flags=(), suffix=".textproto"):
        self.dir = tempfile.mkdtemp(prefix="fulcrum_py_", dir=os.environ.get("TEST_TMPDIR"))
        job_flags = []
        if job_text is not None:
            self.job_file = os.path.join(self.dir, "job" + suffix)
            with open(self.job_file, "w") as f:
                f.write(job_text)
            job_flags = ["--job=" + self.job_file]
        port_file = os.path.join(self.dir, "port")
        self.out = open(os.path.join(self.dir, "out"), "w")
        self.err = open(os.path.join(self.dir, "err"), "w")
        self.process = subprocess.Popen(
            [_binary("server/ps_server"), "--host=127.0.0.1", "--port=0",
             "--port_file=" + port_file, "--status_interval=0", *job_flags, *flags],
            stdout=self.out, stderr=self.err)
        deadline = time.time() + 30
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if self.process.poll() is not None or time.time() > deadline:
                raise RuntimeError("ps_server did not start: " + self.log())
            time.sleep(0.02)
        self.address = "127.0.0.1:" + open(port_file).read().strip()

    def log(self):
        return open(os.path.join(self.dir, "err")).read()

    def output(self):
        return open(os.path.join(self.dir, "out")).read()

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture
def start_server():
    servers = []

    def start(job_text, flags=(), suffix=".textproto"):
        server = Server(job_text, flags, suffix)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
