"""Distributed load on the lab, end to end: ``load_mode: cluster`` with a Locust master and
three workers as lab pods (``deploy/load/``), under the real ``chaos run``.

One lab (2 nodes, 6 tenants, no monitoring) serves the module:

- the pod-eviction experiment with 3 workers: the master's journal, mirrored into the run
  folder, holds every write exactly once, every worker's collection is complete, and the
  read-back finds every acknowledged write (none lost, none unexpected);
- one worker pod SIGKILLed mid-run: its two tenants are "cannot tell", named with the
  worker, the other four are analysed as usual, and the run is NO-GO;
- the master pod SIGKILLed mid-run: NO-GO, with the master named as the reason.

Each run leaves no load pod, Job, Service or Secret behind.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from lab.kubeclient import Kind
from loadgen.journal import read_journal
from tests.test_experiments import Lab, run_summary, running_lab

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORKERS = 3
TENANTS = 6
CLUSTER = {"HARNESS_LOAD_MODE": "cluster", "HARNESS_LOAD_WORKERS": str(WORKERS)}
LOAD_LABEL = "app.kubernetes.io/name=mssql-harness-load"
JOBS = Kind("batch", "v1", "jobs")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab(
        "test-cluster-load-", "--tenants", str(TENANTS), "--nodes", "2", "--no-monitoring"
    ) as the_lab:
        yield the_lab


def _load_pod_process(component: str) -> psutil.Process:
    """The process of a running load pod of ``component`` (master|worker), found by its pod name."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if "locust" not in " ".join(proc.info["cmdline"] or []):
                    continue
                name = proc.environ().get("LAB_POD_NAME", "")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            job = "-master-" if component == "master" else "-worker-"
            if name.startswith("harness-load-") and job in name:
                return proc
        time.sleep(0.2)
    raise AssertionError(f"no running load {component} pod")


def _running_run(lab: Lab, before: set[Path], timeout: float = 120) -> Path:
    """The new run folder, once its load is acknowledging writes (observations have begun)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        made = sorted(set(lab.runs.glob("*")) - before)
        if made and (made[-1] / "observations.jsonl").exists():
            return made[-1]
        time.sleep(0.2)
    raise AssertionError("the run never started observing")


def _no_load_left(lab: Lab) -> None:
    client = lab.client()
    deadline = time.monotonic() + 60
    while True:
        left = {
            kind: [o["metadata"]["name"] for o in client.list(kind, labels=LOAD_LABEL)]
            for kind in ("pods", "services", "secrets", JOBS)
        }
        if not any(left.values()):
            return
        assert time.monotonic() < deadline, f"load objects left behind: {left}"
        time.sleep(0.5)


def _chaos_with(lab: Lab, kill: str, env: dict[str, str]) -> tuple[str, Path]:
    """``chaos run`` pod-eviction in cluster mode, SIGKILLing one load pod (``kill``) mid-run."""
    before = set(lab.runs.glob("*"))
    proc = lab.start("pod-eviction", "--rollback-strategy", "always", env={**CLUSTER, **env})
    try:
        _running_run(lab, before)
        time.sleep(1.0)
        victim = _load_pod_process(kill)
        os.kill(victim.pid, signal.SIGKILL)
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    made = sorted(set(lab.runs.glob("*")) - before)
    assert made, output[-3000:]
    return output, made[-1]


def test_three_worker_pods_write_every_tenant_and_every_record_arrives_once(lab: Lab) -> None:
    done, run = lab.chaos("pod-eviction", env={**CLUSTER, "HARNESS_TARGET_TENANT": "tenant-2"})
    assert done.returncode == 0, done.stderr[-3000:]
    summary = run_summary(run)
    load = json.loads((run / "run.json").read_text())["load"]
    assert load["mode"] == "cluster" and load["workers"] == WORKERS, load
    collection = load["collection"]
    assert collection["complete"] is True, collection
    assert sorted(w["index"] for w in collection["workers"]) == list(range(WORKERS))
    assert all(w["complete"] and not w["missing"] for w in collection["workers"]), collection
    # Six tenants over three workers: two each, and every tenant written by exactly one worker.
    owned = collections.Counter(t for w in collection["workers"] for t in w["tenants"])
    assert sorted(owned) == [f"tenant-{i}" for i in range(TENANTS)] and set(owned.values()) == {1}

    writes, _ = read_journal(run / "journal")
    keys = [(w.tenant, w.writer, w.seq) for w in writes]
    assert len(keys) == len(set(keys)), "a record arrived twice"
    assert sum(w["records"] for w in collection["workers"]) == len(writes)
    assert {w.tenant for w in writes} == set(owned)
    for total in summary["totals"].values():
        assert total["lost"] == 0 and total["unexpected"] == 0, total
        assert total["acked"] > 0 and total["journal_incomplete"] is None, total
    assert summary["verdict"] == "GO", summary["violations"]
    _no_load_left(lab)


def test_a_worker_killed_mid_run_leaves_its_tenants_cannot_tell_and_the_run_no_go(lab: Lab) -> None:
    output, run = _chaos_with(lab, "worker", {"HARNESS_OBSERVE_SECONDS": "5"})
    summary = run_summary(run)
    assert summary["verdict"] == "NO-GO", output[-3000:]
    collection = json.loads((run / "run.json").read_text())["load"]["collection"]
    dead = [w for w in collection["workers"] if not w["complete"]]
    assert len(dead) == 1, collection
    (worker,) = dead
    violations = "\n".join(summary["violations"])
    assert f"load worker {worker['index']}" in violations, violations
    for total in summary["totals"].values():
        if total["tenant"] in worker["tenants"]:
            assert total["lost"] is None and total["journal_incomplete"], total
        else:
            assert total["lost"] == 0 and total["journal_incomplete"] is None, total
    _no_load_left(lab)


def test_the_master_killed_mid_run_is_no_go_with_the_reason(lab: Lab) -> None:
    output, run = _chaos_with(lab, "master", {"HARNESS_OBSERVE_SECONDS": "5"})
    summary = run_summary(run)
    assert summary["verdict"] == "NO-GO", output[-3000:]
    violations = "\n".join(summary["violations"])
    assert "master was lost" in violations, violations
    _no_load_left(lab)


def test_bad_load_settings_start_nothing(lab: Lab) -> None:
    for env, needle in (
        ({"HARNESS_LOAD_WORKERS": "0"}, "load_workers"),
        ({"HARNESS_LOAD_WORKERS": "40"}, "load_workers_max"),
        ({"HARNESS_LOAD_NAMESPACE": "kube-system"}, "kube-system"),
    ):
        done, run = lab.chaos("pod-eviction", env={**CLUSTER, **env})
        assert run is None, f"{env}: a run folder was left"
        assert needle in done.stdout + done.stderr, (env, (done.stdout + done.stderr)[-2000:])
    _no_load_left(lab)
