"""Jobs and CronJobs as kube-state-metrics v2 series (names, labels and values as it exports them).

Every Job series carries ``namespace`` and ``job_name``; every CronJob series
``namespace`` and ``cronjob``. What kube-state-metrics leaves out when a field is
unset is left out here too (no ``kube_job_status_start_time`` before the Job started,
no ``kube_job_failed`` before a ``Failed`` condition exists, ...).

* ``kube_job_failed{condition}`` / ``kube_job_complete{condition}``: for each condition
  of that type, three series ``true``/``false``/``unknown``, 1 on the matching one.
* ``kube_job_status_failed``: 0 without a ``reason`` label while no pod failed; then, for
  a ``Failed`` condition, one series per known reason (``BackoffLimitExceeded``,
  ``DeadlineExceeded``, ``Evicted``), 1 on the condition's; with no known reason, one
  series ``reason=""`` carrying the failed pod count.
* ``kube_job_owner``: one series per ownerReference (``owner_is_controller`` ``true``
  or ``false``), one with empty labels when there is none.
* ``kube_cronjob_labels``: every label of the CronJob as ``label_<name>`` (like
  kube-state-metrics run with ``--metric-labels-allowlist=cronjobs=[*]``).
* ``kube_cronjob_next_schedule_time``: the first scheduled time after
  ``status.lastScheduleTime`` (else the creation time) in ``spec.timeZone`` (UTC when
  unset, as the lab's CronJob controller schedules), absent while suspended.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lab.controllers.cron import CronSchedule
from lab.errors import LabError
from lab.monitoring.exposition import (
    Series,
    as_dict,
    as_list,
    bool_value,
    condition_series,
    label_name,
    number,
    timestamp,
)

__all__ = ["FAILURE_REASONS", "cronjob_series", "job_series", "next_schedule_time"]

Obj = dict[str, Any]

FAILURE_REASONS = ("BackoffLimitExceeded", "DeadlineExceeded", "Evicted")


def _conditions(obj: Obj, ctype: str) -> list[Obj]:
    found = [as_dict(c) for c in as_list(as_dict(obj.get("status")).get("conditions"))]
    return [c for c in found if c.get("type") == ctype]


def job_series(job: Obj) -> list[Series]:
    """The series of one Job."""
    md, spec, status = as_dict(job.get("metadata")), as_dict(job.get("spec")), as_dict(job.get("status"))
    base = {"namespace": str(md.get("namespace") or ""), "job_name": str(md.get("name") or "")}
    out = [Series("kube_job_info", dict(base), 1.0)]
    owners = [as_dict(r) for r in as_list(md.get("ownerReferences"))]
    if not owners:
        out.append(
            Series(
                "kube_job_owner", {**base, "owner_kind": "", "owner_name": "", "owner_is_controller": ""}, 1.0
            )
        )
    for ref in owners:
        controller = "true" if ref.get("controller") is True else "false"
        labels = {
            **base,
            "owner_kind": str(ref.get("kind") or ""),
            "owner_name": str(ref.get("name") or ""),
            "owner_is_controller": controller,
        }
        out.append(Series("kube_job_owner", labels, 1.0))
    created = timestamp(md.get("creationTimestamp"))
    if created is not None:
        out.append(Series("kube_job_created", dict(base), created))
    if spec.get("completions") is not None:
        out.append(Series("kube_job_spec_completions", dict(base), number(spec.get("completions"))))
    out.append(Series("kube_job_status_active", dict(base), number(status.get("active"))))
    out.append(Series("kube_job_status_succeeded", dict(base), number(status.get("succeeded"))))
    out.extend(_failed_counts(job, base))
    for field, name in (
        ("startTime", "kube_job_status_start_time"),
        ("completionTime", "kube_job_status_completion_time"),
    ):
        value = timestamp(status.get(field))
        if value is not None:
            out.append(Series(name, dict(base), value))
    for cond in _conditions(job, "Complete"):
        out.extend(condition_series("kube_job_complete", base, cond.get("status")))
    for cond in _conditions(job, "Failed"):
        out.extend(condition_series("kube_job_failed", base, cond.get("status")))
    return out


def _failed_counts(job: Obj, base: dict[str, str]) -> list[Series]:
    failed = number(as_dict(job.get("status")).get("failed"))
    if failed == 0:
        return [Series("kube_job_status_failed", dict(base), 0.0)]
    out: list[Series] = []
    known = False
    for cond in _conditions(job, "Failed"):
        for reason in FAILURE_REASONS:
            match = cond.get("reason") == reason
            known = known or match
            out.append(Series("kube_job_status_failed", {**base, "reason": reason}, bool_value(match)))
    if not known:
        out.append(Series("kube_job_status_failed", {**base, "reason": ""}, failed))
    return out


def _zone(name: Any) -> tzinfo:
    if not name:
        return UTC
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise LabError(f"unknown timeZone {name!r}") from exc


def next_schedule_time(cronjob: Obj) -> float | None:
    """Epoch seconds of the first run after the last scheduled one (or the creation); None if unknown."""
    md, spec = as_dict(cronjob.get("metadata")), as_dict(cronjob.get("spec"))
    status = as_dict(cronjob.get("status"))
    since = timestamp(status.get("lastScheduleTime"))
    if since is None:
        since = timestamp(md.get("creationTimestamp"))
    if since is None:
        return None
    try:
        zone = _zone(spec.get("timeZone"))
        schedule = CronSchedule.parse(str(spec.get("schedule") or ""))
        local = datetime.fromtimestamp(since, zone).replace(tzinfo=None)
        return schedule.next_after(local).replace(tzinfo=zone).timestamp()
    except LabError:
        return None


def cronjob_series(cronjob: Obj) -> list[Series]:
    """The series of one CronJob."""
    md, spec = as_dict(cronjob.get("metadata")), as_dict(cronjob.get("spec"))
    status = as_dict(cronjob.get("status"))
    base = {"namespace": str(md.get("namespace") or ""), "cronjob": str(md.get("name") or "")}
    info = {
        **base,
        "schedule": str(spec.get("schedule") or ""),
        "concurrency_policy": str(spec.get("concurrencyPolicy") or "Allow"),
        "timezone": str(spec.get("timeZone") or "local"),
    }
    labels = {label_name("label", str(k)): str(v) for k, v in sorted(as_dict(md.get("labels")).items())}
    out = [
        Series("kube_cronjob_info", info, 1.0),
        Series("kube_cronjob_labels", {**labels, **base}, 1.0),
        Series("kube_cronjob_status_active", dict(base), float(len(as_list(status.get("active"))))),
        Series("kube_cronjob_spec_suspend", dict(base), bool_value(spec.get("suspend"))),
    ]
    for value, name in (
        (timestamp(md.get("creationTimestamp")), "kube_cronjob_created"),
        (timestamp(status.get("lastScheduleTime")), "kube_cronjob_status_last_schedule_time"),
        (timestamp(status.get("lastSuccessfulTime")), "kube_cronjob_status_last_successful_time"),
    ):
        if value is not None:
            out.append(Series(name, dict(base), value))
    if spec.get("suspend") is not True:
        upcoming = next_schedule_time(cronjob)
        if upcoming is not None:
            out.append(Series("kube_cronjob_next_schedule_time", dict(base), upcoming))
    return out
