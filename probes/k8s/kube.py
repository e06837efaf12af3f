"""Kubernetes access shared by the project's activities: clients, lookups, the run folder.

Clients come from chaostoolkit-kubernetes' ``create_k8s_api_client`` (kubeconfig from
``KUBECONFIG``, in-cluster, or ``KUBERNETES_*`` variables), so the same experiment runs
against the lab and a real cluster. Which pod belongs to which tenant is configuration:
``tenant_pod_selector`` (default ``mssql.example.com/instance={tenant}``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from common.config import ConfigurationError, boolean, name_list
from lab.api.discovery import KUBE_VERSION
from probes.errors import ProbeError
from probes.faultlog import FAULT_LOG_NAME, mark_ended, record_fault
from probes.model import Fault

__all__ = [
    "DEFAULT_OPERATOR_NAMESPACE",
    "DEFAULT_OPERATOR_SELECTOR",
    "api_client",
    "core",
    "custom",
    "apps",
    "run_dir",
    "tenant_pod",
    "database_pods",
    "record",
    "ended",
    "check_namespace",
    "check_node_namespaces",
    "api_problem",
    "api_server_url",
    "is_embedded_lab",
    "is_lab_version",
    "lab_monitoring",
    "owned_jobs",
    "setting",
]

DEFAULT_POD_SELECTOR = "mssql.example.com/instance={tenant}"
DEFAULT_OPERATOR_NAMESPACE = "mssql-operator"
DEFAULT_OPERATOR_SELECTOR = "app=mssql-operator"


def api_client(secrets: Mapping[str, Any] | None = None) -> Any:
    """A client for the configured API server; ProbeError when KUBECONFIG names no file.

    With ``KUBECONFIG`` naming a file, the client is built from that file as it is now:
    chaostoolkit-kubernetes would load the Python client's default location, which the
    client fixes when it is first imported, so a ``KUBECONFIG`` set later (a var file, a
    test) would be missed. Otherwise chaostoolkit-kubernetes decides (in-cluster, its
    secrets, ``~/.kube/config``).
    """
    from chaosk8s import create_k8s_api_client

    named = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    found = [p for p in named if Path(p).is_file()]
    if named and not found:
        raise ProbeError(
            f"KUBECONFIG names {os.pathsep.join(named)}, which does not exist: "
            "set KUBECONFIG to your cluster's kubeconfig file"
        )
    if found:
        from kubernetes import config

        context = (secrets or {}).get("KUBERNETES_CONTEXT") or os.environ.get("KUBERNETES_CONTEXT") or None
        return config.new_client_from_config(config_file=found[0], context=context)
    return create_k8s_api_client(dict(secrets or {}))


def core(secrets: Mapping[str, Any] | None = None) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api_client(secrets))


def apps(secrets: Mapping[str, Any] | None = None) -> Any:
    from kubernetes import client

    return client.AppsV1Api(api_client(secrets))


def custom(secrets: Mapping[str, Any] | None = None) -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(api_client(secrets))


def run_dir() -> Path | None:
    """The current run folder (set by the load control), or None outside a harness run."""
    value = os.environ.get("HARNESS_RUN_DIR")
    return Path(value) if value else None


def api_server_url(secrets: Mapping[str, Any] | None = None) -> str:
    """The API server's URL as the client uses it, with any user:password removed."""
    host = str(api_client(secrets).configuration.host or "")
    parts = urlsplit(host)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def git_version(secrets: Mapping[str, Any] | None = None) -> str:
    """The API server's ``/version`` gitVersion."""
    from kubernetes import client

    api = client.VersionApi(api_client(secrets))
    try:
        return str(api.get_code().git_version)
    except Exception as exc:
        raise api_problem(exc, "the API server's version (/version)") from None


_lab_servers: dict[str, bool] = {}


def is_lab_version(git_version_text: str) -> bool:
    """True for the version string only the embedded lab serves (``lab.api.discovery.KUBE_VERSION``)."""
    return git_version_text == KUBE_VERSION[2]


def is_embedded_lab(secrets: Mapping[str, Any] | None = None) -> bool:
    """True when the API server is this project's embedded lab (asked once per API server).

    The lab serves its own version string (``lab.api.discovery.KUBE_VERSION``); any
    other server is a real cluster, where the blast-radius rules are strict.
    """
    url = api_server_url(secrets)
    if url not in _lab_servers:
        _lab_servers[url] = is_lab_version(git_version(secrets))
    return _lab_servers[url]


def owned_jobs(
    namespace: str, owner_kind: str, owner_name: str, secrets: Mapping[str, Any] | None
) -> list[Any]:
    """The Jobs in ``namespace`` whose ownerReferences name ``owner_kind``/``owner_name`` (client objects)."""
    from kubernetes import client

    try:
        jobs = client.BatchV1Api(api_client(secrets)).list_namespaced_job(namespace).items
    except Exception as exc:
        raise api_problem(exc, f"jobs in {namespace}") from None
    return [
        job
        for job in jobs
        if job.metadata is not None
        and any(o.kind == owner_kind and o.name == owner_name for o in job.metadata.owner_references or [])
    ]


def setting(configuration: Mapping[str, Any] | None, key: str, env: str) -> str:
    """A text setting: the configuration's ``key`` when set (not empty), else the environment's ``env``."""
    value = (configuration or {}).get(key)
    return str(value).strip() if value not in (None, "") else os.environ.get(env, "").strip()


def lab_monitoring() -> Any:
    """The embedded lab's monitoring (``lab.monitoring.MonitoringEndpoints``) when ``KUBECONFIG`` is a lab's.

    A lab keeps its kubeconfig at the top of its folder, beside ``monitoring/``; any other
    kubeconfig (a real cluster) or a lab started ``--no-monitoring`` gives None.
    """
    from lab.errors import LabError
    from lab.monitoring import monitoring_endpoints

    kubeconfig = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    home = Path(kubeconfig).parent if kubeconfig else None
    if home is None or not (home / "monitoring").is_dir():
        return None
    try:
        return monitoring_endpoints(home)
    except LabError as exc:
        raise ProbeError(str(exc)) from None


def check_namespace(
    namespace: str, configuration: Mapping[str, Any] | None, secrets: Mapping[str, Any] | None = None
) -> None:
    """Refuse a namespace outside ``allowed_namespaces`` (the blast-radius guard).

    On a real cluster an empty ``allowed_namespaces`` allows nothing: a fault must be
    aimed at namespaces someone named. Only the embedded lab, which holds nothing but
    the harness's own tenants, treats an empty list as "anything".
    """
    allowed = name_list((configuration or {}).get("allowed_namespaces"))
    if not allowed:
        if is_embedded_lab(secrets):
            return
        raise ProbeError(
            f"allowed_namespaces is empty and {api_server_url(secrets)} is not the embedded lab: "
            "set allowed_namespaces to the namespaces this run may disrupt; nothing was injected"
        )
    if namespace not in allowed:
        raise ProbeError(
            f"namespace {namespace!r} is not in allowed_namespaces {allowed}: nothing was injected"
        )


def check_node_namespaces(
    node: str, configuration: Mapping[str, Any] | None, secrets: Mapping[str, Any] | None = None
) -> list[str]:
    """Refuse a node-level fault when the node runs pods of namespaces outside the allowed set.

    Draining or restarting a node hits every pod on it, not only the tenants'. Set
    ``allow_foreign_pods_on_node`` to true to accept that explicitly. Returns the
    namespaces found on the node.
    """
    config = configuration or {}
    try:
        pods = core(secrets).list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
    except Exception as exc:
        raise api_problem(exc, f"pods on node {node}") from None
    namespaces = sorted({p.metadata.namespace for p in pods})
    allowed = name_list(config.get("allowed_namespaces"))
    if not allowed and is_embedded_lab(secrets):
        return namespaces
    try:
        accept = boolean(config.get("allow_foreign_pods_on_node"), default=False)
    except ConfigurationError as exc:
        raise ProbeError(f"allow_foreign_pods_on_node: {exc}") from None
    foreign = [ns for ns in namespaces if ns not in allowed]
    if foreign and not accept:
        raise ProbeError(
            f"node {node} also runs pods of namespaces {foreign}, outside allowed_namespaces {allowed}: "
            "add them there, or set allow_foreign_pods_on_node to true; nothing was injected"
        )
    return namespaces


def api_problem(exc: Any, what: str) -> ProbeError:
    """A one-line ProbeError for an ApiException or a connection failure."""
    if isinstance(exc, ProbeError):
        return exc  # already one line with its fix (e.g. a KUBECONFIG naming no file)
    status = getattr(exc, "status", None)
    if status is None:
        return ProbeError(
            f"{what}: cannot reach the Kubernetes API ({exc.__class__.__name__}); is the cluster up?"
        )
    if status == 404:
        return ProbeError(f"{what}: not found (404)")
    if status in (401, 403):
        return ProbeError(f"{what}: access denied ({status}); grant this permission to the harness's user")
    return ProbeError(f"{what}: the API answered {status} {getattr(exc, 'reason', '')}".rstrip())


def tenant_pod(
    tenant: str,
    namespace: str,
    configuration: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Any] | None = None,
) -> Any:
    """The running pod of ``tenant`` (a V1Pod); ProbeError if there is none."""
    template = str((configuration or {}).get("tenant_pod_selector") or DEFAULT_POD_SELECTOR)
    selector = template.format(tenant=tenant)
    try:
        pods = core(secrets).list_namespaced_pod(namespace, label_selector=selector).items
    except Exception as exc:
        raise api_problem(exc, f"pods of tenant {tenant} in {namespace}") from None
    live = database_pods(pods)
    if not live:
        raise ProbeError(f"tenant {tenant} has no pod in namespace {namespace} (selector {selector})")
    return live[0]


def database_pods(pods: list[Any]) -> list[Any]:
    """The pods that may run a tenant's database server, the likeliest first.

    An instance's label is often on its backup and restore Jobs' pods too: those, finished
    pods and pods being deleted are left out; a StatefulSet's running pod comes first.
    """

    def owners(pod: Any) -> set[str]:
        return {str(ref.kind) for ref in pod.metadata.owner_references or []}

    def phase(pod: Any) -> str | None:
        return pod.status.phase if pod.status else None

    def rank(pod: Any) -> tuple[bool, bool, str]:
        return ("StatefulSet" not in owners(pod), phase(pod) != "Running", pod.metadata.name)

    live = [
        p
        for p in pods
        if not p.metadata.deletion_timestamp
        and "Job" not in owners(p)
        and phase(p) not in ("Succeeded", "Failed")
    ]
    return sorted(live, key=rank)


def record(name: str, kind: str, target: str | None, **details: Any) -> Fault:
    """Record a fault in the run's fault log just before it is injected."""
    fault = Fault(name=name, kind=kind, injected_at=time.time(), target=target, details=details)
    folder = run_dir()
    if folder is not None:
        record_fault(folder / FAULT_LOG_NAME, fault)
    return fault


def ended(fault: Fault) -> None:
    folder = run_dir()
    if folder is not None:
        mark_ended(folder / FAULT_LOG_NAME, fault.name, time.time())
