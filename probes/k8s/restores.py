"""Point-in-time restore activities: mark the target time, restore, validate the data, clean up.

``mark_target_time`` records this run's PITR target time (``pitr.mark``);
``request_restore`` creates an MSSQLRestore of the source's backups into a target (by
default ``<source>-pitr``, created by the operator and labelled
``mssql.example.com/role: restore-target``) and records ``pitr.restore``;
``validate_pitr`` checks the restored rows against the acknowledged-write journal
(:mod:`probes.pitr`) and records ``pitr.validation``; ``delete_restore_target`` removes
the target in the rollbacks, refusing the source and any tenant under load.
:func:`run_restore` (create, wait, no raise) is shared with the restore smoke of
:func:`probes.k8s.backup_integrity.verify_backups`. Reached by the experiments through
:mod:`probes.k8s.backup_actions` (``validate_pitr``: :mod:`probes.k8s.backup_probes`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.crd import RESTORE_TARGET, ROLE_LABEL
from loadgen.journal import journal_segments, segment_writes
from probes.errors import ProbeError
from probes.k8s import kube
from probes.k8s.backup_crs import (
    DONE_PHASES,
    Configuration,
    Secrets,
    flag,
    marked_target_time,
    pitr_doc,
    poll,
    request_metadata,
    seconds_between,
    stamp,
    status_of,
)
from probes.k8s.backup_instances import delete_instance, instance_tenant, query, wait_ready
from probes.k8s.crs import CustomResources, custom_resources
from probes.observations import observe
from probes.pitr import (
    DEFAULT_EPSILON,
    TargetRow,
    format_time,
    parse_time,
    update_pitr,
    validate_restore,
)

__all__ = ["delete_restore_target", "mark_target_time", "request_restore", "run_restore", "validate_pitr"]

logger = logging.getLogger("chaostoolkit")


def mark_target_time(configuration: Configuration = None, secrets: Secrets = None) -> str:
    """Record now (UTC, RFC 3339 with microseconds) as this run's PITR target time; returns it."""
    now = time.time()
    text = format_time(now)
    update_pitr(kube.run_dir(), "mark", {"target_time": text, "at": now})
    observe("pitr_target_time", text)
    return text


def _marked_time() -> str:
    marked = marked_target_time()
    if not marked:
        raise ProbeError("no PITR target time: run mark_target_time first or pass target_time")
    return marked


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


def run_restore(
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
    name = f"{target}-{stamp()}"
    spec = {"source": source, "targetTime": target_time, "target": target, "createTarget": create_target}
    body = restores.body(request_metadata(name, namespace), spec)
    started = time.monotonic()
    existed = crs["instance"].get(namespace, target) is not None
    restores.create(namespace, body)
    obj, _ = poll(
        lambda: restores.get(namespace, name), lambda o: status_of(o).get("phase") in DONE_PHASES, timeout
    )
    duration = time.monotonic() - started
    if create_target and not existed:
        _label_restore_target(crs["instance"], namespace, target)
    status = status_of(obj)
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
        "server_duration_seconds": seconds_between(status.get("startTime"), status.get("endTime")),
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
    result = run_restore(
        source,
        target,
        namespace,
        when,
        flag(create_target, "create_target"),
        timeout,
        custom_resources(configuration, secrets),
    )
    update_pitr(kube.run_dir(), "restore", result)
    observe("restore_duration_seconds", result["duration_seconds"] if result["ok"] else None)
    if not result["ok"]:
        raise ProbeError(f"restore of {source} to {target} at {when}: {result['error']}")
    return result


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
    return delete_instance(target, namespace, timeout, custom_resources(configuration, secrets))


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
    restore = pitr_doc().get("restore") or {}
    when_text = restore.get("target_time") if restore.get("target") == target else None
    when_text = when_text or _marked_time()
    when = parse_time(str(when_text))
    achieved = parse_time(str(restore["achieved"])) if restore.get("achieved") else None
    base = {"tenant": source, "target": target, "target_time": when_text, "error": None}
    try:
        if restore.get("target") == target and restore.get("ok") is False:
            raise ProbeError(f"the restore to {target} did not complete ({restore.get('error')})")
        wait_ready(target, namespace, timeout, configuration, secrets)
        connected = instance_tenant(target, namespace, configuration, timeout)
        try:
            run_id = _run_id(folder)
            sql = dialect(connected.tenant.dialect)
            raw = query(connected.tenant, sql.read_back_committed, (run_id, source), timeout)
        finally:
            connected.close()
        rows = [
            TargetRow(run_id, source, int(w), int(q), float(ts), None if c is None else float(c))
            for w, q, ts, c in raw
        ]
        # Only the source tenant's writes, one segment at a time: a soak's journal holds a day.
        journal = folder / "journal"
        writes = [w for path in journal_segments(journal) for w in segment_writes(path) if w.tenant == source]
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
