"""Node faults as processes: crash a node and bring it back, or lose it until told otherwise.

- :func:`restart_node`: SIGKILL everything of the node, wait, start its kubelet again
  (``python -m lab restart-node``), like a machine that reboots.
- :func:`stop_node`: the same kill, and the node stays down (``python -m lab stop-node``):
  a machine that does not come back. Its Node object stays, NotReady after the
  node-monitor grace period of the lab's timing profile; what happens to its pods is the
  control plane's and the operator's business, which is what the node-loss experiment
  measures.
- :func:`start_node`: start a stopped node's kubelet again (``python -m lab start-node``);
  ``python -m lab up`` does the same for every node whose kubelet is not running.

Each kill freezes the kubelet (the root of the node's process tree) first, then SIGKILLs
every process of it and of its containers (:func:`lab.cluster_nodes.kill_node`).
"""

from __future__ import annotations

import time
from typing import Any

from lab.cluster_layout import Layout, api_url, load_config, running, wait_until
from lab.cluster_nodes import kill_node, node_ready, start_kubelet
from lab.cluster_security import admin_client
from lab.errors import LabError

__all__ = ["restart_node", "start_node", "stop_node"]


def _known(layout: Layout, node: str) -> dict[str, Any]:
    config = load_config(layout)
    if node not in (config.get("nodes") or []):
        known = ", ".join(config.get("nodes") or []) or "none (run `python -m lab up`)"
        raise LabError(f"no lab node named {node!r}: known nodes are {known}")
    if running(layout, "controlplane") is None:
        raise LabError("the lab is not running: `python -m lab up` first")
    return config


def stop_node(node: str, *, layout: Layout | None = None) -> dict[str, Any]:
    """SIGKILL ``node``'s kubelet and every pod process, and leave it down.

    Returns the killed count, ``killed_at`` (UTC epoch seconds, before the node's
    processes were looked up), ``signalled_at`` (just before the first signal reached
    them: the moment the node went down, None if nothing of it was running) and
    ``kill_seconds`` (from then until all of them were gone).
    """
    layout = layout or Layout.default()
    _known(layout, node)
    killed_at = time.time()
    killed = kill_node(layout, node)
    return {
        "node": node,
        "killed": killed.count,
        "killed_at": killed_at,
        "signalled_at": killed.signalled_at,
        "kill_seconds": killed.done_after,
    }


def start_node(
    node: str, *, layout: Layout | None = None, wait: bool = True, timeout: float = 30.0
) -> dict[str, Any]:
    """Start ``node``'s kubelet (a no-op when it runs); with ``wait``, until its Node is Ready again."""
    layout = layout or Layout.default()
    config = _known(layout, node)
    current = running(layout, f"kubelet-{node}")
    if current is not None:
        return {"node": node, "kubelet_pid": current.pid, "started": False, "ready_after": None}
    began, started_at = time.monotonic(), time.time()
    pid = start_kubelet(layout, node, api_url(config))
    ready_after = None
    if wait:
        client = admin_client(layout)
        wait_until(
            f"node {node} Ready again",
            lambda: node_ready(client, node, started_at),
            timeout,
            f"see {layout.node_state(node) / 'kubelet.log'}",
            0.05,
        )
        ready_after = round(time.monotonic() - began, 3)
    return {"node": node, "kubelet_pid": pid, "started": True, "ready_after": ready_after}


def restart_node(
    node: str, down_seconds: float, *, layout: Layout | None = None, wait: bool = True, timeout: float = 30.0
) -> dict[str, Any]:
    """Crash ``node`` (:func:`stop_node`), wait ``down_seconds``, start its kubelet again.

    Returns when the kubelet is back (and, with ``wait``, its Node Ready): what
    :func:`stop_node` returns, plus ``down_seconds``, the kubelet's pid and how long the
    node took to be Ready.
    """
    layout = layout or Layout.default()
    stopped = stop_node(node, layout=layout)
    time.sleep(max(0.0, down_seconds))
    started = start_node(node, layout=layout, wait=wait, timeout=timeout)
    return {
        **stopped,
        "down_seconds": down_seconds,
        "kubelet_pid": started["kubelet_pid"],
        "ready_after": started["ready_after"],
    }
