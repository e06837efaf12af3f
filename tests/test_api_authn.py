"""The API server authenticates like kube-apiserver: TLS, static tokens, client
certificates, impersonation, and refuses to start without a way to authenticate.

One real server process (``tests.authn_support.secured_server``) serves HTTPS with a CA
of its own. The clients are the real ones: kubectl 1.32, the Kubernetes Python client,
:class:`lab.kubeclient.KubeClient` and raw HTTPS. Nothing here starts a lab.
Service-account tokens and the TokenRequest API are in ``tests/test_api_token_request.py``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from lab.api.identity import AUTHENTICATED, MASTERS
from lab.api.pki import ensure_pki, issue_client_cert
from lab.kubeclient import ApiError, KubeClient
from lab.paths import project_root
from tests.authn_support import (
    NS,
    REVIEW,
    UNAUTHORIZED,
    WHOAMI,
    Secured,
    file_mode,
    kubectl,
    needs_kubectl,
    secured_server,
    whoami,
)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    with secured_server(tmp_path_factory.mktemp("authn")) as server:
        yield server


def test_anonymous_requests_are_unauthorized_except_health(secured: Secured) -> None:
    for path in ("/api/v1/pods", "/api/v1/namespaces/default/pods", "/version", "/apis", "/"):
        answer = secured.http("GET", path)
        assert answer.status_code == 401, path
        assert answer.json() == UNAUTHORIZED, path
    for path in ("/healthz", "/livez", "/readyz", "/readyz/ping"):
        answer = secured.http("GET", path)
        assert (answer.status_code, answer.text) == (200, "ok"), path
    # a credential that is wrong is never anonymous, not even for health
    assert secured.http("GET", "/healthz", token="not-a-token").status_code == 401
    assert secured.http("GET", "/api/v1/pods", token=secured.admin + "x").status_code == 401
    basic = {"Authorization": "Basic " + base64.b64encode(b"lab-admin:x").decode()}
    assert secured.http("GET", "/version", headers=basic).status_code == 401
    assert secured.http("POST", "/api/v1/namespaces/default/configmaps", body={}).status_code == 401


def test_admin_token_over_https(secured: Secured) -> None:
    assert secured.url.startswith("https://127.0.0.1:")
    assert secured.api.ca_pem == secured.pki.ca_pem()
    answer = secured.http("GET", "/api/v1/namespaces", secured.admin)
    assert answer.status_code == 200
    assert "default" in {ns["metadata"]["name"] for ns in answer.json()["items"]}
    assert whoami(secured, secured.admin) == {
        "username": "lab-admin",
        "uid": "lab-admin",
        "groups": [MASTERS, AUTHENTICATED],
    }
    client = secured.admin_client()
    assert "kube-system" in {n["metadata"]["name"] for n in client.list("namespaces")}
    client.create(
        "configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "watched"}}, NS
    )
    seen = [
        (e["type"], e["object"]["metadata"].get("name"))
        for e in client.watch("configmaps", NS, timeout_seconds=1)
    ]
    assert ("ADDED", "watched") in seen, "a watch streams over TLS with the token"


def test_a_user_without_permission_is_authenticated_but_forbidden(secured: Secured) -> None:
    answer = secured.http("GET", "/api/v1/namespaces/default/pods", secured.alice)
    assert answer.status_code == 403
    assert answer.json()["message"].startswith(
        'pods is forbidden: User "alice" cannot list resource "pods" in API group "" '
        'in the namespace "default"'
    )
    assert whoami(secured, secured.alice) == {
        "username": "alice",
        "uid": "alice-uid",
        "groups": [AUTHENTICATED],
    }


@needs_kubectl
def test_kubectl_with_the_admin_kubeconfig(secured: Secured) -> None:
    kubeconfig = secured.kubeconfig("admin", secured.admin)
    assert file_mode(kubeconfig) == 0o600
    listed = kubectl(kubeconfig, "get", "ns", "-o", "name")
    assert "namespace/default" in listed.stdout.split()
    whoami = kubectl(kubeconfig, "auth", "whoami", "-o", "json")
    user = json.loads(whoami.stdout)["status"]["userInfo"]
    assert user["username"] == "lab-admin" and MASTERS in user["groups"]
    wrong = secured.kubeconfig("wrong-token", "not-a-token")
    refused = kubectl(wrong, "get", "ns", ok=False)
    assert refused.returncode != 0
    assert "You must be logged in to the server" in refused.stderr


def test_the_kubernetes_python_client_reads_the_kubeconfig(secured: Secured) -> None:
    kubeconfig = secured.kubeconfig("python", secured.admin)
    api = k8s_config.new_client_from_config(config_file=str(kubeconfig))
    try:
        names = [ns.metadata.name for ns in k8s_client.CoreV1Api(api).list_namespace().items]
    finally:
        api.close()
    assert "kube-system" in names


@needs_kubectl
def test_a_server_signed_by_another_ca_is_refused(secured: Secured) -> None:
    other = ensure_pki(secured.root / "other-pki")
    wrong = secured.kubeconfig("wrong-ca", secured.admin, ca_pem=other.ca_pem())
    refused = kubectl(wrong, "get", "ns", ok=False)
    assert refused.returncode != 0 and "certificate signed by unknown authority" in refused.stderr
    with pytest.raises(ApiError) as failed:
        KubeClient(secured.url, secured.admin, ca_pem=other.ca_pem()).list("namespaces")
    assert failed.value.code == 0 and "SSLError" in str(failed.value)
    with pytest.raises(requests.exceptions.SSLError):
        secured.http("GET", "/healthz", verify=str(other.ca_cert))
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(secured.url.replace("https://", "http://") + "/healthz", timeout=5)


def test_client_certificates_authenticate(secured: Secured) -> None:
    cert, key = issue_client_cert(
        secured.pki, secured.root / "carol.crt", secured.root / "carol.key", "carol", ("devs", "ops")
    )
    assert file_mode(key) == 0o600
    answer = secured.http("POST", WHOAMI, body=REVIEW, cert=(str(cert), str(key)))
    assert answer.status_code == 201
    assert answer.json()["status"]["userInfo"] == {
        "username": "carol",
        "groups": ["devs", "ops", AUTHENTICATED],
    }
    pem = (cert.read_bytes(), key.read_bytes())
    client = KubeClient(secured.url, ca_pem=secured.pki.ca_pem(), client_cert=pem)
    assert client.request("POST", WHOAMI, REVIEW)["status"]["userInfo"]["username"] == "carol"


# -- service-account tokens -----------------------------------------------------------------------


def test_impersonation_needs_permission(secured: Secured) -> None:
    refused = secured.http("GET", "/version", secured.alice, headers={"Impersonate-User": "bob"})
    assert refused.status_code == 403
    assert refused.json()["message"] == (
        'users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group "" '
        "at the cluster scope"
    )
    as_bob = whoami(secured, secured.admin, {"Impersonate-User": "bob", "Impersonate-Group": "team"})
    assert as_bob == {"username": "bob", "groups": ["team", AUTHENTICATED]}
    admin = secured.admin_client()
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    admin.request(
        "POST",
        f"{rbac}/clusterroles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "impersonate-bob"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["users"],
                    "verbs": ["impersonate"],
                    "resourceNames": ["bob"],
                }
            ],
        },
    )
    admin.request(
        "POST",
        f"{rbac}/clusterrolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "alice-impersonates-bob"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "impersonate-bob",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}],
        },
    )
    assert whoami(secured, secured.alice, {"Impersonate-User": "bob"})["username"] == "bob"
    escalate = {"Impersonate-User": "bob", "Impersonate-Group": MASTERS}
    denied = secured.http("POST", WHOAMI, secured.alice, REVIEW, escalate)
    assert denied.status_code == 403 and 'groups "system:masters" is forbidden' in denied.json()["message"]
    lone = secured.http("POST", WHOAMI, secured.admin, REVIEW, {"Impersonate-Group": "team"})
    assert lone.status_code == 400


@needs_kubectl
def test_kubectl_as_a_service_account(secured: Secured) -> None:
    kubeconfig = secured.kubeconfig("admin-as", secured.admin)
    out = kubectl(kubeconfig, "auth", "whoami", "--as", "system:serviceaccount:kube-system:ctl", "-o", "json")
    user = json.loads(out.stdout)["status"]["userInfo"]
    assert user["username"] == "system:serviceaccount:kube-system:ctl"
    assert user["groups"] == ["system:serviceaccounts", "system:serviceaccounts:kube-system", AUTHENTICATED]


# -- the command line and files ------------------------------------------------------------------


def test_the_server_refuses_to_start_without_a_way_to_authenticate(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(project_root())}
    result = subprocess.run(
        [sys.executable, "-m", "lab.api", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "lab api: the API server has no way to authenticate anyone: give --token-auth-file and "
        "--service-account-key-file (and TLS), or --insecure-allow-all for a test server"
    ]
    result = subprocess.run(
        [sys.executable, "-m", "lab.api", "--port", "0", "--token-auth-file", str(tmp_path / "none.csv")],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "cannot read the token file" in result.stderr


def test_secret_files_are_private(secured: Secured) -> None:
    assert file_mode(secured.tokens) == 0o600
    assert file_mode(secured.pki.folder) == 0o700
    for key in (secured.pki.ca_key, secured.pki.serving_key, secured.pki.sa_key):
        assert file_mode(key) == 0o600
