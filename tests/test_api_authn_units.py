"""Authentication building blocks without a server: certificates, the static token file,
service-account JWTs, impersonation rules, the settings check and kubeconfig reading.

The server-level behaviour (401/403, TLS, TokenRequest, kubectl) is in
``tests/test_api_authn.py``.
"""

from __future__ import annotations

import base64
import json
import ssl
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from multidict import CIMultiDict, CIMultiDictProxy

from lab.api.authn import check_settings, is_resource_path
from lab.api.authz import Attributes
from lab.api.identity import AUTHENTICATED, MASTERS, UNAUTHENTICATED, UserInfo
from lab.api.impersonation import impersonate
from lab.api.kubeconfig import write_kubeconfig
from lab.api.pki import ensure_pki, server_ssl_context
from lab.api.sa_tokens import InvalidToken, ServiceAccountTokens
from lab.api.settings import Settings
from lab.api.status import ApiError
from lab.api.tokens import TokenFile, ensure_token, read_token_file
from lab.errors import LabError
from lab.kubeclient import KubeClient
from lab.kubeclient_tls import TokenSource


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- pki -------------------------------------------------------------------------------------------


def test_ensure_pki_creates_private_files_and_reuses_them(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki")
    assert _mode(pki.folder) == 0o700
    for key in (pki.ca_key, pki.serving_key, pki.sa_key):
        assert _mode(key) == 0o600, key
    ca = x509.load_pem_x509_certificate(pki.ca_pem())
    serving = x509.load_pem_x509_certificate(pki.serving_cert.read_bytes())
    serving.verify_directly_issued_by(ca)
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days >= 3649
    assert 364 <= (serving.not_valid_after_utc - serving.not_valid_before_utc).days <= 366
    before = {p: p.read_bytes() for p in (pki.ca_cert, pki.serving_cert, pki.sa_key)}
    again = ensure_pki(tmp_path / "pki")
    assert {p: p.read_bytes() for p in before} == before, "a valid PKI must be reused"
    assert again == pki
    context = server_ssl_context(pki.serving_cert, pki.serving_key)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_ensure_pki_remakes_what_is_no_longer_valid(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki")
    ca, sa = pki.ca_pem(), pki.sa_key.read_bytes()
    serving = pki.serving_cert.read_bytes()
    ensure_pki(tmp_path / "pki", hosts=("127.0.0.1", "localhost", "::1", "lab.example"))
    assert pki.ca_pem() == ca and pki.sa_key.read_bytes() == sa
    assert pki.serving_cert.read_bytes() != serving, "a new host needs a new serving certificate"
    pki.ca_key.write_text("garbage")
    ensure_pki(tmp_path / "pki")
    new_ca = x509.load_pem_x509_certificate(pki.ca_pem())
    assert pki.ca_pem() != ca
    x509.load_pem_x509_certificate(pki.serving_cert.read_bytes()).verify_directly_issued_by(new_ca)
    assert pki.sa_key.read_bytes() == sa, "the signing key does not depend on the CA"


# -- static tokens ---------------------------------------------------------------------------------


def test_ensure_token_adds_once_and_the_file_authenticates(tmp_path: Path) -> None:
    path = tmp_path / "auth" / "tokens.csv"
    admin = ensure_token(path, "lab-admin", "lab-admin", (MASTERS,))
    node = ensure_token(path, "system:node:n1", "system:node:n1", ("system:nodes",))
    assert _mode(path) == 0o600
    assert len(admin) >= 43 and admin != node
    assert ensure_token(path, "lab-admin", "lab-admin", (MASTERS,)) == admin
    assert path.read_text().splitlines()[0] == f"{admin},lab-admin,lab-admin,system:masters"
    tokens = TokenFile(path)
    assert tokens.lookup(admin) == UserInfo("lab-admin", "lab-admin", (MASTERS, AUTHENTICATED))
    assert tokens.lookup(node) == UserInfo(
        "system:node:n1", "system:node:n1", ("system:nodes", AUTHENTICATED)
    )
    assert tokens.lookup(admin[:-1]) is None and tokens.lookup("") is None
    # groups change: same token, new groups, seen by the running reader
    assert ensure_token(path, "system:node:n1", "system:node:n1", ("system:nodes", "extra")) == node
    found = tokens.lookup(node)
    assert found is not None and found.groups == ("system:nodes", "extra", AUTHENTICATED)


def test_token_file_reads_kube_apiserver_csv_and_refuses_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "tokens.csv"
    path.write_text('# comment\n\nt1,alice,u1,"g1,g2"\nt2,bob,u2\nt3,carol,u3,,ignored\n')
    rows = read_token_file(path)
    assert [(r.user, r.groups) for r in rows] == [("alice", ("g1", "g2")), ("bob", ()), ("carol", ())]
    reader = TokenFile(path)
    assert reader.lookup("t2") == UserInfo("bob", "u2", (AUTHENTICATED,))
    path.write_text("t1,alice\n")
    with pytest.raises(LabError, match="line 1: a token line needs at least token,user,uid"):
        read_token_file(path)
    assert reader.lookup("t2") is None, "a broken file authenticates nobody until it is fixed"
    with pytest.raises(LabError, match="cannot read the token file"):
        TokenFile(tmp_path / "missing.csv")


def test_ensure_token_is_safe_from_several_threads(tmp_path: Path) -> None:
    path = tmp_path / "tokens.csv"
    results: dict[str, str] = {}

    def add(user: str) -> None:
        results[user] = ensure_token(path, user, user, ())

    threads = [threading.Thread(target=add, args=(f"user{i}",)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = {row.user: row.token for row in read_token_file(path)}
    assert rows == results


# -- service-account JWTs ----------------------------------------------------------------------


def _segments(token: str) -> list[str]:
    return token.split(".")


def _b64json(part: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def test_service_account_token_claims_and_verification(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki")
    tokens = ServiceAccountTokens.from_key_file(pki.sa_key)
    token, expires = tokens.issue("ns1", "app", "sa-uid", 3607, pod=("p1", "pod-uid"))
    header, claims = (_b64json(p) for p in _segments(token)[:2])
    assert header == {"alg": "ES256", "kid": tokens.key_id}
    assert claims["sub"] == "system:serviceaccount:ns1:app"
    assert claims["iss"] == "https://kubernetes.default.svc.cluster.local" and claims["aud"] == [
        claims["iss"]
    ]
    assert claims["exp"] == expires == claims["iat"] + 3607 and claims["nbf"] == claims["iat"]
    assert claims["kubernetes.io"] == {
        "namespace": "ns1",
        "serviceaccount": {"name": "app", "uid": "sa-uid"},
        "pod": {"name": "p1", "uid": "pod-uid"},
    }
    seen = tokens.verify(token)
    assert (seen.namespace, seen.name, seen.uid, seen.pod_name, seen.pod_uid) == (
        "ns1",
        "app",
        "sa-uid",
        "p1",
        "pod-uid",
    )


def test_service_account_tokens_refuse_forgery_and_time(tmp_path: Path) -> None:
    tokens = ServiceAccountTokens.from_key_file(ensure_pki(tmp_path / "a").sa_key)
    other = ServiceAccountTokens.from_key_file(ensure_pki(tmp_path / "b").sa_key)
    token, _ = tokens.issue("ns1", "app", "uid", 600)
    head, body, sig = _segments(token)
    claims = _b64json(body)
    claims["kubernetes.io"]["namespace"] = "kube-system"
    altered = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    none_header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    cases = {
        "another key": other.issue("ns1", "app", "uid", 600)[0],
        "altered claims": f"{head}.{altered}.{sig}",
        "alg none": f"{none_header}.{body}.",
        "truncated": f"{head}.{body}",
        "wrong audience": tokens.issue("ns1", "app", "uid", 600, audiences=["vault"])[0],
        "long expired": tokens.issue("ns1", "app", "uid", 600, now=time.time() - 700)[0],
        "not yet valid": tokens.issue("ns1", "app", "uid", 600, now=time.time() + 300)[0],
    }
    for why, bad in cases.items():
        with pytest.raises(InvalidToken):
            tokens.verify(bad)
            pytest.fail(f"{why}: accepted")
    # go-jose's 60 s leeway: a token that expired 30 s ago is still good
    recent = tokens.issue("ns1", "app", "uid", 600, now=time.time() - 630)[0]
    assert tokens.verify(recent).name == "app"


# -- impersonation -----------------------------------------------------------------------------


class _Recorder:
    def __init__(self, allow: bool) -> None:
        self.allow = allow
        self.seen: list[Attributes] = []

    def check(self, attrs: Attributes) -> None:
        self.seen.append(attrs)
        if not self.allow:
            raise attrs.denial()


def _headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_impersonation_checks_each_attribute_and_builds_the_user() -> None:
    actor = UserInfo("alice", "", (AUTHENTICATED,))
    allow = _Recorder(True)
    user = impersonate(
        _headers(
            ("Impersonate-User", "bob"),
            ("Impersonate-Group", "g1"),
            ("Impersonate-Group", "g2"),
            ("Impersonate-Uid", "u-1"),
            ("Impersonate-Extra-Scopes%2FOne", "view"),
        ),
        actor,
        allow,
    )
    assert user == UserInfo("bob", "u-1", ("g1", "g2", AUTHENTICATED), (("scopes/one", ("view",)),))
    asked = [(a.verb, a.group, a.resource, a.subresource, a.namespace, a.name) for a in allow.seen]
    assert asked == [
        ("impersonate", "", "users", "", "", "bob"),
        ("impersonate", "", "groups", "", "", "g1"),
        ("impersonate", "", "groups", "", "", "g2"),
        ("impersonate", "authentication.k8s.io", "uids", "", "", "u-1"),
        ("impersonate", "authentication.k8s.io", "userextras", "scopes/one", "", "view"),
    ]
    assert all(a.user == actor for a in allow.seen)
    sa = impersonate(_headers(("Impersonate-User", "system:serviceaccount:ns1:app")), actor, allow)
    assert sa.groups == ("system:serviceaccounts", "system:serviceaccounts:ns1", AUTHENTICATED)
    last = allow.seen[-1]
    assert (last.resource, last.namespace, last.name) == ("serviceaccounts", "ns1", "app")
    anonymous = impersonate(_headers(("Impersonate-User", "system:anonymous")), actor, allow)
    assert anonymous.groups == (UNAUTHENTICATED,)
    assert impersonate(_headers(), actor, allow) is actor


def test_impersonation_refusals() -> None:
    actor = UserInfo("alice", "", (AUTHENTICATED,))
    with pytest.raises(ApiError) as denied:
        impersonate(_headers(("Impersonate-User", "bob")), actor, _Recorder(False))
    assert denied.value.code == 403
    assert denied.value.message == (
        'users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group "" '
        "at the cluster scope"
    )
    with pytest.raises(ApiError) as lone:
        impersonate(_headers(("Impersonate-Group", "system:masters")), actor, _Recorder(True))
    assert lone.value.code == 400 and "without impersonating a user" in lone.value.message


# -- settings, paths, kubeconfig, client ---------------------------------------------------------


def test_check_settings(tmp_path: Path) -> None:
    plain = check_settings(Settings(), require_auth=False)
    assert plain.insecure_allow_all
    with pytest.raises(LabError, match="no way to authenticate anyone: give --token-auth-file"):
        check_settings(Settings(), require_auth=True)
    with pytest.raises(LabError, match="cannot be combined with --token-auth-file"):
        check_settings(Settings(token_auth_file=tmp_path / "t", insecure_allow_all=True), require_auth=True)
    with pytest.raises(LabError, match="needs both --tls-cert-file and --tls-private-key-file"):
        check_settings(Settings(tls_cert_file=tmp_path / "c", token_auth_file=tmp_path / "t"), False)
    signing_only = Settings(service_account_key_file=tmp_path / "k", insecure_allow_all=True)
    assert check_settings(signing_only, require_auth=True).insecure_allow_all


def test_resource_paths() -> None:
    resource = ["/api/v1/pods", "/api/v1/namespaces/a/pods/b/log", "/apis/apps/v1/deployments"]
    other = ["/", "/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1", "/version", "/openapi/v2"]
    assert all(is_resource_path(p) for p in resource)
    assert not any(is_resource_path(p) for p in other)


def test_kubeconfig_carries_ca_and_token_and_the_client_reads_it(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki")
    path = write_kubeconfig(
        tmp_path / "kc", "https://127.0.0.1:1", token="tok", ca_pem=pki.ca_pem(), user="lab-admin"
    )
    assert _mode(path) == 0o600
    doc = json.loads(path.read_text())
    assert base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]) == pki.ca_pem()
    assert doc["users"] == [{"name": "lab-admin", "user": {"token": "tok"}}]
    client = KubeClient.from_kubeconfig(path)
    assert client.server == "https://127.0.0.1:1" and client._headers()["Authorization"] == "Bearer tok"
    # a file CA and a token file relative to the kubeconfig
    (tmp_path / "token").write_text("from-file\n")
    doc["clusters"][0]["cluster"] = {"server": "https://127.0.0.1:1", "certificate-authority": "pki/ca.crt"}
    doc["users"][0]["user"] = {"tokenFile": "token"}
    path.write_text(json.dumps(doc))
    assert KubeClient.from_kubeconfig(path)._headers()["Authorization"] == "Bearer from-file"
    plain = json.loads(write_kubeconfig(tmp_path / "plain", "http://127.0.0.1:1").read_text())
    assert (
        plain["users"][0]["user"] == {}
        and "certificate-authority-data" not in plain["clusters"][0]["cluster"]
    )


def test_token_source_rereads_a_rotated_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("one\n")
    source = TokenSource(token_file=path)
    assert source.current() == "one"
    tmp = tmp_path / "token.new"
    tmp.write_text("two-rotated\n")
    tmp.replace(path)
    assert source.current() == "two-rotated"
    path.unlink()
    assert source.current() == "two-rotated", "an unreadable file keeps the last token"
    with pytest.raises(LabError, match="cannot read the token file"):
        TokenSource(token_file=tmp_path / "missing")


def test_in_cluster_needs_the_environment(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined"):
        KubeClient.in_cluster({})
    env = {"KUBERNETES_SERVICE_HOST": "::1", "KUBERNETES_SERVICE_PORT": "6443"}
    with pytest.raises(LabError, match=r"has no token and ca\.crt"):
        KubeClient.in_cluster({**env, "LAB_SERVICEACCOUNT_DIR": str(tmp_path)})
    pki = ensure_pki(tmp_path / "pki")
    (tmp_path / "token").write_text("t")
    (tmp_path / "ca.crt").write_bytes(pki.ca_pem())
    (tmp_path / "namespace").write_text("tenants")
    client = KubeClient.in_cluster({**env, "LAB_SERVICEACCOUNT_DIR": str(tmp_path)})
    assert client.server == "https://[::1]:6443" and client.namespace == "tenants"
