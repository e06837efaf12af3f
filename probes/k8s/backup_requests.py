"""Backup activities: the MSSQLBackupPolicy of an instance, and one MSSQLBackup (full or log).

``apply_backup_policy`` creates or updates the policy and waits until it is Ready;
``request_backup`` asks for one backup and (by default) waits for its outcome;
``wait_for_backup`` waits for one requested without waiting, or until it runs (to
inject a fault meanwhile). Each records this run's backups and a per-type summary in
``pitr.backup`` (the go/no-go gates read it) and raises ProbeError on a failure.
Reached by the experiments through :mod:`probes.k8s.backup_actions` (``wait_for_backup``:
:mod:`probes.k8s.backup_probes`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from probes.errors import ProbeError
from probes.k8s import kube
from probes.k8s.backup_crs import (
    DONE_PHASES,
    Configuration,
    Secrets,
    first_error,
    flag,
    pitr_doc,
    poll,
    request_metadata,
    seconds_between,
    stamp,
    status_of,
)
from probes.k8s.crs import custom_resources
from probes.observations import observe
from probes.pitr import update_pitr

__all__ = ["apply_backup_policy", "request_backup", "wait_for_backup"]


def apply_backup_policy(
    instance: str,
    namespace: str = "tenants",
    full_schedule: str = "0 0 * * *",
    log_interval_seconds: int = 300,
    retention_full_backups: int = 7,
    name: str = "",
    timeout: float = 120.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Create (or update) the MSSQLBackupPolicy of ``instance`` and wait until it is Ready.

    ``full_schedule`` is a 5-field cron; ``name`` defaults to ``<instance>-backups``.
    Records ``pitr.backup.policy_ready``; ProbeError if not Ready within ``timeout``.
    """
    from loadgen.discovery import lookup

    kube.check_namespace(namespace, configuration)
    crs = custom_resources(configuration, secrets)
    name = name or f"{instance}-backups"
    spec = {
        "instance": instance,
        "fullSchedule": full_schedule,
        "logIntervalSeconds": int(log_interval_seconds),
        "retention": {"fullBackups": int(retention_full_backups)},
    }
    policies = crs["policy"]
    if policies.get(namespace, name) is None:
        policies.create(namespace, policies.body(request_metadata(name, namespace), spec))
    else:
        policies.patch(namespace, name, {"spec": spec})

    ready_path = policies.coords.policy_ready_path

    def settled(obj: dict[str, Any]) -> bool:
        status = status_of(obj)
        generation = (obj.get("metadata") or {}).get("generation")
        observed = status.get("observedGeneration")
        current = generation is None or observed is None or observed >= generation
        ready = str(lookup(obj, ready_path)) == "True" or status.get("phase") == "Ready"
        return current and (ready or status.get("phase") == "Failed")

    started = time.monotonic()
    obj, _ = poll(lambda: policies.get(namespace, name), settled, timeout)
    status = status_of(obj)
    ready = obj is not None and settled(obj) and status.get("phase") != "Failed"
    result = {
        "name": name,
        "ready": ready,
        "phase": status.get("phase"),
        "seconds": round(time.monotonic() - started, 3),
    }
    update_pitr(kube.run_dir(), "backup", {"policy_ready": ready, "policy": name})
    observe("backup_policy_ready_seconds", result["seconds"] if ready else None)
    if not ready:
        why = _condition_message(status) or f"phase {status.get('phase') or 'none'}"
        message = f"MSSQLBackupPolicy {namespace}/{name} not Ready within {timeout:g}s ({why})"
        first_error(message)
        raise ProbeError(message)
    return result


def _condition_message(status: Mapping[str, Any]) -> str:
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == "Ready" and cond.get("status") != "True":
            return str(cond.get("message") or cond.get("reason") or "")
    return str(status.get("reason") or "")


def _backup_result(obj: Mapping[str, Any], finished: bool, waited: float | None) -> dict[str, Any]:
    status = status_of(obj)
    spec = obj.get("spec") or {}
    phase = status.get("phase") or "Pending"
    return {
        "name": (obj.get("metadata") or {}).get("name"),
        "instance": spec.get("instance"),
        "type": spec.get("type"),
        "phase": phase,
        "ok": finished and phase == "Completed",
        "backup_id": status.get("backupId"),
        "covered_from": status.get("coveredFrom"),
        "covered_to": status.get("coveredTo"),
        "checksum": status.get("checksum"),
        "reason": status.get("reason"),
        "duration_seconds": seconds_between(status.get("startTime"), status.get("endTime")),
        "waited_seconds": None if waited is None else round(waited, 3),
    }


def _record_backup(result: Mapping[str, Any], pending: bool = False) -> None:
    """Update ``pitr.backup``: the list of this run's backups and the per-type summary gonogo reads."""
    doc = pitr_doc().get("backup") or {}
    history = [b for b in doc.get("backups") or [] if b.get("name") != result["name"]]
    history.append({**result, "pending": pending})
    kind = str(result.get("type"))
    finished = [b for b in history if b.get("type") == kind and not b.get("pending")]
    earlier = doc.get("pending") if doc.get("pending") != result["name"] else None
    values: dict[str, Any] = {"backups": history, "pending": result["name"] if pending else earlier}
    if pending:
        values["last_requested"] = result["name"]
    if finished:
        values[kind] = {
            "ok": all(b.get("ok") for b in finished),
            "name": finished[-1]["name"],
            "count": len(finished),
            "failed": [b["name"] for b in finished if not b.get("ok")],
        }
    update_pitr(kube.run_dir(), "backup", values)


def request_backup(
    instance: str,
    type: str = "full",
    namespace: str = "tenants",
    wait: bool = True,
    timeout: float = 300.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Create an MSSQLBackup (``type`` full or log) of ``instance``; with ``wait``, until Completed/Failed.

    Returns the backup's status (name, phase, ok, backupId, coveredFrom/To, checksum,
    reason, durations). Without ``wait`` it returns at once and ``wait_for_backup``
    (no name) picks it up. ProbeError when it fails or does not finish in ``timeout``.
    """
    if type not in ("full", "log"):
        raise ProbeError(f"backup type {type!r} is not full or log")
    kube.check_namespace(namespace, configuration)
    crs = custom_resources(configuration, secrets)
    if crs["instance"].get(namespace, instance) is None:
        message = f"instance {namespace}/{instance} does not exist: nothing to back up"
        first_error(message)
        raise ProbeError(message)
    backups = crs["backup"]
    name = f"{instance}-{type}-{stamp()}"
    body = backups.body(request_metadata(name, namespace), {"instance": instance, "type": type})
    created = backups.create(namespace, body)
    requested = {**_backup_result(created, False, None), "requested_at": time.time()}
    _record_backup(requested, pending=True)
    if not flag(wait, "wait"):
        return requested
    return wait_for_backup(name, namespace, timeout, configuration=configuration, secrets=secrets)


def wait_for_backup(
    name: str = "",
    namespace: str = "tenants",
    timeout: float = 300.0,
    phase: str = "Completed",
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Wait until MSSQLBackup ``name`` is Completed or Failed; records it in ``pitr.backup``.

    Without a name: the backup requested without waiting that is still pending, else
    the one requested last (at once if it already finished). ``phase=Running`` returns as
    soon as it left Pending (running or already done), to inject a fault while it runs.
    ProbeError when it fails or the wait times out.
    """
    if phase not in ("Running", "Completed"):
        raise ProbeError(f"phase {phase!r}: wait for Running or Completed")
    recorded = pitr_doc().get("backup") or {}
    name = name or str(recorded.get("pending") or recorded.get("last_requested") or "")
    if not name:
        raise ProbeError("no backup to wait for: pass its name or request_backup(wait=False) first")
    backups = custom_resources(configuration, secrets)["backup"]
    wanted = DONE_PHASES if phase == "Completed" else ("Running", *DONE_PHASES)
    started = time.monotonic()
    obj, _ = poll(
        lambda: backups.get(namespace, name), lambda o: status_of(o).get("phase") in wanted, timeout
    )
    if obj is None:
        message = f"MSSQLBackup {namespace}/{name} disappeared while waiting for it"
        first_error(message)
        raise ProbeError(message)
    reached = status_of(obj).get("phase") in wanted
    done = status_of(obj).get("phase") in DONE_PHASES
    result = _backup_result(obj, done, time.monotonic() - started)
    if phase == "Running" and reached and not done:
        observe("backup_running", {"name": name, "at": time.time()})
        return result
    _record_backup(result)
    if not done:
        message = f"{result['type']} backup {name} not finished within {timeout:g}s (phase {result['phase']})"
        first_error(message)
        raise ProbeError(message)
    if not result["ok"]:
        message = f"{result['type']} backup {name} failed: {result['reason'] or 'no reason given'}"
        first_error(message)
        raise ProbeError(message)
    return result
