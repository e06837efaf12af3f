"""A real Locust master and two workers (local processes, not pods) writing to PostgreSQL.

The workers ship their journals over Locust's messaging; the master's ``/harness/``
routes report completeness. Every process is started on free loopback ports and
stopped by its pid.
"""

from __future__ import annotations

import collections
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

from lab.engine import Engine
from loadgen.journal import read_journal
from loadgen.runner import LOCUSTFILE
from tests.conftest import write_tenants

pytestmark = pytest.mark.integration

RUN_ID = "dist-test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Cluster:
    """One master and its workers, each a ``locust`` process with its own run folder."""

    def __init__(self, tmp_path: Path, tenants: Path, n_tenants: int, workers: int) -> None:
        self.tmp = tmp_path
        self.tenants = tenants
        self.master_port = _free_port()
        self.web_port = _free_port()
        self.workers: list[subprocess.Popen[bytes]] = []
        users = workers * -(-n_tenants // workers)
        self.master = self._start(
            "master",
            *f"--master --master-bind-host 127.0.0.1 --master-bind-port {self.master_port} "
            f"--web-host 127.0.0.1 --web-port {self.web_port} --autostart --expect-workers {workers} "
            f"--users {users} --spawn-rate {users} --load-workers {workers} --tenant-count {n_tenants} "
            "--exit-code-on-error 0".split(),
        )
        for i in range(workers):
            worker = f"--worker --master-host 127.0.0.1 --master-port {self.master_port}".split()
            self.workers.append(self._start(f"worker-{i}", *worker, "--tenants-file", str(tenants)))

    def _start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--run-dir", str(self.tmp / name)]
        argv += ["--run-id", RUN_ID, "--write-rate", "20", *args]
        log = (self.tmp / f"{name}.log").open("wb")
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)

    def url(self, route: str) -> str:
        return f"http://127.0.0.1:{self.web_port}/harness/{route}"

    def status(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(self.url("status"), timeout=2) as answer:
                body: dict[str, Any] = json.load(answer)
                return body
        except (urllib.error.URLError, OSError):
            return None

    def post(self, route: str) -> int:
        request = urllib.request.Request(self.url(route), method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)

    def wait(self, what: str, check: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.status()
            if last is not None and check(last):
                return last
            time.sleep(0.2)
        raise AssertionError(f"{what} not reached within {timeout} s; last status {last}; {self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-1500:]}" for p in sorted(self.tmp.glob("*.log")))

    def stop_all(self) -> None:
        for proc in [self.master, *self.workers]:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[_Cluster] = []

    def make(tenants: Path, n_tenants: int, workers: int) -> _Cluster:
        cluster = _Cluster(tmp_path, tenants, n_tenants, workers)
        started.append(cluster)
        return cluster

    yield make
    for cluster in started:
        cluster.stop_all()


def _write_lines(folder: Path) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for path in folder.glob("*.jsonl"):
        counts.update(line for line in path.read_text().splitlines() if line.startswith('{"kind":"write"'))
    return counts


def _running(status: dict[str, Any]) -> bool:
    return bool(status["connected"] == 2 and status["state"] == "running")


def test_workers_ship_every_record_exactly_once(engine: Engine, tmp_path: Path, cluster_factory: Any) -> None:
    tenants = write_tenants(tmp_path / "tenants.json", engine.create_many(2))
    cluster = cluster_factory(tenants, 2, 2)
    cluster.wait("two workers running", _running, 60)
    time.sleep(5)
    assert cluster.post("stop") == 202
    status = cluster.wait("complete collection", lambda s: s["complete"], 40)
    assert status["expected_workers"] == 2 and len(status["files"]) == 2
    collection = status["collection"]
    assert [w["index"] for w in collection["workers"]] == [0, 1]
    assert all(w["complete"] and w["reason"] is None for w in collection["workers"])

    master = _write_lines(tmp_path / "master" / "journal")
    spools = _write_lines(tmp_path / "worker-0" / "journal") + _write_lines(tmp_path / "worker-1" / "journal")
    assert master == spools and set(master.values()) == {1}  # every record, exactly once
    assert sum(w["records"] for w in collection["workers"]) == sum(master.values()) > 100

    writes, _ = read_journal(tmp_path / "master" / "journal")
    local = [w for i in (0, 1) for w in read_journal(tmp_path / f"worker-{i}" / "journal")[0]]
    assert len(writes) == len(local)
    assert collections.Counter(w.outcome for w in writes) == collections.Counter(w.outcome for w in local)
    assert {(w.writer, w.tenant) for w in writes} == {(0, "tenant-0"), (1, "tenant-1")}
    by_worker = {w["index"]: w["final"]["writers"] for w in collection["workers"]}
    assert by_worker == {0: [0], 1: [1]}  # writer w + K*j on worker w

    assert cluster.post("quit") == 202
    assert cluster.master.wait(timeout=30) == 0, cluster.logs()  # the harness's quit is a clean end
    for worker in cluster.workers:
        assert worker.wait(timeout=30) is not None
    assert "Traceback" not in cluster.logs()


def test_a_killed_worker_is_named_incomplete(engine: Engine, tmp_path: Path, cluster_factory: Any) -> None:
    tenants = write_tenants(tmp_path / "tenants.json", engine.create_many(2))
    cluster = cluster_factory(tenants, 2, 2)
    cluster.wait("two workers running", _running, 60)
    time.sleep(1.0)
    victim = cluster.workers[0]
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    time.sleep(1.0)
    assert cluster.post("stop") == 202

    def survivor_final(status: dict[str, Any]) -> bool:
        return sum(1 for w in status["collection"]["workers"] if w["final"] is not None) >= 1

    status = cluster.wait("the surviving worker's final", survivor_final, 90)
    assert not status["complete"]
    entries = status["collection"]["workers"]
    dead = [w for w in entries if not w["complete"]]
    alive = [w for w in entries if w["complete"]]
    assert len(dead) == 1 and len(alive) == 1, entries
    assert dead[0]["worker"] is not None  # named beside the reason, which says what is missing
    assert "no final message" in dead[0]["reason"]
    # The survivor kept to its own writer: the dead worker's users, re-dispatched to it, idle.
    assert alive[0]["final"]["writers"] == [alive[0]["index"]]
    writers = {w.writer for w in read_journal(tmp_path / "master" / "journal")[0]}
    assert writers <= {0, 1}
