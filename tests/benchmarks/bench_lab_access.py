"""How ``bench_lab`` reaches its lone API servers: as the lab serves (TLS, tokens, RBAC) or plain.

``--transport tls`` (the default, what every lab runs) starts the server with a CA and
serving certificate, a static token file and RBAC: the timed requests come from
``bench-user``, who is not in ``system:masters`` and is allowed by a ClusterRoleBinding, so
every request pays for TLS, the token lookup and an RBAC decision. The peer serves the
same certificate, so the ratio is over the same TLS stack. ``--transport plain`` is the
test server without credentials (``--insecure-allow-all``), what the lab served before it
had authentication: the same measurements then show what TLS and authorization cost.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import requests

from lab.api.identity import AUTHENTICATED, MASTERS
from lab.api.pki import Pki, ensure_pki
from lab.api.process import ApiServerProcess, start_api_server
from lab.api.tokens import ensure_token

__all__ = ["TRANSPORTS", "Access", "peer_tls", "start_server"]

TRANSPORTS = ("tls", "plain")
USER = "bench-user"
_ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRole",
    "metadata": {"name": "bench"},
    "rules": [
        {"apiGroups": [""], "resources": ["pods", "pods/status"], "verbs": ["*"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "create"]},
        # the bench's pods name the engine image, which runs as the kubelet's user
        {
            "apiGroups": ["policy"],
            "resources": ["podsecuritypolicies"],
            "resourceNames": ["privileged"],
            "verbs": ["use"],
        },
    ],
}
_BINDING = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRoleBinding",
    "metadata": {"name": "bench"},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "bench"},
    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
}


@dataclass
class Access:
    """A running server and how to reach it: ``session()`` as ``bench-user``, ``session(admin=True)``."""

    server: ApiServerProcess
    transport: str
    ca_file: Path | None = None
    admin_token: str = ""
    user_token: str = ""

    @property
    def url(self) -> str:
        return self.server.url

    def session(self, admin: bool = False) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the lab's CA
        if self.ca_file is not None:
            session.verify = str(self.ca_file)
        token = self.admin_token if admin else self.user_token
        if token:
            session.headers["Authorization"] = f"Bearer {token}"
        return session


def start_server(data: Path, transport: str) -> Access:
    """Start a lone API server over ``data`` with ``transport`` (see the module docstring)."""
    if transport == "plain":
        return Access(start_api_server(data, pod_removal_grace=0), transport)
    pki = ensure_pki(data.parent / f"{data.name}-pki")
    tokens = pki.folder / "tokens.csv"
    admin = ensure_token(tokens, "bench-admin", "bench-admin", (MASTERS, AUTHENTICATED))
    user = ensure_token(tokens, USER, USER, (AUTHENTICATED,))
    server = start_api_server(data, pod_removal_grace=0, pki=pki, token_auth_file=tokens)
    access = Access(server, transport, pki.ca_cert, admin, user)
    setup = access.session(admin=True)
    try:
        for path, body in (
            ("/apis/rbac.authorization.k8s.io/v1/clusterroles", _ROLE),
            ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", _BINDING),
        ):
            headers = {"Content-Type": "application/json"}
            resp = setup.post(server.url + path, data=json.dumps(body), headers=headers, timeout=30)
            if resp.status_code != 201:
                raise RuntimeError(f"POST {path}: {resp.status_code} {resp.text[:200]}")
    except BaseException:
        server.stop()  # started here, so stopped here whatever went wrong
        raise
    return access


def peer_tls(access: Access, folder: Path) -> None:
    """Give the peer (``folder``) the server's certificate, so it serves the same TLS."""
    if access.transport != "tls":
        return
    pki = Pki.at(Path(str(access.ca_file)).parent)
    shutil.copyfile(pki.serving_cert, folder / "tls.crt")
    shutil.copyfile(pki.serving_key, folder / "tls.key")
    (folder / "tls.key").chmod(0o600)
