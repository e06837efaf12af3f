"""The engine against real PostgreSQL servers: signals, restarts, data that survives."""

from __future__ import annotations

import contextlib
import os
import time

import psutil
import pyodbc
import pytest

from lab import processes
from lab.engine import Engine
from lab.errors import LabError
from lab.paths import pg_bindir

pytestmark = pytest.mark.integration


def _connect(engine: Engine, name: str, timeout: int = 2) -> pyodbc.Connection:
    inst = engine.instance(name)
    conn_str = (
        f"Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port={inst.port};Database=harness;"
        f"Uid=harness;Pwd={inst.password_file.read_text()};"
    )
    return pyodbc.connect(conn_str, autocommit=True, timeout=timeout)


def test_create_is_idempotent_and_listed(engine: Engine) -> None:
    first = engine.create("t0")
    again = engine.create("t0")
    assert first == again
    assert engine.status("t0") == "running"
    assert [i.name for i in engine.instances()] == ["t0"]
    assert oct(first.password_file.stat().st_mode & 0o777) == "0o600"


def test_kill_removes_every_process_and_keeps_committed_rows(engine: Engine) -> None:
    engine.create("t0")
    conn = _connect(engine, "t0")
    conn.execute("CREATE TABLE k (id int)")
    conn.execute("INSERT INTO k VALUES (1), (2), (3)")
    extra = [_connect(engine, "t0") for _ in range(3)]  # three more backends in the tree
    pid = engine.pid("t0")
    assert pid is not None
    tree = processes.process_tree(pid)
    assert len(tree) >= 5
    engine.kill("t0")
    assert engine.status("t0") == "stopped"
    assert processes.wait_gone(tree, 2.0) == []
    with pytest.raises(pyodbc.Error):
        conn.execute("SELECT 1").fetchone()
    for c in [conn, *extra]:
        with contextlib.suppress(pyodbc.Error):
            c.close()
    waited = engine.restart("t0")
    assert waited < 10
    assert _connect(engine, "t0").execute("SELECT count(*) FROM k").fetchone()[0] == 3


def test_freeze_blocks_clients_and_thaw_releases_them(engine: Engine) -> None:
    engine.create("t0")
    conn = _connect(engine, "t0")
    engine.freeze("t0")
    assert engine.status("t0") == "frozen"
    pid = engine.pid("t0")
    assert pid is not None and psutil.Process(pid).status() == psutil.STATUS_STOPPED
    began = time.monotonic()
    with pytest.raises(pyodbc.Error):
        _connect(engine, "t0", timeout=1)  # libpq's minimum connect timeout is 2 s
    assert 1.5 < time.monotonic() - began < 5
    engine.thaw("t0")
    assert conn.execute("SELECT 42").fetchone()[0] == 42
    assert engine.status("t0") == "running"


def test_graceful_stop_then_start(engine: Engine) -> None:
    engine.create("t0")
    pid = engine.pid("t0")
    assert pid is not None
    engine.stop("t0")
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    engine.start("t0")
    assert _connect(engine, "t0").execute("SELECT 1").fetchone()[0] == 1


def test_close_stops_everything_it_started(engine_root) -> None:
    eng = Engine(engine_root / "e2")
    eng.create_many(2)
    pids = [eng.pid(f"tenant-{i}") for i in range(2)]
    trees = [processes.process_tree(p) for p in pids if p]
    eng.close()
    for tree in trees:
        assert processes.wait_gone(tree, 2.0) == []


def test_errors_name_the_problem(engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    with pytest.raises(LabError, match="no lab instance named 'nope'"):
        engine.start("nope")
    with pytest.raises(LabError, match="at least 1"):
        engine.create_many(0)
    monkeypatch.setenv("HARNESS_PG_BINDIR", str(tmp_path))
    with pytest.raises(LabError, match="holds no `postgres` program"):
        pg_bindir()


def test_reap_adopted_collects_orphaned_zombies() -> None:
    assert processes.become_subreaper()
    # A child that forks a grandchild named like a server and exits: the grandchild is adopted.
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        if os.fork() == 0:
            os.execvp("bash", ["postgres", "-c", "exit 0"])
        os._exit(0)
    os.waitpid(pid, 0)
    deadline = time.monotonic() + 5
    reaped = 0
    while time.monotonic() < deadline and not reaped:
        reaped = processes.reap_adopted(names=("bash", "postgres"))
        time.sleep(0.05)
    assert reaped == 1
