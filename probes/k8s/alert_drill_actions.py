"""Chaos Toolkit actions of the alerting drill: a backup Job fails on purpose, then goes.

``fail_backup_job`` requests an MSSQLBackup whose Job must fail and waits until it has;
``clear_failed_backups`` (also a rollback) deletes the drill's backups and their Jobs.
The probes that watch the alert fire and resolve are in
:mod:`probes.k8s.alert_drill_probes`. The experiments and ``chaos discover`` reach the
actions through this module; the code, the drill's steps, ``alerting.json`` and the
configuration are in :mod:`probes.k8s.alert_drill`.
"""

from __future__ import annotations

from probes.k8s.alert_drill import clear_failed_backups, fail_backup_job

__all__ = ["fail_backup_job", "clear_failed_backups"]
