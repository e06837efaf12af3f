"""Bad specs are refused where they are written, and one bad object cannot stop a controller.

Against a real lab API server (port 0), with the real kubectl 1.32 and raw HTTP: values the
lab's controllers cannot use and changes to fields Kubernetes makes immutable get 422
naming the field; a ``null`` eviction body gets 400 and evicts nothing. Then a StatefulSet
controller pass over a bad object (one stored before these checks existed) and a good one
still reconciles the good one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.api import ApiServerProcess, start_api_server
from lab.api.kubeconfig import write_kubeconfig
from lab.controllers.loop import one_object
from lab.controllers.statefulset import StatefulSetController
from lab.kubeclient import ApiError
from tests.test_api_support import http, pod_body

pytestmark = [pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")]

NS = "specs"
MERGE = "application/merge-patch+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServerProcess]:
    root = tmp_path_factory.mktemp("api-spec-checks")
    srv = start_api_server(root / "state", logs_dir=root / "logs")
    code, body = http(f"{srv.url}/api/v1/namespaces", "POST", {"metadata": {"name": NS}})
    assert code == 201, body
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def kubeconfig(server: ApiServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_kubeconfig(tmp_path_factory.mktemp("kube") / "config", server.url)


def _kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(kubeconfig.parent)}
    return subprocess.run(
        ["kubectl", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _statefulset(name: str, replicas: Any = 1) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": "postgres:15"}]},
            },
        },
    }


def _url(server: ApiServerProcess, path: str) -> str:
    return f"{server.url}{path}"


def test_replicas_that_no_controller_can_use_are_refused(server: ApiServerProcess, kubeconfig: Path) -> None:
    sts = _url(server, f"/apis/apps/v1/namespaces/{NS}/statefulsets")
    code, body = http(sts, "POST", _statefulset("db"))
    assert code == 201, body
    for bad, problem in (("many", 'Invalid value: "many": must be an integer'),
                         (-1, "Invalid value: -1: must be greater than or equal to 0"),
                         (2**40, "Invalid value: 1099511627776: must be less than or equal to 2147483647"),
                         (True, "Invalid value: true: must be an integer")):  # fmt: skip
        code, body = http(f"{sts}/db", "PATCH", {"spec": {"replicas": bad}}, content_type=MERGE)
        assert (code, body["reason"]) == (422, "Invalid"), body
        assert body["message"] == f'StatefulSet.apps "db" is invalid: spec.replicas: {problem}'
        assert body["details"]["causes"][0]["field"] == "spec.replicas"
    code, body = http(sts, "POST", _statefulset("other", replicas="3"))
    assert code == 422 and "spec.replicas" in body["message"], body
    # The real kubectl shows the server's words, and the stored object is unchanged.
    done = _kubectl(kubeconfig, "patch", "statefulset", "db", "-n", NS, "--type=merge", "-p",
                    '{"spec":{"replicas":"many"}}')  # fmt: skip
    assert done.returncode != 0 and 'spec.replicas: Invalid value: "many": must be an integer' in done.stderr
    done = _kubectl(kubeconfig, "get", "statefulset", "db", "-n", NS, "-o", "jsonpath={.spec.replicas}")
    assert done.stdout == "1", done.stderr
    code, body = http(f"{sts}/db", "PATCH", {"spec": {"replicas": 3}}, content_type=MERGE)
    assert code == 200 and body["spec"]["replicas"] == 3, body


def test_fields_kubernetes_makes_immutable_stay_as_created(
    server: ApiServerProcess, kubeconfig: Path
) -> None:
    pods = _url(server, f"/api/v1/namespaces/{NS}/pods")
    code, body = http(pods, "POST", pod_body("placed", labels={"app": "x"}, node="node-a"))
    assert code == 201, body
    code, body = http(f"{pods}/placed", "PATCH", {"spec": {"nodeName": "node-b"}}, content_type=MERGE)
    assert (code, body["details"]["causes"][0]["field"]) == (422, "spec"), body
    assert (
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`"
        in body["message"]
    )
    with_env = [{"name": "main", "image": "postgres:15", "env": [{"name": "A", "value": "b"}]}]
    for change in ({"restartPolicy": "Never"}, {"containers": with_env}):
        code, body = http(f"{pods}/placed", "PATCH", {"spec": change}, content_type=MERGE)
        assert code == 422, (change, body)
    # What Kubernetes lets change does change: the image, and labels (metadata).
    done = _kubectl(kubeconfig, "set", "image", "pod/placed", "-n", NS, "main=postgres:16")
    assert done.returncode == 0, done.stderr
    done = _kubectl(kubeconfig, "label", "pod", "placed", "-n", NS, "tier=db")
    assert done.returncode == 0, done.stderr
    code, body = http(f"{pods}/placed")
    assert body["spec"]["nodeName"] == "node-a" and body["spec"]["containers"][0]["image"] == "postgres:16"

    sts = _url(server, f"/apis/apps/v1/namespaces/{NS}/statefulsets")
    code, body = http(sts, "POST", _statefulset("fixed"))
    assert code == 201, body
    code, body = http(f"{sts}/fixed", "PATCH", {"spec": {"selector": {"matchLabels": {"app": "y"}}}},
                      content_type=MERGE)  # fmt: skip
    assert code == 422 and "updates to statefulset spec for fields other than 'replicas'" in body["message"]

    deploy = _url(server, f"/apis/apps/v1/namespaces/{NS}/deployments")
    body = _statefulset("web")
    body.update(kind="Deployment")
    for field in ("serviceName",):
        body["spec"].pop(field)
    code, created = http(deploy, "POST", body)
    assert code == 201, created
    code, body = http(f"{deploy}/web", "PATCH", {"spec": {"selector": {"matchLabels": {"app": "z"}}}},
                      content_type=MERGE)  # fmt: skip
    assert (
        code == 422
        and "spec.selector: Invalid value" in body["message"]
        and "field is immutable" in body["message"]
    )

    claims = _url(server, f"/api/v1/namespaces/{NS}/persistentvolumeclaims")
    claim = {
        "metadata": {"name": "data"},
        "spec": {
            "storageClassName": "standard",
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    code, body = http(claims, "POST", claim)
    assert code == 201, body
    code, body = http(f"{claims}/data", "PATCH", {"spec": {"storageClassName": "fast"}}, content_type=MERGE)
    assert code == 422 and "spec is immutable after creation except resources.requests" in body["message"]
    grow = {"spec": {"resources": {"requests": {"storage": "2Gi"}}}}
    code, body = http(f"{claims}/data", "PATCH", grow, content_type=MERGE)
    assert code == 422, body  # only a Bound claim may grow
    code, body = http(f"{claims}/data/status", "PATCH", {"status": {"phase": "Bound"}}, content_type=MERGE)
    assert code == 200, body
    code, body = http(f"{claims}/data", "PATCH", grow, content_type=MERGE)
    assert code == 200 and body["spec"]["resources"]["requests"]["storage"] == "2Gi", body
    shrink = {"spec": {"resources": {"requests": {"storage": "1024Mi"}}}}
    code, body = http(f"{claims}/data", "PATCH", shrink, content_type=MERGE)
    assert (
        code == 422 and "spec.resources.requests.storage: Forbidden: field can not be less" in body["message"]
    )


def test_equal_as_kubernetes_compares_is_no_change(server: ApiServerProcess) -> None:
    """An absent field, null, [] and {} are equal: a client re-sending what it read is no change."""
    deploy = _url(server, f"/apis/apps/v1/namespaces/{NS}/deployments")
    body = _statefulset("same")
    body.update(kind="Deployment")
    body["spec"].pop("serviceName")
    code, created = http(deploy, "POST", body)
    assert code == 201, created
    resent = {"spec": {"selector": {"matchLabels": {"app": "same"}, "matchExpressions": []}}}
    code, body = http(f"{deploy}/same", "PATCH", resent, content_type=MERGE)
    assert code == 200, body


def test_workload_templates_are_checked_like_pods(server: ApiServerProcess) -> None:
    """A template no pod could be made from is refused with the workload, not on every pass after."""
    sts = _url(server, f"/apis/apps/v1/namespaces/{NS}/statefulsets")
    body = _statefulset("never")
    body["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    code, found = http(sts, "POST", body)
    assert code == 422, found
    assert (
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"'
        in found["message"]
    )
    body = _statefulset("env")
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "PORT", "value": 5432}]
    code, found = http(sts, "POST", body)
    assert code == 422 and "spec.template.spec.containers[0].env[0].value" in found["message"], found
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once"},
        "spec": {
            "template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}}
        },
    }
    code, found = http(_url(server, f"/apis/batch/v1/namespaces/{NS}/jobs"), "POST", job)
    assert code == 422 and 'supported values: "OnFailure", "Never"' in found["message"], found
    job["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    code, found = http(_url(server, f"/apis/batch/v1/namespaces/{NS}/jobs"), "POST", job)
    assert code == 201, found


def test_bad_pod_specs_are_refused_on_create(server: ApiServerProcess) -> None:
    pods = _url(server, f"/api/v1/namespaces/{NS}/pods")
    pod = pod_body("bad-policy")
    pod["spec"]["restartPolicy"] = "Sometimes"
    code, body = http(pods, "POST", pod)
    assert code == 422 and 'spec.restartPolicy: Unsupported value: "Sometimes"' in body["message"], body
    pod = pod_body("bad-init")
    pod["spec"]["initContainers"] = 3
    code, body = http(pods, "POST", pod)
    assert code == 422 and "spec.initContainers: Invalid value: 3: must be a list" in body["message"], body
    pod = pod_body("empty-policy")  # "" is unset, and defaults to Always
    pod["spec"]["restartPolicy"] = ""
    code, body = http(pods, "POST", pod)
    assert code == 201, body
    pod = pod_body("bad-env")
    pod["spec"]["containers"][0]["env"] = [{"name": "PORT", "value": 5432}]
    code, body = http(pods, "POST", pod)
    assert (
        code == 422
        and "spec.containers[0].env[0].value: Invalid value: 5432: must be a string" in body["message"]
    )


def test_a_null_eviction_evicts_nothing(server: ApiServerProcess) -> None:
    pods = _url(server, f"/api/v1/namespaces/{NS}/pods")
    code, body = http(pods, "POST", pod_body("kept", node="node-a"))
    assert code == 201, body
    code, body = http(f"{pods}/kept/eviction", "POST", raw=b"null")
    assert (code, body["reason"]) == (400, "BadRequest"), body
    assert "the Eviction body must be a JSON object" in body["message"]
    code, body = http(f"{pods}/kept")
    assert code == 200 and body["metadata"].get("deletionTimestamp") is None


class _Recorder:
    """The few client calls a StatefulSet pass makes, against canned lists; creations recorded."""

    def __init__(self, lists: dict[str, list[dict[str, Any]]]) -> None:
        self.lists = lists
        self.created: list[tuple[str, dict[str, Any]]] = []

    def list(self, kind: str, *_args: Any, **_kwargs: Any) -> list[dict[str, Any]]:
        return json.loads(json.dumps(self.lists.get(kind, [])))

    def create(self, kind: str, body: dict[str, Any], *_args: Any, **_kwargs: Any) -> dict[str, Any]:
        self.created.append((kind, body))
        return body

    def patch(self, *_args: Any, **_kwargs: Any) -> dict[str, Any]:
        return {}

    def delete(self, *_args: Any, **_kwargs: Any) -> None:
        return None


def test_one_bad_object_does_not_stop_the_controller_for_the_others(caplog: pytest.LogCaptureFixture) -> None:
    """An object stored before these checks (or by a path that skips them) is skipped and logged."""
    bad, good = _statefulset("bad", replicas="many"), _statefulset("good", replicas=1)
    for index, sts in enumerate((bad, good)):
        sts["metadata"]["uid"] = f"uid-{index}"
    recorder = _Recorder({"statefulsets": [bad, good]})
    with caplog.at_level(logging.WARNING, logger="lab.controllers.loop"):
        StatefulSetController(recorder).reconcile_once()  # type: ignore[arg-type]
    made = [body["metadata"]["name"] for kind, body in recorder.created if kind == "pods"]
    assert made == ["good-0"], recorder.created
    skipped = "skipped StatefulSet specs/bad this pass: ValueError"
    warned = [r for r in caplog.records if skipped in r.getMessage()]
    assert len(warned) == 1 and warned[0].exc_info, caplog.text  # with its traceback, once
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lab.controllers.loop"):
        StatefulSetController(recorder).reconcile_once()  # type: ignore[arg-type]
    assert not caplog.records, "the same problem with the same object is not logged every pass"
    # An API server that cannot be reached ends the pass, as before: nothing to skip one by one.
    with pytest.raises(ApiError), one_object("statefulset", good):
        raise ApiError(0, "Unreachable", "connection refused")


def test_an_object_stored_before_the_checks_keeps_its_status_and_metadata_writable() -> None:
    """Status writes never change the spec, and a metadata-only write does not touch it: neither
    is refused for a spec that would not pass today (a lab's data survives an upgrade)."""
    from lab.api import verbs
    from lab.api.settings import Settings
    from lab.api.state import State
    from lab.api.status import ApiError

    state = State(Settings())
    rt = state.registry.lookup("apps", "v1", "statefulsets")
    assert rt is not None
    old = _statefulset("legacy", replicas="2")
    state.store.create(rt.key, old)  # as stored before: no check on this path
    status = json.dumps({"status": {"replicas": 0}}).encode()
    done = verbs.patch(state, rt, NS, "legacy", MERGE, status, subresource="status")
    assert done["status"]["replicas"] == 0
    labels = json.dumps({"metadata": {"labels": {"kept": "yes"}}}).encode()
    done = verbs.patch(state, rt, NS, "legacy", MERGE, labels)
    assert done["metadata"]["labels"] == {"kept": "yes"}
    with pytest.raises(ApiError) as refused:  # a write to the spec is judged as it stands
        verbs.patch(state, rt, NS, "legacy", MERGE, json.dumps({"spec": {"minReadySeconds": 1}}).encode())
    assert refused.value.code == 422 and "spec.replicas" in str(refused.value)


def test_names_and_paths_that_would_leave_their_folder_on_the_host_are_refused(
    server: ApiServerProcess,
) -> None:
    """The kubelet turns these strings into host paths (as root): refused as Kubernetes refuses them."""
    pods = _url(server, f"/api/v1/namespaces/{NS}/pods")
    cases: list[tuple[str, Any, str]] = []
    pod = pod_body("bad-name")
    pod["spec"]["containers"][0]["name"] = "y/../../../escaped"
    cases.append(("container name", pod, 'spec.containers[0].name: Invalid value: "y/../../../escaped"'))
    pod = pod_body("bad-item")
    pod["spec"]["volumes"] = [
        {"name": "cfg", "configMap": {"name": "c", "items": [{"key": "k", "path": "../x.pth"}]}}
    ]
    cases.append(
        (
            "item path",
            pod,
            "spec.volumes[0].configMap.items[0].path: Invalid value: \"../x.pth\": must not contain '..'",
        )
    )
    pod = pod_body("bad-subpath")
    pod["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "scratch", "mountPath": "/s", "subPath": "/etc"}]
    cases.append(("subPath", pod, 'volumeMounts[0].subPath: Invalid value: "/etc": must be a relative path'))
    pod = pod_body("bad-volume")
    pod["spec"]["volumes"] = [{"name": "..", "emptyDir": {}}]
    cases.append(("volume name", pod, 'spec.volumes[0].name: Invalid value: ".."'))
    for what, body, message in cases:
        code, answer = http(pods, "POST", body)
        assert code == 422 and message in answer["message"], (what, answer)
    configmaps = _url(server, f"/api/v1/namespaces/{NS}/configmaps")
    code, answer = http(
        configmaps,
        "POST",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"../k": "v"}},
    )
    assert code == 422 and 'data[../k]: Invalid value: "../k": a valid config key' in answer["message"], (
        answer
    )
