"""Real kubectl 1.32 against the lab API server (fresh HOME, so discovery is not cached)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.api import ApiServerProcess, start_api_server, write_kubeconfig
from tests.test_api_support import http, pod_body

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
]

CRD_YAML = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: mssqlinstances.lab.example.com
spec:
  group: lab.example.com
  scope: Namespaced
  names: {plural: mssqlinstances, singular: mssqlinstance, kind: MSSQLInstance, shortNames: [mi]}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Phase, type: string, jsonPath: .status.phase}
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
"""


class Kubectl:
    def __init__(self, server: ApiServerProcess, home: Path) -> None:
        self.server = server
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
        self.env["KUBECONFIG"] = str(write_kubeconfig(home / ".kube" / "config", server.url))

    def __call__(
        self, *args: str, stdin: str | None = None, ok: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )
        if ok:
            assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result

    def table(self, *args: str) -> list[dict[str, str]]:
        """``kubectl get`` output as rows keyed by column header (columns split on 2+ spaces)."""
        lines = self(*args).stdout.splitlines()
        if not lines:
            return []
        headers = list(re.finditer(r"\S+(?: \S+)*", lines[0]))
        bounds = [
            (m.start(), nxt.start() if nxt else None)
            for m, nxt in zip(headers, [*headers[1:], None], strict=True)
        ]
        return [
            {m.group(): line[s:e].strip() for m, (s, e) in zip(headers, bounds, strict=True)}
            for line in lines[1:]
        ]

    def create(self, obj: dict[str, Any]) -> None:
        self("create", "-f", "-", stdin=json.dumps(obj))

    def status(self, path: str, status: dict[str, Any]) -> None:
        code, body = http(
            f"{self.server.url}{path}/status", "PATCH", {"status": status}, "application/merge-patch+json"
        )
        assert code == 200, body


@pytest.fixture(scope="module")
def kubectl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    root = tmp_path_factory.mktemp("api-kubectl")
    policy = root / "policy.yaml"
    policy.write_text("deny:\n  - {verb: create, resource: pods/eviction, namespace: locked}\n")
    srv = start_api_server(root / "state", policy=policy, logs_dir=root / "logs", pod_removal_grace=0)
    home = root / "home"
    home.mkdir()
    yield Kubectl(srv, home)
    assert srv.stop() == 0


def _node(name: str, ready: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"node-role.kubernetes.io/worker": "", "lab/pool": name}},
        "spec": {},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "nodeInfo": {"kubeletVersion": "v1.32.0-lab"},
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        },
    }


def _running(kubectl: Kubectl, name: str, ns: str = "default", restarts: int = 0) -> None:
    kubectl.status(
        f"/api/v1/namespaces/{ns}/pods/{name}",
        {
            "phase": "Running",
            "podIP": "10.1.0.7",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "main",
                    "ready": True,
                    "restartCount": restarts,
                    "image": "postgres:15",
                    "imageID": "",
                    "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}},
                }
            ],
        },
    )


def test_get_pods_shows_ready_status_restarts(kubectl: Kubectl):
    kubectl.create(pod_body("db-0", {"app": "db"}, node="node-a"))
    kubectl.create(pod_body("db-1", {"app": "db"}))
    _running(kubectl, "db-0", restarts=3)
    rows = {r["NAME"]: r for r in kubectl.table("get", "pods", "-l", "app=db")}
    assert (rows["db-0"]["READY"], rows["db-0"]["STATUS"], rows["db-0"]["RESTARTS"]) == (
        "1/1",
        "Running",
        "3",
    )
    assert (rows["db-1"]["READY"], rows["db-1"]["STATUS"], rows["db-1"]["RESTARTS"]) == (
        "0/1",
        "Pending",
        "0",
    )
    assert rows["db-0"]["AGE"].endswith("s")
    held = pod_body("db-held", {"app": "db"}, node="node-b")
    held["metadata"]["finalizers"] = ["lab/hold"]
    kubectl.create(held)
    kubectl("delete", "pod", "db-held", "--wait=false")
    assert {r["NAME"]: r["STATUS"] for r in kubectl.table("get", "pods", "-l", "app=db")}[
        "db-held"
    ] == "Terminating"
    kubectl(
        "patch", "pod", "db-held", "--type=json", "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]'
    )
    assert kubectl("get", "pod", "db-held", ok=False).returncode != 0
    wide = {
        r["NAME"]: r
        for r in kubectl.table("get", "pods", "-o", "wide", "--field-selector", "spec.nodeName=node-a")
    }
    assert list(wide) == ["db-0"] and (wide["db-0"]["IP"], wide["db-0"]["NODE"]) == ("10.1.0.7", "node-a")


def test_nodes_cordon_and_uncordon(kubectl: Kubectl):
    kubectl.create(_node("node-c"))
    kubectl.create(_node("node-d", ready=False))
    rows = {r["NAME"]: r for r in kubectl.table("get", "nodes")}
    assert (rows["node-c"]["STATUS"], rows["node-c"]["ROLES"], rows["node-c"]["VERSION"]) == (
        "Ready",
        "worker",
        "v1.32.0-lab",
    )
    assert rows["node-d"]["STATUS"] == "NotReady"
    kubectl("cordon", "node-c")
    assert {r["NAME"]: r["STATUS"] for r in kubectl.table("get", "nodes")}[
        "node-c"
    ] == "Ready,SchedulingDisabled"
    assert kubectl("get", "node", "node-c", "-o", "jsonpath={.spec.unschedulable}").stdout == "true"
    kubectl("uncordon", "node-c")
    assert kubectl("get", "node", "node-c", "-o", "jsonpath={.spec.unschedulable}").stdout in ("", "false")


def test_crd_apply_and_printer_columns(kubectl: Kubectl, tmp_path: Path):
    crd = tmp_path / "crd.yaml"
    crd.write_text(CRD_YAML)
    kubectl("apply", "--validate=false", "-f", str(crd))
    kubectl("wait", "--for=condition=established", "crd/mssqlinstances.lab.example.com", "--timeout=5s")
    instance = {
        "apiVersion": "lab.example.com/v1alpha1",
        "kind": "MSSQLInstance",
        "metadata": {"name": "tenant-a"},
        "spec": {"replicas": 1},
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(instance))
    kubectl.status(
        "/apis/lab.example.com/v1alpha1/namespaces/default/mssqlinstances/tenant-a",
        {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    )
    rows = kubectl.table("get", "mssqlinstances")
    assert [(r["NAME"], r["PHASE"], r["READY"]) for r in rows] == [("tenant-a", "Running", "True")]
    assert rows[0]["AGE"].endswith("s")
    assert [r["NAME"] for r in kubectl.table("get", "mi")] == ["tenant-a"]
    again = kubectl("apply", "--validate=false", "-f", str(crd))
    assert "unchanged" in again.stdout


def test_describe_and_logs(kubectl: Kubectl):
    kubectl.create(pod_body("logger", {"app": "log"}, node="node-a"))
    _running(kubectl, "logger")
    logs_dir = Path(kubectl.env["HOME"]).parent / "logs"
    logs_dir.mkdir(exist_ok=True)
    (logs_dir / "default_logger.log").write_text("first line\nsecond line\n")
    assert kubectl("logs", "logger").stdout == "first line\nsecond line\n"
    assert kubectl("logs", "logger", "--tail=1").stdout == "second line\n"
    described = kubectl("describe", "pod", "logger").stdout
    assert "Name:             logger" in described and "Status:           Running" in described
    missing = kubectl("logs", "nobody", ok=False)
    assert missing.returncode != 0 and 'pods "nobody" not found' in missing.stderr


def _replicaset(kubectl: Kubectl, name: str, ns: str = "default") -> str:
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"rs": name}},
            "template": {
                "metadata": {"labels": {"rs": name}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }
    kubectl.create(rs)
    return kubectl("get", "rs", name, "-n", ns, "-o", "jsonpath={.metadata.uid}").stdout


def test_drain_evicts_and_respects_budgets(kubectl: Kubectl):
    kubectl.create(_node("node-e"))
    uid = _replicaset(kubectl, "drained")
    owner = [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "drained", "uid": uid, "controller": True}
    ]
    for i in range(2):
        body = pod_body(f"drained-{i}", {"rs": "drained"}, node="node-e", owners=owner)
        body["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
        kubectl.create(body)
        _running(kubectl, f"drained-{i}")
    kubectl.create(pod_body("loose", node="node-e"))
    out = kubectl(
        "drain", "node-e", "--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout=20s"
    )
    assert "evicted" in out.stdout and "node/node-e drained" in out.stdout
    assert kubectl.table("get", "pods", "--field-selector", "spec.nodeName=node-e") == []
    assert kubectl.table("get", "nodes", "node-e")[0]["STATUS"] == "Ready,SchedulingDisabled"

    kubectl.create(_node("node-f"))
    kubectl.create(pod_body("guarded", {"rs": "drained"}, node="node-f", owners=owner))
    _running(kubectl, "guarded")
    kubectl.create(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "guard"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"rs": "drained"}}},
        }
    )
    refused = kubectl(
        "drain", "node-f", "--ignore-daemonsets", "--force", "--timeout=1s", ok=False, timeout=20
    )
    assert refused.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget." in refused.stderr
    assert kubectl("get", "pod", "guarded", "-o", "jsonpath={.metadata.name}").stdout == "guarded"


def test_delete_pod_and_rollout_restart(kubectl: Kubectl):
    kubectl.create(pod_body("victim", node="node-a"))
    assert 'pod "victim" deleted' in kubectl("delete", "pod", "victim", "--timeout=10s").stdout
    assert kubectl("get", "pod", "victim", ok=False).returncode != 0
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(deployment))
    kubectl("rollout", "restart", "deployment", "web")
    annotations = json.loads(
        kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.template.metadata.annotations}").stdout
    )
    assert "kubectl.kubernetes.io/restartedAt" in annotations
    assert kubectl("get", "deploy", "web", "-o", "jsonpath={.metadata.generation}").stdout == "2"
    row = kubectl.table("get", "deployments")[0]
    assert (row["NAME"], row["READY"], row["UP-TO-DATE"], row["AVAILABLE"]) == ("web", "0/2", "0", "0")


def test_auth_can_i_follows_the_policy(kubectl: Kubectl):
    allowed = kubectl("auth", "can-i", "create", "pods")
    assert allowed.stdout.strip() == "yes"
    denied = kubectl("auth", "can-i", "create", "pods", "--subresource=eviction", "-n", "locked", ok=False)
    assert denied.returncode == 1 and denied.stdout.startswith("no")
    elsewhere = kubectl("auth", "can-i", "create", "pods", "--subresource=eviction", "-n", "default")
    assert elsewhere.stdout.strip() == "yes"


def test_imperative_creates_sent_as_protobuf(kubectl: Kubectl):
    kubectl("create", "namespace", "proto")
    kubectl("create", "secret", "generic", "creds", "-n", "proto", "--from-literal=password=s3cret")
    kubectl("create", "configmap", "settings", "-n", "proto", "--from-literal=a=1", "--from-literal=b=2")
    assert (
        kubectl("get", "secret", "creds", "-n", "proto", "-o", "jsonpath={.data.password}").stdout
        == "czNjcmV0"
    )
    rows = {r["NAME"]: r for r in kubectl.table("get", "configmaps", "-n", "proto")}
    assert rows["settings"]["DATA"] == "2"
    # Typed built-in kinds arrive as protobuf too (tests/test_api_protobuf_apply.py has them all).
    kubectl("create", "deployment", "d", "--image=x", "-n", "proto")
    image = kubectl(
        "get", "deployment", "d", "-n", "proto", "-o", "jsonpath={.spec.template.spec.containers[0].image}"
    )
    assert image.stdout == "x"
