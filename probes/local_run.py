"""A complete measured run against local engine instances (today's ``make demo``).

Starts N local tenants, runs the Locust load in its own process, injects a freeze of
one tenant and a SIGKILL (with immediate restart) of another, reads every row back,
and hands the run folder to ``python -m reports build``. The run folder format is the
one the Kubernetes experiments write too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lab.engine import Engine
from lab.paths import lab_dir
from loadgen.journal import read_journal
from loadgen.runner import LoadRun, default_run_id, preflight
from loadgen.tenants import load_tenants
from probes.engine_faults import freeze_tenant, kill_tenant
from probes.errors import ProbeError
from probes.readback import read_back, save_readback

__all__ = ["LocalRunPlan", "run_local"]


@dataclass(frozen=True)
class LocalRunPlan:
    """What to do: tenants, load, and when each fault happens (seconds after load is up)."""

    tenants: int = 3
    duration: float = 60.0
    rate: float = 20.0
    freeze_tenant: int | None = 1
    freeze_at: float = 15.0
    freeze_seconds: float = 5.0
    kill_tenant: int | None = 2
    kill_at: float = 32.0
    stability: float = 5.0
    rto_objective: float = 60.0

    def check(self) -> None:
        if self.tenants < 1:
            raise ProbeError(f"--tenants must be at least 1, got {self.tenants}")
        if self.rate <= 0:
            raise ProbeError(f"--rate must be positive, got {self.rate:g}")
        if self.duration <= 0:
            raise ProbeError(f"--duration must be positive, got {self.duration:g}")
        for which, index, at in (
            ("freeze", self.freeze_tenant, self.freeze_at),
            ("kill", self.kill_tenant, self.kill_at),
        ):
            if index is not None and not 0 <= index < self.tenants:
                raise ProbeError(f"--{which}-tenant {index} is not one of 0..{self.tenants - 1}")
            if index is not None and at >= self.duration:
                raise ProbeError(
                    f"--{which}-at {at:g}s is not before the end of the run ({self.duration:g}s)"
                )


def _sleep_until(mark: float) -> None:
    delay = mark - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def run_local(plan: LocalRunPlan, runs: Path, engine_root: Path | None = None, report: bool = True) -> Path:
    """Execute ``plan``; returns the run folder (with ``report.md`` when ``report``)."""
    plan.check()
    run_id = default_run_id()
    run_dir = runs / run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    fault_log = run_dir / "faults.jsonl"
    with Engine(engine_root or lab_dir() / "engine") as engine:
        instances = engine.create_many(plan.tenants)
        for inst in instances:
            engine.start(inst.name)
        tenants_file = run_dir / "tenants.json"
        tenants_file.write_text(json.dumps({"tenants": [i.tenant() for i in instances]}, indent=2))
        tenants = load_tenants(tenants_file)
        preflight(tenants)
        names = [t.name for t in tenants]
        load = LoadRun(tenants_file, run_dir, run_id, users=len(tenants), rate=plan.rate)
        started_at = time.time()
        load.start()
        try:
            load.wait_acks(names, stability=min(plan.stability, 2.0))
            zero = time.monotonic()
            schedule = sorted(
                (at, kind, index)
                for kind, index, at in (
                    ("freeze", plan.freeze_tenant, plan.freeze_at),
                    ("kill", plan.kill_tenant, plan.kill_at),
                )
                if index is not None
            )
            for at, kind, index in schedule:
                _sleep_until(zero + at)
                target = instances[index].name
                if kind == "freeze":
                    freeze_tenant(engine, target, plan.freeze_seconds, fault_log)
                else:
                    kill_tenant(engine, target, fault_log)
            _sleep_until(zero + plan.duration)
        finally:
            load.stop()
        ended_at = time.time()
        save_readback(run_dir / "readback.json", read_back(tenants, run_id))
    writes, _ = read_journal(run_dir / "journal")
    (run_dir / "run.json").write_text(
        json.dumps(
            {
                "run_id": run_id,
                "target": {
                    "kind": "local",
                    "api_server": None,
                    "kubernetes_version": None,
                    "nodes": None,
                    "operator_image": None,
                },
                "tenants": names,
                "objective": {"rto_seconds": plan.rto_objective, "rpo_seconds": 0.0},
                "stability_seconds": plan.stability,
                "started_at": started_at,
                "ended_at": ended_at,
                "write_rate": plan.rate,
                "attempts": len(writes),
                "load": load.life(),
            },
            indent=2,
        )
    )
    if report:
        done = subprocess.run([sys.executable, "-m", "reports", "build", str(run_dir)], check=False)
        if done.returncode != 0:
            raise ProbeError(
                f"building the report failed (exit {done.returncode}); the run data is in {run_dir}"
            )
    return run_dir
