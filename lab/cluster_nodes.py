"""The lab's processes per role: start the control plane and a node's kubelet, kill a node.

A node's processes are its kubelet's process tree (the kubelet is a child subreaper)
plus whatever its container records name: :func:`kill_node` freezes and SIGKILLs all
of them, like pulling a machine's power cord. :func:`node_ready` tells a fresh kubelet
from a stale Node status by its Lease; :func:`lab_processes` finds whatever of a lab
is left by the folder its command line names.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import psutil

from common.times import parse_time
from lab import processes
from lab.capacity import NodeKnobs
from lab.cluster_layout import Layout, load_config, running, spawn, wait_until
from lab.cluster_security import write_node_kubeconfig
from lab.errors import LabError
from lab.kubeclient import ApiError, KubeClient
from lab.kubelet.runtime import kill_leftovers
from lab.timing import DEFAULT as DEFAULT_TIMING
from lab.timing import Timing, profile

__all__ = [
    "Killed",
    "backoff_args",
    "kill_node",
    "kubelet_argv",
    "lab_processes",
    "lab_timing",
    "node_ready",
    "start_control_plane",
    "start_kubelet",
]

# -- control plane and kubelets --------------------------------------------------------------------


def start_control_plane(layout: Layout, port: int, timeout: float, metrics_port: int | None = None) -> None:
    """Start ``lab.controlplane`` on ``port`` (an empty deny list if none yet); wait until it listens.

    ``metrics_port``: where it also serves the kube-state-metrics stand-in (None: nowhere).
    """
    out = layout.root / "controlplane.out"
    out.unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "lab.controlplane",
        "--port",
        str(port),
        "--data",
        str(layout.api),
        "--logs",
        str(layout.logs),
        "--policy",
        str(layout.policy),
        "--pki",
        str(layout.pki),
        "--timing",
        lab_timing(load_config(layout)).name,
    ]
    if metrics_port is not None:
        argv += ["--metrics-port", str(metrics_port)]
    config = load_config(layout)
    if config.get("lab_id") and config.get("port_range"):
        argv += ["--lab-id", str(config["lab_id"]), "--port-range", str(config["port_range"])]
    if not layout.policy.exists():
        layout.policy.write_text(
            "# Extra deny rules on top of RBAC (which decides everything else), re-read on change.\n"
            "# Example:  deny: [{verb: create, resource: pods/eviction, namespace: tenants}]\n"
            "deny: []\n"
        )
    pid = spawn(layout, "controlplane", argv, layout.root / "controlplane.log", out)

    def listening() -> bool:
        with contextlib.suppress(OSError):
            if "listening on" in out.read_text():
                return True
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            lines = (layout.root / "controlplane.log").read_text(errors="replace").strip().splitlines()
            raise LabError(f"the control plane exited: {lines[-1] if lines else 'no output'}")
        return False

    wait_until(
        "the control plane listening", listening, timeout, f"see {layout.root / 'controlplane.log'}", 0.05
    )


def lab_timing(config: dict[str, Any]) -> Timing:
    """The timing profile kept in ``cluster.json`` (Kubernetes' when none is kept)."""
    return profile(str(config.get("timing") or DEFAULT_TIMING))


def backoff_args(timing: Timing) -> list[str]:
    """The kubelet arguments for the profile's crash-loop back-off."""
    return ["--backoff-base", f"{timing.backoff_base:g}", "--backoff-max", f"{timing.backoff_max:g}"]


def kubelet_argv(layout: Layout, node: str, url: str) -> list[str]:
    """The kubelet's command line, with the lab's capacity knobs and timing from ``cluster.json``."""
    return [
        sys.executable,
        "-m",
        "lab.kubelet",
        "--node",
        node,
        "--kubeconfig",
        str(write_node_kubeconfig(layout, node, url)),
        "--state",
        str(layout.node_state(node)),
        "--logs",
        str(layout.logs),
        "--volumes",
        str(layout.volumes),
        *NodeKnobs.from_config(load_config(layout)).kubelet_args(),
        *backoff_args(lab_timing(load_config(layout))),
    ]


def start_kubelet(layout: Layout, node: str, url: str) -> int:
    """Start ``node``'s kubelet against ``url``; its pid."""
    state = layout.node_state(node)
    state.mkdir(parents=True, exist_ok=True)
    return spawn(layout, f"kubelet-{node}", kubelet_argv(layout, node, url), state / "kubelet.log")


def node_ready(client: KubeClient, node: str, since: float | None = None) -> bool:
    """Node Ready; with ``since``, also renewed its Lease after that time (a fresh kubelet)."""
    try:
        obj = client.get_or_none("nodes", node)
        conditions = ((obj or {}).get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            return False
        if since is None:
            return True
        lease = client.get_or_none("leases", node, "kube-node-lease")
    except ApiError:
        return False
    renewed = str(((lease or {}).get("spec") or {}).get("renewTime") or "")
    stamp = parse_time(renewed)
    return stamp is not None and stamp >= since


# -- killing ------------------------------------------------------------------------------------------


def lab_processes(layout: Layout) -> list[psutil.Process]:
    """Every process whose command line names this lab's folders (kubelets, control plane, servers,
    Prometheus and Alertmanager)."""
    roots = (str(layout.root), str(layout.monitoring))
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(root in word for word in proc.info["cmdline"] or [] for root in roots):
                found.append(proc)
        except psutil.Error:
            continue
    return found


@dataclass(frozen=True)
class Killed:
    """What :func:`kill_node` did: how many processes it killed, and when.

    ``signalled_at`` is the wall-clock time (UTC epoch seconds) read just before the
    first signal reached the node, after its processes were found, so a fault can be
    timed from the moment the node really went down rather than from when someone
    decided to take it down; ``done_after`` is how long from then until every process
    of the node was gone: the injection happened somewhere in that window. Both are
    None when nothing of the node was running.
    """

    count: int
    signalled_at: float | None
    done_after: float | None


def kill_node(layout: Layout, node: str) -> Killed:
    """SIGKILL the node's kubelet tree and every recorded container process."""
    kubelet = running(layout, f"kubelet-{node}")
    count = 0
    signalled_at = None
    if kubelet is not None:
        with contextlib.suppress(psutil.Error):
            count = 1 + len(kubelet.children(recursive=True))
        # Freeze the kubelet (the root of the node's tree) first, as kill_trees would
        # once it has walked the tree: the clock is read right before that signal.
        signalled_at = time.time()
        with contextlib.suppress(psutil.Error):
            kubelet.send_signal(signal.SIGSTOP)
        survivors = processes.kill_trees([kubelet])
        if survivors:
            raise LabError(f"processes {[p.pid for p in survivors]} of {node} survived SIGKILL")
    # Container processes that escaped the kubelet's tree; when the kubelet was not
    # running these are all there is, and the clock is read before they are looked up.
    before_leftovers = time.time()
    leftovers = kill_leftovers(layout.node_state(node) / "containers")
    if leftovers and signalled_at is None:
        signalled_at = before_leftovers
    count += leftovers
    (layout.pids / f"kubelet-{node}.pid").unlink(missing_ok=True)
    done_after = None if signalled_at is None else round(time.time() - signalled_at, 6)
    return Killed(count, signalled_at, done_after)
