"""Chaos Toolkit actions for backups and point-in-time restore (PITR), through the operator's CRs.

The harness asks, the operator does: ``MSSQLBackupPolicy`` (scheduled full + log
backups), ``MSSQLBackup`` (one full or log backup), ``MSSQLRestore`` (source, targetTime,
target, createTarget). Each activity waits for the CR's outcome, records it in the run
folder's ``pitr.json`` (blocks ``backup``, ``restore``, ``validation``, ``mark``,
``precondition``; see :mod:`probes.pitr`) and raises ProbeError on a failure, so Chaos
Toolkit marks the activity failed and the go/no-go document fails the gate. The
activities that only observe are probes, in :mod:`probes.k8s.backup_probes`.

A typical method (the probes among them marked as such): ``apply_backup_policy`` →
``request_backup(full)`` → writes → ``request_backup(log)`` → ``mark_target_time`` →
writes → ``request_backup(log)`` → ``backup_chain`` (probe) → ``restore_needs_target``
(probe) → ``request_restore`` (to ``<source>-pitr``, created by the operator) →
``validate_pitr`` (probe: every acknowledged write of this run up to the target time
present, none after); ``delete_restore_target`` in the rollbacks.
``request_backup(wait=false)`` then ``wait_for_backup`` (probe) lets a fault land while
the backup runs. ``verify_backups`` writes ``integrity.json``: backup checksums
re-verified plus a restore smoke test into a scratch instance. A target created for a
restore is labelled ``mssql.example.com/role: restore-target``
(:data:`common.crd.ROLE_LABEL`) so no later run takes it for a tenant.

Configuration (for the actions and the probes alike): ``mssql_group``/``mssql_version``
(shared with the instances), ``backup_plural``, ``backup_policy_plural``,
``restore_plural``, ``policy_ready_path``; ``dialect``/``odbc_driver``/``kubeconfig`` and
the instance paths as for the load; ``backups_folder`` (a path template with
``{namespace}`` and ``{instance}``: where the backups volume is readable from here, for
``verify_backups`` and ``backup_chain``; empty: the lab's volume folder if there is one,
checked with the lab's ``python -m lab.executor verify``).

The experiments and ``chaos discover`` reach the actions through this module; the code
lives beside it: the policy and backup requests in :mod:`probes.k8s.backup_requests`,
the target time, the restore and the target's deletion in :mod:`probes.k8s.restores`,
``verify_backups`` in :mod:`probes.k8s.backup_integrity`; what they share in
:mod:`probes.k8s.backup_crs` (names, labels, status, polling, ``pitr.json``) and
:mod:`probes.k8s.backup_instances` (connecting to, querying, waiting for and deleting an
instance).
"""

from __future__ import annotations

from probes.k8s.backup_integrity import verify_backups
from probes.k8s.backup_requests import apply_backup_policy, request_backup
from probes.k8s.restores import delete_restore_target, mark_target_time, request_restore

__all__ = [
    "apply_backup_policy",
    "request_backup",
    "mark_target_time",
    "request_restore",
    "verify_backups",
    "delete_restore_target",
]
