"""Chaos Toolkit activities for backups and point-in-time restore (PITR), through the operator's CRs.

The harness asks, the operator does: ``MSSQLBackupPolicy`` (scheduled full + log
backups), ``MSSQLBackup`` (one full or log backup), ``MSSQLRestore`` (source, targetTime,
target, createTarget). Each activity waits for the CR's outcome, records it in the run
folder's ``pitr.json`` (blocks ``backup``, ``restore``, ``validation``, ``mark``, ``precondition``; see
:mod:`probes.pitr`) and raises ProbeError on a failure, so Chaos Toolkit marks the
activity failed and the go/no-go document fails the gate.

A typical method: ``apply_backup_policy`` → ``request_backup(full)`` → writes →
``request_backup(log)`` → ``mark_target_time`` → writes → ``request_backup(log)`` →
``request_restore`` (to ``<source>-pitr``, created by the operator) → ``validate_pitr``
(every acknowledged write of this run up to the target time present, none after);
``delete_restore_target`` in the rollbacks. ``verify_backups`` writes ``integrity.json``:
backup checksums re-verified plus a restore smoke test into a scratch instance.
A target created for a restore is labelled ``mssql.example.com/role: restore-target``
(:data:`common.crd.ROLE_LABEL`) so no later run takes it for a tenant.

Configuration: ``mssql_group``/``mssql_version`` (shared with the instances),
``backup_plural``, ``backup_policy_plural``, ``restore_plural``, ``policy_ready_path``;
``dialect``/``odbc_driver``/``kubeconfig`` and the instance paths as for the load;
``backups_folder`` (a path template with ``{namespace}`` and ``{instance}``: where the
backups volume is readable from here, for ``verify_backups``; empty: the lab's volume
folder if there is one, checked with the lab's ``python -m lab.executor verify``).

The experiments and ``chaos discover`` reach every activity through this module; the
code lives beside it: the policy and backup requests in :mod:`probes.k8s.backup_requests`,
the restore, its data validation and the target's deletion in :mod:`probes.k8s.restores`,
``restore_needs_target`` (a restore into a missing target must be refused) in
:mod:`probes.k8s.restore_precondition`,
``verify_backups`` in :mod:`probes.k8s.backup_integrity`, ``backup_chain`` in
:mod:`probes.k8s.backup_chain`; what they share in :mod:`probes.k8s.backup_crs` (names,
labels, status, polling, ``pitr.json``) and :mod:`probes.k8s.backup_instances`
(connecting to, querying, waiting for and deleting an instance).
"""

from __future__ import annotations

from probes.k8s.backup_chain import backup_chain
from probes.k8s.backup_crs import flag as _flag  # noqa: F401 (reached here by the tests)
from probes.k8s.backup_integrity import verify_backups
from probes.k8s.backup_requests import (
    _record_backup,  # noqa: F401 (reached here by the tests)
    apply_backup_policy,
    request_backup,
    wait_for_backup,
)
from probes.k8s.restore_precondition import restore_needs_target
from probes.k8s.restores import delete_restore_target, mark_target_time, request_restore, validate_pitr

__all__ = [
    "apply_backup_policy",
    "request_backup",
    "wait_for_backup",
    "backup_chain",
    "mark_target_time",
    "request_restore",
    "restore_needs_target",
    "validate_pitr",
    "verify_backups",
    "delete_restore_target",
]

#: the activities above that only observe (``chaos discover`` lists them as probes).
PROBES = ("wait_for_backup", "backup_chain", "validate_pitr", "restore_needs_target")
