"""``/openapi/v2`` and ``/openapi/v3`` as kubectl reads them: ``explain`` (1.32 over v3, 1.20
over v2), kubectl 1.20's ``apply`` (protobuf v2, client-side validation, strategic merge
patches) and ``patch --dry-run=server`` (which 1.20 only sends when v2 declares ``dryRun``).

kubectl 1.20 is Debian's ``kubernetes-client``; it installs ``/usr/bin/kubectl`` and so
conflicts with a newer kubectl, so the tests look for it elsewhere: ``$KUBECTL_1_20``,
``kubectl-1.20`` on the PATH, or ``/opt/kubectl-1.20/usr/bin/kubectl`` (``apt-get download
kubernetes-client && dpkg-deb -x kubernetes-client_*.deb /opt/kubectl-1.20``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.api import ApiServerProcess, start_api_server
from tests.lab_fixtures import Kubectl as SharedKubectl
from tests.test_api_support import http

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
]

CRDS = Path(__file__).resolve().parents[1] / "lab" / "crds"
PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"


def _kubectl_120() -> str | None:
    for candidate in (
        os.environ.get("KUBECTL_1_20", ""),
        shutil.which("kubectl-1.20") or "",
        "/opt/kubectl-1.20/usr/bin/kubectl",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


KUBECTL_120 = _kubectl_120()
needs_120 = pytest.mark.skipif(
    KUBECTL_120 is None,
    reason="kubectl 1.20 not found: set KUBECTL_1_20, or apt-get download kubernetes-client and "
    "dpkg-deb -x kubernetes-client_*.deb /opt/kubectl-1.20",
)


class Kubectl(SharedKubectl):
    """kubectl 1.32, and kubectl 1.20 (:meth:`old`) when found."""

    def old(self, *args: str, stdin: str | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
        assert KUBECTL_120 is not None
        return self(*args, binary=KUBECTL_120, stdin=stdin, ok=ok)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServerProcess]:
    root = tmp_path_factory.mktemp("api-openapi")
    srv = start_api_server(root / "state", logs_dir=root / "logs", pod_removal_grace=0)
    base = f"{srv.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    code, body = http(base, "POST", yaml.safe_load((CRDS / "mssqlinstances.yaml").read_text()))
    assert code == 201, body
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def kubectl(server: ApiServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    home = tmp_path_factory.mktemp("home")
    return Kubectl(server, home)


def _refs(node: Any, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            found.add(node["$ref"])
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)
    return found


def test_v3_index_matches_discovery_and_documents_resolve(server: ApiServerProcess):
    _, index = http(f"{server.url}/openapi/v3")
    _, groups = http(f"{server.url}/apis")
    expected = {"api/v1"} | {f"apis/{v['groupVersion']}" for g in groups["groups"] for v in g["versions"]}
    assert set(index["paths"]) == expected
    for path, entry in index["paths"].items():
        assert entry["serverRelativeURL"].startswith(f"/openapi/v3/{path}?hash=")
        code, doc = http(server.url + entry["serverRelativeURL"])
        assert code == 200 and doc["openapi"].startswith("3."), path
        schemas = doc["components"]["schemas"]
        for ref in _refs(doc, set()):
            assert ref.removeprefix("#/components/schemas/") in schemas, (path, ref)
        _, listed = http(f"{server.url}/{path}")
        kinds = {
            (k["group"], k["version"], k["kind"])
            for schema in schemas.values()
            for k in schema.get("x-kubernetes-group-version-kind", [])
        }
        group, _, version = path.removeprefix("api/").removeprefix("apis/").rpartition("/")
        for resource in listed["resources"]:
            if "/" not in resource["name"]:
                assert (group, version, resource["kind"]) in kinds, (path, resource["kind"])
    code, doc = http(f"{server.url}/openapi/v3/apis/mssql.example.com/v1alpha1")
    schema = doc["components"]["schemas"]["com.example.mssql.v1alpha1.MSSQLInstance"]
    assert schema["properties"]["spec"]["properties"]["version"]["type"] == "string"
    assert schema["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    ]
    assert http(f"{server.url}/openapi/v3/apis/nothing.example.com/v1")[0] == 404


def test_v2_json_and_protobuf(server: ApiServerProcess):
    code, doc = http(f"{server.url}/openapi/v2")
    assert code == 200 and doc["swagger"] == "2.0"
    definitions = doc["definitions"]
    for ref in _refs(doc, set()):
        assert ref.removeprefix("#/definitions/") in definitions, ref
    mssql = definitions["com.example.mssql.v1alpha1.MSSQLInstance"]
    assert mssql["x-kubernetes-group-version-kind"] == [
        {"group": "mssql.example.com", "version": "v1alpha1", "kind": "MSSQLInstance"}
    ]
    requests = mssql["properties"]["spec"]["properties"]["resources"]["properties"]["requests"]
    assert "type" not in requests["additionalProperties"]  # int-or-string has no v2 type
    patch = doc["paths"]["/apis/mssql.example.com/v1alpha1/namespaces/{namespace}/mssqlinstances/{name}"][
        "patch"
    ]
    assert {p["name"] for p in patch["parameters"]} == {"dryRun", "fieldValidation"}
    request = urllib.request.Request(f"{server.url}/openapi/v2", headers={"Accept": PROTOBUF})
    with urllib.request.urlopen(request, timeout=10) as answer:
        body, ctype = answer.read(), answer.headers["Content-Type"]
    assert ctype == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    assert body[:5] == b"\x0a\x032.0" and b"com.example.mssql.v1alpha1.MSSQLInstance" in body


def test_explain_custom_and_builtin_with_kubectl_132(kubectl: Kubectl):
    out = kubectl("explain", "mssqlinstances.spec").stdout
    assert "KIND:       MSSQLInstance" in out and "FIELD: spec <Object>" in out
    for field in (
        "version\t<string>",
        "port\t<integer>",
        "storage\t<Object>",
        "nodeSelector\t<map[string]string>",
    ):
        assert field in out, out
    assert "SQL Server version label" in out
    out = kubectl("explain", "pods.spec.containers").stdout
    assert "FIELD: containers <[]Container>" in out
    for field in (
        "name\t<string> -required-",
        "image\t<string>",
        "env\t<[]EnvVar>",
        "ports\t<[]ContainerPort>",
    ):
        assert field in out, out
    out = kubectl("explain", "deployments.spec.template.spec.containers.resources").stdout
    assert "requests\t<map[string]string>" in out and "limits\t<map[string]string>" in out, out
    assert kubectl("explain", "mssqlinstances.spec.nothing", ok=False).returncode != 0


@needs_120
def test_explain_with_kubectl_120(kubectl: Kubectl):
    out = kubectl.old("explain", "mssqlinstances.spec.storage").stdout
    assert "KIND:     MSSQLInstance" in out and "size\t<string>" in out, out
    out = kubectl.old("explain", "pods.spec.containers").stdout
    assert "RESOURCE: containers <[]Object>" in out and "name\t<string> -required-" in out, out


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: mssql-lab/engine
        env: [{name: MODE, value: "VALUE"}]
        ports: [{containerPort: 5432, name: sql}]
        resources: {requests: {cpu: 100m, memory: 64Mi}}
"""
INSTANCE = """\
apiVersion: mssql.example.com/v1alpha1
kind: MSSQLInstance
metadata: {name: legacy}
spec: {version: "VERSION", port: 14330, storage: {size: 1Gi}, nodeSelector: {disk: ssd}}
"""


@needs_120
def test_kubectl_120_apply_creates_then_changes(kubectl: Kubectl):
    out = kubectl.old("apply", "-f", "-", stdin=DEPLOYMENT.replace("REPLICAS", "1").replace("VALUE", "a"))
    assert "deployment.apps/web created" in out.stdout
    out = kubectl.old("apply", "-f", "-", stdin=DEPLOYMENT.replace("REPLICAS", "3").replace("VALUE", "b"))
    assert "deployment.apps/web configured" in out.stdout
    stored = json.loads(kubectl("get", "deployment", "web", "-o", "json").stdout)
    assert stored["spec"]["replicas"] == 3
    container = stored["spec"]["template"]["spec"]["containers"][0]
    assert (
        container["env"] == [{"name": "MODE", "value": "b"}]
        and container["ports"][0]["containerPort"] == 5432
    )

    out = kubectl.old("apply", "-f", "-", stdin=INSTANCE.replace("VERSION", "2022-CU14"))
    assert "mssqlinstance.mssql.example.com/legacy created" in out.stdout
    out = kubectl.old("apply", "-f", "-", stdin=INSTANCE.replace("VERSION", "2022-CU15"))
    assert "mssqlinstance.mssql.example.com/legacy configured" in out.stdout
    stored = json.loads(kubectl("get", "mssqlinstance", "legacy", "-o", "json").stdout)
    assert stored["spec"]["version"] == "2022-CU15" and stored["spec"]["nodeSelector"] == {"disk": "ssd"}

    unknown = kubectl.old(
        "apply", "-f", "-", stdin=INSTANCE.replace("VERSION", "x").replace("port:", "prot:"), ok=False
    )
    assert unknown.returncode != 0 and 'unknown field "prot"' in unknown.stderr, unknown.stderr
    wrong = kubectl.old("apply", "-f", "-", stdin=INSTANCE.replace("14330", "80"), ok=False)
    assert (
        wrong.returncode != 0 and "spec.port in body should be greater than or equal to 1024" in wrong.stderr
    )


@pytest.mark.parametrize("old", [False, pytest.param(True, marks=needs_120)])
def test_patch_dry_run_server_stores_nothing(kubectl: Kubectl, old: bool):
    run = kubectl.old if old else kubectl
    name = f"dry{int(old)}"
    kubectl("apply", "-f", "-", stdin=INSTANCE.replace("legacy", name).replace("VERSION", "v1"))
    before = json.loads(kubectl("get", "mssqlinstance", name, "-o", "json").stdout)
    out = run(
        "patch", "mssqlinstance", name, "--type", "merge", "-p", '{"spec":{"version":"v2","junk":1}}',
        "--dry-run=server", "-o", "json",
    )  # fmt: skip
    answered = json.loads(out.stdout)
    assert answered["spec"]["version"] == "v2" and "junk" not in answered["spec"]
    after = json.loads(kubectl("get", "mssqlinstance", name, "-o", "json").stdout)
    assert after["spec"] == before["spec"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    refused = run(
        "patch", "mssqlinstance", name, "--type", "merge", "-p", '{"spec":{"version":5}}', "--dry-run=server",
        ok=False,
    )  # fmt: skip
    assert refused.returncode != 0 and 'spec.version: Invalid value: "integer"' in refused.stderr
