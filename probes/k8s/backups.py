"""Chaos Toolkit activities for backups and point-in-time restore (PITR), through the operator's CRs.

The harness asks, the operator does: ``MSSQLBackupPolicy`` (scheduled full + log
backups), ``MSSQLBackup`` (one full or log backup), ``MSSQLRestore`` (source, targetTime,
target, createTarget). Each activity waits for the CR's outcome, records it in the run
folder's ``pitr.json`` (blocks ``backup``, ``restore``, ``validation``, ``mark``; see
:mod:`probes.pitr`) and raises ProbeError on a failure, so Chaos Toolkit marks the
activity failed and the go/no-go document fails the gate.

A typical method: ``apply_backup_policy`` → ``request_backup(full)`` → writes →
``request_backup(log)`` → ``mark_target_time`` → writes → ``request_backup(log)`` →
``request_restore`` (to ``<source>-pitr``, created by the operator) → ``validate_pitr``
(every acknowledged write of this run up to the target time present, none after);
``delete_restore_target`` in the rollbacks. ``verify_backups`` writes ``integrity.json``:
backup checksums re-verified plus a restore smoke test into a scratch instance.
``backup_chain`` lives in :mod:`probes.k8s.backup_chain` (listed here for the experiments).
A target created for a restore is labelled ``mssql.example.com/role: restore-target``
(:data:`common.crd.ROLE_LABEL`) so no later run takes it for a tenant.

Configuration: ``mssql_group``/``mssql_version`` (shared with the instances),
``backup_plural``, ``backup_policy_plural``, ``restore_plural``, ``policy_ready_path``;
``dialect``/``odbc_driver``/``kubeconfig`` and the instance paths as for the load;
``backups_folder`` (a path template with ``{namespace}`` and ``{instance}``: where the
backups volume is readable from here, for ``verify_backups``; empty: the lab's volume
folder if there is one, checked with the lab's ``python -m lab.executor verify``).
"""

from __future__ import annotations

import json
import logging
import os
import secrets as tokens
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.config import boolean
from common.crd import RESTORE_TARGET, ROLE_LABEL
from loadgen.journal import read_journal
from probes.errors import ProbeError
from probes.k8s import kube
from probes.k8s.backup_chain import backup_chain, instance_chain
from probes.k8s.backup_chain import store_folder as _backups_folder
from probes.k8s.crs import CustomResources, custom_resources
from probes.k8s.crs import coordinates as crd_coordinates
from probes.observations import observe
from probes.pitr import (
    DEFAULT_EPSILON,
    INTEGRITY_NAME,
    PITR_NAME,
    TargetRow,
    format_time,
    lsn_gaps,
    parse_time,
    read_json_block,
    update_pitr,
    validate_restore,
    write_json_block,
)

__all__ = [
    "apply_backup_policy",
    "request_backup",
    "wait_for_backup",
    "backup_chain",
    "mark_target_time",
    "request_restore",
    "validate_pitr",
    "verify_backups",
    "delete_restore_target",
]

#: the activities above that only observe (``chaos discover`` lists them as probes).
PROBES = ("wait_for_backup", "backup_chain", "validate_pitr")

Configuration = Mapping[str, Any] | None
Secrets = Mapping[str, Any] | None

logger = logging.getLogger("chaostoolkit")

DONE_PHASES = ("Completed", "Failed")
POLL = 0.5
MANAGED_BY = {"app.kubernetes.io/managed-by": "mssql-chaos-harness"}


# --------------------------------------------------------------------------- CR access


def _metadata(name: str, namespace: str) -> dict[str, Any]:
    labels = dict(MANAGED_BY)
    folder = kube.run_dir()
    if folder is not None:
        value = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in folder.name)[:63]
        labels["mssql.example.com/harness-run"] = value.strip("-_.") or "run"
    return {"name": name, "namespace": namespace, "labels": labels}


def _stamp() -> str:
    """A name suffix unique per request: ``20261127-000102-123-a1b2`` (DNS-1123 safe)."""
    now = time.time()
    return (
        time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + f"-{int(now % 1 * 1000):03d}-{tokens.token_hex(2)}"
    )


def _flag(value: Any, name: str) -> bool:
    """A boolean argument that may arrive as a string from an environment variable (unset: false)."""
    try:
        return boolean(value, default=False, name=name)
    except ValueError as exc:
        raise ProbeError(str(exc)) from None


def _status(obj: Mapping[str, Any] | None) -> dict[str, Any]:
    status = (obj or {}).get("status")
    return dict(status) if isinstance(status, Mapping) else {}


def _poll(
    read: Callable[[], dict[str, Any] | None], done: Callable[[dict[str, Any]], bool], timeout: float
) -> tuple[dict[str, Any] | None, bool]:
    """Read until ``done`` or ``timeout``; returns the last object and whether it finished."""
    deadline = time.monotonic() + timeout
    obj = read()
    while obj is not None and not done(obj):
        if time.monotonic() >= deadline:
            return obj, False
        time.sleep(POLL)
        obj = read()
    return obj, obj is not None


def _seconds_between(start: Any, end: Any) -> float | None:
    try:
        return round(parse_time(str(end)) - parse_time(str(start)), 3) if start and end else None
    except ProbeError:
        return None


def _pitr_doc() -> dict[str, Any]:
    folder = kube.run_dir()
    return (read_json_block(folder / PITR_NAME) if folder else None) or {}


def _first_error(message: str) -> None:
    """Record ``message`` as ``pitr.backup.error`` unless an earlier error is there."""
    if not (_pitr_doc().get("backup") or {}).get("error"):
        update_pitr(kube.run_dir(), "backup", {"error": message})


# --------------------------------------------------------------------------- backups


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
        body = {
            "apiVersion": f"{policies.coords.group}/{policies.coords.version}",
            "kind": "MSSQLBackupPolicy",
            "metadata": _metadata(name, namespace),
            "spec": spec,
        }
        policies.create(namespace, body)
    else:
        policies.patch(namespace, name, {"spec": spec})

    ready_path = policies.coords.policy_ready_path

    def settled(obj: dict[str, Any]) -> bool:
        status = _status(obj)
        generation = (obj.get("metadata") or {}).get("generation")
        observed = status.get("observedGeneration")
        current = generation is None or observed is None or observed >= generation
        ready = str(lookup(obj, ready_path)) == "True" or status.get("phase") == "Ready"
        return current and (ready or status.get("phase") == "Failed")

    started = time.monotonic()
    obj, _ = _poll(lambda: policies.get(namespace, name), settled, timeout)
    status = _status(obj)
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
        _first_error(message)
        raise ProbeError(message)
    return result


def _condition_message(status: Mapping[str, Any]) -> str:
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == "Ready" and cond.get("status") != "True":
            return str(cond.get("message") or cond.get("reason") or "")
    return str(status.get("reason") or "")


def _backup_result(obj: Mapping[str, Any], finished: bool, waited: float | None) -> dict[str, Any]:
    status = _status(obj)
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
        "duration_seconds": _seconds_between(status.get("startTime"), status.get("endTime")),
        "waited_seconds": None if waited is None else round(waited, 3),
    }


def _record_backup(result: Mapping[str, Any], pending: bool = False) -> None:
    """Update ``pitr.backup``: the list of this run's backups and the per-type summary gonogo reads."""
    doc = _pitr_doc().get("backup") or {}
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
        _first_error(message)
        raise ProbeError(message)
    backups = crs["backup"]
    name = f"{instance}-{type}-{_stamp()}"
    body = {
        "apiVersion": f"{backups.coords.group}/{backups.coords.version}",
        "kind": "MSSQLBackup",
        "metadata": _metadata(name, namespace),
        "spec": {"instance": instance, "type": type},
    }
    created = backups.create(namespace, body)
    requested = {**_backup_result(created, False, None), "requested_at": time.time()}
    _record_backup(requested, pending=True)
    if not _flag(wait, "wait"):
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
    recorded = _pitr_doc().get("backup") or {}
    name = name or str(recorded.get("pending") or recorded.get("last_requested") or "")
    if not name:
        raise ProbeError("no backup to wait for: pass its name or request_backup(wait=False) first")
    backups = custom_resources(configuration, secrets)["backup"]
    wanted = DONE_PHASES if phase == "Completed" else ("Running", *DONE_PHASES)
    started = time.monotonic()
    obj, _ = _poll(lambda: backups.get(namespace, name), lambda o: _status(o).get("phase") in wanted, timeout)
    if obj is None:
        message = f"MSSQLBackup {namespace}/{name} disappeared while waiting for it"
        _first_error(message)
        raise ProbeError(message)
    reached = _status(obj).get("phase") in wanted
    done = _status(obj).get("phase") in DONE_PHASES
    result = _backup_result(obj, done, time.monotonic() - started)
    if phase == "Running" and reached and not done:
        observe("backup_running", {"name": name, "at": time.time()})
        return result
    _record_backup(result)
    if not done:
        message = f"{result['type']} backup {name} not finished within {timeout:g}s (phase {result['phase']})"
        _first_error(message)
        raise ProbeError(message)
    if not result["ok"]:
        message = f"{result['type']} backup {name} failed: {result['reason'] or 'no reason given'}"
        _first_error(message)
        raise ProbeError(message)
    return result


def _completed_backups(
    instance: str, namespace: str, crs: Mapping[str, CustomResources]
) -> list[dict[str, Any]]:
    return [
        b
        for b in crs["backup"].list(namespace)
        if (b.get("spec") or {}).get("instance") == instance
        and _status(b).get("phase") == "Completed"
        and _status(b).get("coveredTo")
    ]


# --------------------------------------------------------------------------- restore


def mark_target_time(configuration: Configuration = None, secrets: Secrets = None) -> str:
    """Record now (UTC, RFC 3339 with microseconds) as this run's PITR target time; returns it."""
    now = time.time()
    text = format_time(now)
    update_pitr(kube.run_dir(), "mark", {"target_time": text, "at": now})
    observe("pitr_target_time", text)
    return text


def _marked_time() -> str:
    marked = (_pitr_doc().get("mark") or {}).get("target_time")
    if not marked:
        raise ProbeError("no PITR target time: run mark_target_time first or pass target_time")
    return str(marked)


def _condition(status: Mapping[str, Any], kind: str) -> str | None:
    """The message of condition ``kind`` when it is True (None otherwise)."""
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == kind and cond.get("status") == "True":
            return str(cond.get("message") or cond.get("reason") or kind)
    return None


def _label_restore_target(instances: CustomResources, namespace: str, target: str) -> None:
    """Label the instance the operator created for this restore, so nothing takes it for a tenant.

    The lab operator labels its targets itself; another operator may not. A target that
    cannot be labelled is logged, not fatal: the restore's outcome does not depend on it.
    """
    obj = instances.get(namespace, target)
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    if obj is None or labels.get(ROLE_LABEL) == RESTORE_TARGET:
        return
    try:
        instances.patch(namespace, target, {"metadata": {"labels": {ROLE_LABEL: RESTORE_TARGET}}})
    except ProbeError as exc:
        logger.warning(f"cannot label restore target {namespace}/{target} as {RESTORE_TARGET}: {exc}")


def _restore(
    source: str,
    target: str,
    namespace: str,
    target_time: str,
    create_target: bool,
    timeout: float,
    crs: Mapping[str, CustomResources],
) -> dict[str, Any]:
    """Create an MSSQLRestore, wait for Completed/Failed; the outcome as a dict (no raise on Failed)."""
    restores = crs["restore"]
    name = f"{target}-{_stamp()}"
    body = {
        "apiVersion": f"{restores.coords.group}/{restores.coords.version}",
        "kind": "MSSQLRestore",
        "metadata": _metadata(name, namespace),
        "spec": {
            "source": source,
            "targetTime": target_time,
            "target": target,
            "createTarget": create_target,
        },
    }
    started = time.monotonic()
    existed = crs["instance"].get(namespace, target) is not None
    restores.create(namespace, body)
    obj, _ = _poll(
        lambda: restores.get(namespace, name), lambda o: _status(o).get("phase") in DONE_PHASES, timeout
    )
    duration = time.monotonic() - started
    if create_target and not existed:
        _label_restore_target(crs["instance"], namespace, target)
    status = _status(obj)
    phase = status.get("phase") or ("gone" if obj is None else "Pending")
    ok = phase == "Completed"
    if ok:
        error = None
    elif phase == "Failed":
        error = str(status.get("reason") or "failed without a reason")
    elif obj is None:
        error = f"MSSQLRestore {namespace}/{name} disappeared while waiting for it"
    else:
        error = f"not finished within {timeout:g}s (phase {phase})"
    return {
        "ok": ok,
        "name": name,
        "source": source,
        "target": target,
        "target_time": target_time,
        "create_target": create_target,
        "phase": phase,
        "error": error,
        "achieved": status.get("achievedRestorePoint"),
        "backup_id": status.get("backupId"),
        "fallback": _condition(status, "FallbackToOlderFull"),
        "duration_seconds": round(duration, 3),
        "server_duration_seconds": _seconds_between(status.get("startTime"), status.get("endTime")),
    }


def request_restore(
    source: str,
    target: str = "",
    namespace: str = "tenants",
    target_time: str | None = None,
    create_target: bool = True,
    timeout: float = 600.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Restore ``source``'s backups to ``target`` (default ``<source>-pitr``) as of ``target_time``.

    ``target_time`` defaults to the one ``mark_target_time`` recorded. With
    ``create_target`` the operator creates the target first (one-click restore);
    otherwise it must exist. Waits for Completed/Failed; records ``pitr.restore``
    (ok, target, target_time, create_target, error, achieved restore point, duration).
    ProbeError when the restore fails or times out.
    """
    kube.check_namespace(namespace, configuration)
    target = target or f"{source}-pitr"
    if target == source:
        raise ProbeError(f"restore target {target} is the source itself: pick another target instance")
    when = target_time or _marked_time()
    parse_time(when)
    result = _restore(
        source,
        target,
        namespace,
        when,
        _flag(create_target, "create_target"),
        timeout,
        custom_resources(configuration, secrets),
    )
    update_pitr(kube.run_dir(), "restore", result)
    observe("restore_duration_seconds", result["duration_seconds"] if result["ok"] else None)
    if not result["ok"]:
        raise ProbeError(f"restore of {source} to {target} at {when}: {result['error']}")
    return result


def _delete_instance(name: str, namespace: str, timeout: float, crs: Mapping[str, CustomResources]) -> bool:
    instances = crs["instance"]
    if not instances.delete(namespace, name):
        return False
    left, _ = _poll(lambda: instances.get(namespace, name), lambda _o: False, timeout)
    if left is not None:
        raise ProbeError(f"MSSQLInstance {namespace}/{name} still exists {timeout:g}s after its deletion")
    return True


def _load_tenants() -> set[str]:
    folder = kube.run_dir()
    path = folder / "tenants.json" if folder else None
    if path is None or not path.exists():
        return set()
    return {str(t.get("name")) for t in json.loads(path.read_text()).get("tenants") or []}


def delete_restore_target(
    source: str,
    target: str = "",
    namespace: str = "tenants",
    timeout: float = 120.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> bool:
    """Delete the restore target MSSQLInstance (default ``<source>-pitr``) and wait until it is gone.

    Refuses the source and any tenant this run loads. False when there was nothing to delete.
    """
    kube.check_namespace(namespace, configuration)
    target = target or f"{source}-pitr"
    if target == source or target in _load_tenants():
        raise ProbeError(f"refusing to delete {target}: it is a tenant under load, not a restore target")
    return _delete_instance(target, namespace, timeout, custom_resources(configuration, secrets))


# --------------------------------------------------------------------------- reading instances


@dataclass
class _Connected:
    """A tenant-shaped view of one instance (for loadgen's connection code) and its secrets folder."""

    tenant: Any
    folder: Path

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _instance_tenant(name: str, namespace: str, configuration: Configuration, timeout: float) -> _Connected:
    """Find ``name``'s endpoint and credentials (as the load discovers tenants), waiting until it has them."""
    from loadgen.discovery import discover_tenants, write_tenants_file
    from loadgen.errors import LoadgenError
    from loadgen.tenants import load_tenants

    config = dict(configuration or {})
    coordinates = crd_coordinates(config)
    deadline = time.monotonic() + timeout
    folder = Path(tempfile.mkdtemp(prefix="harness-pitr-"))
    os.chmod(folder, 0o700)
    while True:
        try:
            entries, _ = discover_tenants(
                namespace,
                coordinates,
                names=[name],
                dialect=str(config.get("dialect") or "postgresql"),
                driver=str(config.get("odbc_driver") or ""),
                kubeconfig=config.get("kubeconfig") or None,
                secrets_dir=folder,
            )
            (tenant,) = load_tenants(write_tenants_file(folder / "tenants.json", entries))
            return _Connected(tenant, folder)
        except LoadgenError as exc:
            if time.monotonic() >= deadline:
                shutil.rmtree(folder, ignore_errors=True)
                raise ProbeError(f"instance {namespace}/{name}: {exc}") from None
            time.sleep(1.0)


def _query(tenant: Any, sql: str, params: tuple[Any, ...], timeout: float) -> list[Any]:
    """Run one query, retrying connection failures until ``timeout`` (the instance may be starting)."""
    import pyodbc

    from loadgen.tenants import redact

    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = pyodbc.connect(tenant.connection_string(), autocommit=True, timeout=5)
            try:
                return list(conn.execute(sql, params).fetchall())
            finally:
                conn.close()
        except pyodbc.Error as exc:
            if time.monotonic() >= deadline:
                text = redact(str(exc.args[-1] if exc.args else exc)).splitlines()
                raise ProbeError(
                    f"cannot query {tenant.describe()}: {text[0] if text else exc.__class__.__name__}"
                ) from None
            time.sleep(1.0)


def _wait_ready(
    name: str, namespace: str, timeout: float, configuration: Configuration, secrets: Secrets
) -> None:
    from loadgen.discovery import lookup

    coords = crd_coordinates(configuration)
    instances = custom_resources(configuration, secrets)["instance"]
    obj, _ = _poll(
        lambda: instances.get(namespace, name), lambda o: str(lookup(o, coords.ready_path)) == "True", timeout
    )
    if obj is None or str(lookup(obj, coords.ready_path)) != "True":
        raise ProbeError(f"instance {namespace}/{name} is not Ready {timeout:g}s after the restore")


def _run_id(folder: Path) -> str:
    meta = folder / "run.json"
    if meta.exists():
        value = json.loads(meta.read_text()).get("run_id")
        if value:
            return str(value)
    return folder.name


def validate_pitr(
    source: str,
    target: str = "",
    namespace: str = "tenants",
    epsilon_seconds: float = DEFAULT_EPSILON,
    timeout: float = 120.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Check the restored ``target`` against the acknowledged-write journal of ``source`` for this run.

    Every acknowledged write committed at or before targetTime must be present, none
    committed after it. Each row is read back with its commit time where the engine
    keeps one (``read_back_committed``); rows without one, and absent rows, are judged
    by their own latency window, and only writes whose window contains targetTime are
    counted as ambiguous (:mod:`probes.pitr`). Records ``pitr.validation`` (ok, missing,
    extra, ambiguous, window, unexpected, changed, expected, found,
    restore_point_error_seconds) and raises ProbeError when the data does not match.
    ``epsilon_seconds`` (``HARNESS_PITR_EPSILON``) no longer widens this check: the
    windows are per row. It is accepted so that experiments passing it still run; the
    restore smoke of ``verify_backups`` counts rows with it.
    """
    from loadgen.dialects import dialect

    folder = kube.run_dir()
    if folder is None:
        raise ProbeError("validate_pitr needs the load control (HARNESS_RUN_DIR is not set)")
    target = target or f"{source}-pitr"
    restore = _pitr_doc().get("restore") or {}
    when_text = restore.get("target_time") if restore.get("target") == target else None
    when_text = when_text or _marked_time()
    when = parse_time(str(when_text))
    achieved = parse_time(str(restore["achieved"])) if restore.get("achieved") else None
    base = {"tenant": source, "target": target, "target_time": when_text, "error": None}
    try:
        if restore.get("target") == target and restore.get("ok") is False:
            raise ProbeError(f"the restore to {target} did not complete ({restore.get('error')})")
        _wait_ready(target, namespace, timeout, configuration, secrets)
        connected = _instance_tenant(target, namespace, configuration, timeout)
        try:
            run_id = _run_id(folder)
            sql = dialect(connected.tenant.dialect)
            raw = _query(connected.tenant, sql.read_back_committed, (run_id, source), timeout)
        finally:
            connected.close()
        rows = [
            TargetRow(run_id, source, int(w), int(q), float(ts), None if c is None else float(c))
            for w, q, ts, c in raw
        ]
        writes, _ = read_journal(folder / "journal")
        verdict = validate_restore(
            run_id, source, writes, rows, when, resolution=sql.restore_resolution, achieved=achieved
        )
    except ProbeError as exc:
        update_pitr(folder, "validation", {**base, "ok": False, "error": str(exc)})
        raise
    result = {**base, **verdict.as_dict(), "target_time": when_text}
    update_pitr(folder, "validation", result)
    observe(
        "pitr_validation",
        {k: result[k] for k in ("ok", "expected", "found", "missing", "extra", "ambiguous", "window")},
    )
    if not verdict.ok:
        raise ProbeError(
            f"PITR data validation failed on {target}: missing {verdict.missing}, extra {verdict.extra}, "
            f"unexpected {verdict.unexpected}, changed {verdict.changed} "
            f"(ambiguous {verdict.ambiguous}, judged by {verdict.window})"
        )
    return result


# --------------------------------------------------------------------------- integrity


def _check_store(
    folder: Path, instance: str, namespace: str, backups: list[dict[str, Any]]
) -> tuple[bool, list[str]]:
    """Recompute every completed backup's checksum with the lab's own ``verify`` command."""
    problems, verified = [], 0
    for backup in backups:
        name = backup["metadata"]["name"]
        backup_id = _status(backup).get("backupId") or name
        if not _status(backup).get("checksum"):
            problems.append(f"{name}: no checksum recorded")
            continue
        argv = [sys.executable, "-m", "lab.executor", "verify", instance, str(backup_id)]
        argv += ["-n", namespace, "--store", str(folder)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode == 0:
            verified += 1
            continue
        lines = (done.stderr or done.stdout).strip().splitlines()
        problems.append(f"{name}: {lines[-1] if lines else f'verify exited {done.returncode}'}")
    if not backups:
        problems.append("no completed backup to verify")
    return not problems, problems or [f"{verified} backup checksum(s) verified"]


def _check_verifyonly(
    instance: str, namespace: str, configuration: Configuration, timeout: float
) -> tuple[bool, list[str]]:
    """SQL Server: every backup file of the instance's database passes RESTORE VERIFYONLY WITH CHECKSUM."""
    import pyodbc

    from loadgen.backup_sql import backup_sql

    connected = _instance_tenant(instance, namespace, configuration, timeout)
    try:
        tenant = connected.tenant
        sql = backup_sql(tenant.dialect)
        if sql.backup_history is None or sql.verify_only is None:
            return False, [f"the {tenant.dialect} dialect cannot verify backups through the instance"]
        history = _query(tenant, sql.backup_history, (tenant.database,), timeout)
        rows = [
            {
                "type": r[0],
                "first_lsn": r[3],
                "last_lsn": r[4],
                "checksums": r[5],
                "damaged": r[6],
                "name": r[7],
            }
            for r in history
        ]
        problems = [f"{r['name']}: written without checksums" for r in rows if not r["checksums"]]
        problems += [f"{r['name']}: marked damaged" for r in rows if r["damaged"]]
        problems += [f"log chain broken between {g['after']} and {g['before']}" for g in lsn_gaps(rows)]
        conn = pyodbc.connect(tenant.connection_string(), autocommit=True, timeout=10)
        try:
            for row in rows:
                cursor = conn.execute(sql.verify_only, (row["name"],))
                while cursor.nextset():
                    pass
        except pyodbc.Error as exc:
            problems.append(f"RESTORE VERIFYONLY failed: {str(exc.args[-1] if exc.args else exc)[:200]}")
        finally:
            conn.close()
        return not problems and bool(rows), problems or [f"{len(rows)} backup file(s) verified (VERIFYONLY)"]
    finally:
        connected.close()


def _smoke(
    instance: str,
    namespace: str,
    scratch: str,
    epsilon: float,
    timeout: float,
    configuration: Configuration,
    secrets: Secrets,
) -> tuple[bool, str, dict[str, Any]]:
    """Restore the latest restorable point into ``scratch`` and compare row counts with the source."""
    from loadgen.backup_sql import backup_sql

    crs = custom_resources(configuration, secrets)
    chain = instance_chain(instance, namespace, configuration, secrets)
    if chain.latest_restorable is None:
        return False, "restore smoke: no restorable backup", {}
    point = format_time(chain.latest_restorable)
    outcome = _restore(instance, scratch, namespace, point, True, timeout, crs)
    try:
        if not outcome["ok"]:
            return False, f"restore smoke to {scratch} at {point} failed: {outcome['error']}", outcome
        achieved = parse_time(outcome["achieved"]) if outcome.get("achieved") else chain.latest_restorable
        _wait_ready(scratch, namespace, timeout, configuration, secrets)
        counts: dict[str, int] = {}
        for who, name in (("source", instance), ("scratch", scratch)):
            connected = _instance_tenant(name, namespace, configuration, timeout)
            try:
                sql = backup_sql(connected.tenant.dialect)
                for label, limit in (("before", achieved - epsilon), ("until", achieved + epsilon)):
                    rows = _query(connected.tenant, sql.count_until, (limit,), timeout)
                    counts[f"{who}_{label}"] = int(rows[0][0])
                if who == "scratch":
                    rows = _query(connected.tenant, sql.count_until, (1e12,), timeout)
                    counts["scratch_total"] = int(rows[0][0])
            finally:
                connected.close()
        ok = (
            counts["source_before"] == counts["scratch_before"]
            and counts["scratch_total"] == counts["scratch_until"]
        )
        detail = (
            f"restore smoke to {scratch} at {point}: {counts['scratch_before']} row(s) up to the "
            f"restore point (source {counts['source_before']}), "
            f"{counts['scratch_total'] - counts['scratch_until']} after it"
        )
        return ok, detail, {**outcome, "counts": counts}
    finally:
        _delete_instance(scratch, namespace, timeout, crs)


def verify_backups(
    instance: str,
    namespace: str = "tenants",
    smoke: bool = True,
    scratch: str = "",
    epsilon_seconds: float = DEFAULT_EPSILON,
    timeout: float = 600.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Backup integrity: checksums verified, and (``smoke``) a restore of the latest point into a scratch
    instance (default ``<instance>-verify``, deleted afterwards) whose row counts match the source.

    Checksums are re-hashed from the backups folder when it is reachable (the lab, or
    ``backups_folder``); otherwise, with the ``mssql`` dialect, ``RESTORE VERIFYONLY ...
    WITH CHECKSUM`` runs through the instance. Writes ``integrity.json`` ``{"ok", "detail",
    "checksums", "smoke"}``; ProbeError when integrity does not hold.
    """
    kube.check_namespace(namespace, configuration)
    crs = custom_resources(configuration, secrets)
    folder = _backups_folder(instance, namespace, configuration)
    dialect = str((configuration or {}).get("dialect") or "postgresql")
    if folder is not None:
        checks_ok, notes = _check_store(
            folder, instance, namespace, _completed_backups(instance, namespace, crs)
        )
        how = f"re-hashed from {folder}"
    elif dialect == "mssql":
        checks_ok, notes = _check_verifyonly(instance, namespace, configuration, timeout)
        how = "RESTORE VERIFYONLY through the instance"
    else:
        checks_ok, notes = False, ["backups folder not reachable and the dialect has no VERIFYONLY"]
        how = "not verified"
    details = [f"checksums ({how}): {'; '.join(notes)}"]
    smoke_ok = True
    smoke_doc: dict[str, Any] = {}
    if _flag(smoke, "smoke"):
        smoke_ok, text, smoke_doc = _smoke(
            instance,
            namespace,
            scratch or f"{instance}-verify",
            epsilon_seconds,
            timeout,
            configuration,
            secrets,
        )
        details.append(text)
    doc = {
        "ok": checks_ok and smoke_ok,
        "detail": "; ".join(details),
        "instance": instance,
        "checksums": {"ok": checks_ok, "how": how, "notes": notes},
        "smoke": {"ok": smoke_ok, **smoke_doc} if _flag(smoke, "smoke") else None,
    }
    run = kube.run_dir()
    if run is not None:
        write_json_block(run / INTEGRITY_NAME, doc)
    observe("backup_integrity", {"ok": doc["ok"]})
    if not doc["ok"]:
        raise ProbeError(f"backup integrity of {instance} not verified: {doc['detail']}")
    return doc
