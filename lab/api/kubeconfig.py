"""A kubeconfig for the lab API server, usable by kubectl and the Python client.

Plain HTTP, one cluster, one context (``lab``) and a user with a dummy bearer token
(the server does not authenticate; the policy decides what is allowed). The file is
JSON, which every kubeconfig reader accepts as YAML, and is written with mode 0600.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["write_kubeconfig"]

TOKEN = "lab-token"  # noqa: S105 - a placeholder; the lab server does not authenticate


def write_kubeconfig(path: Path, url: str, namespace: str = "default", context: str = "lab") -> Path:
    """Write a kubeconfig at ``path`` pointing at ``url`` with ``namespace`` as default; returns ``path``."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": url}}],
        "users": [{"name": f"{context}-admin", "user": {"token": TOKEN}}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": context, "user": f"{context}-admin", "namespace": namespace},
            }
        ],
        "current-context": context,
        "preferences": {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(config, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)
    return path
