"""Liveness is measured, not assumed: the journal tail, stale tenants, a dead load, the control.

Unit tests on journals written with the real JournalWriter, plus the real
``python -m loadgen run`` against a local PostgreSQL server for the exit codes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from lab.engine import Engine
from loadgen.journal import JournalTail, JournalWriter, Write
from orchestration.configuration import check_configuration
from orchestration.errors import OrchestrationError
from probes.errors import ProbeError
from probes.k8s import probes as k8s_probes
from probes.live import LiveJournal, freshness_limit
from reports.build import build
from reports.errors import ReportError
from tests.conftest import write_tenants
from tests.test_reports import _run_folder


def _write(tenant: str, seq: int, end: float, outcome: str = "ok") -> Write:
    return Write(tenant, 0, seq, end - 0.01, end, 0.01, outcome)  # type: ignore[arg-type]


def test_the_tail_reads_only_what_was_appended_and_waits_for_torn_lines(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path / "journal", "r1")
    tail = JournalTail(tmp_path / "journal")
    writer.write(_write("a", 1, 10.0))
    assert [w.seq for w in tail.poll()[0]] == [1]
    assert tail.poll() == ([], [])
    writer.write(_write("a", 2, 11.0))
    with writer.path.open("a") as handle:  # a line being written: not complete yet
        handle.write('{"kind":"write","tenant":"a"')
    assert [w.seq for w in tail.poll()[0]] == [2]
    with writer.path.open("a") as handle:
        handle.write(',"writer":0,"seq":3,"start":11.9,"end":12.0,"latency":0.1,"outcome":"ok"}\n')
    assert [w.seq for w in tail.poll()[0]] == [3]
    other = JournalWriter(tmp_path / "journal", "r1")  # a second load process appears
    other.path = tmp_path / "journal" / "other.jsonl"
    (tmp_path / "journal" / "other.jsonl").write_text(
        json.dumps({"kind": "write", **_write("b", 1, 13.0).__dict__}) + "\n"
    )
    assert [w.tenant for w in tail.poll()[0]] == ["b"]
    writer.close()
    other.close()


def test_a_tenant_with_old_acks_is_stale_whatever_its_success_share(tmp_path: Path) -> None:
    now = 1000.0
    writer = JournalWriter(tmp_path / "journal", "r1")
    for i in range(200):  # tenant a: 20/s up to now
        writer.write(_write("a", i, now - 10 + i * 0.05))
    for i in range(5):  # tenant b: five good writes, the newest 8 s ago
        writer.write(_write("b", i, now - 9 + i * 0.2))
    writer.close()
    live = LiveJournal(tmp_path)
    health = {h.tenant: h for h in live.health(["a", "b", "c"], 10.0, 20.0, now=now)}
    assert health["a"].stale is None and health["a"].success_rate == 1.0
    assert health["b"].stale and "old" in health["b"].stale and health["b"].success_rate == 0.0
    assert health["c"].stale == "no acknowledged write yet"
    assert freshness_limit(20.0) == 1.0 and freshness_limit(0.5) == 4.0


def test_a_tenant_writing_at_half_its_rate_is_stale(tmp_path: Path) -> None:
    now = 1000.0
    writer = JournalWriter(tmp_path / "journal", "r1")
    for i in range(40):  # 4/s for 10 s, offered 20/s
        writer.write(_write("a", i, now - 10 + i * 0.25))
    writer.close()
    (health,) = LiveJournal(tmp_path).health(["a"], 10.0, 20.0, now=now + 0.1)
    assert health.stale and "expected about" in health.stale


def test_write_success_rate_is_zero_when_one_tenant_went_quiet(tmp_path: Path, monkeypatch) -> None:
    run = tmp_path / "run"
    now = time.time()
    writer = JournalWriter(run / "journal", "r1")
    for i in range(100):
        writer.write(_write("a", i, now - 5 + i * 0.05))
        writer.write(_write("b", i, now - 15 + i * 0.05))  # stopped 10 s ago
    writer.close()
    (run / "run.json").write_text(json.dumps({"tenants": ["a", "b"], "write_rate": 20}))
    monkeypatch.setenv("HARNESS_RUN_DIR", str(run))
    assert k8s_probes.write_success_rate(window_seconds=10.0) == 0.0
    (run / "run.json").write_text(json.dumps({"tenants": ["a"], "write_rate": 20}))
    k8s_probes.live_journal(run).refresh()
    monkeypatch.setattr(k8s_probes, "active_load", lambda: None)
    assert k8s_probes.write_success_rate(window_seconds=4.0) == 1.0


def test_a_dead_load_fails_the_steady_state_probe(tmp_path: Path, monkeypatch) -> None:
    class Dead:
        def problem(self) -> str:
            return "the load process (pid 1) died with signal SIGKILL: see locust.log"

    (tmp_path / "run.json").write_text(json.dumps({"tenants": ["a"], "write_rate": 20}))
    monkeypatch.setenv("HARNESS_RUN_DIR", str(tmp_path))
    monkeypatch.setattr(k8s_probes, "active_load", Dead)
    with pytest.raises(ProbeError, match="died with signal SIGKILL"):
        k8s_probes.write_success_rate()


@pytest.mark.parametrize(
    ("configuration", "needle"),
    [
        (
            {"allowed_namespaces": 5},
            "'allowed_namespaces' must be a comma-separated string or a list of names",
        ),
        ({"write_rate": "many"}, "'write_rate' must be a number above 0, got 'many' (str)"),
        ({"stability_seconds": -1}, "'stability_seconds' must be a number at least 0"),
        ({"allow_node_restart": "perhaps"}, "'allow_node_restart' must be a boolean"),
        ({"dialect": "oracle"}, "'dialect' must be one of mssql, postgresql"),
        ({"namespace": ["a"]}, "'namespace' must be a string"),
        ({"down_seconds": "abc"}, "'down_seconds' must be a number at least 0"),  # node-restart's key
        ({"rpo_objective_seconds": -1}, "'rpo_objective_seconds' must be a number at least 0"),
    ],
)
def test_configuration_types_are_checked_once_with_the_key_named(configuration: dict, needle: str) -> None:
    with pytest.raises(OrchestrationError) as caught:
        check_configuration(configuration)
    assert needle in str(caught.value)
    assert "\n" not in str(caught.value)


def test_configuration_values_come_back_typed() -> None:
    typed = check_configuration(
        {"allowed_namespaces": "a, b", "write_rate": "20", "allow_node_restart": "true", "unknown": object()}
    )
    assert typed == {"allowed_namespaces": ["a", "b"], "write_rate": 20.0, "allow_node_restart": True}


def test_a_journal_from_another_run_is_refused_naming_both(tmp_path: Path) -> None:
    run = _run_folder(tmp_path, lose=0)
    meta = json.loads((run / "run.json").read_text())
    meta["run_id"] = "run-other"
    (run / "run.json").write_text(json.dumps(meta))
    with pytest.raises(ReportError) as caught:
        build(run)
    assert "'run-other'" in str(caught.value) and "'run-b'" in str(caught.value)
    assert not (run / "summary.json").exists()


def _loadgen_run(engine: Engine, tmp_path: Path, duration: int) -> subprocess.Popen[str]:
    """``python -m loadgen run`` on one fresh tenant, returned once its journal has records."""
    tenants = write_tenants(tmp_path / "tenants.json", engine.create_many(1))
    engine.start("tenant-0")
    argv = [sys.executable, "-m", "loadgen", "run", "--tenants-file", str(tenants)]
    argv += ["--duration", str(duration), "--run-dir", str(tmp_path / "run")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not list((tmp_path / "run" / "journal").glob("*.jsonl")):
        time.sleep(0.2)
    time.sleep(1.0)
    return proc


def kill_locust_child(parent: int) -> None:
    """SIGKILL the Locust process started by ``parent`` (a load that dies under the harness)."""
    (locust,) = [c for c in psutil.Process(parent).children() if "locust" in " ".join(c.cmdline())]
    os.kill(locust.pid, signal.SIGKILL)


@pytest.mark.integration
def test_loadgen_run_exits_3_with_one_line_when_locust_dies(engine: Engine, tmp_path: Path) -> None:
    proc = _loadgen_run(engine, tmp_path, 60)
    try:
        kill_locust_child(proc.pid)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "died with signal SIGKILL" in lines[0], err


@pytest.mark.integration
def test_loadgen_run_exits_0_when_writes_fail_during_a_fault(engine: Engine, tmp_path: Path) -> None:
    proc = _loadgen_run(engine, tmp_path, 5)
    engine.kill("tenant-0")  # every write from now on fails: data, not an error
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    journal = (tmp_path / "run" / "journal").glob("*.jsonl")
    outcomes = {json.loads(line).get("outcome") for path in journal for line in path.read_text().splitlines()}
    assert {"ok", "fail"} <= outcomes or {"ok", "info"} <= outcomes


def test_secrets_folders_are_private_and_swept_when_their_owner_is_gone(tmp_path: Path) -> None:
    from loadgen.secretsdir import OWNER_FILE, make_secrets_dir, sweep_stale_secrets

    mine = make_secrets_dir(tmp_path)
    assert mine.stat().st_mode & 0o777 == 0o700
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    orphan = make_secrets_dir(tmp_path)
    (orphan / OWNER_FILE).write_text(dead.stdout.strip())  # its chaos run was SIGKILLed
    (orphan / "tenant-0").write_text("secret")
    legacy = tmp_path / "harness-secrets-old"
    legacy.mkdir()
    assert sorted(sweep_stale_secrets(tmp_path)) == sorted([orphan, legacy])
    assert mine.exists() and not orphan.exists() and not legacy.exists()


def test_a_failed_discovery_leaves_no_secrets_folder(tmp_path: Path, monkeypatch) -> None:
    """A tenant without an endpoint aborts discovery after the folder was made: it must go."""
    import tempfile

    from common.crd import CrdCoordinates
    from loadgen import discovery
    from loadgen.errors import LoadgenError

    class Custom:
        def list_namespaced_custom_object(self, *args, **kwargs):
            return {"items": [{"metadata": {"name": "t-0"}, "status": {}}]}

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(discovery, "_api", lambda kubeconfig: None)
    monkeypatch.setattr("kubernetes.client.CustomObjectsApi", lambda api: Custom())
    monkeypatch.setattr("kubernetes.client.CoreV1Api", lambda api: object())
    with pytest.raises(LoadgenError, match=r"has no status\.endpoint"):
        discovery.discover_tenants("tenants", CrdCoordinates())
    assert not list(tmp_path.glob("harness-secrets-*"))
