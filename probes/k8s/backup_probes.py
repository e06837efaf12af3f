"""Chaos Toolkit probes for backups and point-in-time restore (PITR): they observe and judge.

``wait_for_backup`` waits for a backup requested without waiting (or until it runs, to
inject a fault meanwhile) and records it in ``pitr.backup``; ``backup_chain`` says what
the completed backups cover, checked against the backup store when it is readable from
here; ``restore_needs_target`` asks for a restore into a missing target and requires the
operator to refuse it (``pitr.precondition``); ``validate_pitr`` checks the restored rows
against the acknowledged-write journal (``pitr.validation``: every write of this run up to
the target time present, none after). Each raises ProbeError when its check fails.

The actions they go with, the typical method and the configuration keys are in
:mod:`probes.k8s.backup_actions`. The experiments and ``chaos discover`` reach the probes
through this module; the code lives beside it: ``wait_for_backup`` in
:mod:`probes.k8s.backup_requests`, ``backup_chain`` in :mod:`probes.k8s.backup_chain`,
``restore_needs_target`` in :mod:`probes.k8s.restore_precondition`, ``validate_pitr`` in
:mod:`probes.k8s.restores`.
"""

from __future__ import annotations

from probes.k8s.backup_chain import backup_chain
from probes.k8s.backup_requests import wait_for_backup
from probes.k8s.restore_precondition import restore_needs_target
from probes.k8s.restores import validate_pitr

__all__ = ["wait_for_backup", "backup_chain", "restore_needs_target", "validate_pitr"]
