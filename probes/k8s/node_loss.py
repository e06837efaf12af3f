"""Losing a node for good: the fault, what Kubernetes and the operator did about it, the way back.

The experiment ``experiments/node-loss.json``:

1. :func:`lose_node` (action) stops the node hosting the target tenant's pod and leaves it
   down: on the lab ``python -m lab stop-node`` (its kubelet and every process of its
   pods SIGKILLed), on a cluster ``node_loss_strategy: command`` runs
   ``node_stop_command`` (e.g. a cloud CLI's stop-instance). Refused unless
   ``allow_node_loss`` is true. It starts a :class:`~probes.k8s.node_watch.NodeWatch`.
2. ``wait_for_recovery`` measures as for every fault.
3. :func:`node_loss_handling` (probe) stops the watch and says how the node's pods were
   moved, if they were (the out-of-service taint, a force deletion, the Node deleted,
   or nobody): ``node-loss.json`` in the run folder, and the explanation joins the
   fault's details, so a tenant that did not recover within the objective reads NO-GO
   with the reason.
4. :func:`restore_node` (rollback) starts the node again (lab ``start-node``, cluster
   ``node_start_command``), waits until it is Ready and takes the out-of-service taint
   off, as Kubernetes' documentation asks whoever brings the node back to do.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

from common.config import ConfigurationError, boolean
from probes.errors import ProbeError
from probes.faultlog import FAULT_LOG_NAME, mark_observed, mark_signalled, read_faults
from probes.k8s import kube
from probes.k8s.node_watch import OUT_OF_SERVICE, NodeWatch
from probes.k8s.probes import instances_ready
from probes.observations import observe

__all__ = ["lose_node", "node_loss_handling", "restore_node"]

Configuration = Mapping[str, Any] | None
Secrets = Mapping[str, Any] | None

KIND = "node-loss"
RECORD_NAME = "node-loss.json"
_WATCHES: dict[str, NodeWatch] = {}


def _strategy(config: Mapping[str, Any], key: str, node: str, lab_argv: list[str]) -> tuple[str, list[str]]:
    strategy = str(config.get("node_loss_strategy") or "lab")
    if strategy == "lab":
        return strategy, lab_argv
    if strategy == "command":
        template = str(config.get(key) or "")
        if not template:
            raise ProbeError(f"node_loss_strategy is command but {key} is empty: set it")
        return strategy, shlex.split(template.format(node=node))
    raise ProbeError(f"unknown node_loss_strategy {strategy!r}: use lab or command")


def _run(argv: list[str], what: str, timeout: float) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProbeError(f"{what} failed: {exc.__class__.__name__}: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()
        raise ProbeError(f"{what} failed: {last[-1] if last else f'exit status {done.returncode}'}")
    return done.stdout


def lose_node(
    tenant: str = "",
    node: str = "",
    namespace: str = "tenants",
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Stop the node hosting ``tenant`` (or ``node``) and leave it down; refused unless ``allow_node_loss``.

    ``node_loss_strategy`` picks how: ``lab`` (``python -m lab stop-node``) or ``command``
    (``node_stop_command`` with ``{node}`` substituted). The node comes back only in the
    rollback (:func:`restore_node`). When the operator runs on the target tenant's node,
    the node of another tenant is lost instead (the fault's details say which and why).
    """
    config = dict(configuration or {})
    try:
        allowed = boolean(config.get("allow_node_loss"), default=False, name="allow_node_loss")
    except ConfigurationError as exc:
        raise ProbeError(f"node loss refused: {exc}") from None
    if not allowed:
        raise ProbeError("node loss refused: set allow_node_loss to true in the configuration to allow it")
    kube.check_namespace(namespace, configuration, secrets)
    aimed = tenant
    if not node:
        node = kube.tenant_pod(tenant, namespace, configuration, secrets).spec.node_name
        node, tenant = _spare_the_operator(node, tenant, namespace, config, secrets)
    kube.check_node_namespaces(node, configuration, secrets)
    lab_argv = [sys.executable, "-m", "lab", "stop-node", node, "--json"]
    strategy, argv = _strategy(config, "node_stop_command", node, lab_argv)
    watch = NodeWatch(node, [namespace], time.time(), secrets)
    details: dict[str, Any] = {"node": node, "strategy": strategy}
    if tenant != aimed:
        details["instead_of"] = aimed
        details["why"] = (
            f"the operator runs on the node of {aimed}: losing it would test the operator's loss too"
        )
    fault = kube.record(f"lose {node}", KIND, tenant or None, **details)
    began = time.monotonic()
    stdout = _run(argv, f"stopping node {node}", 120)
    took = time.monotonic() - began
    signalled_at, uncertainty = _signalled(strategy, stdout, fault.injected_at, took)
    folder = kube.run_dir()
    if folder is not None:
        mark_signalled(folder / FAULT_LOG_NAME, fault.name, signalled_at, uncertainty)
    kube.ended(fault)
    watch.lost_at = signalled_at
    _WATCHES[node] = watch
    watch.start()
    return {"node": node, "strategy": strategy, "signalled_at": signalled_at, "uncertainty": uncertainty}


def _operator_nodes(config: Mapping[str, Any], secrets: Secrets) -> set[str]:
    namespace = str(config.get("operator_namespace") or kube.DEFAULT_OPERATOR_NAMESPACE)
    selector = str(config.get("operator_selector") or kube.DEFAULT_OPERATOR_SELECTOR)
    try:
        pods = kube.core(secrets).list_namespaced_pod(namespace, label_selector=selector).items
    except Exception as exc:
        raise kube.api_problem(exc, f"operator pods ({selector}) in {namespace}") from None
    return {p.spec.node_name for p in pods if p.spec.node_name}


def _spare_the_operator(
    node: str, tenant: str, namespace: str, config: Mapping[str, Any], secrets: Secrets
) -> tuple[str, str]:
    """The node to lose and the tenant under it: the target tenant's node, unless the operator
    runs there too; then the node of the first other tenant (by name) away from the operator.

    Losing the operator with the tenant's node tests something else (the operator's own
    recovery comes first, after its pod's 300 s toleration); when every tenant shares the
    operator's node, that is what is tested, and the fault's details say so.
    """
    busy = _operator_nodes(config, secrets)
    if node not in busy:
        return node, tenant
    template = str(config.get("tenant_pod_selector") or kube.DEFAULT_POD_SELECTOR)
    key, _, value = template.partition("=")
    if value != "{tenant}" or not key:
        return node, tenant  # a selector the harness cannot enumerate: keep the target
    try:
        pods = kube.core(secrets).list_namespaced_pod(namespace, label_selector=key).items
    except Exception as exc:
        raise kube.api_problem(exc, f"tenant pods ({key}) in {namespace}") from None
    spare = sorted(
        (p.metadata.labels[key], p.spec.node_name)
        for p in kube.database_pods(pods)
        if p.spec.node_name and p.spec.node_name not in busy
    )
    return (spare[0][1], spare[0][0]) if spare else (node, tenant)


def _signalled(strategy: str, stdout: str, recorded_at: float, took: float) -> tuple[float, float | None]:
    """When the node's processes were really signalled (the lab says), else the command's span."""
    if strategy == "lab":
        try:
            result = json.loads(stdout.strip().splitlines()[-1])
            kill = result.get("kill_seconds")
            return float(result["signalled_at"]), float(kill) if isinstance(kill, int | float) else None
        except (IndexError, KeyError, TypeError, ValueError, json.JSONDecodeError):
            pass
    return recorded_at, round(took, 3)


def _lost_node(node: str) -> tuple[str, str | None]:
    """The node to act on: ``node``, else the last node-loss fault of the run; and that fault's name."""
    folder = kube.run_dir()
    faults = read_faults(folder / FAULT_LOG_NAME) if folder is not None else []
    losses = [f for f in faults if f.kind == KIND]
    if node:
        named = [f for f in losses if f.details.get("node") == node]
        return node, named[-1].name if named else None
    if not losses:
        raise ProbeError("no node was lost in this run (no node-loss fault in the fault log): name the node")
    return str(losses[-1].details.get("node")), losses[-1].name


def node_loss_handling(
    node: str = "", configuration: Configuration = None, secrets: Secrets = None
) -> dict[str, Any]:
    """Stop watching the lost node; say how its pods were moved (``node-loss.json``, the fault's details)."""
    node, fault_name = _lost_node(node)
    watch = _WATCHES.pop(node, None)
    if watch is None:
        raise ProbeError(
            f"node {node} was not watched by this process (lose_node runs in the same chaos run): "
            "cannot tell how its pods were handled"
        )
    record = watch.stop()
    folder = kube.run_dir()
    if folder is not None:
        (folder / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")
        if fault_name is not None:
            kept = {k: record[k] for k in ("handling", "explanation", "not_ready_after", "taints")}
            mark_observed(folder / FAULT_LOG_NAME, fault_name, kept)
    observe("node-loss", record)
    return record


def restore_node(
    node: str = "",
    namespace: str = "tenants",
    timeout: float = 120.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Start the lost node again, wait until it is Ready, take its out-of-service taint off.

    Then wait (within the same ``timeout``) until every instance of ``namespace`` is Ready
    again, so the next experiment starts from a healthy cluster; ProbeError if one is not.
    """
    node, _ = _lost_node(node)
    watch = _WATCHES.pop(node, None)
    if watch is not None:
        watch.stop()
    config = dict(configuration or {})
    lab_argv = [sys.executable, "-m", "lab", "start-node", node, "--json"]
    strategy, argv = _strategy(config, "node_start_command", node, lab_argv)
    _run(argv, f"starting node {node}", timeout)
    deadline = time.monotonic() + timeout
    while not _ready(node, secrets):
        if time.monotonic() > deadline:
            raise ProbeError(f"node {node} was started but is not Ready after {timeout:g}s")
        time.sleep(0.5)
    removed = _remove_out_of_service(node, secrets)
    while not instances_ready(namespace, configuration, secrets):
        if time.monotonic() > deadline:
            raise ProbeError(
                f"node {node} is back but the instances in {namespace} are not all Ready after {timeout:g}s"
            )
        time.sleep(0.5)
    return {"node": node, "strategy": strategy, "out_of_service_removed": removed}


def _ready(node: str, secrets: Secrets) -> bool:
    try:
        found = kube.core(secrets).read_node(node)
    except Exception:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in found.status.conditions or [])


def _remove_out_of_service(node: str, secrets: Secrets) -> bool:
    for _ in range(5):
        try:
            found = kube.core(secrets).read_node(node)
        except Exception as exc:
            raise kube.api_problem(exc, f"node {node}") from None
        taints = found.spec.taints or []
        kept = [t for t in taints if t.key != OUT_OF_SERVICE]
        if len(kept) == len(taints):
            return False
        body = {
            "metadata": {"resourceVersion": found.metadata.resource_version},
            "spec": {"taints": [kube.api_client(secrets).sanitize_for_serialization(t) for t in kept]},
        }
        try:
            kube.core(secrets).patch_node(node, body)
            return True
        except Exception as exc:
            if getattr(exc, "status", None) != 409:
                raise kube.api_problem(exc, f"node {node}") from None
    raise ProbeError(
        f"node {node} kept changing: its {OUT_OF_SERVICE} taint was not removed; remove it by hand"
    )
