"""Capacity planning: how many tenants can the operator carry before the objective breaks?

``chaos run experiments/opt-in/capacity.json`` or ``python -m orchestration capacity`` (also
``python -m probes capacity``) sweeps the tenant count with a fault at every step:

1. checks every knob, the target, the namespace (``allowed_namespaces``), the template
   and whether the target can hold the largest step, and creates nothing when one fails;
2. for each write rate, line-searches up from ``tenants_from`` by ``tenants_step`` until a
   step fails, bisects between the last pass and the first fail to ``precision``, and
   repeats the boundary for ``trials`` (:mod:`orchestration.capacity_search`);
3. each step scales the sweep's own MSSQLInstances (:mod:`orchestration.capacity_tenants`)
   and runs the fault experiment as a full measured run, the fault rotating over the
   tenants (:mod:`orchestration.capacity_step`);
4. prints one line per step as it ends, with an estimate of the time left, and rewrites
   ``capacity.json``, ``capacity.md`` and the plots after every step
   (:mod:`reports.capacity`), so an interrupted sweep still has its report, marked
   incomplete;
5. deletes every instance it created, also after an error or SIGINT/SIGTERM.
"""

from __future__ import annotations

import functools
import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from common.crd import CrdCoordinates
from common.files import replace_text
from common.times import utc_iso
from lab.cluster import check_capacity
from lab.errors import LabError
from orchestration.capacity_search import Boundary, planned_steps, search
from orchestration.capacity_settings import Settings, read_var_files
from orchestration.capacity_step import StepPlan, check_experiment, judge, run_step, step_record
from orchestration.capacity_tenants import LEDGER_NAME, NotReady, SweepTenants, lab_template, load_template
from orchestration.errors import OrchestrationError
from probes.errors import ProbeError
from probes.k8s import kube
from probes.k8s.crs import custom_resources
from probes.k8s.target import target_identity
from reports.capacity import write_capacity_report

__all__ = ["CAPACITY_NAME", "cleanup", "prepare", "run_sweep", "worker_nodes"]

CAPACITY_NAME = "capacity.json"
Say = Callable[[str], None]


def _say(line: str) -> None:
    print(line, flush=True)  # progress lines must reach a pipe (tee, CI logs) as they happen


@dataclass
class Prepared:
    """What the checks found: the sweep may start."""

    settings: Settings
    configuration: dict[str, Any]
    coords: CrdCoordinates
    target: dict[str, Any]
    template: dict[str, Any]


def _configuration(settings: Settings) -> dict[str, Any]:
    configuration = read_var_files(settings.var_files)
    configuration.update(settings.extra_vars)
    configuration["namespace"] = settings.namespace
    return configuration


def worker_nodes(nodes: list[Any]) -> list[Any]:
    """The nodes that take ordinary pods: schedulable and without a NoSchedule/NoExecute taint.

    Control-plane nodes carry ``node-role.kubernetes.io/control-plane:NoSchedule``: counted,
    they would make "tenants per node" read low on a cluster.
    """
    return [
        n
        for n in nodes
        if not (n.spec and n.spec.unschedulable)
        and not any(t.effect in ("NoSchedule", "NoExecute") for t in (n.spec and n.spec.taints) or [])
    ]


def _schedulable() -> tuple[int | None, int | None]:
    """``(worker nodes, pods they can still take)``: allocatable pods minus running ones; None if unknown."""
    try:
        api = kube.core(None)
        nodes = worker_nodes(api.list_node().items)
        pods = api.list_pod_for_all_namespaces(field_selector="status.phase=Running").items
    except Exception:
        return None, None
    allocatable = sum(int((n.status.allocatable or {}).get("pods", 0) or 0) for n in nodes)
    return len(nodes) or None, (allocatable - len(pods) if allocatable else None)


def prepare(settings: Settings) -> Prepared:
    """Every check that can fail before anything exists; OrchestrationError names the fix."""
    settings.check()
    check_experiment(settings.experiment)
    configuration = _configuration(settings)
    try:
        coords = CrdCoordinates.from_configuration(configuration)
    except ValueError as exc:
        raise OrchestrationError(str(exc)) from None
    try:
        target = target_identity(configuration)
        kube.check_namespace(settings.namespace, configuration)
    except ProbeError as exc:
        raise OrchestrationError(str(exc)) from None
    instances = custom_resources(configuration, None)["instance"]
    try:
        existing = instances.list(settings.namespace)
    except ProbeError as exc:
        raise OrchestrationError(str(exc)) from None
    workers, room = _schedulable()
    if target["kind"] == "lab":
        template = load_template(settings.template, coords) if settings.template else lab_template(coords)
        try:
            check_capacity(len(existing) + settings.tenants_to)
        except LabError as exc:
            raise OrchestrationError(
                f"the lab cannot hold {settings.tenants_to} more tenants beside its {len(existing)}: {exc}"
            ) from None
    else:
        if settings.template is None:
            raise OrchestrationError(
                "on a cluster the sweep creates MSSQLInstances from your template: pass --template FILE "
                "(one MSSQLInstance, YAML or JSON)"
            )
        template = load_template(settings.template, coords)
        if room is not None and settings.tenants_to > room:
            raise OrchestrationError(
                f"the cluster can schedule about {room} more pods and the sweep needs {settings.tenants_to} "
                "instances: lower tenants_to"
            )
    if workers is not None:
        target = {**target, "nodes": workers}  # tenants per node counts the nodes that take tenants
    return Prepared(settings, configuration, coords, target, template)


def _claim_selector(configuration: dict[str, Any]) -> str:
    """The labels of an instance's pods (and so of its StatefulSet's claims), ``{tenant}`` for its name."""
    return str(configuration.get("tenant_pod_selector") or f"{CrdCoordinates().group}/instance={{tenant}}")


class _Sweep:
    """One sweep's state: its folder, its instances, its document."""

    def __init__(self, prepared: Prepared, say: Say) -> None:
        self.p, self.s, self.say = prepared, prepared.settings, say
        self.id = time.strftime("%Y%m%dt%H%M%S", time.gmtime()).lower()
        self.folder = (self.s.out / f"capacity-{self.id}").resolve()
        self.folder.mkdir(parents=True, exist_ok=False)
        instances = custom_resources(prepared.configuration, None)["instance"]
        self.tenants = SweepTenants(
            instances, prepared.coords, self.s.namespace, self.id, prepared.template, self.folder,
            ready_timeout=self.s.ready_timeout, claim_selector=_claim_selector(prepared.configuration),
            say=say,
        )  # fmt: skip
        self.doc: dict[str, Any] = {
            "kind": "capacity",
            "schema": 1,
            "sweep_id": self.id,
            "started_at": utc_iso(time.time()),
            "ended_at": None,
            "complete": False,
            "interrupted": False,
            "error": None,
            "target": prepared.target,
            "settings": self.s.as_json(),
            "steps": [],
            "boundaries": [],
            "eta_seconds": None,
        }

    def write(self) -> None:
        """``capacity.json``, then ``capacity.md`` with its plots (which it renders)."""
        replace_text(self.folder / CAPACITY_NAME, json.dumps(self.doc, indent=2, default=str) + "\n")
        write_capacity_report(self.doc, self.folder)

    def _eta(self, rate_index: int, done_at_rate: int) -> float | None:
        durations = [st["duration_seconds"] for st in self.doc["steps"] if st["duration_seconds"] is not None]
        if not durations:
            return None
        s = self.s
        left = planned_steps(
            s.tenants_from, s.tenants_to, s.tenants_step, s.precision, s.trials, done_at_rate
        )
        later = planned_steps(s.tenants_from, s.tenants_to, s.tenants_step, s.precision, s.trials)
        left += later * (len(s.write_rates) - rate_index - 1)
        return left * sum(durations) / len(durations)

    def step(self, rate_index: int, rate: float, tenants: int, trial: int, phase: str) -> bool:
        index = len(self.doc["steps"])
        try:
            names = self.tenants.scale_to(tenants)
        except NotReady as exc:
            return self._not_ready(rate_index, rate, tenants, trial, phase, str(exc))
        folder = self.folder / "steps" / f"{index + 1:02d}-n{tenants}-r{rate:g}-t{trial}"
        variables = {
            **self.p.settings.extra_vars,
            "namespace": self.s.namespace,
            "rto_objective_seconds:float": f"{self.s.objective_seconds:g}",
            "observe_seconds:float": f"{self.s.observe_seconds:g}",
            "stability_seconds:float": f"{self.s.stability_seconds:g}",
            "experiment_name": f"{self.s.fault}-n{tenants}",
        }
        plan = StepPlan(
            index, names, rate, trial, phase, self.s.experiment, self.s.var_files, variables, folder
        )
        run_dir, facts = run_step(plan, str(self.p.target.get("kind")), self.say)
        record = step_record(run_dir, names)
        record["run_dir"] = str(run_dir.relative_to(self.folder)) if run_dir else None
        reasons = judge(record, self.s.objective_seconds, self.s.latency_limit_ms, self.s.min_efficiency)
        record = {
            "tenants": tenants,
            "write_rate": rate,
            "trial": trial,
            "phase": phase,
            "passed": not reasons,
            "reasons": reasons,
            "fault_target": names[index % len(names)],
            **record,
            **facts,
        }
        return self._record(rate_index, record)

    def _not_ready(
        self, rate_index: int, rate: float, tenants: int, trial: int, phase: str, why: str
    ) -> bool:
        """A count the target cannot even start is a failing step with no run folder."""
        record = step_record(None, [])
        record.update(
            tenants=tenants, write_rate=rate, trial=trial, phase=phase, passed=False, reasons=[why],
            fault_target=None, duration_seconds=None, nodes={}, nodes_unavailable="no step ran",
        )  # fmt: skip
        return self._record(rate_index, record)

    def _record(self, rate_index: int, record: dict[str, Any]) -> bool:
        """Keep a finished step: capacity.json and the report rewritten, one progress line."""
        self.doc["steps"].append(record)
        done = sum(1 for st in self.doc["steps"] if st["write_rate"] == record["write_rate"])
        self.doc["eta_seconds"] = self._eta(rate_index, done)
        self.write()
        self.say(_progress(record, self.doc["eta_seconds"]))
        return bool(record["passed"])

    def boundary(self, rate: float, found: Boundary) -> None:
        failing = [
            st
            for st in self.doc["steps"]
            if st["write_rate"] == rate and st["tenants"] == found.first_failing and not st["passed"]
        ]
        nodes = self.p.target.get("nodes")
        self.doc["boundaries"].append(
            {
                "write_rate": rate,
                "largest_passing": found.largest_passing,
                "first_failing": found.first_failing,
                "first_failing_reasons": failing[0]["reasons"] if failing else [],
                "nodes": nodes if isinstance(nodes, int) else None,
            }
        )


def _fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    return "unknown" if value is None else f"{value:.{digits}f}{unit}"


def _progress(step: dict[str, Any], eta: float | None) -> str:
    rto = step["rto"]
    line = (
        f"capacity: N={step['tenants']} at {step['write_rate']:g}/s "
        f"(trial {step['trial']}, {step['phase']}): "
        f"worst RTO {_fmt(rto['worst'], ' s')}, p95 {_fmt(rto['p95'], ' s')}, "
        f"lost {step['lost'] if step['lost'] is not None else 'unknown'}, "
        f"p99 latency {_fmt(step['latency_ms']['p99'], ' ms', 0)}, "
        f"efficiency {_fmt(step['efficiency'], '', 2)}: "
        f"{'PASS' if step['passed'] else 'FAIL (' + '; '.join(step['reasons']) + ')'}"
    )
    if step.get("load_cpu_per_tenant") is not None:
        line += f"; load CPU {step['load_cpu_per_tenant'] * 1000:.0f} ms/s per tenant"
    if eta is not None:
        line += f"; at most about {eta / 60:.0f} min left"
    return line


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def run_sweep(settings: Settings, say: Say = _say) -> Path:
    """Run a whole sweep; returns its folder. Created instances are deleted whatever happens."""
    prepared = prepare(settings)
    sweep = _Sweep(prepared, say)
    say(f"capacity: sweep {sweep.id} in {sweep.folder}; instances labelled for deletion in {LEDGER_NAME}")
    previous = signal.getsignal(signal.SIGTERM)
    in_main = _main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        for rate_index, rate in enumerate(settings.write_rates):
            s = settings
            found = search(
                s.tenants_from, s.tenants_to, s.tenants_step, s.precision, s.trials,
                functools.partial(sweep.step, rate_index, rate),
            )  # fmt: skip
            sweep.boundary(rate, found)
        sweep.doc["complete"] = True
    except KeyboardInterrupt:
        sweep.doc["interrupted"] = True
        say("capacity: interrupted; deleting the sweep's instances, the report covers the finished steps")
    except (OrchestrationError, ProbeError) as exc:
        sweep.doc["error"] = str(exc)
        say(f"capacity: stopped: {exc}")
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        deleted = sweep.tenants.delete_all()
        sweep.doc["ended_at"] = utc_iso(time.time())
        sweep.doc["deleted_instances"] = len(deleted)
        sweep.write()
    if sweep.doc["error"]:
        raise OrchestrationError(f"{sweep.doc['error']} (partial report: {sweep.folder / 'capacity.md'})")
    return sweep.folder


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def cleanup(folder: Path, settings: Settings, say: Say = print) -> list[str]:
    """Delete what an earlier sweep (killed before it could clean up) left, from its ledger.

    Each instance is deleted in the namespace its ledger line names, whatever ``settings``
    says; only instances still labelled with the sweep's id are touched.
    """
    doc_path = Path(folder) / CAPACITY_NAME
    if not (Path(folder) / LEDGER_NAME).exists():
        raise OrchestrationError(f"{folder} has no {LEDGER_NAME}: pass the folder of a capacity sweep")
    sweep_id = json.loads(doc_path.read_text())["sweep_id"] if doc_path.exists() else Path(folder).name[9:]
    configuration = _configuration(settings)
    coords = CrdCoordinates.from_configuration(configuration)
    instances = custom_resources(configuration, None)["instance"]
    tenants = SweepTenants(
        instances, coords, settings.namespace, sweep_id, {}, Path(folder),
        claim_selector=_claim_selector(configuration), say=say,
    )  # fmt: skip
    return tenants.delete_all()
