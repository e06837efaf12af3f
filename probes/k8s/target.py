"""Which Kubernetes this run talks to: the embedded lab or a real cluster, and its identity.

Lab evidence is not production evidence: PostgreSQL stands in for SQL Server and the
lab operator for the operator under test. So every run records what it ran against
(``run.json``'s ``target``) and the reports refuse to count a lab run as proof for a
production gate. The lab is recognised by the version string its API server serves
(:func:`probes.k8s.kube.is_embedded_lab`); everything else is a cluster. The API
server's URL is recorded without credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lab.timing import CONFIGMAP as TIMING_CONFIGMAP
from probes.k8s import kube

__all__ = ["CLUSTER", "LAB", "target_identity"]

LAB = "lab"
CLUSTER = "cluster"


def _operator_image(configuration: Mapping[str, Any], secrets: Mapping[str, Any] | None) -> str | None:
    namespace = str(configuration.get("operator_namespace") or kube.DEFAULT_OPERATOR_NAMESPACE)
    name = str(configuration.get("operator_deployment") or "mssql-operator")
    try:
        deployment = kube.apps(secrets).read_namespaced_deployment(name, namespace)
    except Exception:
        return None  # not readable: the identity says unknown, it does not guess
    containers = deployment.spec.template.spec.containers or []
    return ", ".join(str(c.image) for c in containers) or None


def _lab_timing(secrets: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The lab's timing profile, from the ConfigMap its control plane writes (None: unreadable)."""
    try:
        found = kube.core(secrets).read_namespaced_config_map(TIMING_CONFIGMAP, "kube-system")
    except Exception:
        return None
    data = dict(found.data or {})
    return {"profile": data.get("profile") or None, "description": data.get("description") or None}


def target_identity(
    configuration: Mapping[str, Any] | None = None, secrets: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``{"kind", "api_server", "kubernetes_version", "nodes", "operator_image", "timing"}`` of the target.

    ``kind`` is ``lab`` or ``cluster``. ``timing`` is the lab's timing profile
    (``{"profile", "description"}``, :mod:`lab.timing`): a lab under the ``fast`` profile
    declares nodes lost and moves pods sooner than Kubernetes does, so its recovery times
    flatter the operator; None on a cluster, whose timing is its own. Values that cannot
    be read are None.
    """
    version = kube.git_version(secrets)
    try:
        nodes: int | None = len(kube.core(secrets).list_node().items)
    except Exception:
        nodes = None
    kind = LAB if kube.is_lab_version(version) else CLUSTER  # one /version request, not two
    return {
        "kind": kind,
        "api_server": kube.api_server_url(secrets),
        "kubernetes_version": version,
        "nodes": nodes,
        "operator_image": _operator_image(configuration or {}, secrets),
        "timing": _lab_timing(secrets) if kind == LAB else None,
    }
