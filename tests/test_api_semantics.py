"""The lab API server keeps the Kubernetes API's semantics (Python client and raw HTTP)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch

from lab.api import ApiServerProcess, start_api_server
from lab.paths import project_root
from tests.test_api_support import api_client, http, owner_ref, pod_body, wait_for

pytestmark = pytest.mark.integration

_names = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServerProcess]:
    root = tmp_path_factory.mktemp("api-semantics")
    policy = root / "policy.yaml"
    policy.write_text("deny:\n  - {verb: delete, resource: configmaps, name: protected}\n")
    srv = start_api_server(root / "state", policy=policy, logs_dir=root / "logs")
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def api(server: ApiServerProcess, tmp_path_factory: pytest.TempPathFactory) -> client.ApiClient:
    return api_client(server.url, tmp_path_factory.mktemp("kube") / "config")


@pytest.fixture
def ns(api: client.ApiClient) -> str:
    name = f"t{next(_names)}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    return name


def _status(exc: client.ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


def _crd(group: str = "lab.example.com", plural: str = "widgets", kind: str = "Widget") -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "shortNames": ["wg"]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"}
                    ],
                }
            ],
        },
    }


def test_create_sets_identity_and_refuses_bad_objects(
    api: client.ApiClient, server: ApiServerProcess, ns: str
):
    v1 = client.CoreV1Api(api)
    first = v1.create_namespaced_config_map(ns, {"metadata": {"name": "a"}, "data": {"k": "v"}})
    second = v1.create_namespaced_config_map(ns, {"metadata": {"generateName": "gen-"}})
    assert first.metadata.uid != second.metadata.uid
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    assert first.metadata.generation == 1 and first.metadata.namespace == ns
    assert first.metadata.creation_timestamp is not None
    assert second.metadata.name.startswith("gen-") and len(second.metadata.name) == len("gen-") + 5

    with pytest.raises(client.ApiException) as exists:
        v1.create_namespaced_config_map(ns, {"metadata": {"name": "a"}})
    assert exists.value.status == 409 and _status(exists.value)["reason"] == "AlreadyExists"
    with pytest.raises(client.ApiException) as no_ns:
        v1.create_namespaced_config_map("no-such-namespace", {"metadata": {"name": "a"}})
    assert (
        no_ns.value.status == 404
        and _status(no_ns.value)["message"] == 'namespaces "no-such-namespace" not found'
    )
    assert v1.list_namespaced_config_map("no-such-namespace").items == []

    base = f"{server.url}/api/v1/namespaces/{ns}/configmaps"
    cases = [
        (http(base, "POST", raw=b"{not json"), 400, "BadRequest"),
        (
            http(base, "POST", {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "x"}}),
            400,
            "BadRequest",
        ),
        (http(base, "POST", {"metadata": {}}), 422, "Invalid"),
        (http(base, "POST", {"metadata": {"name": "Not_A_Name"}}), 422, "Invalid"),
        (http(base, "POST", {"metadata": {"name": "x", "labels": {"a": 1}}}), 400, "BadRequest"),
        (http(f"{base}?labelSelector=a%20in%20()"), 400, "BadRequest"),
        (http(f"{server.url}/api/v1/namespaces/{ns}/nothings"), 404, "NotFound"),
        (http(f"{base}/a", "POST", {}), 405, "MethodNotAllowed"),
        (
            http(base, "POST", {"metadata": {"name": "y"}}, content_type="text/csv"),
            415,
            "UnsupportedMediaType",
        ),
    ]
    for (code, body), want_code, reason in cases:
        assert (code, body["kind"], body["code"], body["reason"]) == (want_code, "Status", want_code, reason)


def test_generation_and_status_subresource(api: client.ApiClient, ns: str):
    apps = client.AppsV1Api(api)
    body = {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "a"}]},
            },
        },
        "status": {"replicas": 99},
    }
    created = apps.create_namespaced_deployment(ns, body)
    assert created.metadata.generation == 1 and created.status.replicas is None and created.spec.replicas == 2
    status = apps.patch_namespaced_deployment_status(
        "web", ns, {"status": {"readyReplicas": 2}, "spec": {"replicas": 7}}
    )
    assert status.status.ready_replicas == 2 and status.spec.replicas == 2 and status.metadata.generation == 1
    labelled = apps.patch_namespaced_deployment("web", ns, {"metadata": {"labels": {"x": "y"}}})
    assert labelled.metadata.generation == 1
    scaled = apps.patch_namespaced_deployment(
        "web", ns, {"spec": {"replicas": 3}, "status": {"readyReplicas": 0}}
    )
    assert scaled.metadata.generation == 2 and scaled.status.ready_replicas == 2
    current = apps.read_namespaced_deployment("web", ns)
    current.spec.replicas = 4
    replaced = apps.replace_namespaced_deployment("web", ns, current)
    assert replaced.metadata.generation == 3
    same = apps.replace_namespaced_deployment("web", ns, replaced)
    assert same.metadata.resource_version == replaced.metadata.resource_version
    scale = apps.read_namespaced_deployment_scale("web", ns)
    assert scale.spec.replicas == 4 and scale.status.selector == "app=web"
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 5}})
    assert apps.read_namespaced_deployment("web", ns).spec.replicas == 5


def test_stale_update_conflicts_and_missing_is_not_found(api: client.ApiClient, ns: str):
    v1 = client.CoreV1Api(api)
    cm = v1.create_namespaced_config_map(ns, {"metadata": {"name": "c"}, "data": {"a": "1"}})
    cm.data = {"a": "2"}
    v1.replace_namespaced_config_map("c", ns, cm)
    cm.data = {"a": "3"}
    with pytest.raises(client.ApiException) as stale:
        v1.replace_namespaced_config_map("c", ns, cm)
    assert stale.value.status == 409 and _status(stale.value)["reason"] == "Conflict"
    assert v1.read_namespaced_config_map("c", ns).data == {"a": "2"}
    with pytest.raises(client.ApiException) as missing:
        v1.replace_namespaced_config_map("nope", ns, {"metadata": {"name": "nope"}})
    assert missing.value.status == 404


def test_label_and_field_selectors(api: client.ApiClient, ns: str):
    v1 = client.CoreV1Api(api)
    specs = {
        "a": ({"app": "db", "tier": "1"}, "n1"),
        "b": ({"app": "web", "tier": "2"}, "n2"),
        "c": ({"app": "db"}, None),
    }
    for name, (labels, node) in specs.items():
        v1.create_namespaced_pod(ns, pod_body(name, labels, node))
    v1.patch_namespaced_pod_status("a", ns, {"status": {"phase": "Running"}})

    def names(**kw: str) -> list[str]:
        return sorted(p.metadata.name for p in v1.list_namespaced_pod(ns, **kw).items)

    assert names(label_selector="app=db") == ["a", "c"]
    assert names(label_selector="app==web") == ["b"]
    assert names(label_selector="app!=db") == ["b"]
    assert names(label_selector="tier in (1, 2)") == ["a", "b"]
    assert names(label_selector="tier notin (1)") == ["b", "c"]
    assert names(label_selector="tier") == ["a", "b"]
    assert names(label_selector="!tier") == ["c"]
    assert names(label_selector="app=db,tier") == ["a"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b") == ["a", "c"]
    assert names(field_selector="spec.nodeName==n1") == ["a"]
    assert names(field_selector="spec.nodeName=") == ["c"]
    assert names(field_selector="status.phase=Running") == ["a"]
    assert names(field_selector="status.phase!=Running,metadata.namespace=" + ns) == ["b", "c"]
    everywhere = client.CoreV1Api(api).list_pod_for_all_namespaces(field_selector="spec.nodeName=n2")
    assert [(p.metadata.namespace, p.metadata.name) for p in everywhere.items] == [(ns, "b")]
    with pytest.raises(client.ApiException) as bad:
        v1.list_namespaced_pod(ns, field_selector="spec.image=x")
    assert bad.value.status == 400
    page = v1.list_namespaced_pod(ns, limit=2)
    rest = v1.list_namespaced_pod(ns, limit=2, _continue=page.metadata._continue)
    assert [p.metadata.name for p in page.items + rest.items] == [
        "a",
        "b",
        "c",
    ] and not rest.metadata._continue


def test_watch_replays_filters_and_times_out(api: client.ApiClient, ns: str):
    v1 = client.CoreV1Api(api)
    v1.create_namespaced_config_map(ns, {"metadata": {"name": "w1", "labels": {"k": "v"}}})
    rv = v1.list_namespaced_config_map(ns).metadata.resource_version
    v1.create_namespaced_config_map(ns, {"metadata": {"name": "w2", "labels": {"k": "v"}}})
    v1.patch_namespaced_config_map("w1", ns, {"metadata": {"labels": {"k": "other"}}})
    v1.delete_namespaced_config_map("w2", ns)
    started = time.monotonic()
    events = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(
            v1.list_namespaced_config_map, ns, label_selector="k=v", resource_version=rv, timeout_seconds=1
        )
    ]
    assert events == [("ADDED", "w2"), ("DELETED", "w1"), ("DELETED", "w2")]
    assert 0.9 <= time.monotonic() - started < 5
    initial = [e["type"] for e in watch.Watch().stream(v1.list_namespaced_config_map, ns, timeout_seconds=1)]
    assert initial == ["ADDED"]

    def later() -> None:
        time.sleep(0.2)
        v1.create_namespaced_config_map(ns, {"metadata": {"name": "w3"}})

    threading.Thread(target=later).start()
    w = watch.Watch()
    latest = v1.list_namespaced_config_map(ns).metadata.resource_version
    for event in w.stream(v1.list_namespaced_config_map, ns, resource_version=latest, timeout_seconds=5):
        assert (event["type"], event["object"].metadata.name) == ("ADDED", "w3")
        w.stop()


def test_watch_from_a_forgotten_version_is_expired(tmp_path: Path):
    with start_api_server(None, watch_history=3) as srv:
        base = f"{srv.url}/api/v1/namespaces/default/configmaps"
        for i in range(6):
            assert http(base, "POST", {"metadata": {"name": f"c{i}"}})[0] == 201
        status, text = http(f"{base}?watch=true&resourceVersion=1&timeoutSeconds=1")
        assert status == 200
        event = json.loads(text.splitlines()[0]) if isinstance(text, str) else text
        assert event["type"] == "ERROR"
        assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")
        _, text = http(
            f"{base}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1"
        )
        events = [json.loads(line) for line in text.splitlines()]
        assert [e["type"] for e in events] == ["ADDED"] * 6 + ["BOOKMARK"]
        assert events[-1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
        _, listed = http(base)
        status, text = http(
            f"{base}?watch=1&resourceVersion={listed['metadata']['resourceVersion']}&timeoutSeconds=1"
        )
        assert status == 200 and text in ("", {})


def test_patch_flavours(api: client.ApiClient, server: ApiServerProcess, ns: str):
    """Merge, strategic merge and JSON patches, on a Deployment's pod template (a pod's own spec
    is immutable but for its images, as in Kubernetes)."""
    template = pod_body("p", {"app": "x"})
    template["spec"]["containers"].append(
        {"name": "side", "image": "busybox", "env": [{"name": "A", "value": "1"}]}
    )
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "p", "labels": {"app": "x"}},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": template["metadata"], "spec": template["spec"]},
        },
    }
    client.AppsV1Api(api).create_namespaced_deployment(ns, deployment)
    url = f"{server.url}/apis/apps/v1/namespaces/{ns}/deployments/p"

    def containers(body: dict[str, Any]) -> list[dict[str, Any]]:
        return list(body["spec"]["template"]["spec"]["containers"])

    def in_template(*listed: dict[str, Any]) -> dict[str, Any]:
        return {"spec": {"template": {"spec": {"containers": list(listed)}}}}

    smp = in_template({"name": "side", "image": "busybox:2", "env": [{"name": "B", "value": "2"}]})
    code, body = http(url, "PATCH", smp, "application/strategic-merge-patch+json")
    assert code == 200, body
    assert [(c["name"], c["image"]) for c in containers(body)] == [
        ("main", "postgres:15"),
        ("side", "busybox:2"),
    ]
    assert containers(body)[1]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    delete = in_template({"name": "main", "$patch": "delete"})
    _, body = http(url, "PATCH", delete, "application/strategic-merge-patch+json")
    assert [c["name"] for c in containers(body)] == ["side"]
    _, body = http(url, "PATCH", in_template({"name": "only", "image": "i"}), "application/merge-patch+json")
    assert [c["name"] for c in containers(body)] == ["only"]
    _, body = http(
        url, "PATCH", {"metadata": {"labels": {"app": None, "b": "c"}}}, "application/merge-patch+json"
    )
    assert body["metadata"]["labels"] == {"b": "c"}
    ops = [
        {"op": "add", "path": "/metadata/labels/new", "value": "1"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "j"},
    ]
    _, body = http(url, "PATCH", ops, "application/json-patch+json")
    assert body["metadata"]["labels"]["new"] == "1" and containers(body)[0]["image"] == "j"
    code, body = http(
        url,
        "PATCH",
        [{"op": "test", "path": "/metadata/name", "value": "other"}],
        "application/json-patch+json",
    )
    assert (code, body["reason"]) == (422, "Invalid")
    code, body = http(url, "PATCH", {"metadata": {"resourceVersion": "1"}}, "application/merge-patch+json")
    assert (code, body["reason"]) == (409, "Conflict")
    code, body = http(url, "PATCH", {"a": 1}, "application/apply-patch+yaml")
    assert (code, body["reason"]) == (400, "BadRequest")  # server-side apply needs a fieldManager


def test_finalizers_hold_deletion_until_removed(api: client.ApiClient, ns: str):
    v1 = client.CoreV1Api(api)
    v1.create_namespaced_config_map(ns, {"metadata": {"name": "f", "finalizers": ["lab/one", "lab/two"]}})
    v1.delete_namespaced_config_map("f", ns)
    held = v1.read_namespaced_config_map("f", ns)
    assert held.metadata.deletion_timestamp is not None and held.metadata.finalizers == ["lab/one", "lab/two"]
    with pytest.raises(client.ApiException) as adding:
        v1.patch_namespaced_config_map(
            "f", ns, {"metadata": {"finalizers": ["lab/one", "lab/two", "lab/three"]}}
        )
    assert adding.value.status == 422
    held.metadata.finalizers = ["lab/two"]
    v1.replace_namespaced_config_map("f", ns, held)
    assert v1.read_namespaced_config_map("f", ns).metadata.finalizers == ["lab/two"]
    v1.patch_namespaced_config_map("f", ns, [{"op": "remove", "path": "/metadata/finalizers"}])
    with pytest.raises(client.ApiException) as gone:
        v1.read_namespaced_config_map("f", ns)
    assert gone.value.status == 404


def test_garbage_collection_and_orphans(api: client.ApiClient, ns: str):
    v1, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    rs_body = {
        "metadata": {"name": "rs"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }
    rs = apps.create_namespaced_replica_set(ns, rs_body)
    keep = apps.create_namespaced_replica_set(ns, {**rs_body, "metadata": {"name": "keep"}})
    v1.create_namespaced_pod(ns, pod_body("owned", owners=[owner_ref(rs)]))
    v1.create_namespaced_pod(
        ns, pod_body("shared", owners=[owner_ref(rs), owner_ref(keep, controller=False)])
    )
    v1.create_namespaced_config_map(
        ns, {"metadata": {"name": "orphan", "ownerReferences": [owner_ref(keep)]}}
    )
    apps.delete_namespaced_replica_set("rs", ns)
    wait_for(lambda: [p.metadata.name for p in v1.list_namespaced_pod(ns).items] == ["shared"])
    apps.delete_namespaced_replica_set("keep", ns, propagation_policy="Orphan")
    orphan = v1.read_namespaced_config_map("orphan", ns)
    assert orphan.metadata.owner_references is None
    wait_for(lambda: not v1.list_namespaced_pod(ns).items)
    time.sleep(0.3)
    assert v1.read_namespaced_config_map("orphan", ns).metadata.name == "orphan"


def test_graceful_pod_deletion(api: client.ApiClient, ns: str):
    v1 = client.CoreV1Api(api)
    v1.create_namespaced_pod(ns, pod_body("bound", node="n1", grace=45))
    v1.create_namespaced_pod(ns, pod_body("unbound"))
    deleting = v1.delete_namespaced_pod("bound", ns)
    assert (
        deleting.metadata.deletion_timestamp is not None
        and deleting.metadata.deletion_grace_period_seconds == 45
    )
    shorter = v1.delete_namespaced_pod("bound", ns, grace_period_seconds=5)
    assert shorter.metadata.deletion_grace_period_seconds == 5
    assert v1.read_namespaced_pod("bound", ns).metadata.deletion_timestamp is not None
    v1.delete_namespaced_pod("bound", ns, grace_period_seconds=0)
    v1.delete_namespaced_pod("unbound", ns)
    for name in ("bound", "unbound"):
        with pytest.raises(client.ApiException) as gone:
            v1.read_namespaced_pod(name, ns)
        assert gone.value.status == 404


def _ready_pod(v1: client.CoreV1Api, ns: str, name: str) -> None:
    v1.create_namespaced_pod(ns, pod_body(name, {"app": "db"}, node="n1"))
    v1.patch_namespaced_pod_status(
        name, ns, {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    )


def test_eviction_honours_disruption_budgets(api: client.ApiClient, server: ApiServerProcess, ns: str):
    v1, policy = client.CoreV1Api(api), client.PolicyV1Api(api)
    for name in ("db-0", "db-1"):
        _ready_pod(v1, ns, name)
    policy.create_namespaced_pod_disruption_budget(
        ns,
        {
            "metadata": {"name": "pdb"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}},
        },
    )
    wait_for(lambda: policy.read_namespaced_pod_disruption_budget("pdb", ns).status.disruptions_allowed == 1)
    pdb = policy.read_namespaced_pod_disruption_budget("pdb", ns).status
    assert (pdb.current_healthy, pdb.desired_healthy, pdb.expected_pods) == (2, 1, 2)
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "db-0", "namespace": ns}}
    code, body = http(f"{server.url}/api/v1/namespaces/{ns}/pods/db-0/eviction", "POST", eviction)
    assert (code, body["kind"], body["status"]) == (201, "Status", "Success")
    assert v1.read_namespaced_pod("db-0", ns).metadata.deletion_timestamp is not None
    code, body = http(
        f"{server.url}/api/v1/namespaces/{ns}/pods/db-1/eviction", "POST", raw=b"", content_type=None
    )
    assert (code, body["reason"]) == (429, "TooManyRequests")
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert v1.read_namespaced_pod("db-1", ns).metadata.deletion_timestamp is None
    wait_for(lambda: policy.read_namespaced_pod_disruption_budget("pdb", ns).status.current_healthy == 1)


def test_policy_denies_matching_requests(api: client.ApiClient, ns: str):
    v1 = client.CoreV1Api(api)
    v1.create_namespaced_config_map(ns, {"metadata": {"name": "protected"}})
    with pytest.raises(client.ApiException) as denied:
        v1.delete_namespaced_config_map("protected", ns)
    assert denied.value.status == 403 and _status(denied.value)["reason"] == "Forbidden"
    review = client.AuthorizationV1Api(api).create_self_subject_access_review(
        {
            "spec": {
                "resourceAttributes": {
                    "verb": "delete",
                    "resource": "configmaps",
                    "name": "protected",
                    "namespace": ns,
                }
            }
        }
    )
    assert review.status.allowed is False
    assert v1.read_namespaced_config_map("protected", ns).metadata.name == "protected"


def test_crd_serves_custom_resources_until_deleted(api: client.ApiClient, server: ApiServerProcess, ns: str):
    ext, custom = client.ApiextensionsV1Api(api), client.CustomObjectsApi(api)
    crd = ext.create_custom_resource_definition(_crd())
    assert {c.type: c.status for c in crd.status.conditions}["Established"] == "True"
    args = ("lab.example.com", "v1", ns, "widgets")
    made = custom.create_namespaced_custom_object(
        *args,
        {
            "apiVersion": "lab.example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"size": 1},
            "status": {"phase": "Ignored"},
        },
    )
    assert "status" not in made and made["metadata"]["generation"] == 1
    status = custom.patch_namespaced_custom_object_status(
        *args, "w", {"status": {"phase": "Ready"}, "spec": {"size": 9}}
    )
    assert (
        status["status"] == {"phase": "Ready"}
        and status["spec"] == {"size": 1}
        and status["metadata"]["generation"] == 1
    )
    patched = custom.patch_namespaced_custom_object(*args, "w", {"spec": {"size": 2}})
    assert patched["metadata"]["generation"] == 2 and patched["status"] == {"phase": "Ready"}
    assert [o["metadata"]["name"] for o in custom.list_namespaced_custom_object(*args)["items"]] == ["w"]
    code, _ = http(
        f"{server.url}/apis/lab.example.com/v1/namespaces/{ns}/widgets/w",
        "PATCH",
        {"spec": {}},
        "application/strategic-merge-patch+json",
    )
    assert code == 415
    code, listing = http(f"{server.url}/apis/lab.example.com/v1")
    assert code == 200 and {r["name"] for r in listing["resources"]} == {"widgets", "widgets/status"}
    ext.delete_custom_resource_definition("widgets.lab.example.com")
    code, _ = http(f"{server.url}/apis/lab.example.com/v1/namespaces/{ns}/widgets")
    assert code == 404
    with pytest.raises(client.ApiException) as bad:
        ext.create_custom_resource_definition({**_crd(), "metadata": {"name": "wrong.lab.example.com"}})
    assert bad.value.status == 422


def test_namespace_deletion_removes_its_content(api: client.ApiClient, ns: str):
    v1 = client.CoreV1Api(api)
    v1.create_namespaced_config_map(ns, {"metadata": {"name": "x"}})
    v1.create_namespaced_pod(ns, pod_body("p"))
    v1.delete_namespace(ns)

    def gone() -> bool:
        try:
            v1.read_namespace(ns)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone)
    assert v1.list_namespaced_config_map(ns).items == []


def test_state_survives_sigkill(tmp_path: Path):
    data = tmp_path / "state"
    srv = start_api_server(data)
    base = f"{srv.url}/api/v1/namespaces/default/configmaps"
    written = {}
    for i in range(20):
        code, body = http(base, "POST", {"metadata": {"name": f"c{i}"}, "data": {"i": str(i)}})
        assert code == 201
        written[body["metadata"]["name"]] = body["metadata"]["uid"]
    code, body = http(f"{base}/c3", "DELETE")
    assert code == 200
    del written["c3"]
    _, before = http(base)
    srv.kill()
    srv = start_api_server(data)
    try:
        _, after = http(f"{srv.url}/api/v1/namespaces/default/configmaps")
        assert {o["metadata"]["name"]: o["metadata"]["uid"] for o in after["items"]} == written
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        code, created = http(
            f"{srv.url}/api/v1/namespaces/default/configmaps", "POST", {"metadata": {"name": "new"}}
        )
        assert int(created["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
        rv = int(before["metadata"]["resourceVersion"]) - 2
        _, text = http(
            f"{srv.url}/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=1"
        )
        events = [
            (json.loads(line)["type"], json.loads(line)["object"]["metadata"]["name"])
            for line in text.splitlines()
        ]
        assert events == [("ADDED", "c19"), ("DELETED", "c3"), ("ADDED", "new")]
        assert (data / "apiserver.port").read_text().strip() == str(srv.port)
    finally:
        assert srv.stop() == 0


def test_cli_refuses_a_taken_port_and_a_locked_data_folder(server: ApiServerProcess):
    env = {**os.environ, "PYTHONPATH": str(project_root())}
    taken = subprocess.run(
        [sys.executable, "-m", "lab.api", "--insecure-allow-all", "--port", str(server.port)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert taken.returncode == 2 and taken.stdout == ""
    assert len(taken.stderr.strip().splitlines()) == 1 and "already in use" in taken.stderr
    locked = subprocess.run(
        [sys.executable, "-m", "lab.api", "--insecure-allow-all", "--data", str(server.log_path.parent)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert locked.returncode == 2 and "another API server is using" in locked.stderr
    assert len(locked.stderr.strip().splitlines()) == 1
    assert http(f"{server.url}/healthz") == (200, "ok")


def test_binding_assigns_a_node_once(api: client.ApiClient, server: ApiServerProcess, ns: str):
    v1 = client.CoreV1Api(api)
    v1.create_namespaced_pod(ns, pod_body("p1"))
    v1.create_namespaced_pod(ns, pod_body("p2"))
    binding = {"apiVersion": "v1", "kind": "Binding", "target": {"kind": "Node", "name": "n1"}}
    code, _ = http(
        f"{server.url}/api/v1/namespaces/{ns}/pods/p1/binding",
        "POST",
        {**binding, "metadata": {"name": "p1"}},
    )
    assert code == 201
    code, _ = http(
        f"{server.url}/api/v1/namespaces/{ns}/bindings", "POST", {**binding, "metadata": {"name": "p2"}}
    )
    assert code == 201
    for name in ("p1", "p2"):
        pod = v1.read_namespaced_pod(name, ns)
        assert pod.spec.node_name == "n1"
        assert [(c.type, c.status) for c in pod.status.conditions] == [("PodScheduled", "True")]
    code, body = http(
        f"{server.url}/api/v1/namespaces/{ns}/pods/p1/binding",
        "POST",
        {**binding, "metadata": {"name": "p1"}},
    )
    assert (code, body["reason"]) == (409, "Conflict")


def test_delete_collection_by_selector(api: client.ApiClient, ns: str):
    v1 = client.CoreV1Api(api)
    for name, tier in (("x", "cache"), ("y", "cache"), ("z", "db")):
        v1.create_namespaced_config_map(ns, {"metadata": {"name": name, "labels": {"tier": tier}}})
    v1.delete_collection_namespaced_config_map(ns, label_selector="tier=cache")
    assert [c.metadata.name for c in v1.list_namespaced_config_map(ns).items] == ["z"]


def test_a_dependent_the_foreground_collector_may_not_delete_does_not_stop_the_others(
    api: client.ApiClient,
) -> None:
    """``default`` made a dependent of a ClusterRole deleted in the foreground: the namespace
    may not be deleted, which is logged; namespaces deleted afterwards still finish."""
    rbac, core = client.RbacAuthorizationV1Api(api), client.CoreV1Api(api)
    owner = rbac.create_cluster_role({"metadata": {"name": "fg-owner"}, "rules": []})
    ref = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "name": "fg-owner"}
    ref["uid"] = owner.metadata.uid
    core.patch_namespace("default", {"metadata": {"ownerReferences": [ref]}})
    try:
        rbac.delete_cluster_role("fg-owner", propagation_policy="Foreground")
        core.create_namespace({"metadata": {"name": "fg-after"}})
        core.delete_namespace("fg-after")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                core.read_namespace("fg-after")
            except client.ApiException as exc:
                assert exc.status == 404
                break
            time.sleep(0.1)
        else:
            pytest.fail("a namespace deleted after the refused foreground deletion never finished")
        assert core.read_namespace("default").status.phase == "Active"
    finally:
        core.patch_namespace("default", {"metadata": {"ownerReferences": None}})
