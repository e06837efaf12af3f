"""A kubeconfig for the lab API server, usable by kubectl, the Python client and chaosk8s.

One cluster, one context (``lab`` by default) and one user. For an HTTPS server the
cluster carries the CA as ``certificate-authority-data`` (base64 PEM) and the user its
bearer ``token``; a plain-HTTP test server needs neither. The file is JSON, which every
kubeconfig reader accepts as YAML, and is written atomically with mode 0600 (it holds a
credential).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from lab.api.pki import write_private

__all__ = ["write_kubeconfig"]


def write_kubeconfig(
    path: Path,
    url: str,
    namespace: str = "default",
    context: str = "lab",
    token: str = "",
    ca_pem: bytes | None = None,
    user: str | None = None,
) -> Path:
    """Write a kubeconfig at ``path`` for ``url``; returns ``path``.

    ``namespace`` is the context's default namespace; ``token`` the user's bearer token
    (none when empty); ``ca_pem`` the CA that signed the server's certificate; ``user`` the
    user entry's name (default ``<context>-admin``).
    """
    cluster: dict[str, Any] = {"server": url}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode("ascii")
    user_name = user or f"{context}-admin"
    credentials: dict[str, Any] = {"token": token} if token else {}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": cluster}],
        "users": [{"name": user_name, "user": credentials}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": context, "user": user_name, "namespace": namespace},
            }
        ],
        "current-context": context,
        "preferences": {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_private(path, (json.dumps(config, indent=2) + "\n").encode())
