"""Pre-Go-Live checks of the platform, recorded in the run folder for the go/no-go document.

- RBAC: ``kubectl auth can-i VERB RESOURCE --as system:serviceaccount:NS:SA`` for every
  verb and resource the operator's ClusterRole grants (read from the cluster, so the list
  is the operator's own, not one kept here) → ``rbac.json``.
- Platform: a default StorageClass exists; every image of the tenants' and the operator's
  pods has a pinned tag (not ``latest``, not missing) or a digest; every container sets CPU
  and memory requests and limits → ``preflight.json``.
- Helm: the release that deployed the source instance, when helm and a release name are
  there (:mod:`probes.k8s.helm`) → ``helm.json``.

A denial or a gap is recorded, not raised: the go/no-go document fails the gate with it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

from probes.errors import ProbeError
from probes.k8s import kube
from probes.k8s.helm import helm_release_check

__all__ = ["platform_preflight"]

Configuration = Mapping[str, Any] | None
Secrets = Mapping[str, Any] | None


def _can_i(verb: str, resource: str, namespace: str, user: str, kubeconfig: str | None) -> bool:
    """``kubectl auth can-i``; ``resource`` may be ``plural[.group][/subresource]``."""
    binary = shutil.which("kubectl")
    if binary is None:
        raise ProbeError("kubectl not found on PATH: install it for the RBAC preflight")
    env = dict(os.environ)
    if kubeconfig:
        env["KUBECONFIG"] = kubeconfig
    target, _, sub = resource.partition("/")
    extra = [f"--subresource={sub}"] if sub else []
    done = subprocess.run(
        [binary, "auth", "can-i", verb, target, *extra, "-n", namespace, "--as", user],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    return done.stdout.strip() == "yes"


def _rules(role: str, secrets: Secrets) -> list[dict[str, Any]]:
    from kubernetes import client

    try:
        found = client.RbacAuthorizationV1Api(kube.api_client(secrets)).read_cluster_role(role)
    except Exception as exc:
        raise kube.api_problem(exc, f"ClusterRole {role}") from None
    return [r.to_dict() for r in found.rules or []]


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name = image.rsplit("/", 1)[-1]
    return ":" in name and not name.endswith(":latest")


def _resources(container: Any) -> tuple[dict[str, Any], dict[str, Any], bool]:
    res = container.resources
    requests = dict(res.requests or {}) if res else {}
    limits = dict(res.limits or {}) if res else {}
    ok = all(k in requests and k in limits for k in ("cpu", "memory"))
    return requests, limits, ok


def platform_preflight(
    namespace: str = "tenants",
    operator_namespace: str = "mssql-operator",
    operator_service_account: str = "mssql-operator",
    operator_cluster_role: str = "mssql-operator",
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Run the RBAC, platform and Helm checks; write ``rbac.json``, ``preflight.json``, ``helm.json``.

    The Helm check is :func:`probes.k8s.helm.helm_release_check` (release from ``helm_release``).
    """
    kubeconfig = (configuration or {}).get("kubeconfig") or None
    user = f"system:serviceaccount:{operator_namespace}:{operator_service_account}"
    checks = []
    for rule in _rules(operator_cluster_role, secrets):
        for resource in rule.get("resources") or []:
            group = next(iter(rule.get("api_groups") or [""]), "")
            plural, slash, sub = resource.partition("/")
            qualified = (f"{plural}.{group}" if group else plural) + (f"/{sub}" if slash else "")
            for verb in rule.get("verbs") or []:
                checks.append(
                    {
                        "verb": verb,
                        "resource": qualified,
                        "namespace": namespace,
                        "allowed": _can_i(verb, qualified, namespace, user, kubeconfig),
                    }
                )
    core = kube.core(secrets)
    storage = _storage_class(secrets)
    images, resources = [], []
    for ns in (namespace, operator_namespace):
        try:
            pods = core.list_namespaced_pod(ns).items
        except Exception as exc:
            raise kube.api_problem(exc, f"pods in {ns}") from None
        for pod in pods:
            for container in pod.spec.containers:
                name = f"{ns}/{pod.metadata.name}/{container.name}"
                images.append({"name": name, "image": container.image, "pinned": _pinned(container.image)})
                requests, limits, ok = _resources(container)
                resources.append({"name": name, "requests": requests, "limits": limits, "ok": ok})
    rbac = {"service_account": user, "checks": checks}
    preflight = {"storageclass": storage, "images": images, "resources": resources}
    folder = kube.run_dir()
    if folder is not None:
        (folder / "rbac.json").write_text(json.dumps(rbac, indent=2))
        (folder / "preflight.json").write_text(json.dumps(preflight, indent=2))
    helm = helm_release_check(namespace, configuration, secrets)
    return {
        "helm": "cannot tell: " + "; ".join(helm["missing"]) if helm["ok"] is None else helm["ok"],
        "rbac_denied": [f"{c['verb']} {c['resource']}" for c in checks if not c["allowed"]],
        "storageclass": storage,
        "unpinned_images": [i["name"] for i in images if not i["pinned"]],
        "containers_without_limits": [r["name"] for r in resources if not r["ok"]],
    }


def _storage_class(secrets: Secrets) -> dict[str, Any]:
    from kubernetes import client

    try:
        classes: list[Any] = client.StorageV1Api(kube.api_client(secrets)).list_storage_class().items
    except Exception as exc:
        raise kube.api_problem(exc, "storage classes") from None
    marker = "storageclass.kubernetes.io/is-default-class"
    default = next((c for c in classes if (c.metadata.annotations or {}).get(marker) == "true"), None)
    chosen = default or (classes[0] if classes else None)
    return {
        "name": chosen.metadata.name if chosen else None,
        "default": default is not None,
        "ok": default is not None,
    }
