"""Backup integrity: checksums re-verified and a restore smoke test (``verify_backups``).

Checksums are recomputed from the backups store with the lab's own ``python -m
lab.executor verify`` when the store is readable from here (the lab's volume, or the
``backups_folder`` template); otherwise, on SQL Server, every backup file passes
``RESTORE VERIFYONLY ... WITH CHECKSUM`` through the instance and the log chain is
checked for LSN gaps. The smoke test restores the latest restorable point into a
scratch instance (deleted afterwards) and compares row counts with the source. The
outcome is the run folder's ``integrity.json``. Reached by the experiments through
:mod:`probes.k8s.backup_actions`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from probes.errors import ProbeError
from probes.k8s import kube
from probes.k8s.backup_chain import instance_chain, store_folder
from probes.k8s.backup_crs import Configuration, Secrets, flag, status_of
from probes.k8s.backup_instances import delete_instance, instance_tenant, query, wait_ready
from probes.k8s.crs import CustomResources, custom_resources
from probes.k8s.restores import run_restore
from probes.observations import observe
from probes.pitr import (
    DEFAULT_EPSILON,
    INTEGRITY_NAME,
    format_time,
    lsn_gaps,
    parse_time,
    write_json_block,
)

__all__ = ["verify_backups"]


def _completed_backups(
    instance: str, namespace: str, crs: Mapping[str, CustomResources]
) -> list[dict[str, Any]]:
    return [
        b
        for b in crs["backup"].list(namespace)
        if (b.get("spec") or {}).get("instance") == instance
        and status_of(b).get("phase") == "Completed"
        and status_of(b).get("coveredTo")
    ]


def _check_store(
    folder: Path, instance: str, namespace: str, backups: list[dict[str, Any]]
) -> tuple[bool, list[str]]:
    """Recompute every completed backup's checksum with the lab's own ``verify`` command."""
    problems, verified = [], 0
    for backup in backups:
        name = backup["metadata"]["name"]
        backup_id = status_of(backup).get("backupId") or name
        if not status_of(backup).get("checksum"):
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
    from loadgen.identity import connect_tenant

    connected = instance_tenant(instance, namespace, configuration, timeout)
    try:
        tenant = connected.tenant
        sql = backup_sql(tenant.dialect)
        if sql.backup_history is None or sql.verify_only is None:
            return False, [f"the {tenant.dialect} dialect cannot verify backups through the instance"]
        history = query(tenant, sql.backup_history, (tenant.database,), timeout)
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
        conn = connect_tenant(tenant, 10)
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
    outcome = run_restore(instance, scratch, namespace, point, True, timeout, crs)
    try:
        if not outcome["ok"]:
            return False, f"restore smoke to {scratch} at {point} failed: {outcome['error']}", outcome
        achieved = parse_time(outcome["achieved"]) if outcome.get("achieved") else chain.latest_restorable
        wait_ready(scratch, namespace, timeout, configuration, secrets)
        counts: dict[str, int] = {}
        for who, name in (("source", instance), ("scratch", scratch)):
            connected = instance_tenant(name, namespace, configuration, timeout)
            try:
                sql = backup_sql(connected.tenant.dialect)
                for label, limit in (("before", achieved - epsilon), ("until", achieved + epsilon)):
                    rows = query(connected.tenant, sql.count_until, (limit,), timeout)
                    counts[f"{who}_{label}"] = int(rows[0][0])
                if who == "scratch":
                    rows = query(connected.tenant, sql.count_until, (1e12,), timeout)
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
        delete_instance(scratch, namespace, timeout, crs)


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
    folder = store_folder(instance, namespace, configuration)
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
    if flag(smoke, "smoke"):
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
        "smoke": {"ok": smoke_ok, **smoke_doc} if flag(smoke, "smoke") else None,
    }
    run = kube.run_dir()
    if run is not None:
        write_json_block(run / INTEGRITY_NAME, doc)
    observe("backup_integrity", {"ok": doc["ok"]})
    if not doc["ok"]:
        raise ProbeError(f"backup integrity of {instance} not verified: {doc['detail']}")
    return doc
