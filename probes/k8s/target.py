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


def target_identity(
    configuration: Mapping[str, Any] | None = None, secrets: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``{"kind", "api_server", "kubernetes_version", "nodes", "operator_image"}`` of the target.

    ``kind`` is ``lab`` or ``cluster``. Values that cannot be read are None.
    """
    version = kube.git_version(secrets)
    try:
        nodes: int | None = len(kube.core(secrets).list_node().items)
    except Exception:
        nodes = None
    return {
        "kind": LAB if kube.is_lab_version(version) else CLUSTER,  # one /version request, not two
        "api_server": kube.api_server_url(secrets),
        "kubernetes_version": version,
        "nodes": nodes,
        "operator_image": _operator_image(configuration or {}, secrets),
    }
