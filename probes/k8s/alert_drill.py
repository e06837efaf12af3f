"""The alerting drill: a backup Job fails on purpose and the alert must fire, then resolve.

Activities, in the order ``experiments/alert-drill.json`` runs them:

1. :func:`alert_rules_loaded` (steady state): every alert of the repository's rules file
   (``deploy/alerts/mssql-harness.rules.yaml``) is loaded in Prometheus; the missing ones
   are listed (logged and recorded).
2. :func:`fail_backup_job`: an MSSQLBackup of a tenant whose Job must fail. On the lab the
   annotation ``lab.mssql.example.com/fail-job`` makes the lab operator's executor fail; on
   a cluster, ``alert_drill_backup_spec`` (JSON merged into the spec, e.g. a missing
   storage target) and ``alert_drill_annotations`` say how to make the operator's Job fail.
   Waits until a Job owned by that backup has the condition ``Failed``.
3. :func:`wait_for_alert` (``MSSQLBackupJobFailed``): polls Prometheus (pending, firing) and
   Alertmanager until the alert naming that backup is firing and received. The deadline is
   the rule's ``for:`` (read from ``/api/v1/rules``) plus two scrape intervals (read from the
   server's configuration), counted from the start of the last look that had not yet seen
   the Job failed, and up to the moment after the answer that showed the alert received,
   so slow polls and slow APIs lengthen the measured delay, never shorten it. A
   kube-state-metrics job scraped less often than the global interval, or rule groups
   evaluated less often than that, can make a healthy setup miss this deadline: the drill
   then fails, and says by how much.
4. :func:`clear_failed_backups` (also a rollback): deletes the drill's backups; their Jobs go
   with them (owner references), so the Job series disappear.
5. :func:`wait_for_alert_resolved`: the alert leaves Prometheus and Alertmanager.

Everything is recorded in the run folder's ``alerting.json``::

    {"prometheus": url, "alertmanager": url,
     "intervals": {"scrape_seconds", "evaluation_seconds"},
     "rules": {"file", "expected": [...], "loaded": [...], "missing": [...], "checked_at"},
     "backup": {"name", "namespace", "instance", "job", "created_at", "job_failed_at",
                "seconds_to_job_failed", "error"},
     "fired": {"alert", "for_seconds", "deadline_seconds", "pending_at", "firing_at",
               "received_at", "delay_seconds", "within_deadline", "error"},
     "cleared": {"at"},
     "resolved": {"at", "delay_seconds", "error"}}

Delays are measured with the monotonic clock between this process's observations;
``*_at`` are UTC. The Prometheus and Alertmanager URLs come from ``prometheus_url`` and
``alertmanager_url`` (``HARNESS_PROMETHEUS_URL``, ``HARNESS_ALERTMANAGER_URL``); empty,
they are the embedded lab's own (``lab.monitoring``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from common.times import format_time
from probes.errors import ProbeError
from probes.k8s import kube
from probes.k8s.backup_crs import Configuration, Secrets, request_metadata, stamp, status_of
from probes.k8s.crs import custom_resources
from probes.pitr import read_json_block, write_json_block
from probes.prometheus_api import Alert, Alertmanager, Prometheus

__all__ = [
    "alert_rules_loaded",
    "clear_failed_backups",
    "fail_backup_job",
    "wait_for_alert",
    "wait_for_alert_resolved",
]

logger = logging.getLogger("chaostoolkit")

ALERTING_NAME = "alerting.json"
DRILL_LABEL = "mssql-chaos-harness/alert-drill"
LAB_FAIL_ANNOTATION = "lab.mssql.example.com/fail-job"
RULES_FILE = Path(__file__).resolve().parents[2] / "deploy" / "alerts" / "mssql-harness.rules.yaml"
POLL = 0.5
#: how long past the deadline the drill keeps looking, to report how late an alert was.
LATE_GRACE = 60.0

# Monotonic marks of this process (Chaos Toolkit runs every activity of a run in one process).
_marks: dict[str, float] = {}


def _servers(configuration: Configuration) -> tuple[Prometheus, Alertmanager]:
    prom = kube.setting(configuration, "prometheus_url", "HARNESS_PROMETHEUS_URL")
    am = kube.setting(configuration, "alertmanager_url", "HARNESS_ALERTMANAGER_URL")
    if not (prom and am):
        lab = _lab_endpoints()
        if lab is not None:
            prom, am = prom or lab[0], am or lab[1]
    if not prom or not am:
        raise ProbeError(
            "no Prometheus/Alertmanager to drill: set prometheus_url and alertmanager_url "
            "(HARNESS_PROMETHEUS_URL, HARNESS_ALERTMANAGER_URL), or start the lab with its monitoring"
        )
    return Prometheus(prom), Alertmanager(am)


def _lab_endpoints() -> tuple[str, str] | None:
    """The embedded lab's Prometheus and Alertmanager URLs, when the kubeconfig is the lab's."""
    found = kube.lab_monitoring()
    return (str(found.prometheus), str(found.alertmanager)) if found is not None else None


def _doc() -> dict[str, Any]:
    folder = kube.run_dir()
    return (read_json_block(folder / ALERTING_NAME) if folder else None) or {}


def _record(section: str, values: Mapping[str, Any], **top: Any) -> dict[str, Any]:
    folder = kube.run_dir()
    doc = _doc()
    doc[section] = {**(doc.get(section) or {}), **values}
    doc.update(top)
    if folder is not None:
        write_json_block(folder / ALERTING_NAME, doc)
    return doc


def expected_alerts(rules_file: Path = RULES_FILE) -> list[str]:
    """The alert names of a Prometheus rules file (``groups[].rules[].alert``)."""
    try:
        doc = yaml.safe_load(rules_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ProbeError(
            f"cannot read the alert rules {rules_file} ({exc}): restore deploy/alerts/"
        ) from None
    groups = doc.get("groups") if isinstance(doc, Mapping) else None
    names = [
        str(rule["alert"])
        for group in groups or []
        for rule in (group or {}).get("rules") or []
        if isinstance(rule, Mapping) and rule.get("alert")
    ]
    if not names:
        raise ProbeError(f"{rules_file} defines no alert: restore deploy/alerts/")
    return list(dict.fromkeys(names))


def alert_rules_loaded(
    rules_file: str = "", configuration: Configuration = None, secrets: Secrets = None
) -> bool:
    """True when Prometheus has loaded every alert of the rules file, each evaluating without error.

    The missing and the failing rules are logged and recorded (``rules.missing``, ``rules.unhealthy``).
    """
    path = Path(rules_file) if rules_file else RULES_FILE
    expected = expected_alerts(path)
    prom, am = _servers(configuration)
    intervals = prom.intervals()
    rules = prom.rules()
    loaded = sorted({r.name for r in rules})
    missing = [name for name in expected if name not in loaded]
    # A rule that errors at every evaluation (e.g. many-to-many matching) can never fire.
    unhealthy = sorted(
        {
            f"{r.name}: {r.last_error or 'health ' + r.health}"
            for r in rules
            if r.name in expected and r.health == "err"
        }
    )
    _record(
        "rules",
        {
            "file": str(path),
            "expected": expected,
            "loaded": loaded,
            "missing": missing,
            "unhealthy": unhealthy,
            "checked_at": format_time(time.time(), digits=3),
        },
        prometheus=prom.url,
        alertmanager=am.url,
        intervals={"scrape_seconds": intervals.scrape, "evaluation_seconds": intervals.evaluation},
    )
    if missing:
        logger.error(
            "alert rules missing from Prometheus at %s: %s (load %s, or its PrometheusRule form)",
            prom.url,
            ", ".join(missing),
            path,
        )
    if unhealthy:
        logger.error(
            "alert rules failing to evaluate in Prometheus at %s: %s", prom.url, "; ".join(unhealthy)
        )
    return not missing and not unhealthy


def _json_object(value: Any, name: str) -> dict[str, Any]:
    if value in (None, ""):
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    try:
        parsed = json.loads(str(value))
    except json.JSONDecodeError as exc:
        raise ProbeError(f"{name} is not a JSON object ({exc.msg}): fix it in the var file") from None
    if not isinstance(parsed, dict):
        raise ProbeError(f"{name} must be a JSON object: fix it in the var file")
    return parsed


def _failed(job: Any) -> bool:
    conditions = (job.status.conditions if job.status is not None else None) or []
    return any(c.type == "Failed" and c.status == "True" for c in conditions)


def fail_backup_job(
    instance: str,
    namespace: str = "tenants",
    backup_type: str = "full",
    timeout: float = 120.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Create an MSSQLBackup of ``instance`` whose Job fails; wait until that Job is Failed; the record."""
    kube.check_namespace(namespace, configuration)
    crs = custom_resources(configuration, secrets)
    backups = crs["backup"]
    name = f"alert-drill-{stamp()}"
    metadata = request_metadata(name, namespace)
    metadata["labels"][DRILL_LABEL] = "true"
    annotations = {LAB_FAIL_ANNOTATION: "alert drill: this backup fails on purpose"}
    annotations.update(
        {
            str(k): str(v)
            for k, v in _json_object(
                (configuration or {}).get("alert_drill_annotations"), "alert_drill_annotations"
            ).items()
        }
    )
    metadata["annotations"] = annotations
    spec = {"instance": instance, "type": backup_type}
    spec.update(_json_object((configuration or {}).get("alert_drill_backup_spec"), "alert_drill_backup_spec"))
    body = backups.body(metadata, spec)
    started = time.monotonic()
    backups.create(namespace, body)
    record: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "instance": instance,
        "created_at": format_time(time.time(), digits=3),
        "job": None,
        "job_failed_at": None,
        "seconds_to_job_failed": None,
        "error": None,
    }
    deadline = started + timeout
    previous = started
    while True:
        # The Job may have failed any time after the previous look began: the drill's clock
        # starts there, so slow polls never shorten the alert's measured delay.
        looked = time.monotonic()
        jobs = kube.owned_jobs(namespace, "MSSQLBackup", name, secrets)
        failed = [j for j in jobs if _failed(j)]
        if failed:
            _marks["job_failed"] = previous
            record.update(
                job=failed[0].metadata.name,
                job_failed_at=format_time(time.time(), digits=3),
                seconds_to_job_failed=round(time.monotonic() - started, 3),
            )
            _record("backup", record)
            return record
        previous = looked
        status = status_of(backups.get(namespace, name))
        phase = status.get("phase")
        if phase == "Failed" and not jobs:
            record["error"] = (
                f"MSSQLBackup {namespace}/{name} failed without a Job "
                f"({status.get('reason') or 'no reason'}): the drill needs a backup Job that fails; "
                "set alert_drill_backup_spec to a spec your operator accepts and whose Job fails"
            )
            _record("backup", record)
            raise ProbeError(record["error"])
        if time.monotonic() >= deadline:
            record["error"] = (
                f"no Job of MSSQLBackup {namespace}/{name} failed within {timeout:g} s (backup phase "
                f"{phase or 'none'}, Jobs: {', '.join(j.metadata.name for j in jobs) or 'none'}); on a "
                "cluster, set alert_drill_backup_spec or alert_drill_annotations to what makes your "
                "operator's backup Job fail"
            )
            _record("backup", record)
            raise ProbeError(record["error"])
        time.sleep(POLL)


def _backup_name() -> str:
    name = (_doc().get("backup") or {}).get("name")
    if not name:
        raise ProbeError("no drill backup recorded in alerting.json: run fail_backup_job first")
    return str(name)


def _for_alert(alerts: list[Alert], alert: str, backup: str) -> list[Alert]:
    """The alerts named ``alert`` about ``backup`` (label owner_name, else a job_name from it)."""
    return [
        a
        for a in alerts
        if a.name == alert
        and (a.labels.get("owner_name") == backup or a.labels.get("job_name", "").startswith(backup))
    ]


def wait_for_alert(
    alert: str = "MSSQLBackupJobFailed", configuration: Configuration = None, secrets: Secrets = None
) -> dict[str, Any]:
    """Wait until ``alert`` about the drill's backup fires in Prometheus and reaches Alertmanager.

    Deadline: the rule's ``for:`` plus two scrape intervals after the Job was seen failed.
    ProbeError when it did not fire by then (the record says how late, or that it never did).
    """
    prom, am = _servers(configuration)
    backup = _backup_name()
    rules = [r for r in prom.rules() if r.name == alert]
    if not rules:
        raise ProbeError(f"Prometheus at {prom.url} has no alerting rule {alert}: load deploy/alerts/")
    for_seconds = max(r.for_seconds for r in rules)
    intervals = prom.intervals()
    deadline_seconds = for_seconds + 2 * intervals.scrape
    if "job_failed" not in _marks:
        raise ProbeError(
            "no failed backup Job seen in this run: fail_backup_job must run first, in the same run"
        )
    start = _marks["job_failed"]
    record: dict[str, Any] = {
        "alert": alert,
        "for_seconds": for_seconds,
        "scrape_seconds": intervals.scrape,
        "deadline_seconds": deadline_seconds,
        "pending_at": None,
        "firing_at": None,
        "received_at": None,
        "delay_seconds": None,
        "within_deadline": False,
        "error": None,
    }
    firing_mono = None
    poll = min(POLL, intervals.scrape / 10)  # the wait's own granularity stays small beside the deadline
    while True:
        mine = _for_alert(prom.alerts(), alert, backup)
        # Times are taken after each answer, so a slow API never shortens the measured delay.
        now = time.monotonic()
        if mine and record["pending_at"] is None:
            record["pending_at"] = mine[0].active_at
        if firing_mono is None and any(a.state == "firing" for a in mine):
            firing_mono = now
            record["firing_at"] = format_time(time.time(), digits=3)
        received = [a for a in _for_alert(am.alerts(alert), alert, backup) if a.state == "active"]
        now = time.monotonic()
        if received and firing_mono is not None:
            record["received_at"] = format_time(time.time(), digits=3)
            record["delay_seconds"] = round(now - start, 3)
            record["within_deadline"] = now - start <= deadline_seconds
            if not record["within_deadline"]:
                record["error"] = (
                    f"{alert} fired {now - start:.1f} s after the Job failed, over the deadline "
                    f"{deadline_seconds:g} s (for: {for_seconds:g} s + 2 scrape intervals of "
                    f"{intervals.scrape:g} s)"
                )
            break
        if now - start > deadline_seconds + LATE_GRACE:
            seen = "pending in Prometheus" if mine else "not even pending in Prometheus"
            if firing_mono is not None:
                seen = "firing in Prometheus but never received by Alertmanager"
            record["error"] = f"{alert} for {backup} did not fire within {now - start:.0f} s ({seen})"
            break
        time.sleep(poll)
    _record("fired", record)
    if record["error"]:
        raise ProbeError(record["error"])
    return record


def clear_failed_backups(
    namespace: str = "tenants", configuration: Configuration = None, secrets: Secrets = None
) -> list[str]:
    """Delete every drill backup (label :data:`DRILL_LABEL`) in ``namespace``; their Jobs go with them.

    Tries each one; ProbeError naming those it could not delete. Run again as a rollback, it
    records under ``rollback_cleared`` and keeps the method's ``cleared`` evidence.
    """
    backups = custom_resources(configuration, secrets)["backup"]
    deleted, problems = [], []
    for obj in backups.list(namespace):
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if labels.get(DRILL_LABEL) == "true":
            name = str(obj["metadata"]["name"])
            try:
                if backups.delete(namespace, name):
                    deleted.append(name)
            except ProbeError as exc:
                problems.append(f"{name}: {exc}")
    doc = _doc() if kube.run_dir() is not None else {}
    section = "rollback_cleared" if doc.get("cleared") else "cleared"
    if section == "cleared":
        _marks["cleared"] = time.monotonic()
    if doc.get("backup"):
        _record(section, {"at": format_time(time.time(), digits=3), "deleted": deleted, "problems": problems})
    if problems:
        raise ProbeError(f"could not delete drill backup(s) in {namespace}: {'; '.join(problems)}")
    return deleted


def wait_for_alert_resolved(
    alert: str = "MSSQLBackupJobFailed",
    timeout: float = 120.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Wait until ``alert`` about the drill's backup left Prometheus and Alertmanager; ProbeError if not."""
    prom, am = _servers(configuration)
    backup = _backup_name()
    if "cleared" not in _marks:
        raise ProbeError(
            "the drill's backup was not cleared in this run: clear_failed_backups must run first"
        )
    start = _marks["cleared"]
    record: dict[str, Any] = {"at": None, "delay_seconds": None, "error": None}
    while True:
        in_prom = _for_alert(prom.alerts(), alert, backup)
        # Any state Alertmanager still holds (active, suppressed by a silence, unprocessed) is
        # not resolved: resolved alerts leave its API.
        in_am = _for_alert(am.alerts(alert), alert, backup)
        now = time.monotonic()
        if not in_prom and not in_am:
            record.update(at=format_time(time.time(), digits=3), delay_seconds=round(now - start, 3))
            break
        if now - start > timeout:
            where = " and ".join(w for w, held in (("Prometheus", in_prom), ("Alertmanager", in_am)) if held)
            record["error"] = (
                f"{alert} for {backup} still held by {where} {now - start:.0f} s after it was cleared"
            )
            break
        time.sleep(POLL)
    _record("resolved", record)
    if record["error"]:
        raise ProbeError(record["error"])
    return record
