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

from loadgen.discovery import name_list
from probes.errors import ProbeError
from probes.faultlog import FAULT_LOG_NAME, mark_ended, record_fault
from probes.model import Fault

__all__ = [
    "api_client",
    "core",
    "custom",
    "apps",
    "run_dir",
    "tenant_pod",
    "record",
    "ended",
    "check_namespace",
    "api_problem",
]

DEFAULT_POD_SELECTOR = "mssql.example.com/instance={tenant}"


def api_client(secrets: Mapping[str, Any] | None = None) -> Any:
    from chaosk8s import create_k8s_api_client

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


def check_namespace(namespace: str, configuration: Mapping[str, Any] | None) -> None:
    """Refuse a namespace outside ``allowed_namespaces`` (the blast-radius guard)."""
    allowed = name_list((configuration or {}).get("allowed_namespaces"))
    if allowed and namespace not in allowed:
        raise ProbeError(
            f"namespace {namespace!r} is not in allowed_namespaces {allowed}: nothing was injected"
        )


def api_problem(exc: Any, what: str) -> ProbeError:
    """A one-line ProbeError for an ApiException or a connection failure."""
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
    live = [p for p in pods if not p.metadata.deletion_timestamp]
    if not live:
        raise ProbeError(f"tenant {tenant} has no pod in namespace {namespace} (selector {selector})")
    return live[0]


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
