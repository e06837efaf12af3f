"""The secured API server the authentication tests share, and their clients.

:func:`secured_server` starts one real ``python -m lab.api`` process on a free port with
HTTPS (a CA of its own), a static token file, a service-account signing key and
client-certificate authentication; :func:`kubectl` runs the real kubectl with a kubeconfig
and a HOME of its own.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from lab.api.identity import AUTHENTICATED, MASTERS
from lab.api.kubeconfig import write_kubeconfig
from lab.api.pki import Pki, ensure_pki
from lab.api.process import ApiServerProcess, start_api_server
from lab.api.tokens import ensure_token
from lab.kubeclient import KubeClient

__all__ = [
    "NS",
    "REVIEW",
    "UNAUTHORIZED",
    "WHOAMI",
    "Secured",
    "file_mode",
    "kubectl",
    "needs_kubectl",
    "secured_server",
    "whoami",
    "whoami_role",
]

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")

NS = "default"
UNAUTHORIZED = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "Unauthorized",
    "reason": "Unauthorized",
    "code": 401,
}
WHOAMI = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
REVIEW = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}


@dataclass
class Secured:
    """The server and what it trusts."""

    api: ApiServerProcess
    pki: Pki
    root: Path
    tokens: Path
    admin: str
    alice: str

    @property
    def url(self) -> str:
        return self.api.url

    def http(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        return requests.request(
            method,
            self.url + path,
            json=body,
            headers=sent,
            verify=kwargs.pop("verify", str(self.pki.ca_cert)),
            timeout=10,
            **kwargs,
        )

    def admin_client(self) -> KubeClient:
        return KubeClient(self.url, self.admin, ca_pem=self.pki.ca_pem())

    def kubeconfig(self, name: str, token: str, ca_pem: bytes | None = None) -> Path:
        return write_kubeconfig(
            self.root / f"{name}.kubeconfig", self.url, NS, token=token, ca_pem=ca_pem or self.pki.ca_pem()
        )


def kubectl(kubeconfig: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    home = kubeconfig.parent / f"home-{kubeconfig.stem}"
    home.mkdir(exist_ok=True)
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)},
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if ok:
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result


@contextmanager
def secured_server(root: Path) -> Iterator[Secured]:
    """The server of these tests in ``root``: HTTPS, a token file (``lab-admin`` in
    ``system:masters``, ``alice`` without groups), the PKI's signing key, client certificates
    signed by its CA; every authenticated user may create SelfSubjectReviews."""
    pki = ensure_pki(root / "pki")
    tokens = root / "auth" / "tokens.csv"
    admin = ensure_token(tokens, "lab-admin", "lab-admin", (MASTERS, AUTHENTICATED))
    alice = ensure_token(tokens, "alice", "alice-uid", ())
    api = start_api_server(
        root / "data", pki=pki, token_auth_file=tokens, client_ca_file=pki.ca_cert, pod_removal_grace=0
    )
    try:
        server = Secured(api, pki, root, tokens, admin, alice)
        whoami_role(server.admin_client())
        yield server
    finally:
        api.stop()


def whoami_role(admin: KubeClient) -> None:
    """What Kubernetes' system:basic-user gives every authenticated user: SelfSubjectReviews."""
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    admin.request(
        "POST",
        f"{rbac}/clusterroles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "test-whoami"},
            "rules": [
                {
                    "apiGroups": ["authentication.k8s.io"],
                    "resources": ["selfsubjectreviews"],
                    "verbs": ["create"],
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
            "metadata": {"name": "test-whoami"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "test-whoami",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": AUTHENTICATED}],
        },
    )


def whoami(server: Secured, token: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    answer = server.http("POST", WHOAMI, token, REVIEW, headers)
    assert answer.status_code == 201, answer.text
    user: dict[str, Any] = answer.json()["status"]["userInfo"]
    return user


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- anonymous, tokens, TLS ---------------------------------------------------------------------
