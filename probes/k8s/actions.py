"""Chaos Toolkit actions: the faults, injected through the Kubernetes API.

Each action records its fault in the run's fault log *before* injecting it, so RTO is
measured from the moment the fault began. Evictions and drains retry
PodDisruptionBudget refusals (HTTP 429) every ``retry_interval`` seconds until
``timeout``, as ``kubectl drain`` does; a drain interrupted half-way uncordons its
node before giving up. Node restarts on a real cluster are refused unless
``allow_node_restart`` is true in the configuration.
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
from common.crd import CrdCoordinates
from common.times import format_time
from probes.errors import ProbeError
from probes.faultlog import FAULT_LOG_NAME, mark_signalled
from probes.k8s import kube
from probes.observations import observe

__all__ = [
    "evict_tenant_pod",
    "drain_tenant_node",
    "uncordon_nodes",
    "restart_node",
    "restart_operator",
    "set_canary",
]

Configuration = Mapping[str, Any] | None
Secrets = Mapping[str, Any] | None


def _evict(name: str, namespace: str, retry_interval: float, deadline: float, secrets: Secrets) -> int:
    """Evict one pod, retrying PDB refusals; returns how many refusals it took."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace))
    api = kube.core(secrets)
    refusals = 0
    while True:
        try:
            api.create_namespaced_pod_eviction(name, namespace, body)
            return refusals
        except ApiException as exc:
            if exc.status == 404:
                return refusals  # already gone
            if exc.status != 429:
                raise kube.api_problem(exc, f"eviction of pod {namespace}/{name}") from None
            refusals += 1
            if time.monotonic() + retry_interval > deadline:
                raise ProbeError(
                    f"eviction of pod {namespace}/{name} refused by a PodDisruptionBudget {refusals} time(s) "
                    "until the timeout: relax the budget or raise the timeout"
                ) from None
            time.sleep(retry_interval)
        except Exception as exc:
            raise kube.api_problem(exc, f"eviction of pod {namespace}/{name}") from None


def _wait_replaced(pods: list[tuple[str, str, str]], deadline: float, secrets: Secrets) -> None:
    """Wait until every ``(namespace, name, uid)`` pod is gone or replaced by a new uid."""
    from kubernetes.client.exceptions import ApiException

    api = kube.core(secrets)
    pending = list(pods)
    while pending and time.monotonic() < deadline:
        still = []
        for ns, name, uid in pending:
            try:
                if api.read_namespaced_pod(name, ns).metadata.uid == uid:
                    still.append((ns, name, uid))
            except ApiException as exc:
                if exc.status != 404:
                    still.append((ns, name, uid))
        pending = still
        if pending:
            time.sleep(0.2)
    if pending:
        raise ProbeError(f"pods {[f'{ns}/{n}' for ns, n, _ in pending]} were not gone before the timeout")


def evict_tenant_pod(
    tenant: str,
    namespace: str = "tenants",
    retry_interval: float = 5.0,
    timeout: float = 120.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Evict ``tenant``'s database pod through the eviction API (policy/v1).

    PodDisruptionBudget refusals are retried every ``retry_interval`` seconds until
    ``timeout``. Returns the pod, its node and how many refusals there were.
    """
    kube.check_namespace(namespace, configuration, secrets)
    pod = kube.tenant_pod(tenant, namespace, configuration, secrets)
    fault = kube.record(
        f"evict {tenant}", "pod-eviction", tenant, pod=pod.metadata.name, node=pod.spec.node_name
    )
    deadline = time.monotonic() + timeout
    refusals = _evict(pod.metadata.name, namespace, retry_interval, deadline, secrets)
    _wait_replaced([(namespace, pod.metadata.name, pod.metadata.uid)], deadline, secrets)
    kube.ended(fault)
    return {"pod": pod.metadata.name, "node": pod.spec.node_name, "pdb_refusals": refusals}


def _cordon(node: str, unschedulable: bool, secrets: Secrets) -> None:
    try:
        kube.core(secrets).patch_node(node, {"spec": {"unschedulable": unschedulable}})
    except Exception as exc:
        raise kube.api_problem(exc, f"{'cordon' if unschedulable else 'uncordon'} of node {node}") from None


def _remember_cordoned(node: str) -> None:
    folder = kube.run_dir()
    if folder is None:
        return
    path = folder / "cordoned.json"
    nodes = set(json.loads(path.read_text())) if path.exists() else set()
    path.write_text(json.dumps(sorted(nodes | {node})))


def _evictable(pod: Any) -> bool:
    annotations = pod.metadata.annotations or {}
    if "kubernetes.io/config.mirror" in annotations or pod.metadata.deletion_timestamp:
        return False
    owners = pod.metadata.owner_references or []
    return not any(o.kind == "DaemonSet" for o in owners) and pod.status.phase not in ("Succeeded", "Failed")


def drain_tenant_node(
    tenant: str = "",
    node: str = "",
    namespace: str = "tenants",
    retry_interval: float = 5.0,
    timeout: float = 180.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Cordon the node hosting ``tenant`` (or ``node``) and evict every pod on it.

    Mirror and DaemonSet pods stay, as with ``kubectl drain --ignore-daemonsets``.
    PDB refusals are retried. The node stays cordoned: ``uncordon_nodes`` belongs in
    the rollbacks. If the drain fails or is interrupted, the node is uncordoned first.
    """
    kube.check_namespace(namespace, configuration, secrets)
    if not node:
        if not tenant:
            raise ProbeError("drain_tenant_node needs a tenant or a node")
        node = kube.tenant_pod(tenant, namespace, configuration, secrets).spec.node_name
    kube.check_node_namespaces(node, configuration, secrets)
    fault = kube.record(f"drain {node}", "node-drain", tenant or None, node=node)
    deadline = time.monotonic() + timeout
    try:
        _cordon(node, True, secrets)
        _remember_cordoned(node)
        try:
            pods = (
                kube.core(secrets).list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
            )
        except Exception as exc:
            raise kube.api_problem(exc, f"pods on node {node}") from None
        victims = [p for p in pods if _evictable(p)]
        refusals = sum(
            _evict(p.metadata.name, p.metadata.namespace, retry_interval, deadline, secrets) for p in victims
        )
        _wait_replaced(
            [(p.metadata.namespace, p.metadata.name, p.metadata.uid) for p in victims], deadline, secrets
        )
    except BaseException:
        _cordon(node, False, secrets)
        raise
    kube.ended(fault)
    return {"node": node, "evicted": [p.metadata.name for p in victims], "pdb_refusals": refusals}


def uncordon_nodes(node: str = "", configuration: Configuration = None, secrets: Secrets = None) -> list[str]:
    """Uncordon ``node`` and every node this run cordoned (safe to call twice)."""
    nodes = {node} if node else set()
    folder = kube.run_dir()
    if folder is not None and (folder / "cordoned.json").exists():
        nodes |= set(json.loads((folder / "cordoned.json").read_text()))
    for name in sorted(nodes):
        _cordon(name, False, secrets)
    return sorted(nodes)


def restart_node(
    tenant: str = "",
    node: str = "",
    namespace: str = "tenants",
    down_seconds: float = 10.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Restart the node hosting ``tenant`` (or ``node``); refused unless ``allow_node_restart``.

    ``node_restart_strategy`` picks how: ``lab`` (the lab's node restart: every process
    of the node is killed and comes back after ``down_seconds``), ``command`` (run
    ``node_restart_command`` with ``{node}`` substituted, e.g. a cloud CLI reboot).
    """
    config = dict(configuration or {})
    try:
        allowed = boolean(config.get("allow_node_restart"), default=False, name="allow_node_restart")
    except ConfigurationError as exc:
        raise ProbeError(f"node restart refused: {exc}") from None
    if not allowed:
        raise ProbeError(
            "node restart refused: set allow_node_restart to true in the configuration to allow it"
        )
    kube.check_namespace(namespace, configuration, secrets)
    if not node:
        node = kube.tenant_pod(tenant, namespace, configuration, secrets).spec.node_name
    kube.check_node_namespaces(node, configuration, secrets)
    strategy = str(config.get("node_restart_strategy") or "lab")
    if strategy == "lab":
        argv = [sys.executable, "-m", "lab", "restart-node", node, "--down", f"{down_seconds:g}", "--json"]
    elif strategy == "command":
        template = str(config.get("node_restart_command") or "")
        if not template:
            raise ProbeError("node_restart_strategy is command but node_restart_command is empty: set it")
        argv = shlex.split(template.format(node=node))
    else:
        raise ProbeError(f"unknown node_restart_strategy {strategy!r}: use lab or command")
    fault = kube.record(f"restart {node}", "node-restart", tenant or None, node=node, strategy=strategy)
    began = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=down_seconds + 120)
    took = time.monotonic() - began
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()
        raise ProbeError(f"node restart of {node} failed: {last[-1] if last else done.returncode}")
    signalled_at, uncertainty = _injection_time(strategy, done.stdout, fault.injected_at, took)
    folder = kube.run_dir()
    if folder is not None:
        mark_signalled(folder / FAULT_LOG_NAME, fault.name, signalled_at, uncertainty)
    kube.ended(fault)
    return {
        "node": node,
        "strategy": strategy,
        "down_seconds": down_seconds,
        "signalled_at": signalled_at,
        "injection_uncertainty_seconds": uncertainty,
    }


def _injection_time(
    strategy: str, stdout: str, recorded_at: float, took: float
) -> tuple[float, float | None]:
    """When the node's processes were really signalled, and how uncertain that time is.

    The lab reports the moment it sent the first kill signal (and how long killing
    took). A provider's reboot command reports nothing: the fault happened somewhere
    during the command, so the time stays the one recorded just before it and the
    command's own duration is the uncertainty.
    """
    if strategy != "lab":
        return recorded_at, round(took, 3)
    try:
        result = json.loads(stdout.strip().splitlines()[-1])
        signalled = float(result["signalled_at"])
    except (IndexError, KeyError, TypeError, ValueError, json.JSONDecodeError):
        return recorded_at, round(took, 3)  # no report: as uncertain as a command
    kill = result.get("kill_seconds")
    return signalled, float(kill) if isinstance(kill, int | float) else None


def restart_operator(
    namespace: str = "mssql-operator",
    label_selector: str = "app=mssql-operator",
    deployment: str = "mssql-operator",
    mode: str = "delete",
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Kill the operator: delete its pods (``mode=delete``) or ``rollout restart`` its Deployment.

    The operator's namespace goes through the blast-radius guard like any other: on a
    cluster it must be listed in ``allowed_namespaces``.
    """
    kube.check_namespace(namespace, configuration, secrets)
    fault = kube.record(f"operator {mode}", "operator-restart", None, namespace=namespace, mode=mode)
    try:
        if mode == "delete":
            pods = kube.core(secrets).list_namespaced_pod(namespace, label_selector=label_selector).items
            if not pods:
                raise ProbeError(f"no operator pod matches {label_selector} in {namespace}")
            for pod in pods:
                kube.core(secrets).delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)
            names = [p.metadata.name for p in pods]
        elif mode == "rollout":
            stamp = format_time()
            patch = {
                "spec": {
                    "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}
                }
            }
            kube.apps(secrets).patch_namespaced_deployment(deployment, namespace, patch)
            names = [deployment]
        else:
            raise ProbeError(f"unknown mode {mode!r}: use delete or rollout")
    except ProbeError:
        raise
    except Exception as exc:
        raise kube.api_problem(exc, f"operator restart in {namespace}") from None
    kube.ended(fault)
    return {"restarted": names, "mode": mode}


def set_canary(
    tenant: str, namespace: str = "tenants", configuration: Configuration = None, secrets: Secrets = None
) -> str:
    """Change ``spec.canary`` of ``tenant``'s MSSQLInstance; the operator must echo it in status."""
    kube.check_namespace(namespace, configuration, secrets)
    try:
        coords = CrdCoordinates.from_configuration(configuration)
    except ConfigurationError as exc:
        raise ProbeError(str(exc)) from None
    value = f"canary-{time.time():.3f}"
    try:
        kube.custom(secrets).patch_namespaced_custom_object(
            coords.group, coords.version, namespace, coords.plural, tenant, {"spec": {"canary": value}}
        )
    except Exception as exc:
        raise kube.api_problem(exc, f"canary change on {namespace}/{tenant}") from None
    observe("canary_set", {"tenant": tenant, "value": value, "at": time.time()})
    return value
