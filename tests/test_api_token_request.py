"""Service-account tokens: the TokenRequest API, what makes a token stop working (its pod
or service account deleted, expiry, forgery), ``kubectl create token`` and the in-cluster
client that follows a rotated token file.

One real server process (``tests.authn_support.secured_server``); nothing here starts a lab.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from lab.api.identity import AUTHENTICATED
from lab.api.pki import ensure_pki
from lab.api.sa_tokens import ServiceAccountTokens
from lab.kubeclient import ApiError, KubeClient
from tests.authn_support import (
    NS,
    REVIEW,
    UNAUTHORIZED,
    WHOAMI,
    Secured,
    kubectl,
    needs_kubectl,
    secured_server,
    whoami,
)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    with secured_server(tmp_path_factory.mktemp("sa-tokens")) as server:
        yield server


def _service_account(admin: KubeClient, name: str) -> dict[str, Any]:
    body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}
    return admin.create("serviceaccounts", body, NS)


def _pod(admin: KubeClient, name: str, account: str) -> dict[str, Any]:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"serviceAccountName": account, "containers": [{"name": "c", "image": "busybox"}]},
    }
    return admin.create("pods", body, NS)


def _token_request(
    server: Secured, account: str, spec: dict[str, Any], token: str | None = None
) -> requests.Response:
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
    return server.http(
        "POST", f"/api/v1/namespaces/{NS}/serviceaccounts/{account}/token", token or server.admin, body
    )


def test_a_bound_token_works_until_its_pod_is_deleted(secured: Secured) -> None:
    admin = secured.admin_client()
    account = _service_account(admin, "app")
    pod = _pod(admin, "app-0", "app")
    answer = _token_request(
        secured, "app", {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "app-0"}}
    )
    assert answer.status_code == 201, answer.text
    issued = answer.json()
    assert issued["kind"] == "TokenRequest" and issued["spec"]["expirationSeconds"] == 3607
    assert issued["spec"]["boundObjectRef"]["uid"] == pod["metadata"]["uid"]
    token = issued["status"]["token"]
    expires = issued["status"]["expirationTimestamp"]
    assert expires.endswith("Z") and time.strftime("%Y-%m-%dT", time.gmtime(time.time() + 3607)) in expires
    user = whoami(secured, token)
    assert user["username"] == "system:serviceaccount:default:app"
    assert user["uid"] == account["metadata"]["uid"]
    assert user["groups"] == ["system:serviceaccounts", "system:serviceaccounts:default", AUTHENTICATED]
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == ["app-0"]
    assert user["extra"]["authentication.kubernetes.io/pod-uid"] == [pod["metadata"]["uid"]]
    # authenticated, but a service account has no permissions of its own
    assert secured.http("GET", "/api/v1/namespaces/default/secrets", token).status_code == 403
    admin.delete("pods", "app-0", NS, grace=0)
    assert admin.get_or_none("pods", "app-0", NS) is None
    assert secured.http("POST", WHOAMI, token, REVIEW).status_code == 401
    _pod(admin, "app-0", "app")  # same name, new uid: the old token stays invalid
    assert secured.http("POST", WHOAMI, token, REVIEW).status_code == 401


def test_a_token_stops_working_when_its_service_account_is_deleted(secured: Secured) -> None:
    admin = secured.admin_client()
    _service_account(admin, "short-lived")
    token = _token_request(secured, "short-lived", {"expirationSeconds": 600}).json()["status"]["token"]
    assert whoami(secured, token)["username"] == "system:serviceaccount:default:short-lived"
    admin.delete("serviceaccounts", "short-lived", NS)
    assert secured.http("POST", WHOAMI, token, REVIEW).status_code == 401
    _service_account(admin, "short-lived")
    assert secured.http("POST", WHOAMI, token, REVIEW).status_code == 401


def test_expired_forged_and_altered_tokens_are_unauthorized(secured: Secured) -> None:
    admin = secured.admin_client()
    account = _service_account(admin, "checked")
    uid = account["metadata"]["uid"]
    signer = ServiceAccountTokens.from_key_file(secured.pki.sa_key)
    good, _ = signer.issue(NS, "checked", uid, 600)
    assert whoami(secured, good)["username"] == "system:serviceaccount:default:checked"
    expired, _ = signer.issue(NS, "checked", uid, 600, now=time.time() - 700)
    forged, _ = ServiceAccountTokens.from_key_file(ensure_pki(secured.root / "forger").sa_key).issue(
        NS, "checked", uid, 600
    )
    head, body, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["kubernetes.io"]["serviceaccount"]["name"] = "app"
    altered_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    for bad in (expired, forged, f"{head}.{altered_body}.{sig}", f"{head}.{body}.{sig[:-4]}AAAA"):
        answer = secured.http("POST", WHOAMI, bad, REVIEW)
        assert answer.status_code == 401 and answer.json() == UNAUTHORIZED


def test_token_request_refusals(secured: Secured) -> None:
    admin = secured.admin_client()
    _service_account(admin, "other-sa")
    _pod(admin, "other-pod", "other-sa")
    too_short = _token_request(secured, "other-sa", {"expirationSeconds": 60})
    assert too_short.status_code == 422
    assert too_short.json()["message"] == (
        'TokenRequest.authentication.k8s.io "other-sa" is invalid: spec.expirationSeconds: '
        "Invalid value: 60: may not specify a duration less than 10 minutes"
    )
    assert _token_request(secured, "missing-sa", {}).status_code == 404
    missing_pod = _token_request(secured, "other-sa", {"boundObjectRef": {"kind": "Pod", "name": "nope"}})
    assert missing_pod.status_code == 404
    stale = {"kind": "Pod", "name": "other-pod", "uid": "0000"}
    assert _token_request(secured, "other-sa", {"boundObjectRef": stale}).status_code == 409
    _service_account(admin, "third-sa")
    wrong = _token_request(secured, "third-sa", {"boundObjectRef": {"kind": "Pod", "name": "other-pod"}})
    assert wrong.status_code == 400 and "different serviceaccount" in wrong.json()["message"]
    secret = _token_request(secured, "other-sa", {"boundObjectRef": {"kind": "Secret", "name": "s"}})
    assert secret.status_code == 422
    forbidden = _token_request(secured, "other-sa", {}, token=secured.alice)
    assert forbidden.status_code == 403
    assert 'cannot create resource "serviceaccounts/token"' in forbidden.json()["message"]


@needs_kubectl
def test_kubectl_create_token_and_discovery(secured: Secured) -> None:
    admin = secured.admin_client()
    _service_account(admin, "cli-sa")
    kubeconfig = secured.kubeconfig("admin-cli", secured.admin)
    token = kubectl(kubeconfig, "create", "token", "cli-sa", "--duration", "15m").stdout.strip()
    assert whoami(secured, token)["username"] == "system:serviceaccount:default:cli-sa"
    pod = _pod(admin, "cli-pod", "cli-sa")
    bound = kubectl(
        kubeconfig,
        "create",
        "token",
        "cli-sa",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "cli-pod",
    ).stdout.strip()
    extra = whoami(secured, bound)["extra"]
    assert extra["authentication.kubernetes.io/pod-uid"] == [pod["metadata"]["uid"]]
    short = kubectl(kubeconfig, "create", "token", "cli-sa", "--duration", "1m", ok=False)
    assert short.returncode != 0 and "may not specify a duration less than 10 minutes" in short.stderr
    as_sa = secured.kubeconfig("cli-sa", token)
    assert kubectl(as_sa, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout == (
        "system:serviceaccount:default:cli-sa"
    )
    resources = secured.http("GET", "/api/v1", secured.admin).json()["resources"]
    entry = next(r for r in resources if r["name"] == "serviceaccounts/token")
    assert (entry["group"], entry["version"], entry["kind"], entry["verbs"]) == (
        "authentication.k8s.io",
        "v1",
        "TokenRequest",
        ["create"],
    )
    group = secured.http("GET", "/apis/authentication.k8s.io/v1", secured.admin).json()
    assert [r["name"] for r in group["resources"]] == ["selfsubjectreviews"]


def test_in_cluster_client_follows_a_rotated_token(secured: Secured) -> None:
    admin = secured.admin_client()
    _service_account(admin, "pod-sa")
    folder = secured.root / "pod-serviceaccount"
    folder.mkdir(mode=0o700)
    first = _token_request(secured, "pod-sa", {}).json()["status"]["token"]
    (folder / "token").write_text(first)
    (folder / "ca.crt").write_bytes(secured.pki.ca_pem())
    (folder / "namespace").write_text(NS)
    host, port = secured.url.removeprefix("https://").rsplit(":", 1)
    env = {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": port,
        "LAB_SERVICEACCOUNT_DIR": str(folder),
    }
    client = KubeClient.in_cluster(env)
    assert client.namespace == NS
    assert client.request("POST", WHOAMI, REVIEW)["status"]["userInfo"]["username"].endswith(":pod-sa")
    admin.delete("serviceaccounts", "pod-sa", NS)
    _service_account(admin, "pod-sa")
    with pytest.raises(ApiError) as stale:
        client.request("POST", WHOAMI, REVIEW)
    assert stale.value.code == 401
    rotated = _token_request(secured, "pod-sa", {}).json()["status"]["token"]
    (folder / "token.new").write_text(rotated)
    (folder / "token.new").replace(folder / "token")
    assert client.request("POST", WHOAMI, REVIEW)["status"]["userInfo"]["username"].endswith(":pod-sa")


# -- impersonation -----------------------------------------------------------------------------
