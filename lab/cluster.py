"""The lab cluster as processes: bring it up, show it, restart a node, take it down.

This module is the lab's public entry (``python -m lab`` and the harness call it): the
commands :func:`up`, :func:`status` and :func:`down` live here, with the node faults
:func:`restart_node`, :func:`stop_node` and :func:`start_node` (:mod:`lab.node_faults`),
and it re-exports the names of what they are built from:

- :mod:`lab.cluster_layout`: the layout under ``lab_dir()/"cluster"`` (:class:`Layout`:
  API server data, pod logs, PVCs, pidfiles, kubelet state, tenant password files and
  ``cluster.json``, which keeps the API port, node names and capacity knobs so every
  ``up`` reuses them and the kubeconfig stays valid), starting a detached process and
  finding it again by its pidfile;
- :mod:`lab.cluster_nodes`: the control plane and the kubelets as processes, a node's
  readiness, killing a node;
- :mod:`lab.cluster_tenants`: how many tenants this machine holds (:func:`check_capacity`),
  applying manifests, the tenants' MSSQLInstances and their ``tenants.json`` entries;
- :mod:`lab.cluster_status`: :func:`status` (processes, nodes, instances, monitoring);
- :mod:`lab.monitoring.stack`: Prometheus and Alertmanager (``up`` starts them once the
  control plane is ready unless ``monitoring=False``, and returns only when both are
  ready and the alert rules are loaded; ``down`` stops them).

``lab_dir()/"kubeconfig"`` and ``lab_dir()/"tenants.json"`` are what users and the load
generator read.

Every process is started detached (own session) and found again through its
pidfile, checked against its command line so a recycled pid is never signalled.
A node's processes are its kubelet's process tree (the kubelet is a child
subreaper) plus whatever its container records name: :func:`restart_node` freezes
and SIGKILLs all of them, like pulling a machine's power cord.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from lab import processes
from lab.capacity import Knob, NodeKnobs, remove_node_groups, resolve_knobs
from lab.cluster_layout import (
    NODE_PREFIX,
    Layout,
    api_url,
    load_config,
    node_names,
    port_free,
    running,
    save_config,
    stop_process,
    wait_until,
)
from lab.cluster_nodes import (
    kill_node,
    kubelet_argv,
    lab_processes,
    node_ready,
    start_control_plane,
    start_kubelet,
)
from lab.cluster_security import admin_client, protect_folders, write_admin_kubeconfig
from lab.cluster_status import status
from lab.cluster_tenants import (
    INSTANCES,
    ODBC_DRIVER,
    OPERATOR_MANIFEST,
    TENANT_MEMORY,
    TENANT_NAMESPACE,
    apply_manifest,
    check_capacity,
    instance_answers,
    instance_body,
    instance_ready,
    tenant_entry,
)
from lab.engine import free_port
from lab.errors import LabError
from lab.kubeclient import ApiError
from lab.kubelet.runtime import kill_leftovers
from lab.monitoring import stack as monitoring_stack
from lab.node_faults import restart_node, start_node, stop_node
from lab.paths import pg_bindir, reachable_by, server_user
from lab.ports import (
    claim_range,
    format_range,
    is_lab_id,
    lab_identity,
    mark_down,
    mark_running,
    release_range,
)
from lab.timing import requested as requested_timing

__all__ = [
    "INSTANCES",
    "NODE_PREFIX",
    "ODBC_DRIVER",
    "OPERATOR_MANIFEST",
    "TENANT_MEMORY",
    "TENANT_NAMESPACE",
    "Layout",
    "apply_manifest",
    "check_capacity",
    "down",
    "node_names",
    "restart_node",
    "running",
    "start_node",
    "status",
    "stop_node",
    "up",
]

Say = Callable[[str], None]

# The names these helpers had when they lived in this module (tests call them through it).
_load_config = load_config
_save_config = save_config
_kubelet_argv = kubelet_argv
_kill_node = kill_node


def _quiet(_: str) -> None:
    return None


# -- the commands ------------------------------------------------------------------------------------


def up(
    tenants: int = 1,
    nodes: int = 3,
    *,
    port: int | None = None,
    node_cpu: Knob = None,
    commit_cpu_ms: Knob = None,
    layout: Layout | None = None,
    timeout: float = 180.0,
    monitoring: bool = True,
    alert_rules: Path | None = None,
    timing: str | None = None,
    say: Say = _quiet,
) -> dict[str, Any]:
    """Start (or complete) the lab and wait until ``tenants`` instances are Ready.

    Idempotent: what already runs is reused, what is missing is started or created.
    ``monitoring`` starts Prometheus and Alertmanager (:mod:`lab.monitoring.stack`) with
    the rules of ``alert_rules`` (default: the repository's); False stops them if they run.
    ``node_cpu`` (cores) and ``commit_cpu_ms`` are the capacity knobs (:mod:`lab.capacity`):
    None keeps what the lab was started with, ``"off"`` turns one off; they are checked
    before anything starts. ``timing`` names the timing profile (:mod:`lab.timing`; None:
    ``$HARNESS_LAB_TIMING``, else the lab's kept one, else Kubernetes'); changing it needs
    a ``down`` first. LabError (one line) when a knob is bad, PostgreSQL is missing,
    the port is taken, or something does not come up in time. Returns what was done:
    url, nodes, tenants, timings, knobs.
    """
    layout = layout or Layout.default()
    config = load_config(layout)
    stored = NodeKnobs.from_config(config)
    knobs = resolve_knobs(stored, node_cpu, commit_cpu_ms)
    if knobs != stored and any(running(layout, f"kubelet-{n}") for n in config.get("nodes") or []):
        current = " ".join(stored.kubelet_args()) or "no capacity knobs"
        raise LabError(f"the lab runs with {current}: `python -m lab down` first to change the knobs")
    knobs.store(config)
    profile = requested_timing(timing, config.get("timing"))
    lab_running = running(layout, "controlplane") is not None or any(
        running(layout, f"kubelet-{n}") for n in config.get("nodes") or []
    )
    if lab_running and config.get("timing") not in (None, profile.name):
        raise LabError(
            f"the lab runs with the {config['timing']} timing profile: `python -m lab down` first "
            f"to change it to {profile.name}"
        )
    config["timing"] = profile.name
    if tenants < 1 or nodes < 1:
        raise LabError(
            f"need at least 1 node and 1 tenant (got {nodes} nodes, {tenants} tenants): "
            "the load refuses an empty tenants file"
        )
    check_capacity(tenants)
    began = time.monotonic()
    pg_bindir()
    plan = monitoring_stack.preflight(alert_rules) if monitoring else None
    if port is not None and config.get("port") not in (None, port) and running(layout, "controlplane"):
        raise LabError(
            f"the lab already runs on port {config['port']}: `python -m lab down` first to change it"
        )
    config["port"] = port or config.get("port") or free_port()
    lab_id = lab_identity(config)
    config["port_range"] = format_range(claim_range(lab_id, layout.root))
    reused = running(layout, "controlplane") is not None
    while (
        not isinstance(config.get("ksm_port"), int)
        or config["ksm_port"] == config["port"]
        or (not reused and not port_free(config["ksm_port"]))
    ):
        config["ksm_port"] = free_port()
    known = list(config.get("nodes") or [])
    config["nodes"] = sorted(set(known) | set(node_names(nodes)), key=lambda n: (len(n), n))
    url = api_url(config)
    protect_folders(layout)
    user = server_user()
    if user is not None and not reachable_by(layout.volumes, user):
        raise LabError(
            f"the {user} user cannot reach {layout.volumes}, so database pods cannot start: "
            "make every folder above it traversable (chmod o+x) or set HARNESS_LAB_DIR elsewhere"
        )
    if reused:
        say(f"lab already running at {url}: reusing it")
    else:
        if not port_free(int(config["port"])):
            raise LabError(
                f"port {config['port']} on 127.0.0.1 is in use: stop what uses it or pass --port "
                "with a free port"
            )
        save_config(layout, config)
        say(f"starting the control plane on {url}")
        start_control_plane(layout, int(config["port"]), timeout=30, metrics_port=int(config["ksm_port"]))
    control = running(layout, "controlplane")
    if control is not None:
        mark_running(lab_id, control.pid)
    save_config(layout, config)
    write_admin_kubeconfig(layout, url)
    client = admin_client(layout)
    started_nodes = []
    kubelets_started_at = time.time()
    for node in config["nodes"]:
        if running(layout, f"kubelet-{node}") is None:
            kill_leftovers(layout.node_state(node) / "containers")
            start_kubelet(layout, node, url)
            started_nodes.append(node)
    if started_nodes:
        say(f"starting kubelets: {', '.join(started_nodes)}")
    for node in config["nodes"]:
        wait_until(
            f"node {node} Ready",
            functools.partial(
                node_ready, client, node, kubelets_started_at if node in started_nodes else None
            ),
            30,
            f"see {layout.node_state(node) / 'kubelet.log'}",
        )
    cp_ready = time.monotonic() - began
    ports: dict[str, int] = {}
    if plan is not None:
        say("starting Prometheus and Alertmanager")
        ports = monitoring_stack.start(layout, config, plan, int(config["ksm_port"]))
        save_config(layout, config)
    elif monitoring_stack.stop(layout):
        say("stopped Prometheus and Alertmanager (--no-monitoring)")
    apply_manifest(client, OPERATOR_MANIFEST)
    names = [f"tenant-{i}" for i in range(tenants)]
    if names:
        with contextlib.suppress(ApiError):
            client.create(
                "namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": TENANT_NAMESPACE}},
            )
        for name in names:
            if client.get_or_none(INSTANCES, name, TENANT_NAMESPACE) is None:
                client.create(INSTANCES, instance_body(name), TENANT_NAMESPACE)
        say(f"waiting for {len(names)} MSSQLInstance(s) in namespace {TENANT_NAMESPACE} to be Ready")

    def all_ready() -> list[dict[str, Any]] | None:
        found = []
        for name in names:
            try:
                obj = client.get_or_none(INSTANCES, name, TENANT_NAMESPACE)
                if not instance_ready(obj):
                    return None
                assert obj is not None
                if not instance_answers(layout, client, obj):
                    return None
            except ApiError:
                return None
            found.append(obj)
        return found

    ready: list[dict[str, Any]] = (
        wait_until(
            "MSSQLInstances Ready",
            all_ready,
            timeout,
            "see `kubectl -n mssql-operator logs deploy/mssql-operator` "
            f"and `kubectl -n {TENANT_NAMESPACE} get pods` (KUBECONFIG={layout.kubeconfig})",
            0.25,
        )
        if names
        else []
    )
    entries = [tenant_entry(layout, client, inst) for inst in ready]
    layout.tenants_file.write_text(json.dumps({"tenants": entries}, indent=2) + "\n")
    endpoints, waited = None, time.monotonic()
    if plan is not None:
        endpoints = monitoring_stack.wait_ready(layout, ports, plan, int(config["ksm_port"]))
    return {
        "url": url,
        "reused": reused,
        "nodes": config["nodes"],
        "tenants": entries,
        "kubeconfig": str(layout.kubeconfig),
        "tenants_file": str(layout.tenants_file),
        "nodes_ready_after": round(cp_ready, 3),
        "ready_after": round(time.monotonic() - began, 3),
        "node_cpu": knobs.node_cpu,
        "commit_cpu_ms": knobs.commit_cpu_ms,
        "timing": profile.as_dict(),
        "monitoring": monitoring_stack.as_record(endpoints),
        "monitoring_waited": round(time.monotonic() - waited, 3),
    }


def down(wipe: bool = False, layout: Layout | None = None, say: Say = _quiet) -> dict[str, Any]:
    """Stop the kubelets (their pods first) and the control plane; verify nothing is left.

    The nodes' CPU cgroups are removed. Data stays unless ``wipe`` (the capacity knobs are
    data: the next ``up`` keeps them). LabError if a lab process survives.
    """
    layout = layout or Layout.default()
    config = load_config(layout)
    nodes = list(config.get("nodes") or [])
    try:
        stopped = monitoring_stack.stop(layout)
        monitoring_problem = None
    except LabError as exc:  # stop the rest of the lab anyway, then say so
        stopped, monitoring_problem = [], exc
    kubelets = [(n, p) for n in nodes if (p := running(layout, f"kubelet-{n}")) is not None]
    for _, proc in kubelets:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    for node, proc in kubelets:
        if processes.wait_gone([proc], 25):
            say(f"kubelet of {node} did not stop in 25s: killing it")
        kill_node(layout, node)
        stopped.append(f"kubelet-{node}")
    for node in nodes:
        kill_leftovers(layout.node_state(node) / "containers")
        (layout.pids / f"kubelet-{node}.pid").unlink(missing_ok=True)
    control = running(layout, "controlplane")
    if control is not None:
        if not stop_process(control, 15):
            say("the control plane did not stop in 15s: killing it")
            processes.kill_trees([control])
        stopped.append("controlplane")
    (layout.pids / "controlplane.pid").unlink(missing_ok=True)
    left = lab_processes(layout)
    if left:
        say(f"killing leftover lab processes {[p.pid for p in left]}")
        survivors = processes.kill_trees(left)
        if survivors:
            raise LabError(f"lab processes {[p.pid for p in survivors]} survived SIGKILL: stop them by hand")
    if monitoring_problem is not None:
        raise monitoring_problem
    groups = remove_node_groups(layout.root, nodes)
    if is_lab_id(config.get("lab_id")):
        (release_range if wipe else mark_down)(str(config["lab_id"]))
    if wipe:
        shutil.rmtree(layout.root, ignore_errors=True)
        shutil.rmtree(layout.monitoring, ignore_errors=True)
        layout.kubeconfig.unlink(missing_ok=True)
        layout.tenants_file.unlink(missing_ok=True)
        layout.policy.unlink(missing_ok=True)
    return {
        "stopped": stopped,
        "leftovers_killed": [p.pid for p in left],
        "wiped": wipe,
        "cgroups_removed": groups,
    }
