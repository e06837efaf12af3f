"""What the backup, restore and integrity activities share about their custom resources.

A request's name and labels (``managed-by`` and the run it belongs to), a boolean
argument that may arrive as a string, reading a custom resource's ``status``, polling
until it settles, and the run folder's ``pitr.json`` as these activities read it (the
first error of the run is kept in ``pitr.backup.error``). The activities themselves are
in :mod:`probes.k8s.backup_requests`, :mod:`probes.k8s.restores` and
:mod:`probes.k8s.backup_integrity`.
"""

from __future__ import annotations

import secrets as tokens
import time
from collections.abc import Callable, Mapping
from typing import Any

from common.config import boolean
from probes.errors import ProbeError
from probes.k8s import kube
from probes.pitr import PITR_NAME, parse_time, read_json_block, update_pitr

__all__ = [
    "DONE_PHASES",
    "MANAGED_BY",
    "POLL",
    "Configuration",
    "Secrets",
    "first_error",
    "flag",
    "marked_target_time",
    "pitr_doc",
    "poll",
    "request_metadata",
    "seconds_between",
    "stamp",
    "status_of",
]

Configuration = Mapping[str, Any] | None
Secrets = Mapping[str, Any] | None

DONE_PHASES = ("Completed", "Failed")
POLL = 0.5
MANAGED_BY = {"app.kubernetes.io/managed-by": "mssql-chaos-harness"}


def request_metadata(name: str, namespace: str) -> dict[str, Any]:
    labels = dict(MANAGED_BY)
    folder = kube.run_dir()
    if folder is not None:
        value = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in folder.name)[:63]
        labels["mssql.example.com/harness-run"] = value.strip("-_.") or "run"
    return {"name": name, "namespace": namespace, "labels": labels}


def stamp() -> str:
    """A name suffix unique per request: ``20261127-000102-123-a1b2`` (DNS-1123 safe)."""
    now = time.time()
    return (
        time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + f"-{int(now % 1 * 1000):03d}-{tokens.token_hex(2)}"
    )


def flag(value: Any, name: str) -> bool:
    """A boolean argument that may arrive as a string from an environment variable (unset: false)."""
    try:
        return boolean(value, default=False, name=name)
    except ValueError as exc:
        raise ProbeError(str(exc)) from None


def status_of(obj: Mapping[str, Any] | None) -> dict[str, Any]:
    status = (obj or {}).get("status")
    return dict(status) if isinstance(status, Mapping) else {}


def poll(
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


def seconds_between(start: Any, end: Any) -> float | None:
    try:
        return round(parse_time(str(end)) - parse_time(str(start)), 3) if start and end else None
    except ProbeError:
        return None


def pitr_doc() -> dict[str, Any]:
    folder = kube.run_dir()
    return (read_json_block(folder / PITR_NAME) if folder else None) or {}


def marked_target_time() -> str | None:
    """This run's PITR target time as ``mark_target_time`` recorded it (``pitr.mark``); None before."""
    marked = (pitr_doc().get("mark") or {}).get("target_time")
    return str(marked) if marked else None


def first_error(message: str) -> None:
    """Record ``message`` as ``pitr.backup.error`` unless an earlier error is there."""
    if not (pitr_doc().get("backup") or {}).get("error"):
        update_pitr(kube.run_dir(), "backup", {"error": message})
