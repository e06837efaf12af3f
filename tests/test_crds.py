"""The reference CRDs and the operator manifest: valid v1 objects that kubectl applies and prints."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.api import write_kubeconfig
from lab.controlplane import CRD_DIR, ControlPlaneProcess, bootstrap, load_crds, start_control_plane
from lab.kubeclient import KubeClient
from lab.operator import INSTANCES
from tests.test_controllers import kubectl, new_namespace

Obj = dict[str, Any]
KINDS = {"MSSQLInstance", "MSSQLBackupPolicy", "MSSQLBackup", "MSSQLRestore"}
_COLUMN_TYPES = {"integer", "number", "string", "boolean", "date"}
_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "object": dict,
    "array": list,
}


def _crds() -> dict[str, Obj]:
    return {c["spec"]["names"]["kind"]: c for c in load_crds()}


def _schema(kind: str) -> Obj:
    (version,) = _crds()[kind]["spec"]["versions"]
    schema: Obj = version["schema"]["openAPIV3Schema"]
    return schema


def _structural(node: Obj, where: str) -> None:
    """The rules a real API server enforces on v1 CRD schemas (structural, no $ref)."""
    assert "$ref" not in node, where
    if node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields"):
        assert "type" not in node or not node.get("x-kubernetes-int-or-string"), where
    else:
        assert node.get("type") in _TYPES, f"{where}: type missing or unknown"
    kind = node.get("type")
    if "default" in node and kind in _TYPES:
        assert isinstance(node["default"], _TYPES[kind]), f"{where}: default does not match type"
    if "enum" in node and kind in _TYPES:
        assert all(isinstance(v, _TYPES[kind]) for v in node["enum"]), f"{where}: enum values"
    if kind == "object":
        assert not ("properties" in node and isinstance(node.get("additionalProperties"), dict)), where
        for name, child in (node.get("properties") or {}).items():
            _structural(child, f"{where}.{name}")
        if isinstance(node.get("additionalProperties"), dict):
            _structural(node["additionalProperties"], f"{where}[*]")
        for required in node.get("required") or []:
            assert required in (node.get("properties") or {}), f"{where}: required {required} undeclared"
    if kind == "array":
        assert isinstance(node.get("items"), dict), f"{where}: arrays need items"
        _structural(node["items"], f"{where}[]")
        if node.get("x-kubernetes-list-type") == "map":
            keys = node.get("x-kubernetes-list-map-keys") or []
            assert keys and set(keys) <= set(node["items"].get("required") or []), where


def test_crd_files_are_valid_v1_definitions() -> None:
    crds = _crds()
    assert set(crds) == KINDS
    for kind, crd in crds.items():
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1" and crd["kind"] == "CustomResourceDefinition"
        spec, names = crd["spec"], crd["spec"]["names"]
        assert spec["group"] == "mssql.example.com" and spec["scope"] == "Namespaced"
        assert crd["metadata"]["name"] == f"{names['plural']}.{spec['group']}"
        assert names["singular"] == kind.lower() and names["listKind"] == f"{kind}List"
        assert names["plural"] == names["plural"].lower()
        versions = spec["versions"]
        assert [v["name"] for v in versions] == ["v1alpha1"]
        assert sum(1 for v in versions if v["storage"]) == 1 and all(v["served"] for v in versions)
        (version,) = versions
        assert version["subresources"] == {"status": {}}
        schema = version["schema"]["openAPIV3Schema"]
        assert schema["type"] == "object" and {"spec", "status"} <= set(schema["properties"])
        _structural(schema, kind)
        columns = version["additionalPrinterColumns"]
        assert columns and columns[-1] == {
            "name": "Age",
            "type": "date",
            "jsonPath": ".metadata.creationTimestamp",
        }
        for column in columns:
            assert column["type"] in _COLUMN_TYPES and column["jsonPath"].startswith("."), column
    shorts = [n for c in crds.values() for n in c["spec"]["names"]["shortNames"]]
    assert len(shorts) == len(set(shorts))


def test_schemas_carry_the_fields_the_harness_reads() -> None:
    instance = _schema("MSSQLInstance")["properties"]
    spec, status = instance["spec"]["properties"], instance["status"]["properties"]
    assert {"version", "storage", "resources", "port", "database", "nodeSelector", "canary"} <= set(spec)
    assert set(spec["storage"]["properties"]) == {"size", "storageClassName"}
    assert status["phase"]["enum"] == ["Pending", "Provisioning", "Ready", "Degraded", "RestoreFailed"]
    assert {"conditions", "endpoint", "observedGeneration", "lastReconcileTime", "observedCanary"} <= set(
        status
    )
    assert status["lastReconcileTime"]["format"] == "date-time"
    policy = _schema("MSSQLBackupPolicy")["properties"]
    assert {"instance", "fullSchedule", "logIntervalSeconds", "retention"} == set(
        policy["spec"]["properties"]
    )
    assert set(policy["spec"]["properties"]["retention"]["properties"]) == {"fullBackups", "days"}
    assert {"phase", "conditions", "lastFull", "lastLog", "nextRun", "failures"} <= set(
        policy["status"]["properties"]
    )
    backup = _schema("MSSQLBackup")["properties"]
    assert backup["spec"]["properties"]["type"]["enum"] == ["full", "log"]
    assert backup["status"]["properties"]["phase"]["enum"] == ["Pending", "Running", "Completed", "Failed"]
    assert {"backupId", "startTime", "endTime", "coveredFrom", "coveredTo", "checksum", "reason"} <= set(
        backup["status"]["properties"]
    )
    assert {"coveredRanges", "missingSegments"} <= set(backup["status"]["properties"])
    restore = _schema("MSSQLRestore")["properties"]
    assert set(restore["spec"]["properties"]) == {"source", "targetTime", "target", "createTarget"}
    assert restore["spec"]["properties"]["targetTime"]["format"] == "date-time"
    assert {"phase", "achievedRestorePoint", "startTime", "endTime", "reason"} <= set(
        restore["status"]["properties"]
    )
    assert {"backupId", "conditions"} <= set(restore["status"]["properties"])


def test_operator_manifest() -> None:
    docs = list(yaml.safe_load_all((CRD_DIR / "operator.yaml").read_text()))
    by_kind = {d["kind"]: d for d in docs}
    assert list(by_kind) == ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment"]
    assert by_kind["Namespace"]["metadata"]["name"] == "mssql-operator"
    binding = by_kind["ClusterRoleBinding"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": by_kind["ClusterRole"]["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "mssql-operator", "namespace": "mssql-operator"}
    ]
    for rule in by_kind["ClusterRole"]["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        # The only deletion the operator does is backup retention.
        assert "delete" not in rule["verbs"] or rule["resources"] == ["mssqlbackups"], rule
    dep = by_kind["Deployment"]
    assert dep["metadata"]["namespace"] == "mssql-operator" and dep["spec"]["replicas"] == 1
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "mssql-operator"
    (container,) = pod["containers"]
    assert container["image"] == "mssql-lab/operator:1"  # pinned tag
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert (
        dep["spec"]["selector"]["matchLabels"].items()
        <= dep["spec"]["template"]["metadata"]["labels"].items()
    )


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    proc = start_control_plane(tmp_path_factory.mktemp("crds") / "api")
    yield proc
    assert proc.stop() == 0


@pytest.mark.integration
def test_kubectl_applies_the_folder_and_prints_columns(plane: ControlPlaneProcess, tmp_path: Path) -> None:
    api = KubeClient(plane.url)
    ns = new_namespace(api, "crd")
    config = write_kubeconfig(tmp_path / "kubeconfig", plane.url, namespace=ns)
    applied = kubectl(config, tmp_path, "apply", "--validate=false", "-f", str(CRD_DIR))
    assert applied.returncode == 0, applied.stderr
    for name in (
        "customresourcedefinition.apiextensions.k8s.io/mssqlinstances.mssql.example.com",
        "clusterrole.rbac.authorization.k8s.io/mssql-operator",
        "deployment.apps/mssql-operator",
    ):
        assert name in applied.stdout, applied.stdout
    again = kubectl(config, tmp_path, "apply", "--validate=false", "-f", str(CRD_DIR))
    assert again.returncode == 0 and "unchanged" in again.stdout, again.stdout + again.stderr

    manifest = tmp_path / "tenant.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "mssql.example.com/v1alpha1",
                "kind": "MSSQLInstance",
                "metadata": {"name": "tenant-0"},
                "spec": {"version": "2022-CU14", "storage": {"size": "2Gi"}},
            }
        )
    )
    created = kubectl(config, tmp_path, "apply", "-f", str(manifest), "--validate=false")
    assert created.returncode == 0, created.stderr
    status = {
        "phase": "Ready",
        "endpoint": "127.0.0.1:21000",
        "conditions": [{"type": "Ready", "status": "True", "reason": "PodReady"}],
    }
    api.patch(
        INSTANCES,
        "tenant-0",
        {"status": status},
        ns,
        sub="status",
    )
    listed = kubectl(config, tmp_path, "get", "mssqlinstances")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "PHASE", "READY", "ENDPOINT", "VERSION", "AGE"]
    assert row.split()[:5] == ["tenant-0", "Ready", "True", "127.0.0.1:21000", "2022-CU14"]
    wide = kubectl(config, tmp_path, "get", "msi", "-o", "wide")
    assert wide.returncode == 0 and "LAST-RECONCILE" in wide.stdout.splitlines()[0], wide.stdout + wide.stderr
    category = kubectl(config, tmp_path, "get", "mssql")
    assert category.returncode == 0 and "tenant-0" in category.stdout, category.stdout + category.stderr


@pytest.mark.integration
def test_bootstrap_is_idempotent_and_updates_changed_definitions(
    plane: ControlPlaneProcess, tmp_path: Path
) -> None:
    api = KubeClient(plane.url)
    before = api.get("customresourcedefinitions", "mssqlbackups.mssql.example.com")["metadata"][
        "resourceVersion"
    ]
    bootstrap(api)
    after = api.get("customresourcedefinitions", "mssqlbackups.mssql.example.com")["metadata"][
        "resourceVersion"
    ]
    assert before == after
    folder = tmp_path / "crds"
    shutil.copytree(CRD_DIR, folder)
    path = folder / "mssqlbackups.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["versions"][0]["additionalPrinterColumns"].insert(
        0, {"name": "Checksum", "type": "string", "jsonPath": ".status.checksum", "priority": 1}
    )
    path.write_text(yaml.safe_dump(doc))
    bootstrap(api, folder)
    columns = api.get("customresourcedefinitions", "mssqlbackups.mssql.example.com")["spec"]["versions"][0][
        "additionalPrinterColumns"
    ]
    assert columns[0]["name"] == "Checksum"
    bootstrap(api)  # and back
