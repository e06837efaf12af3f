"""The gate "Alerting configured for failed cronjobs and failed restore jobs", from the drill.

``experiments/alert-drill.json`` (:mod:`probes.k8s.alert_drill`) writes ``alerting.json``
in its run folder: the repository's alert rules loaded in Prometheus (or which are
missing), a backup Job failed on purpose, the alert's fire time against its deadline (the
rule's ``for:`` plus two scrape intervals) and its resolve time after the failure was
cleared. The gate PASSes only when every rule is loaded, the alert fired within the
deadline and reached Alertmanager, and it resolved; a missing rule, a late or absent alert,
or one that never resolved FAILs it, and so do the drill run's own problems (a failed
activity or rollback, a NO-GO run). No drill run: NOT RUN.
"""

from __future__ import annotations

from typing import Any

from probes.k8s.alert_drill import ALERTING_NAME
from reports.gate_base import (
    FAIL,
    NOT_RUN,
    PASS,
    Decide,
    GateContext,
    Verdict,
    combine,
    problems_of,
    registrar,
)
from reports.gonogo_runs import as_dict
from reports.jsonfile import number, optional_object

__all__ = ["GATES", "judge_drill"]

#: the ``fault`` of the drill's runs: their problems (a failed activity, a failed rollback) FAIL the gate.
DRILL_FAULT = "alert-drill"

GATES: dict[str, Decide] = {}
_gate = registrar(GATES)


def _secs(value: Any) -> str:
    seconds = number(value)
    return "?" if seconds is None else f"{seconds:.1f} s"


def judge_drill(doc: dict[str, Any]) -> Verdict:
    """One run's ``alerting.json`` judged (evidence without the run's link)."""
    rules, backup, fired, resolved = (as_dict(doc.get(k)) for k in ("rules", "backup", "fired", "resolved"))
    problems: list[str] = []
    missing = rules.get("missing")
    if not isinstance(missing, list):
        return NOT_RUN, ["the drill did not check the rules Prometheus has loaded"]
    if missing:
        problems.append(f"alert rules missing from Prometheus: {', '.join(map(str, missing))}")
    unhealthy = rules.get("unhealthy")
    if isinstance(unhealthy, list) and unhealthy:
        problems.append(f"alert rules failing to evaluate: {'; '.join(map(str, unhealthy))}")
    if backup.get("error"):
        problems.append(f"the drill could not fail a backup Job: {backup['error']}")
    if fired.get("error"):
        problems.append(str(fired["error"]))
    if resolved.get("error"):
        problems.append(str(resolved["error"]))
    if problems:
        return FAIL, problems
    if not fired.get("within_deadline") or not resolved.get("at"):
        return NOT_RUN, ["the drill did not get to fire and resolve the alert (the run stopped before)"]
    expected = ", ".join(map(str, rules.get("expected") or []))
    return PASS, [
        f"{len(rules.get('expected') or [])} alert rules loaded ({expected})",
        f"backup Job {backup.get('job')} failed on purpose "
        f"{_secs(backup.get('seconds_to_job_failed'))} after its MSSQLBackup was created "
        f"({backup.get('job_failed_at')})",
        f"{fired.get('alert')} fired {_secs(fired.get('delay_seconds'))} after the Job failed (deadline "
        f"{_secs(fired.get('deadline_seconds'))}: for {_secs(fired.get('for_seconds'))} + 2 scrape "
        f"intervals), pending at {fired.get('pending_at')}, received by Alertmanager at "
        f"{fired.get('received_at')}",
        f"resolved {_secs(resolved.get('delay_seconds'))} after the failed backup was cleared "
        f"({resolved.get('at')})",
    ]


@_gate("alerting")
def _alerting(ctx: GateContext) -> Verdict:
    parts: list[Verdict] = []
    for run in ctx.runs:
        doc = optional_object(run.path / ALERTING_NAME, "fix or remove alerting.json")
        if doc is None:
            continue
        status, evidence = judge_drill(doc)
        link = ctx.link(run, ALERTING_NAME, f"{run.run_id}/alerting.json")
        parts.append((status, [f"{link}: {e}" for e in evidence]))
    parts += problems_of(ctx, [r for r in ctx.runs if r.fault == DRILL_FAULT])
    if not parts:
        return NOT_RUN, ["no alert drill run (experiments/alert-drill.json)"]
    return combine(parts, (NOT_RUN, []))
