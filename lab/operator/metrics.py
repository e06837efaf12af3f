"""The lab operator's own Prometheus metrics, on its own ``/metrics``, and how Prometheus finds them.

The names are a contract (the repository's alert rules use the first two):

* ``mssql_backup_last_success_timestamp_seconds{namespace,instance,type}``: UTC epoch
  of the ``endTime`` of the newest ``Completed`` MSSQLBackup of that ``type`` (``full``
  or ``log``) per instance; no series for an instance with no completed backup of
  that type. ``instance`` is the MSSQLInstance's name, so Prometheus must scrape with
  ``honor_labels: true`` (the lab's scrape job ``mssql-operator`` does).
* ``mssql_backup_policy_info{namespace,instance,policy}``: 1 per instance with a policy.
* ``mssql_operator_reconcile_total{kind}`` / ``mssql_operator_reconcile_errors_total{kind}``:
  objects of each kind (``MSSQLInstance``, ``MSSQLBackup``, ``MSSQLBackupPolicy``,
  ``MSSQLRestore``) reconciled, and those whose reconcile failed.
* ``mssql_instance_ready{namespace,instance}``: 1 while the instance's pod is Ready.

The gauges are a snapshot replaced at every pass, so a deleted object's series go away.

**Discovery.** The operator runs as a pod with no Service in the lab, so it announces
itself: :func:`write_target` puts a Prometheus ``file_sd`` file ``mssql-operator.json``
(``[{"targets": ["127.0.0.1:<port>"], "labels": {"pod": ...}}]``, written to a temp file
and renamed) into the folder named by ``HARNESS_PROMETHEUS_SD_DIR`` (the lab's
``monitoring/targets``; ``lab up`` gives it to every lab process). A clean exit removes
it (:func:`remove_target`, only while it still names this process); a killed operator
leaves it stale (the target is down) until the next one replaces it at start.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from common.times import parse_time

__all__ = ["KINDS", "SD_DIR_ENV", "TARGET_FILE", "OperatorMetrics", "remove_target", "write_target"]

Obj = dict[str, Any]

SD_DIR_ENV = "HARNESS_PROMETHEUS_SD_DIR"
KINDS = ("MSSQLInstance", "MSSQLBackup", "MSSQLBackupPolicy", "MSSQLRestore")
TARGET_FILE = "mssql-operator.json"


def _labels(obj: Obj) -> tuple[str, str]:
    md = obj.get("metadata") or {}
    return str(md.get("namespace") or ""), str(md.get("name") or "")


class _Snapshot(Collector):
    """The gauges of the last pass."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last_success: dict[tuple[str, str, str], float] = {}
        self.policies: set[tuple[str, str, str]] = set()
        self.ready: dict[tuple[str, str], bool] = {}

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            last, policies, ready = dict(self.last_success), set(self.policies), dict(self.ready)
        family = GaugeMetricFamily(
            "mssql_backup_last_success_timestamp_seconds",
            "UTC epoch of the endTime of the newest Completed MSSQLBackup of this type (full|log).",
            labels=["namespace", "instance", "type"],
        )
        for key, value in sorted(last.items()):
            family.add_metric(list(key), value)
        yield family
        info = GaugeMetricFamily(
            "mssql_backup_policy_info",
            "1 per instance with an MSSQLBackupPolicy.",
            labels=["namespace", "instance", "policy"],
        )
        for key in sorted(policies):
            info.add_metric(list(key), 1.0)
        yield info
        up = GaugeMetricFamily(
            "mssql_instance_ready",
            "1 while the MSSQLInstance's pod is Ready, else 0.",
            labels=["namespace", "instance"],
        )
        for (namespace, instance), flag in sorted(ready.items()):
            up.add_metric([namespace, instance], 1.0 if flag else 0.0)
        yield up


class OperatorMetrics:
    """The operator's metrics in their own registry; the reconcilers report into it."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.reconciles = Counter(
            "mssql_operator_reconcile_total",
            "Objects reconciled, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.errors = Counter(
            "mssql_operator_reconcile_errors_total",
            "Objects whose reconcile failed, by kind.",
            ["kind"],
            registry=self.registry,
        )
        for kind in KINDS:  # every kind is exported from the start, at 0
            self.reconciles.labels(kind=kind)
            self.errors.labels(kind=kind)
        self._snapshot = _Snapshot()
        self.registry.register(self._snapshot)

    def reconciled(self, kind: str, failed: bool = False) -> None:
        """Count one reconcile of an object of ``kind`` (and its failure)."""
        self.reconciles.labels(kind=kind).inc()
        if failed:
            self.errors.labels(kind=kind).inc()

    def instances(self, ready: dict[tuple[str, str], bool]) -> None:
        """Replace the readiness of every instance: ``{(namespace, name): ready}``."""
        with self._snapshot.lock:
            self._snapshot.ready = dict(ready)

    def backups(self, backups: Iterable[Obj], policies: Iterable[Obj]) -> None:
        """Replace the backup gauges from the MSSQLBackups and MSSQLBackupPolicies as they are now."""
        newest: dict[tuple[str, str, str], float] = {}
        for backup in backups:
            status, spec = backup.get("status") or {}, backup.get("spec") or {}
            end = parse_time(status.get("endTime"))
            if status.get("phase") != "Completed" or end is None:
                continue
            key = (_labels(backup)[0], str(spec.get("instance") or ""), str(spec.get("type") or ""))
            newest[key] = max(end, newest.get(key, end))
        infos = {
            (_labels(p)[0], str((p.get("spec") or {}).get("instance") or ""), _labels(p)[1])
            for p in policies
            if (p.get("metadata") or {}).get("deletionTimestamp") is None
        }
        with self._snapshot.lock:
            self._snapshot.last_success = newest
            self._snapshot.policies = infos

    def serve(self, port: int = 0, host: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on ``host:port`` (0: any free port) in a thread; the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)


def _target_body(port: int, labels: dict[str, str]) -> str:
    return json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": labels}], indent=2) + "\n"


def write_target(folder: Path, port: int, labels: dict[str, str] | None = None) -> Path:
    """Write ``folder/mssql-operator.json`` (file_sd) for ``port`` atomically; its path."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / TARGET_FILE
    tmp = folder / f".{TARGET_FILE}.{os.getpid()}.tmp"
    try:
        tmp.write_text(_target_body(port, labels or {}))
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def remove_target(folder: Path, port: int, labels: dict[str, str] | None = None) -> bool:
    """Remove ``folder/mssql-operator.json`` if it still names ``port`` (not a successor's file).

    True if it was removed.
    """
    target = folder / TARGET_FILE
    try:
        if target.read_text() != _target_body(port, labels or {}):
            return False
        target.unlink()
    except OSError:
        return False
    return True
