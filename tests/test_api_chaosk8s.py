"""chaostoolkit-kubernetes (chaosk8s) activities against the lab API server, unmodified."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chaosk8s.crd.probes import get_custom_object
from chaosk8s.deployment.actions import rollout_deployment
from chaosk8s.node.actions import drain_nodes, uncordon_node
from chaosk8s.pod.actions import terminate_pods
from chaosk8s.pod.probes import pods_in_phase
from chaoslib.exceptions import ActivityFailed
from kubernetes import client
from kubernetes.config import kube_config

from lab.api import ApiServerProcess, start_api_server, write_kubeconfig
from tests.test_api_support import api_client, owner_ref, pod_body

pytestmark = pytest.mark.integration

_names = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServerProcess]:
    root = tmp_path_factory.mktemp("api-chaosk8s")
    policy = root / "policy.yaml"
    policy.write_text("deny:\n  - {verb: create, resource: pods/eviction, namespace: locked}\n")
    srv = start_api_server(root / "state", policy=policy, pod_removal_grace=0)
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def api(server: ApiServerProcess, tmp_path_factory: pytest.TempPathFactory) -> client.ApiClient:
    return api_client(server.url, tmp_path_factory.mktemp("kube") / "config")


@pytest.fixture(autouse=True)
def kubeconfig(server: ApiServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point chaosk8s at the lab the way a user does: ``$KUBECONFIG`` / ``~/.kube/config``.

    The Python client reads ``$KUBECONFIG`` once, at import, so its default path is set too.
    """
    path = write_kubeconfig(tmp_path / ".kube" / "config", server.url)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))


@pytest.fixture
def ns(api: client.ApiClient) -> str:
    name = f"c{next(_names)}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    return name


def _ready(v1: client.CoreV1Api, ns: str, name: str) -> None:
    status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    v1.patch_namespaced_pod_status(name, ns, {"status": status})


def _owned_pods(api: client.ApiClient, ns: str, node: str, count: int, app: str = "mssql") -> list[str]:
    v1, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    rs = apps.create_namespaced_replica_set(
        ns,
        {
            "metadata": {"name": f"{app}-{node}"},
            "spec": {
                "selector": {"matchLabels": {"app": app}},
                "template": {
                    "metadata": {"labels": {"app": app}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]},
                },
            },
        },
    )
    names = []
    for i in range(count):
        name = f"{app}-{node}-{i}"
        v1.create_namespaced_pod(ns, pod_body(name, {"app": app}, node=node, owners=[owner_ref(rs)]))
        _ready(v1, ns, name)
        names.append(name)
    return names


def _node(api: client.ApiClient, name: str, pool: str) -> None:
    client.CoreV1Api(api).create_node(
        {
            "metadata": {"name": name, "labels": {"lab/pool": pool}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }
    )


def _pods(api: client.ApiClient, ns: str) -> list[str]:
    return sorted(p.metadata.name for p in client.CoreV1Api(api).list_namespaced_pod(ns).items)


def test_pods_in_phase_and_terminate_pods(api: client.ApiClient, ns: str):
    v1 = client.CoreV1Api(api)
    for i in range(3):
        v1.create_namespaced_pod(ns, pod_body(f"db-{i}", {"app": "mssql"}, node="n"))
        _ready(v1, ns, f"db-{i}")
    assert pods_in_phase(label_selector="app=mssql", phase="Running", ns=ns) is True
    v1.create_namespaced_pod(ns, pod_body("db-new", {"app": "mssql"}))
    assert pods_in_phase(label_selector="app=mssql", ns=ns, raise_on_invalid_phase=False) is False
    with pytest.raises(ActivityFailed):
        pods_in_phase(label_selector="app=nothing", ns=ns)
    killed = terminate_pods(label_selector="app=mssql", ns=ns, qty=2)
    assert killed == ["db-0", "db-1"]
    assert _pods(api, ns) == ["db-2", "db-new"]


def test_drain_by_node_label_then_uncordon(api: client.ApiClient, ns: str):
    _node(api, f"{ns}-n1", f"{ns}-a")
    _node(api, f"{ns}-n2", f"{ns}-b")
    drained = _owned_pods(api, ns, f"{ns}-n1", 2)
    kept = _owned_pods(api, ns, f"{ns}-n2", 1, app="other")
    assert drain_nodes(label_selector=f"lab/pool={ns}-a", timeout=10) == [f"{ns}-n1"]
    assert _pods(api, ns) == kept
    v1 = client.CoreV1Api(api)
    assert v1.read_node(f"{ns}-n1").spec.unschedulable is True
    assert v1.read_node(f"{ns}-n2").spec.unschedulable is None
    assert uncordon_node(label_selector=f"lab/pool={ns}-a") == [f"{ns}-n1"]
    assert v1.read_node(f"{ns}-n1").spec.unschedulable is False
    assert drained


def test_drain_by_pod_label(api: client.ApiClient, ns: str):
    _node(api, f"{ns}-n1", "shared")
    _node(api, f"{ns}-n2", "shared")
    _owned_pods(api, ns, f"{ns}-n1", 1, app="target")
    spared = _owned_pods(api, ns, f"{ns}-n2", 1, app="bystander")
    nodes = drain_nodes(
        label_selector="lab/pool=shared", pod_label_selector="app=target", pod_namespace=ns, timeout=10
    )
    assert nodes == [f"{ns}-n1"]
    assert _pods(api, ns) == spared


def test_drain_refused_by_budget_or_policy(api: client.ApiClient, ns: str):
    _node(api, f"{ns}-n1", f"{ns}-pdb")
    _owned_pods(api, ns, f"{ns}-n1", 1)
    client.PolicyV1Api(api).create_namespaced_pod_disruption_budget(
        ns,
        {
            "metadata": {"name": "keep-one"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "mssql"}}},
        },
    )
    with pytest.raises(ActivityFailed) as refused:
        drain_nodes(label_selector=f"lab/pool={ns}-pdb", timeout=5)
    assert "disruption budget" in str(refused.value) and "TooManyRequests" in str(refused.value)

    client.CoreV1Api(api).create_namespace({"metadata": {"name": "locked"}})
    _node(api, "locked-n1", "locked")
    _owned_pods(api, "locked", "locked-n1", 1)
    with pytest.raises(ActivityFailed) as forbidden:
        drain_nodes(label_selector="lab/pool=locked", timeout=5)
    assert "Forbidden" in str(forbidden.value) and "pods/eviction" in str(forbidden.value)
    assert _pods(api, "locked") == ["mssql-locked-n1-0"]


def test_rollout_deployment_and_custom_objects(api: client.ApiClient, ns: str):
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": "operator"},
            "spec": {
                "selector": {"matchLabels": {"app": "operator"}},
                "template": {
                    "metadata": {"labels": {"app": "operator"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]},
                },
            },
        },
    )
    rollout_deployment(name="operator", ns=ns)
    template = apps.read_namespaced_deployment("operator", ns).spec.template.metadata
    assert "kubectl.kubernetes.io/restartedAt" in template.annotations

    crd: dict[str, Any] = {
        "metadata": {"name": "mssqlbackups.lab.example.com"},
        "spec": {
            "group": "lab.example.com",
            "scope": "Namespaced",
            "names": {"plural": "mssqlbackups", "singular": "mssqlbackup", "kind": "MSSQLBackup"},
            "versions": [
                {"name": "v1alpha1", "served": True, "storage": True, "subresources": {"status": {}}}
            ],
        },
    }
    client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "lab.example.com",
        "v1alpha1",
        ns,
        "mssqlbackups",
        {
            "apiVersion": "lab.example.com/v1alpha1",
            "kind": "MSSQLBackup",
            "metadata": {"name": "full-1"},
            "spec": {"type": "full"},
        },
    )
    got = get_custom_object("lab.example.com", "v1alpha1", "mssqlbackups", "full-1", ns=ns)
    assert got["spec"] == {"type": "full"} and got["kind"] == "MSSQLBackup"
    with pytest.raises(ActivityFailed):
        get_custom_object("lab.example.com", "v1alpha1", "mssqlbackups", "missing", ns=ns)
