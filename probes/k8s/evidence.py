"""Evidence a reviewer asks for: ``kubectl get`` snapshots and the operator's logs.

Snapshots go to ``<run>/evidence/<phase>/`` (``pods.txt``, ``crds.txt``, ``crs.txt``,
``jobs.txt``, ``pvc.txt``), taken with the real ``kubectl`` against whatever cluster
``KUBECONFIG`` names. Operator logs for the run window go to ``evidence/operator.log``.
Secrets are never listed; a command that fails leaves its error in the file instead.

Kubernetes Events of the run window go to ``evidence/events.json`` (``kubectl get events
-A -o json``, only the Events last seen between the run's start and end, each widened by
:data:`EVENTS_MARGIN` seconds, with the window itself under ``window``) and
``evidence/events.txt`` (one line per Event, oldest first: last seen, type, reason,
object, source, count, message). :func:`write_snapshots` of the ``after`` phase writes
them, the start read from ``run.json`` (``started_at``); without a known start nothing is
filtered and both files say why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.crd import CrdCoordinates
from common.times import format_time, parse_time
from loadgen.tenants import redact
from probes.errors import ProbeError
from probes.k8s import kube
from probes.kubectl_text import ERROR_PREFIX, missing_kubectl, timed_out

__all__ = [
    "EVENTS_MARGIN",
    "capture_events",
    "capture_evidence",
    "capture_operator_logs",
    "event_last_seen",
    "events_in_window",
    "events_text",
    "snapshot_resources",
    "write_snapshots",
]

#: Seconds added on both sides of the run window when Events are kept.
EVENTS_MARGIN = 30.0
_EVENTS_ARGS = ["get", "events", "-A", "-o", "json"]

Configuration = Mapping[str, Any] | None

#: ``kubectl get`` arguments per snapshot; ``crs`` is completed with :func:`snapshot_resources`.
SNAPSHOTS = {
    "pods": ["get", "pods", "-A", "-o", "wide"],
    "crds": ["get", "crds"],
    "crs": ["get"],
    "jobs": ["get", "jobs,cronjobs", "-A"],
    "pvc": ["get", "pvc", "-A"],
    "nodes": ["get", "nodes", "-o", "wide"],
}


def snapshot_resources(configuration: Configuration) -> list[str]:
    """The MSSQL custom resources the ``crs`` snapshot lists, as ``plural.group`` from the
    configured CRD coordinates (a cluster whose CRDs have other names is listed by those)."""
    coords = CrdCoordinates.from_configuration(configuration)
    plurals = (coords.plural, coords.backup_policy_plural, coords.backup_plural, coords.restore_plural)
    return [f"{plural}.{coords.group}" for plural in plurals]


def _kubectl(args: list[str], kubeconfig: str | None) -> str:
    binary = shutil.which("kubectl")
    if binary is None:
        return missing_kubectl()
    env = dict(os.environ)
    if kubeconfig:
        env["KUBECONFIG"] = kubeconfig
    try:
        done = subprocess.run(
            [binary, *args], capture_output=True, text=True, timeout=30, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        return timed_out(args, 30)
    if done.returncode:
        return redact(done.stdout + f"\n{ERROR_PREFIX} {done.stderr.strip()}\n")
    return redact(done.stdout or done.stderr)  # "No resources found" comes on stderr


def capture_evidence(phase: str = "before", configuration: Configuration = None) -> list[str]:
    """Write ``kubectl get`` snapshots for ``phase`` (before / after); returns the files written."""
    folder = kube.run_dir()
    if folder is None:
        raise ProbeError("capture_evidence needs the load control (HARNESS_RUN_DIR is not set)")
    kubeconfig = (configuration or {}).get("kubeconfig")
    return [str(p) for p in write_snapshots(folder, phase, kubeconfig, snapshot_resources(configuration))]


def write_snapshots(
    run_dir: Path, phase: str, kubeconfig: str | None = None, resources: list[str] | None = None
) -> list[Path]:
    """The snapshots of :func:`capture_evidence`, into an explicit run folder; ``resources`` are
    the custom resources to list (default: those of the default CRD coordinates)."""
    target = run_dir / "evidence" / phase
    target.mkdir(parents=True, exist_ok=True)
    crs = ",".join(resources or snapshot_resources(None))
    written = []
    for name, args in SNAPSHOTS.items():
        path = target / f"{name}.txt"
        path.write_text(_kubectl([*args, crs, "-A"] if name == "crs" else args, kubeconfig))
        written.append(path)
    if phase == "after":
        written.extend(capture_events(run_dir, _run_started(run_dir), time.time(), kubeconfig))
    return written


def _run_started(run_dir: Path) -> float | None:
    try:
        meta = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return None
    return parse_time(meta.get("started_at")) if isinstance(meta, dict) else None


def event_last_seen(event: Mapping[str, Any]) -> float | None:
    """When an Event (core v1 or events.k8s.io/v1) was last seen: its series' last observation,
    ``lastTimestamp``, ``eventTime``, ``firstTimestamp``, the creation time, the first known."""
    series = event.get("series")
    metadata = event.get("metadata")
    candidates = (
        series.get("lastObservedTime") if isinstance(series, Mapping) else None,
        event.get("lastTimestamp") or event.get("deprecatedLastTimestamp"),
        event.get("eventTime"),
        event.get("firstTimestamp") or event.get("deprecatedFirstTimestamp"),
        metadata.get("creationTimestamp") if isinstance(metadata, Mapping) else None,
    )
    for value in candidates:
        stamp = parse_time(value)
        if stamp is not None:
            return stamp
    return None


def events_in_window(
    items: list[Any], start: float, end: float, margin: float = EVENTS_MARGIN
) -> list[dict[str, Any]]:
    """The Events last seen within ``start - margin .. end + margin``, oldest first."""
    kept = []
    for item in items:
        if not isinstance(item, dict):
            continue
        seen = event_last_seen(item)
        if seen is not None and start - margin <= seen <= end + margin:
            kept.append((seen, item))
    kept.sort(key=lambda pair: pair[0])
    return [item for _, item in kept]


def _text(value: Any) -> str:
    return str(value) if value not in (None, "") else "-"


def events_text(items: list[dict[str, Any]]) -> str:
    """One line per Event (as :func:`events_in_window` ordered them), for people."""
    lines = ["# last seen (UTC)        type     reason  object  source  count  message"]
    for ev in items:
        seen = event_last_seen(ev)
        obj: dict[str, Any] = ev.get("involvedObject") or ev.get("regarding") or {}
        where = f"{obj.get('namespace')}/" if obj.get("namespace") else ""
        source: dict[str, Any] = ev.get("source") or ev.get("deprecatedSource") or {}
        component = source.get("component") or ev.get("reportingComponent") or ev.get("reportingController")
        series: dict[str, Any] = ev["series"] if isinstance(ev.get("series"), dict) else {}
        count = series.get("count") or ev.get("count") or ev.get("deprecatedCount") or 1
        message = " ".join(str(ev.get("message") or ev.get("note") or "").split())
        target = f"{str(obj.get('kind') or '').lower()}/{where}{obj.get('name') or ''}"
        lines.append(
            f"{format_time(seen) if seen is not None else '-':<24} {_text(ev.get('type')):<8} "
            f"{_text(ev.get('reason'))}  {target}  "
            f"{_text(component)}  x{count}  {message}"
        )
    return "\n".join(lines) + "\n"


def capture_events(
    run_dir: Path,
    started_at: float | None,
    ended_at: float | None = None,
    kubeconfig: str | None = None,
    margin: float = EVENTS_MARGIN,
) -> list[Path]:
    """Save the cluster's Events of the run window to ``evidence/events.json`` and ``events.txt``.

    A kubectl failure is written to both files in :mod:`probes.kubectl_text`'s wording; an
    unknown start keeps nothing (both files say so) rather than guess the window.
    """
    folder = run_dir / "evidence"
    folder.mkdir(parents=True, exist_ok=True)
    json_path, text_path = folder / "events.json", folder / "events.txt"
    end = time.time() if ended_at is None else ended_at
    if started_at is None:
        why = f"{ERROR_PREFIX} the run's start is unknown (run.json has no started_at): events not filtered\n"
        json_path.write_text(why)
        text_path.write_text(why)
        return [json_path, text_path]
    raw = _kubectl(_EVENTS_ARGS, kubeconfig)
    try:
        listed = json.loads(raw)
        items = (
            listed["items"] if isinstance(listed, dict) and isinstance(listed.get("items"), list) else None
        )
    except ValueError:
        items = None
    if items is None:
        text = raw if raw.strip() else ""
        if not any(line.startswith(ERROR_PREFIX) for line in text.splitlines()):
            text += f"{ERROR_PREFIX} kubectl {' '.join(_EVENTS_ARGS)} did not answer an event list\n"
        json_path.write_text(text)
        text_path.write_text(text)
        return [json_path, text_path]
    kept = events_in_window(items, started_at, end, margin)
    window = {"from": format_time(started_at), "to": format_time(end), "marginSeconds": margin}
    body = {"apiVersion": "v1", "kind": "List", "window": window, "items": kept}
    json_path.write_text(json.dumps(body, indent=1) + "\n")
    text_path.write_text(events_text(kept))
    return [json_path, text_path]


def capture_operator_logs(
    run_dir: Path,
    namespace: str = kube.DEFAULT_OPERATOR_NAMESPACE,
    selector: str = kube.DEFAULT_OPERATOR_SELECTOR,
    since_seconds: int | None = None,
    kubeconfig: str | None = None,
) -> Path:
    """Save the operator pods' logs (all containers, ``since_seconds`` back) to ``evidence/operator.log``."""
    args = ["logs", "-n", namespace, "-l", selector, "--all-containers", "--prefix", "--tail=-1"]
    if since_seconds:
        args.append(f"--since={max(1, since_seconds)}s")
    path = run_dir / "evidence" / "operator.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_kubectl(args, kubeconfig))
    return path
