"""Run folders as the go/no-go document reads them, and what makes a run fail its gate.

**Inputs per run folder.** ``summary.json`` (required; ``reports.summary``), and optional:
``chaos-journal.json`` (a Chaos Toolkit journal), ``rbac.json``
(``{"service_account", "checks": [{"verb", "resource", "namespace", "allowed"}]}``),
``preflight.json`` (``{"storageclass": {"name", "default", "ok"}, "images": [{"name",
"image", "pinned"}], "resources": [{"name", "requests", "limits", "ok"}]}``) and
``evidence/{before,after}/{pods,crds,crs,jobs,pvc}.txt`` plus ``evidence/operator.log``.
A run is a *Kubernetes run* when its summary names an ``experiment`` or it has a chaos
journal.

**Target.** ``summary["target"]`` is ``{"kind": "lab" | "local" | "cluster", "api_server",
"kubernetes_version", "nodes", "operator_image"}``. Only ``kind == "cluster"`` (a real
cluster) is production evidence. The embedded lab runs PostgreSQL in place of SQL Server
and its own operator, and a local run has no Kubernetes at all, so what they prove is
the harness, not the operator under test. Older summaries hold the string
``"kubernetes"`` or no target: they cannot say where they ran, so they are not
production evidence either.

**Capacity sweeps.** A folder holding ``capacity.json`` (``reports.capacity_data``) is a
capacity sweep, not a run: ``load_folder`` reads it as a ``Sweep``. Its steps are run
folders of their own; they are judged as runs only when they are passed themselves.
A folder of run folders is read by ``reports.gonogo_folders``.

**A run's problems** (``run_problems``: each one FAILs the gate the run exercises): a
NO-GO verdict (its violations); a summary that says GO but holds an RTO over the
objective, a tenant that never recovered or lost writes (the summary may come from an
older version: the numbers win); a fault whose injection never completed (no
``ended_at``); a chaos status ``failed``/``aborted``/``interrupted`` in the journal *or*
the summary, or ``interrupted: true``; a steady state not met before or after the fault;
a failed method activity or rollback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probes.chaosjournal import failed_activities, last_line
from probes.kubectl_text import LOG_LINE_PREFIX, kubectl_failure
from reports.capacity_data import CAPACITY_NAME, incomplete_reason, read_capacity
from reports.errors import ReportError
from reports.jsonfile import number, optional_object, read_object
from reports.times import parse_time

__all__ = [
    "BACKUP_KINDS",
    "CHECKLIST_RTO_SECONDS",
    "EVIDENCE_DIR",
    "FAILURE_KINDS",
    "OPERATOR_LOG",
    "PREFLIGHT_NAME",
    "RBAC_NAME",
    "REQUIRED_FAILURE_KINDS",
    "SUMMARY_NAME",
    "Run",
    "Sweep",
    "Target",
    "as_dict",
    "chaos_problems",
    "dicts",
    "load_folder",
    "load_run",
    "number",
    "rto_findings",
    "run_problems",
    "steady_state",
]

CHECKLIST_RTO_SECONDS = 60.0
REQUIRED_FAILURE_KINDS = ("operator-restart", "pod-eviction", "node-restart")
FAILURE_KINDS = ("operator-restart", "pod-eviction", "node-drain", "node-restart", "node-loss")
BACKUP_KINDS = ("pitr-restore", "backup-under-chaos")
BAD_CHAOS_STATUSES = ("failed", "aborted", "interrupted")
PRODUCTION_KIND = "cluster"

SUMMARY_NAME = "summary.json"
JOURNAL_NAME = "chaos-journal.json"
RBAC_NAME = "rbac.json"
PREFLIGHT_NAME = "preflight.json"
EVIDENCE_DIR = "evidence"
OPERATOR_LOG = "operator.log"


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _timing(target: dict[str, Any]) -> str | None:
    """The lab timing profile's name a target records; ``not recorded`` for a lab that did not say."""
    timing = target.get("timing")
    if isinstance(timing, dict) and _text(timing.get("profile")):
        return str(timing["profile"])
    return "not recorded" if target.get("kind") == "lab" else None


@dataclass(frozen=True)
class Target:
    """Where a run ran, as its summary says; ``recorded`` keeps an older summary's plain value."""

    kind: str | None
    api_server: str | None = None
    kubernetes_version: str | None = None
    nodes: int | None = None
    operator_image: str | None = None
    recorded: str | None = None
    timing: str | None = None

    @classmethod
    def read(cls, value: Any) -> Target:
        if not isinstance(value, dict):
            return cls(kind=None, recorded=None if value is None else str(value))
        nodes = value.get("nodes")
        if isinstance(nodes, list):  # a capacity sweep names its nodes
            nodes = len(nodes)
        return cls(
            kind=_text(value.get("kind")),
            api_server=_text(value.get("api_server")),
            kubernetes_version=_text(value.get("kubernetes_version")),
            nodes=nodes if isinstance(nodes, int) and not isinstance(nodes, bool) else None,
            operator_image=_text(value.get("operator_image")),
            timing=_timing(value),
        )

    @property
    def production(self) -> bool:
        """Only a real cluster's run can prove a production gate."""
        return self.kind == PRODUCTION_KIND

    @property
    def identity(self) -> tuple[str, str | None]:
        """(kind, API server): runs judged together must share it."""
        return (self.kind or f"not recorded ({self.recorded or 'no target'})", self.api_server)

    @property
    def short(self) -> str:
        if self.kind:
            return self.kind
        return f"target not recorded: {self.recorded}" if self.recorded else "target not recorded"

    def describe(self) -> str:
        """``cluster, https://api:6443, Kubernetes v1.29.4, 5 nodes``; older summaries say so."""
        if self.kind is None:
            older = f" (older summary: {self.recorded!r})" if self.recorded else ""
            return f"not recorded{older}"
        nodes = None if self.nodes is None else f"{self.nodes} node{'s' if self.nodes != 1 else ''}"
        parts = [
            self.kind,
            self.api_server or "API server not recorded",
            f"Kubernetes {self.kubernetes_version}" if self.kubernetes_version else None,
            nodes,
            f"timing {self.timing}" if self.timing else None,
        ]
        return ", ".join(p for p in parts if p)


@dataclass(frozen=True)
class Run:
    """One run folder and what it holds (None where an optional file is absent)."""

    path: Path
    summary: dict[str, Any]
    journal: dict[str, Any] | None = None
    rbac: dict[str, Any] | None = None
    preflight: dict[str, Any] | None = None

    @property
    def run_id(self) -> str:
        return str(self.summary.get("run_id") or self.path.resolve().name)

    @property
    def target(self) -> Target:
        return Target.read(self.summary.get("target"))

    @property
    def experiment(self) -> dict[str, Any]:
        return as_dict(self.summary.get("experiment"))

    @property
    def fault(self) -> str | None:
        value = self.experiment.get("fault")
        return str(value) if value else None

    @property
    def is_k8s(self) -> bool:
        return bool(self.experiment) or self.journal is not None

    @property
    def tenants(self) -> list[str]:
        tenants = self.summary.get("tenants")
        if isinstance(tenants, list) and tenants:
            return [str(t) for t in tenants]
        return list(as_dict(self.summary.get("totals")))

    @property
    def objective(self) -> float:
        value = number(as_dict(self.summary.get("objective")).get("rto_seconds"))
        return CHECKLIST_RTO_SECONDS if value is None else value

    @property
    def strict_objective(self) -> float:
        """The stricter of the run's RTO objective and the checklist's one minute."""
        return min(self.objective, CHECKLIST_RTO_SECONDS)

    def epoch(self, name: str) -> float | None:
        """``<name>_epoch`` of the summary, else its ISO ``<name>``; None when neither is there."""
        value = number(self.summary.get(f"{name}_epoch"))
        return value if value is not None else parse_time(self.summary.get(name))

    @property
    def duration(self) -> float | None:
        start, end = self.epoch("started_at"), self.epoch("ended_at")
        return None if start is None or end is None else end - start

    @property
    def chaos_status(self) -> str | None:
        status = (self.journal or {}).get("status") or self.summary.get("chaos_status")
        return str(status) if status else None

    @property
    def faults(self) -> list[dict[str, Any]]:
        return dicts(self.summary.get("faults"))

    def failure_kinds(self) -> list[str]:
        """The failure-injection kinds this run exercised (experiment fault and fault kinds)."""
        kinds = {self.fault} | {str(f.get("kind")) for f in self.faults}
        return [k for k in FAILURE_KINDS if k in kinds]

    def results(self, kind: str | None = None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(fault, tenant result) pairs; with ``kind``, those of that failure kind."""
        out = []
        for fault in self.faults:
            if kind is not None and self.fault != kind and fault.get("kind") != kind:
                continue
            out += [(fault, r) for r in dicts(fault.get("results"))]
        return out

    def lost(self) -> int | None:
        """Lost acknowledged writes over the run; None when any tenant's count is unknown."""
        totals = [as_dict(t) for t in as_dict(self.summary.get("totals")).values()]
        values = [t.get("lost") for t in totals]
        if not totals:
            values = [r.get("lost_acked_writes") for _, r in self.results()]
        if not values:
            return 0
        numbers = [number(v) for v in values]
        if any(n is None for n in numbers):
            return None
        return int(sum(n for n in numbers if n is not None))

    def evidence(self, *parts: str) -> Path:
        return self.path.joinpath(EVIDENCE_DIR, *parts)

    def snapshot_problem(self, phase: str, name: str) -> str | None:
        """Why ``evidence/<phase>/<name>`` is no ``kubectl get`` output, or None when it is one.

        The evidence writer keeps kubectl's failure in the file (kubectl missing, a timeout,
        ``# error: ...`` after whatever it printed): a file holding nothing else is no snapshot.
        """
        try:
            text = self.evidence(phase, name).read_text(errors="replace")
        except OSError:
            return "missing"
        return kubectl_failure(text)

    def operator_log_lines(self) -> int:
        """Lines of ``evidence/operator.log`` that came from an operator pod (``kubectl logs --prefix``
        starts each with ``[pod/``); zero when the file is missing or holds only what kubectl said
        instead of a log: "No resources found" for a wrong namespace or selector, an error."""
        try:
            with self.evidence(OPERATOR_LOG).open(encoding="utf-8", errors="replace") as lines:
                return sum(1 for line in lines if line.startswith(LOG_LINE_PREFIX))
        except OSError:
            return 0


@dataclass(frozen=True)
class Sweep:
    """One capacity sweep folder and its ``capacity.json`` (checked by ``read_capacity``)."""

    path: Path
    doc: dict[str, Any]

    @property
    def sweep_id(self) -> str:
        return str(self.doc.get("sweep_id") or self.path.resolve().name)

    @property
    def target(self) -> Target:
        return Target.read(self.doc.get("target"))

    @property
    def fault(self) -> str | None:
        value = as_dict(self.doc.get("settings")).get("fault")
        return str(value) if value else None

    @property
    def incomplete(self) -> str | None:
        """Why the sweep is not a finished result; None when it finished."""
        return incomplete_reason(self.doc)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    return read_object(path, f"fix or remove the {what}")


def _optional_json(path: Path, what: str) -> dict[str, Any] | None:
    return optional_object(path, f"fix or remove the {what}")


def load_run(path: str | Path) -> Run:
    """Read one run folder; ReportError (one line, with the fix) when it cannot be used."""
    folder = Path(path)
    if not folder.is_dir():
        raise ReportError(f"run folder {folder} does not exist; pass the folder of a run (runs/<run-id>/)")
    summary = folder / SUMMARY_NAME
    if not summary.is_file():
        raise ReportError(
            f"{summary} is missing; run `python -m reports build {folder}` first or pass another run folder "
            f"(or a capacity sweep folder, with {CAPACITY_NAME}, or a folder whose sub-folders hold "
            f"{SUMMARY_NAME} or {CAPACITY_NAME})"
        )
    return Run(
        path=folder,
        summary=_read_json(summary, "summary (rebuild it with `python -m reports build`)"),
        journal=_optional_json(folder / JOURNAL_NAME, "chaos journal"),
        rbac=_optional_json(folder / RBAC_NAME, "RBAC preflight"),
        preflight=_optional_json(folder / PREFLIGHT_NAME, "preflight"),
    )


def load_folder(path: str | Path) -> Run | Sweep:
    """A capacity sweep when the folder holds ``capacity.json``, else a run folder (``load_run``)."""
    folder = Path(path)
    if (folder / CAPACITY_NAME).is_file():
        return Sweep(folder, read_capacity(folder))
    return load_run(folder)


# --------------------------------------------------------------------------- run problems


def _activity_name(activity_run: dict[str, Any]) -> str:
    return str(as_dict(activity_run.get("activity")).get("name") or "unnamed activity")


def steady_state(run: Run, when: str) -> tuple[bool | None, str]:
    """(met, why) of the ``before``/``after`` hypothesis; met is None when none was recorded."""
    state = as_dict(as_dict((run.journal or {}).get("steady_states")).get(when))
    met = state.get("steady_state_met")
    if not isinstance(met, bool):
        return None, "no steady-state hypothesis recorded"
    if met:
        return True, "steady state met"
    for probe in dicts(state.get("probes")):
        if probe.get("status") == "failed" or probe.get("tolerance_met") is False:
            reason = (
                last_line(probe.get("exception")) if probe.get("status") == "failed" else "out of tolerance"
            )
            return False, f"probe '{_activity_name(probe)}' {reason}"
    return False, "steady state not met"


def chaos_problems(run: Run) -> list[str]:
    """A failed/aborted/interrupted experiment (journal or summary) and failed rollbacks.

    Both the journal and the summary are read: a summary written before the journal was
    final, or by an older version, must not hide an experiment that did not complete.
    """
    statuses = [(run.journal or {}).get("status"), run.summary.get("chaos_status")]
    if run.summary.get("interrupted") is True:
        statuses.append("interrupted")
    out = [f"chaos experiment {s}" for s in dict.fromkeys(statuses) if s in BAD_CHAOS_STATUSES]
    out += [f"{name} failed: {why}" for name, why in failed_activities(run.journal, ("rollbacks",))]
    return out


def _unended_faults(run: Run) -> list[str]:
    """Faults whose injection never completed: what they did to the target is unknown."""
    return [
        f"fault {f.get('name') or f.get('kind') or '?'}: injection never completed (no ended_at recorded)"
        for f in run.faults
        if f.get("ended_at") is None and f.get("ended_at_epoch") is None
    ]


def rto_findings(run: Run) -> list[str]:
    """Every (fault, tenant) over the stricter objective, not recovered, or with an unknown RTO."""
    out = []
    limit = run.strict_objective
    for fault, result in run.results():
        who = f"{fault.get('name', '?')} {result.get('tenant', '?')}"
        rto = number(result.get("rto_seconds"))
        if not result.get("recovered"):
            out.append(f"{who}: not recovered")
        elif rto is None:
            out.append(f"{who}: RTO cannot tell")
        elif rto > limit:
            out.append(f"{who}: RTO {rto:.1f}s exceeds the {limit:g}s objective")
    return out


def _loss_findings(run: Run) -> list[str]:
    lost = run.lost()
    if lost is None:
        return ["cannot tell whether acknowledged writes were lost (read-back missing or failed)"]
    return [f"{lost} acknowledged write(s) lost"] if lost else []


def run_problems(run: Run) -> list[str]:
    """Everything that makes this run fail the gate it exercises (see the module docstring)."""
    out: list[str] = []
    if run.summary.get("verdict") != "GO":
        violations = [str(v) for v in run.summary.get("violations") or []]
        out += violations or [f"verdict {run.summary.get('verdict') or 'missing'} (no violation recorded)"]
    else:  # a summary that says GO but holds numbers that are not: trust the numbers
        out += rto_findings(run) + _loss_findings(run)
    out += _unended_faults(run)
    out += chaos_problems(run)
    before, why = steady_state(run, "before")
    if before is False:
        out.append(f"steady state before the fault not met ({why}); the fault was not tested")
    after, why = steady_state(run, "after")
    if after is False:
        out.append(f"steady state after the fault not met ({why}): the experiment deviated")
    elif (run.journal or {}).get("deviated") is True:
        out.append("the experiment deviated from its steady state")
    out += [f"{name} failed: {why}" for name, why in failed_activities(run.journal, ("method",))]
    return out
