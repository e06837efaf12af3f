"""Evidence a reviewer asks for: ``kubectl get`` snapshots and the operator's logs.

Snapshots go to ``<run>/evidence/<phase>/`` (``pods.txt``, ``crds.txt``, ``crs.txt``,
``jobs.txt``, ``pvc.txt``), taken with the real ``kubectl`` against whatever cluster
``KUBECONFIG`` names. Operator logs for the run window go to ``evidence/operator.log``.
Secrets are never listed; a command that fails leaves its error in the file instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.crd import CrdCoordinates
from loadgen.tenants import redact
from probes.errors import ProbeError
from probes.k8s import kube
from probes.kubectl_text import ERROR_PREFIX, missing_kubectl, timed_out

__all__ = ["capture_evidence", "capture_operator_logs", "snapshot_resources", "write_snapshots"]

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
    return written


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
