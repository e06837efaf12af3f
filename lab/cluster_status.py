"""``python -m lab status``: what of one lab runs, and what its API server says.

:func:`status` is re-exported by :mod:`lab.cluster` (the lab's public entry); it reads
pidfiles, ``cluster.json``, the monitoring endpoints and, when the control plane is
alive, the nodes and MSSQLInstances.
"""

from __future__ import annotations

import contextlib
from typing import Any

from lab.capacity import NodeKnobs
from lab.cluster_layout import Layout, api_url, load_config, running
from lab.cluster_nodes import lab_timing
from lab.cluster_security import admin_client
from lab.cluster_tenants import INSTANCES, instance_ready
from lab.errors import LabError
from lab.kubeclient import ApiError
from lab.monitoring import monitoring_endpoints
from lab.monitoring import stack as monitoring_stack

__all__ = ["status"]


def status(layout: Layout | None = None) -> dict[str, Any]:
    """Processes (pid, alive), nodes (Ready, cordoned), instances (phase, endpoint), knobs, timing.

    ``monitoring``: the endpoints (None without monitoring); ``monitoring_processes``:
    Prometheus and Alertmanager (pid, alive) when they run or have a pidfile.
    """
    layout = layout or Layout.default()
    config = load_config(layout)
    knobs = NodeKnobs.from_config(config)
    names = ["controlplane", *(f"kubelet-{n}" for n in config.get("nodes") or [])]
    procs, monitoring_procs = [], []
    for name in [*names, *monitoring_stack.NAMES]:
        proc = running(layout, name)
        entry = {"name": name, "pid": proc.pid if proc else None, "alive": proc is not None}
        if name not in names and (proc is not None or (layout.pids / f"{name}.pid").exists()):
            monitoring_procs.append(entry)
        elif name in names:
            procs.append(entry)
    result: dict[str, Any] = {
        "lab_dir": str(layout.lab),
        "url": api_url(config) if config.get("port") else None,
        "processes": procs,
        "nodes": [],
        "instances": [],
        "api": "down",
        "node_cpu": knobs.node_cpu,
        "commit_cpu_ms": knobs.commit_cpu_ms,
        "knobs": knobs.describe(),
        "timing": lab_timing(config).describe(),
        "monitoring": monitoring_stack.as_record(monitoring_endpoints(layout.lab)),
        "monitoring_processes": monitoring_procs,
    }
    if not config.get("port") or not procs[0]["alive"]:
        return result
    try:
        client = admin_client(layout, timeout=3)
    except LabError:
        return result
    try:
        for node in client.list("nodes"):
            conditions = (node.get("status") or {}).get("conditions") or []
            ready = next((c.get("status") for c in conditions if c.get("type") == "Ready"), "Unknown")
            result["nodes"].append(
                {
                    "name": node["metadata"]["name"],
                    "ready": ready,
                    "unschedulable": bool((node.get("spec") or {}).get("unschedulable")),
                }
            )
        with contextlib.suppress(ApiError):
            for inst in client.list(INSTANCES):
                st = inst.get("status") or {}
                result["instances"].append(
                    {
                        "name": inst["metadata"]["name"],
                        "namespace": inst["metadata"]["namespace"],
                        "phase": st.get("phase", ""),
                        "ready": instance_ready(inst),
                        "endpoint": st.get("endpoint", ""),
                    }
                )
        result["api"] = "up"
    except ApiError as exc:
        result["api"] = f"unreachable ({exc})"
    return result
