"""One soak check round on the target: backup ages, failed backup Jobs, pods, and the load's window.

Each function measures one part of a ``soak/checks.jsonl`` line (the format is
:mod:`probes.soak_summary`'s input) and never raises for a measurement that failed this
round: the value is None and one line saying why goes into the round's ``errors`` (the
list passed in; without one the line is logged as a warning). :func:`check_round`
assembles a whole line except ``load``, which the runner adds from its
:class:`LoadWindow`.

- :func:`backup_ages`: per tenant, the newest ``Completed`` log and full MSSQLBackup of
  its instance (``spec.instance``, else the label ``mssql.example.com/instance``; the
  type from ``spec.type``, ``log`` or ``full``) by ``status.endTime``, and the age of
  the newest log backup: the real RPO exposure between backups. Before the first log
  backup the age counts from the soak's start (``since``), so a policy that never
  produces one grows into a violation instead of staying unknown.
- :func:`failed_backup_jobs`: the Jobs (batch/v1) with condition ``Failed=True`` that
  belong to a backup: owned by an MSSQLBackup (an ownerReference of that kind in the
  configured group), or, for an operator that sets no owner, named ``<backup>-backup``
  after an MSSQLBackup of the namespace (the lab operator's naming); plus every
  MSSQLBackup in phase ``Failed`` with no failed Job reported for it (its Job gone, or
  it failed without one). Each entry names its backup (``backup``) so a failure is
  counted once even after its Job is removed.
- :func:`pod_states` (:mod:`probes.soak_pods`): the operator's and the tenants' MSSQL
  pods, their uid, restarts, memory and open connections (:mod:`probes.pod_sources`).
- :class:`LoadWindow` (:mod:`probes.soak_load`): acks, failures, unknown outcomes and
  the p99 latency of acknowledged writes per tenant since the previous round.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from common.times import parse_time
from probes.errors import ProbeError
from probes.k8s import kube
from probes.k8s.crs import coordinates, custom_resources
from probes.pod_sources import PodSource
from probes.soak_load import LoadWindow
from probes.soak_pods import Configuration, Secrets, api_line, pod_states, raw_list, report, status_of

__all__ = [
    "INSTANCE_LABEL",
    "LoadWindow",
    "backup_ages",
    "check_round",
    "failed_backup_jobs",
    "pod_states",
]

#: Where an MSSQLBackup without ``spec.instance`` names its instance.
INSTANCE_LABEL = "mssql.example.com/instance"


def _instance_of(backup: Mapping[str, Any]) -> str | None:
    spec = backup.get("spec") or {}
    labels = (backup.get("metadata") or {}).get("labels") or {}
    value = spec.get("instance") if isinstance(spec, Mapping) else None
    value = value or (labels.get(INSTANCE_LABEL) if isinstance(labels, Mapping) else None)
    return str(value) if value else None


def backup_ages(
    tenants: Sequence[str],
    namespace: str,
    configuration: Configuration,
    secrets: Secrets,
    now: float,
    since: float,
) -> dict[str, dict[str, Any]]:
    """``{tenant: {"last_log_end", "last_full_end", "age", "error"}}`` (see the module doc).

    Times are epoch seconds; ``age`` is ``now`` minus the newest log backup's end, or minus
    ``since`` before the first one (never below 0). When the backups cannot be listed every
    tenant's ``age`` is None with the reason in ``error``.
    """
    out: dict[str, dict[str, Any]] = {
        t: {"last_log_end": None, "last_full_end": None, "age": None, "error": None} for t in tenants
    }
    try:
        items = custom_resources(configuration, secrets)["backup"].list(namespace)
    except (ProbeError, ValueError) as exc:
        for entry in out.values():
            entry["error"] = f"backups not listed: {exc}"
        return out
    unreadable: dict[str, list[str]] = {}
    for item in items:
        tenant = _instance_of(item)
        status = status_of(item)
        if tenant not in out or status.get("phase") != "Completed":
            continue
        kind = str((item.get("spec") or {}).get("type") or "").lower()
        key = {"log": "last_log_end", "full": "last_full_end"}.get(kind)
        if key is None:
            continue
        end = parse_time(status.get("endTime"))
        if end is None:
            name = str((item.get("metadata") or {}).get("name"))
            unreadable.setdefault(tenant, []).append(name)
            continue
        entry = out[tenant]
        entry[key] = end if entry[key] is None else max(entry[key], end)
    for tenant, entry in out.items():
        last = entry["last_log_end"]
        entry["age"] = round(max(0.0, now - (since if last is None else last)), 3)
        if tenant in unreadable:
            names = ", ".join(sorted(unreadable[tenant]))
            entry["error"] = (
                f"Completed backups without a readable status.endTime ({names}): "
                "the operator must report RFC 3339 end times"
            )
    return out


def _failed_condition(job: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for cond in status_of(job).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == "Failed" and str(cond.get("status")) == "True":
            return cond
    return None


def _backup_owner(job: Mapping[str, Any], group: str, backups: set[str]) -> str | None:
    md = job.get("metadata") or {}
    for ref in md.get("ownerReferences") or []:
        if (
            isinstance(ref, Mapping)
            and ref.get("kind") == "MSSQLBackup"
            and str(ref.get("apiVersion", "")).split("/")[0] == group
        ):
            return str(ref.get("name"))
    name = str(md.get("name") or "")
    if not md.get("ownerReferences") and name.endswith("-backup") and name[: -len("-backup")] in backups:
        return name[: -len("-backup")]
    return None


def failed_backup_jobs(
    namespace: str, configuration: Configuration, secrets: Secrets, errors: list[str] | None = None
) -> list[dict[str, Any]]:
    """Every failed backup Job, and every failed MSSQLBackup without one, seen now (module doc).

    Entries: ``name`` (the Job's, or the backup's when no failed Job is there), ``namespace``,
    ``reason`` (the condition's reason and message, or the backup's ``status.reason``),
    ``failed_at`` (epoch or None), ``backup`` (its MSSQLBackup, None if not known) and ``kind``
    (``Job`` or ``MSSQLBackup``). A listing that fails is one line in ``errors``.
    """
    from kubernetes import client

    try:
        group = coordinates(configuration).group
        backups = custom_resources(configuration, secrets)["backup"].list(namespace)
    except (ProbeError, ValueError) as exc:
        report(errors, f"failed backup jobs: {exc}")
        return []
    try:
        batch = client.BatchV1Api(kube.api_client(secrets))
        jobs = raw_list(batch.list_namespaced_job, namespace).get("items") or []
    except Exception as exc:
        report(errors, f"failed backup jobs: {api_line(exc, f'jobs in {namespace}')}")
        return []
    names = {str((b.get("metadata") or {}).get("name")) for b in backups}
    out: list[dict[str, Any]] = []
    reported: set[str] = set()
    for job in jobs:
        cond = _failed_condition(job)
        owner = _backup_owner(job, group, names)
        if cond is None or owner is None:
            continue
        reason = str(cond.get("reason") or "Failed")
        if cond.get("message"):
            reason += f": {cond.get('message')}"
        out.append(
            {
                "name": str(job["metadata"]["name"]),
                "namespace": namespace,
                "reason": reason,
                "failed_at": parse_time(cond.get("lastTransitionTime")),
                "backup": owner,
                "kind": "Job",
            }
        )
        reported.add(owner)
    for backup in backups:
        status = status_of(backup)
        name = str((backup.get("metadata") or {}).get("name"))
        if status.get("phase") != "Failed" or name in reported:
            continue
        out.append(
            {
                "name": name,
                "namespace": namespace,
                "reason": str(status.get("reason") or "phase Failed"),
                "failed_at": parse_time(status.get("endTime")),
                "backup": name,
                "kind": "MSSQLBackup",
            }
        )
    return sorted(out, key=lambda e: (e["failed_at"] is None, e["failed_at"] or 0.0, e["name"]))


# -- a whole round ------------------------------------------------------------------------------


def check_round(
    tenants: Sequence[str],
    namespace: str,
    configuration: Configuration,
    secrets: Secrets,
    *,
    started_at: float,
    now: float | None = None,
    elapsed: float | None = None,
    source: PodSource | None = None,
) -> dict[str, Any]:
    """One ``checks.jsonl`` line without ``load``: ``kind``, ``at``, ``elapsed``, ``backups``,
    ``failed_jobs``, ``pods``, ``errors`` (measurements not taken this round) and ``limits``
    (measurements this target cannot take at all).

    ``elapsed`` should be the runner's monotonic seconds since the start; without it,
    ``now - started_at`` (wall clock).
    """
    at = time.time() if now is None else now
    errors: list[str] = []
    limits: list[str] = []
    line: dict[str, Any] = {
        "kind": "check",
        "at": at,
        "elapsed": round(max(0.0, at - started_at) if elapsed is None else elapsed, 3),
    }
    line["backups"] = backup_ages(tenants, namespace, configuration, secrets, now=at, since=started_at)
    line["failed_jobs"] = failed_backup_jobs(namespace, configuration, secrets, errors)
    line["pods"] = pod_states(
        tenants, configuration, secrets, errors, limits=limits, namespace=namespace, source=source
    )
    line["errors"] = errors
    line["limits"] = limits
    return line
