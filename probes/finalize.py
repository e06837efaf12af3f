"""Finish a run folder after the load stopped: evidence, read-back, report.

Called by the load control at the end of ``chaos run`` (as ``python -m probes
finalize RUN_DIR``, a separate process), and usable by hand on any run folder whose
tenants can still be reached.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from loadgen.tenants import load_tenants
from probes.errors import ProbeError
from probes.readback import read_back, save_readback

__all__ = ["finalize"]


def finalize(run_dir: Path, kubeconfig: str | None = None, report: bool = True) -> Path:
    """Snapshot the cluster (Kubernetes runs), read every row back, build the report."""
    meta_path = run_dir / "run.json"
    if not meta_path.exists():
        raise ProbeError(f"{meta_path} is missing: pass a run folder written by a harness run")
    meta = json.loads(meta_path.read_text())
    target = meta.get("target")
    if target == "kubernetes" or (isinstance(target, dict) and target.get("kind") in ("lab", "cluster")):
        from probes.k8s.evidence import capture_operator_logs, write_snapshots
        from probes.k8s.kube import DEFAULT_OPERATOR_NAMESPACE, DEFAULT_OPERATOR_SELECTOR

        write_snapshots(run_dir, "after", kubeconfig, list(meta.get("custom_resources") or []) or None)
        started = meta.get("started_at") or time.time()
        operator = meta.get("operator") or {}
        capture_operator_logs(
            run_dir,
            namespace=str(operator.get("namespace") or DEFAULT_OPERATOR_NAMESPACE),
            selector=str(operator.get("selector") or DEFAULT_OPERATOR_SELECTOR),
            since_seconds=int(time.time() - started) + 30,
            kubeconfig=kubeconfig,
        )
    tenants = load_tenants(run_dir / "tenants.json")
    save_readback(run_dir / "readback.json", read_back(tenants, str(meta.get("run_id") or run_dir.name)))
    if report:
        done = subprocess.run(
            [sys.executable, "-m", "reports", "build", str(run_dir)], check=False, stdout=subprocess.DEVNULL
        )
        if done.returncode != 0:
            raise ProbeError(
                f"building the report failed (exit {done.returncode}); the run data is in {run_dir}"
            )
    return run_dir / "report.md"
