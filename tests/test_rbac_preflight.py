"""The RBAC preflight checks what the operator NEEDS: a verb removed from its ClusterRole is caught twice.

A secure control plane only (HTTPS, bearer tokens, real RBAC; no lab, no kubelets, no
controllers) holds the operator's Namespace, ServiceAccount, ClusterRole and binding from
``lab/crds/operator.yaml``, with ``patch`` on ``mssqlinstances/status`` removed from the
role (the other statuses keep it). Then:

- the preflight, told what the operator needs (``operator_rbac_file``), reports exactly
  that verb as denied, in its answer and in ``rbac.json``; reading the deployed role
  instead, it cannot see the gap; with the full role back, nothing is denied;
- the real operator (``python -m lab.operator``, in-cluster configuration with a token
  of its service account) is refused that status write by the API server: 403 in its log.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.api.identity import AUTHENTICATED, MASTERS
from lab.api.kubeconfig import write_kubeconfig
from lab.api.pki import Pki
from lab.api.tokens import ensure_token
from lab.cluster_tenants import TENANT_NAMESPACE, instance_body
from lab.controllers import CONTROLLERS
from lab.controlplane import CRD_DIR, TOKEN_FILE, ControlPlaneProcess, start_control_plane
from lab.kubeclient import ApiError, Kind, KubeClient
from lab.operator.objects import INSTANCES
from lab.paths import project_root
from probes.errors import ProbeError
from probes.k8s.preflight import platform_preflight
from tests.test_api_support import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
]

OPERATOR_YAML = CRD_DIR / "operator.yaml"
RBAC_FILE = "lab/crds/operator.yaml"  # as the lab's var file names it
OPERATOR_NS = "mssql-operator"
ACCOUNT = "mssql-operator"
REMOVED = "patch mssqlinstances.mssql.example.com/status"
CLUSTER_ROLES = Kind("rbac.authorization.k8s.io", "v1", "clusterroles", namespaced=False)
BINDINGS = Kind("rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False)


def _operator_docs() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(OPERATOR_YAML.read_text()) if d]
    return {d["kind"]: d for d in docs}


def without_status_patch(role: dict[str, Any]) -> dict[str, Any]:
    """``role`` with ``patch`` on ``mssqlinstances/status`` removed, every other status keeping it."""
    broken = copy.deepcopy(role)
    rules: list[dict[str, Any]] = []
    for rule in broken["rules"]:
        if "mssqlinstances/status" in rule.get("resources", []):
            others = [r for r in rule["resources"] if r != "mssqlinstances/status"]
            rules.append({**rule, "resources": others})
            kept = [v for v in rule["verbs"] if v != "patch"]
            if kept:
                rules.append({**rule, "resources": ["mssqlinstances/status"], "verbs": kept})
        else:
            rules.append(rule)
    broken["rules"] = rules
    return broken


def put(client: KubeClient, kind: Kind, body: dict[str, Any], namespace: str | None = None) -> None:
    """Create ``body``, or replace what is there (``kubectl apply`` without the merge)."""
    current = client.get_or_none(kind, body["metadata"]["name"], namespace)
    if current is None:
        client.create(kind, body, namespace)
    else:
        fresh = copy.deepcopy(body)
        fresh["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        client.replace(kind, fresh, namespace)


@dataclass
class Plane:
    """The control plane, what it trusts, and the admin's kubeconfig and client."""

    process: ControlPlaneProcess
    root: Path
    pki: Pki
    kubeconfig: Path
    admin: KubeClient

    def role(self, broken: bool) -> dict[str, Any]:
        """Apply the operator's ClusterRole (``broken``: without the status patch); returns it."""
        role = _operator_docs()["ClusterRole"]
        body = without_status_patch(role) if broken else role
        put(self.admin, CLUSTER_ROLES, body)
        return body


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    root = tmp_path_factory.mktemp("rbac-preflight")
    process = start_control_plane(root / "api", pki=root / "pki", disable=tuple(CONTROLLERS))
    try:
        pki = Pki.at(root / "pki")
        token = ensure_token(root / "pki" / TOKEN_FILE, "lab-admin", "lab-admin", (MASTERS, AUTHENTICATED))
        kubeconfig = write_kubeconfig(
            root / "admin.kubeconfig", process.url, token=token, ca_pem=pki.ca_pem(), user="lab-admin"
        )
        admin = KubeClient(process.url, token, ca_pem=pki.ca_pem())
        wait_for(lambda: _accepted(admin), 10)
        docs = _operator_docs()
        for name in (OPERATOR_NS, TENANT_NAMESPACE):
            put(
                admin,
                Kind("", "v1", "namespaces", namespaced=False),
                {**docs["Namespace"], "metadata": {"name": name}},
            )
        put(admin, Kind("", "v1", "serviceaccounts"), docs["ServiceAccount"], OPERATOR_NS)
        put(admin, BINDINGS, docs["ClusterRoleBinding"])
        yield Plane(process, root, pki, kubeconfig, admin)
    finally:
        process.stop()


def _accepted(client: KubeClient) -> bool:
    try:
        client.list("namespaces")
    except ApiError as exc:
        if exc.code == 401:  # the token file is re-read when it changes
            return False
        raise
    return True


@pytest.fixture
def kube_env(plane: Plane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """KUBECONFIG the admin's, kubectl's cache in a HOME of its own, a run folder; returns it."""
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("KUBECONFIG", str(plane.kubeconfig))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HARNESS_RUN_DIR", str(run))
    for name in ("HARNESS_HELM_RELEASE", "HARNESS_HELM_NAMESPACE", "HARNESS_HELM_INSTANCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(project_root())  # chaos run is started from the project root
    return run


def _preflight(plane: Plane, rbac_file: str) -> dict[str, Any]:
    return platform_preflight(
        namespace=TENANT_NAMESPACE,
        operator_namespace=OPERATOR_NS,
        operator_service_account=ACCOUNT,
        operator_cluster_role="mssql-operator",
        operator_rbac_file=rbac_file,
        configuration={"kubeconfig": str(plane.kubeconfig)},
    )


def test_a_verb_removed_from_the_deployed_role_is_denied_by_the_preflight(
    plane: Plane, kube_env: Path
) -> None:
    deployed = plane.role(broken=True)
    found = _preflight(plane, RBAC_FILE)
    assert found["rbac_denied"] == [REMOVED]
    rbac = json.loads((kube_env / "rbac.json").read_text())
    assert rbac["required_from"] == str(OPERATOR_YAML)
    assert rbac["service_account"] == f"system:serviceaccount:{OPERATOR_NS}:{ACCOUNT}"
    denied = [c for c in rbac["checks"] if c["allowed"] is not True]
    assert denied == [
        {
            "verb": "patch",
            "resource": "mssqlinstances.mssql.example.com/status",
            "namespace": "",  # a ClusterRole's rules are asked in every namespace
            "allowed": False,
        }
    ]
    # every apiGroup x resource x resourceName x verb of the file, each answered (no kubectl error)
    assert len(rbac["checks"]) == 37 and not [c for c in rbac["checks"] if "error" in c]
    assert {
        "verb": "get",
        "resource": "configmaps:lab-identity",
        "namespace": "",
        "allowed": True,
    } in (rbac["checks"])
    # a type the server does not serve is asked by a SubjectAccessReview (kubectl cannot name it)
    assert {
        "verb": "use",
        "resource": "podsecuritypolicies.policy:privileged",
        "namespace": "",
        "allowed": True,
    } in (rbac["checks"])

    # Reading the deployed role instead, the removed verb is never asked for: the gap is invisible.
    blind = _preflight(plane, "")
    assert blind["rbac_denied"] == []
    rbac = json.loads((kube_env / "rbac.json").read_text())
    assert rbac["required_from"] == "ClusterRole mssql-operator (as deployed: a removed verb cannot be seen)"
    assert len(rbac["checks"]) == sum(len(r["resources"]) * len(r["verbs"]) for r in deployed["rules"])

    plane.role(broken=False)
    assert _preflight(plane, RBAC_FILE)["rbac_denied"] == []
    rbac = json.loads((kube_env / "rbac.json").read_text())
    assert rbac["required_from"] == str(OPERATOR_YAML) and all(c["allowed"] is True for c in rbac["checks"])


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot be read (No such file or directory)"),
        ("rules: [\n", "is not valid YAML (line 2)"),
        (
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: x}\n",
            "holds no ClusterRole or Role with rules",
        ),
        (
            "kind: ClusterRole\nmetadata: {name: op}\nrules:\n- apiGroups: ['']\n  resources: [pods]\n",
            "ClusterRole op rule 1 has no verbs",
        ),
        ("kind: Role\nmetadata: {name: op}\nrules: {verbs: [get]}\n", "Role op: rules must be a list"),
        (
            "kind: ClusterRole\nmetadata: {name: op}\nrules:\n- resources: [pods]\n  verbs: [get]\n",
            "ClusterRole op rule 1 names resources but no apiGroups",
        ),
        (
            "kind: ClusterRole\nrules: [{apiGroups: [''], resources: [pods], verbs: get}]\n",
            "verbs must be a list",
        ),
    ],
)
def test_a_bad_rbac_file_is_one_line_naming_it_and_the_fix(
    plane: Plane, kube_env: Path, tmp_path: Path, content: str | None, problem: str
) -> None:
    path = tmp_path / "operator-rbac.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ProbeError) as raised:
        _preflight(plane, str(path))
    message = str(raised.value)
    assert "\n" not in message and f"operator_rbac_file {path}" in message and problem in message
    assert message.endswith(
        "point operator_rbac_file at the operator's RBAC manifest (its ClusterRole/Role YAML or the "
        "`helm template` output of its chart), or empty it to check the deployed ClusterRole"
    )
    assert not (kube_env / "rbac.json").exists()  # nothing checked, nothing that could read as a pass


def test_a_relative_path_is_read_from_the_current_folder_first(
    plane: Plane, kube_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative to the current folder, else to the project (the lab's var file works wherever
    the run starts); a file in neither is one line saying where it looked."""
    plane.role(broken=False)
    monkeypatch.chdir(tmp_path)
    assert _preflight(plane, RBAC_FILE)["rbac_required_from"] == str(OPERATOR_YAML)
    own = tmp_path / "lab" / "crds" / "operator.yaml"
    own.parent.mkdir(parents=True)
    own.write_text("kind: ClusterRole\nrules: [{apiGroups: [''], resources: [pods], verbs: [list]}]\n")
    found = _preflight(plane, RBAC_FILE)
    assert found["rbac_required_from"] == str(own) and found["rbac_denied"] == []
    with pytest.raises(
        ProbeError, match=r"nope\.yaml cannot be read .*looked in the current folder and the project"
    ):
        _preflight(plane, "nope.yaml")


def test_a_role_in_the_file_is_asked_in_its_own_namespace(
    plane: Plane, kube_env: Path, tmp_path: Path
) -> None:
    """A chart's Role (here: leases for leader election in the operator's namespace) is asked
    where it is granted; the operator was never given it, so it is denied. A non-resource URL
    is asked without a namespace."""
    plane.role(broken=False)
    path = tmp_path / "chart-rbac.yaml"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "mssql-operator-leader"},
        "rules": [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "update"]}
        ],
    }
    cluster_role = {
        "kind": "ClusterRole",
        "metadata": {"name": "x"},
        "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
            {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},  # every user's, by the bootstrap policy
        ],
    }
    path.write_text(yaml.safe_dump_all([cluster_role, None, role]))
    found = _preflight(plane, str(path))
    assert found["rbac_denied"] == ["get leases.coordination.k8s.io", "update leases.coordination.k8s.io"]
    checks = json.loads((kube_env / "rbac.json").read_text())["checks"]
    assert [(c["resource"], c["namespace"], c["allowed"]) for c in checks] == [
        ("pods", "", True),
        ("/healthz", None, True),
        ("leases.coordination.k8s.io", OPERATOR_NS, False),
        ("leases.coordination.k8s.io", OPERATOR_NS, False),
    ]


def _service_account_dir(plane: Plane, folder: Path) -> Path:
    """What the kubelet projects into the operator's pod: a token of its account, the CA, the namespace."""
    answer = plane.admin.request(
        "POST",
        f"/api/v1/namespaces/{OPERATOR_NS}/serviceaccounts/{ACCOUNT}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    folder.mkdir()
    (folder / "token").write_text(answer["status"]["token"])
    (folder / "ca.crt").write_bytes(plane.pki.ca_pem())
    (folder / "namespace").write_text(OPERATOR_NS)
    return folder


def test_the_operator_is_refused_the_status_write_the_preflight_reported(
    plane: Plane, tmp_path: Path
) -> None:
    plane.role(broken=True)
    account = _service_account_dir(plane, tmp_path / "serviceaccount")
    port = plane.process.url.rsplit(":", 1)[1]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": port,
        "LAB_SERVICEACCOUNT_DIR": str(account),
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp_path / "operator.log"
    name = "tenant-rbac"
    with log_path.open("wb") as log:
        operator = subprocess.Popen(
            [sys.executable, "-m", "lab.operator", "--interval", "0.5", "--metrics-port", "-1"],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
            cwd=project_root(),
            start_new_session=True,
        )
    try:
        wait_for(lambda: "reconciling MSSQLInstances" in log_path.read_text(), 10)
        plane.admin.create(INSTANCES, instance_body(name), TENANT_NAMESPACE)
        line = wait_for(  # a 403 for the status write in the operator's log
            lambda: next(
                (
                    text
                    for text in log_path.read_text().splitlines()
                    if "403" in text and "cannot patch" in text and '"mssqlinstances/status"' in text
                ),
                None,
            ),
            10,
        )
        assert (
            f"{TENANT_NAMESPACE}/{name}" in line and f"system:serviceaccount:{OPERATOR_NS}:{ACCOUNT}" in line
        )
        # the objects it may create it created; the status it may not write is not there
        assert plane.admin.get_or_none("statefulsets", name, TENANT_NAMESPACE) is not None
        assert not plane.admin.get(INSTANCES, name, TENANT_NAMESPACE).get("status")
    finally:
        if operator.poll() is None:
            operator.send_signal(signal.SIGTERM)
            try:
                operator.wait(10)
            except subprocess.TimeoutExpired:
                operator.kill()
                operator.wait(5)
        plane.admin.delete(INSTANCES, name, TENANT_NAMESPACE)
    assert operator.returncode == 0, log_path.read_text()[-2000:]
