"""The load master's dead-man switch with real Locust processes (local, not pods).

A master started with ``--orphan-after`` quits once nobody has polled ``/harness/status``
for that long, and its workers exit with it: a harness killed mid-run leaves no load
writing to the tenants. While the harness polls, the master stays. The worker's tenant
points at a closed loopback port: what it writes does not matter here, only that it
runs and stops. Every process is started on free loopback ports and stopped by its pid.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadgen.distributed import EXIT_GRACE
from loadgen.runner import LOCUSTFILE

pytestmark = pytest.mark.integration

ORPHAN_AFTER = 2
#: Seconds beyond the window a process may take to notice and exit (a busy 2-core machine).
SLACK = 15.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Load:
    """A master (with the dead-man switch) and its workers, each a ``locust`` process."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.master_port = _free_port()
        self.web_port = _free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start_master(self, workers: int) -> subprocess.Popen[bytes]:
        args = (
            f"--master --master-bind-host 127.0.0.1 --master-bind-port {self.master_port} "
            f"--web-host 127.0.0.1 --web-port {self.web_port} --autostart --expect-workers {workers} "
            f"--users {workers} --spawn-rate {workers} --load-workers {workers} --tenant-count 1 "
            f"--orphan-after {ORPHAN_AFTER} --exit-code-on-error 0"
        )
        return self._start("master", *args.split())

    def start_worker(self, tenants: Path) -> subprocess.Popen[bytes]:
        args = f"--worker --master-host 127.0.0.1 --master-port {self.master_port}".split()
        return self._start("worker", *args, "--tenants-file", str(tenants))

    def _start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--run-dir", str(self.tmp / name)]
        argv += ["--run-id", "orphan-test", "--write-rate", "5", *args]
        log = (self.tmp / f"{name}.log").open("wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        self.procs[name] = proc
        return proc

    def status(self) -> dict[str, Any] | None:
        url = f"http://127.0.0.1:{self.web_port}/harness/status"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                body: dict[str, Any] = json.load(answer)
                return body
        except (urllib.error.URLError, OSError):
            return None

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"== {name}\n{self.log(name)[-1500:]}" for name in self.procs)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def load(tmp_path: Path) -> Iterator[_Load]:
    started = _Load(tmp_path)
    yield started
    started.stop_all()


def _tenants(tmp: Path) -> Path:
    secret = tmp / "secret"
    secret.write_text("not-used-here")
    port = _free_port()  # closed: nothing listens there
    entry = {"name": "tenant-0", "server": "127.0.0.1", "port": port, "database": "harness",
             "user": "harness", "password_file": str(secret)}  # fmt: skip
    path = tmp / "tenants.json"
    path.write_text(json.dumps({"tenants": [entry]}))
    return path


def _exit_within(proc: subprocess.Popen[bytes], timeout: float) -> float | None:
    """Seconds until ``proc`` exited, or None when it still runs after ``timeout``."""
    start = time.monotonic()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return time.monotonic() - start


def test_a_master_no_longer_polled_quits_and_its_worker_exits(tmp_path: Path, load: _Load) -> None:
    master = load.start_master(workers=1)
    worker = load.start_worker(_tenants(tmp_path))
    deadline = time.monotonic() + 60
    running = None
    while time.monotonic() < deadline:
        running = load.status()
        if running is not None and running["connected"] == 1 and running["state"] == "running":
            break
        time.sleep(0.3)
    else:
        pytest.fail(f"the worker did not connect within 60 s; last status {running}; {load.logs()}")
    # Polled as the harness polls (every 0.3 s) for twice the window: the master stays.
    until = time.monotonic() + 2 * ORPHAN_AFTER
    while time.monotonic() < until:
        assert load.status() is not None, load.logs()
        time.sleep(0.3)
    assert master.poll() is None and worker.poll() is None, load.logs()
    # The harness is gone: no more polls. The master quits by itself, and the worker with it.
    took = _exit_within(master, ORPHAN_AFTER + SLACK)
    assert took is not None, f"the master still runs {ORPHAN_AFTER + SLACK:g} s unpolled; {load.logs()}"
    assert took >= ORPHAN_AFTER - 0.5  # not before the window is over
    assert master.returncode == 1  # an orphaned master did not end cleanly
    assert _exit_within(worker, SLACK) is not None, f"the worker outlived its master; {load.logs()}"
    said = [line for line in load.log("master").splitlines() if "stopped polling /harness/status" in line]
    assert len(said) == 1 and "quitting, so the load does not run unattended" in said[0], load.logs()
    assert "Traceback" not in load.logs()


def test_a_master_never_polled_quits_too(tmp_path: Path, load: _Load) -> None:
    # The harness died between creating the master and its first poll: nobody will ever poll,
    # and no worker will come. Locust's --autostart keeps waiting for the expected worker in a
    # loop no quit ends, so the master ends itself after its grace.
    master = load.start_master(workers=1)
    took = _exit_within(master, ORPHAN_AFTER + EXIT_GRACE + SLACK)
    assert took is not None, f"the unpolled master still runs; {load.logs()}"
    assert master.returncode == 1, load.logs()
    assert "stopped polling /harness/status" in load.log("master"), load.logs()
