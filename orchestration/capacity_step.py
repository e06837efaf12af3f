"""One step of a capacity sweep: a full measured ``chaos run``, then its pass/fail judgement.

A step is an ordinary run of a fault experiment (``experiments/<fault>.json``) under the
Chaos Toolkit control, against exactly the sweep's instances (``--var tenants=...``),
with its own run folder, journal, summary and report: every point on the capacity curve
can be opened and checked like any other run. While it runs, node CPU and memory are
sampled (:mod:`probes.resources`).

A step fails when any of these holds, and each reason is kept in words:

- a tenant's RTO is over the objective, or unknown (it never recovered; cannot tell);
- any acknowledged write was lost, or losses are unknown (nothing could be read back);
- p99 write latency (from each write's scheduled time) is over the limit, or unknown;
- efficiency (acknowledged writes/s ÷ offered writes/s) is under the minimum, or unknown;
- the load generator was saturated (its one process near a whole core): the limit found
  could be the harness's own, so the step cannot tell;
- the run's own verdict is NO-GO for any other reason (a dead load, a measurement gap,
  a fault that did not complete): a step the harness cannot trust is not capacity.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.errors import OrchestrationError
from probes.observations import read_observations
from probes.resources import NodeSampler, summarize
from reports.errors import ReportError
from reports.jsonfile import optional_object

__all__ = ["StepPlan", "judge", "run_step", "step_record"]

Say = Callable[[str], None]
#: A Locust process is one interpreter: past this much CPU it, not the target, sets the pace.
SATURATED_LOAD_CORES = 0.9


@dataclass(frozen=True)
class StepPlan:
    """What one step runs."""

    index: int
    tenants: list[str]
    write_rate: float
    trial: int
    phase: str
    experiment: Path
    var_files: Sequence[Path]
    variables: Mapping[str, str]
    folder: Path  # the step's runs_dir: its run folder is the one folder chaos creates in it


def _chaos() -> str:
    here = Path(sys.executable).parent / "chaos"
    return str(here) if here.exists() else "chaos"


def chaos_command(plan: StepPlan) -> list[str]:
    """The ``chaos run`` command line of a step."""
    target = plan.tenants[plan.index % len(plan.tenants)]
    argv = [
        _chaos(),
        "--no-version-check",
        "--log-file",
        str(plan.folder / "chaostoolkit.log"),
        "run",
        "--rollback-strategy",
        "always",
        "--journal-path",
        str(plan.folder / "chaos-journal.json"),
    ]
    for var_file in plan.var_files:
        argv += ["--var-file", str(var_file)]
    values = {
        **plan.variables,
        "tenants": ",".join(plan.tenants),
        "target_tenant": target,
        "write_rate:float": f"{plan.write_rate:g}",
        "runs_dir": str(plan.folder),
    }
    for key, value in values.items():
        argv += ["--var", f"{key}={value}"]
    return [*argv, str(plan.experiment)]


def run_step(plan: StepPlan, target_kind: str, say: Say = print) -> tuple[Path | None, dict[str, Any]]:
    """Run the step's chaos experiment with node sampling; ``(run folder or None, facts)``."""
    plan.folder.mkdir(parents=True, exist_ok=True)
    samples = plan.folder / "nodes.jsonl"
    began = time.monotonic()
    with NodeSampler(target_kind, samples):
        proc = subprocess.Popen(
            chaos_command(plan),
            stdin=subprocess.DEVNULL,
            stdout=(plan.folder / "chaos.out").open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # a terminal's Ctrl-C reaches chaos once, forwarded below
        )
        try:
            code = proc.wait()
        except BaseException:
            # Interrupted: chaos stops its experiment, runs the rollbacks and the report; wait for it.
            # Whatever happens meanwhile (a second Ctrl-C, a timeout), it does not outlive us.
            try:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=120)
            finally:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            raise
    runs = [p for p in plan.folder.iterdir() if p.is_dir() and (p / "run.json").exists()]
    facts: dict[str, Any] = {"chaos_exit_code": code, "duration_seconds": round(time.monotonic() - began, 3)}
    facts["nodes"], facts["nodes_unavailable"] = _nodes(samples)
    if len(runs) != 1:
        tail = (plan.folder / "chaos.out").read_text(errors="replace").strip().splitlines()[-1:] or [""]
        say(f"capacity: step {plan.index + 1} made no run folder (chaos exit {code}): {tail[0][:200]}")
        return None, facts
    return runs[0], facts


def _nodes(samples: Path) -> tuple[dict[str, Any], str | None]:
    if not samples.exists():
        return {}, "no node sample was taken during the step"
    result = summarize(samples)
    nodes = {
        name: {k: node.get(k) for k in ("cpu_cores_mean", "cpu_cores_max", "memory_bytes_max")}
        for name, node in (result.get("nodes") or {}).items()
    }
    return nodes, result.get("unavailable")


def _percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (no interpolation: a value that was measured)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; empty when it is missing or broken (every value then unknown)."""
    try:
        return optional_object(path, "") or {}
    except ReportError:
        return {}


def step_record(run_dir: Path | None, tenants: list[str]) -> dict[str, Any]:
    """The measured facts of a step, from its run folder (None values: unknown)."""
    summary = _object(run_dir / "summary.json") if run_dir else {}
    per_tenant: dict[str, float | None] = {t: None for t in tenants}
    seen: set[str] = set()
    for fault in summary.get("faults") or []:
        for result in fault.get("results") or []:
            name = result.get("tenant")
            if name not in per_tenant:
                continue
            rto = result.get("rto_seconds") if result.get("recovered", True) else None
            old = per_tenant[name]
            if name in seen and (old is None or rto is None):
                per_tenant[name] = None
            else:
                per_tenant[name] = rto if name not in seen else max(old or 0.0, rto or 0.0)
            seen.add(name)
    known = [v for v in per_tenant.values() if v is not None]
    complete = bool(seen) and len(known) == len(per_tenant)
    totals = summary.get("totals") or {}
    losses = [(totals.get(t) or {}).get("lost") for t in tenants]
    latency = (summary.get("latency") or {}).get("all") or {}
    efficiency = summary.get("efficiency") or {}
    run = _object(run_dir / "run.json") if run_dir else {}
    ready = [o.get("value") for o in read_observations(run_dir)] if run_dir else []
    ready_seconds = next(
        (
            v.get("instances_ready_seconds")
            for v in ready
            if isinstance(v, dict) and "instances_ready_seconds" in v
        ),
        None,
    )
    return {
        "run_dir": str(run_dir) if run_dir else None,
        "run_verdict": summary.get("verdict"),
        "run_violations": list(summary.get("violations") or [])
        if summary
        else ["no summary.json: the run did not finish"],
        "rto": {
            "worst": max(known) if complete else None,
            "p95": _percentile(known, 0.95) if complete else None,
            "per_tenant": per_tenant,
        },
        "lost": sum(losses) if losses and all(isinstance(x, int) for x in losses) else None,
        "latency_ms": {k: latency.get(f"{k}_ms") for k in ("p50", "p99", "max")},
        "late_starts": latency.get("late_starts"),
        "efficiency": efficiency.get("efficiency"),
        "acked_per_second": efficiency.get("acked_per_second"),
        "offered_per_second": efficiency.get("offered_per_second"),
        "ready_again_seconds": {"all instances": ready_seconds},
        "load_cpu_seconds": (run.get("load") or {}).get("cpu_seconds"),
        "load_cpu_per_tenant": _load_cpu_per_tenant(run.get("load") or {}, len(tenants)),
    }


def _load_cpu_per_tenant(load: Mapping[str, Any], tenants: int) -> float | None:
    """The load generator's CPU (cores) per tenant while it ran: how to size the load side."""
    values = [load.get(k) for k in ("cpu_seconds", "started_at", "ended_at")]
    if not all(isinstance(v, int | float) for v in values) or tenants < 1:
        return None
    cpu, began, ended = (float(v) for v in values)  # type: ignore[arg-type]
    return cpu / (ended - began) / tenants if ended > began else None


def judge(
    record: Mapping[str, Any], objective: float, latency_limit_ms: float, min_efficiency: float
) -> list[str]:
    """Why a step failed, in words; empty when it passed."""
    reasons: list[str] = []
    per_tenant = record["rto"]["per_tenant"]
    unknown = sorted(t for t, v in per_tenant.items() if v is None)
    over = sorted((v, t) for t, v in per_tenant.items() if v is not None and v > objective)
    if unknown:
        reasons.append(
            f"RTO unknown for {len(unknown)} tenant(s) ({', '.join(unknown[:3])}): "
            "never recovered or cannot tell"
        )
    if over:
        worst, tenant = over[-1]
        reasons.append(
            f"{len(over)} tenant(s) over the {objective:g} s objective (worst {tenant}: {worst:.1f} s)"
        )
    lost = record["lost"]
    if lost is None:
        reasons.append("lost writes unknown: the read-back did not complete")
    elif lost > 0:
        reasons.append(f"{lost} acknowledged write(s) lost")
    p99 = record["latency_ms"]["p99"]
    if p99 is None:
        reasons.append("p99 write latency unknown")
    elif p99 > latency_limit_ms:
        reasons.append(f"p99 latency {p99:.0f} ms over the {latency_limit_ms:g} ms limit")
    eff = record["efficiency"]
    if eff is None:
        reasons.append("efficiency unknown")
    elif eff < min_efficiency:
        reasons.append(f"efficiency {eff:.2f} under the {min_efficiency:g} minimum")
    load_cores = (record.get("load_cpu_per_tenant") or 0.0) * len(per_tenant)
    if load_cores > SATURATED_LOAD_CORES:
        reasons.append(
            f"cannot tell: the load generator used {load_cores:.2f} cores of its one process, "
            "so the limit measured may be the harness's"
        )
    if record["run_verdict"] != "GO":
        listed = "; ".join(str(v) for v in record["run_violations"][:2]) or "no verdict"
        reasons.append(f"the run itself is NO-GO ({listed[:240]})")
    return reasons


def check_experiment(path: Path) -> Path:
    """The fault experiment a sweep runs at each step; one line when it is not one."""
    if not path.is_file():
        raise OrchestrationError(f"fault experiment {path} does not exist: name one of experiments/*.json")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise OrchestrationError(
            f"fault experiment {path}: not JSON (line {exc.lineno}): fix the file"
        ) from None
    controls = [c.get("provider", {}).get("module") for c in doc.get("controls") or [] if isinstance(c, dict)]
    if "orchestration.control" not in controls:
        raise OrchestrationError(
            f"fault experiment {path} does not run under the load control (orchestration.control): "
            "a capacity step must be a measured run; pick a fault experiment"
        )
    return path
