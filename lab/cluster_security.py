"""Who may talk to the lab's API, with which credentials, and who may read its files.

At ``lab up``, before anything starts:

- the lab's folders get their modes (:func:`protect_folders`): the lab folder, ``cluster/``,
  ``volumes/`` and ``nodes/`` are 0711 (others may traverse, not list: PostgreSQL runs as
  ``postgres`` and host-command pods as ``nobody``, and both must reach their own folders
  below, which a container runtime would bind-mount instead); ``api/`` (the stored objects,
  Secrets included), ``pki/``, ``logs/``, ``pids/`` and ``secrets/`` are 0700;
- ``pki/`` gets a CA, the API server's serving certificate and the service-account signing
  key (:func:`lab.api.pki.ensure_pki`) and ``tokens.csv``, kube-apiserver's static token
  file, holding one bearer token per identity;
- the admin kubeconfig (``.lab/kubeconfig``, 0600) carries the CA and the token of
  ``lab-admin`` in ``system:masters``; each kubelet gets its own kubeconfig
  (``nodes/<node>/kubeconfig``, 0600) as ``system:node:<node>`` in ``system:nodes``.

The control plane mints its own tokens in the same file for the controllers
(``system:kube-controller-manager``), the scheduler (``system:kube-scheduler``) and its
bootstrap client (``system:apiserver`` in ``system:masters``). Pods authenticate as their
service account with tokens the kubelet requests (the TokenRequest API). Everything here is
idempotent: a second ``up`` reuses the CA, keys and tokens, so kubeconfigs stay valid.
"""

from __future__ import annotations

import os
from pathlib import Path

from lab.api.identity import AUTHENTICATED, MASTERS
from lab.api.kubeconfig import write_kubeconfig
from lab.api.pki import Pki, ensure_pki
from lab.api.tokens import ensure_token
from lab.cluster_layout import Layout
from lab.controlplane import TOKEN_FILE
from lab.kubeclient import KubeClient

__all__ = [
    "ADMIN",
    "NODES_GROUP",
    "admin_client",
    "lab_pki",
    "node_user",
    "protect_folders",
    "token_file",
    "write_admin_kubeconfig",
    "write_node_kubeconfig",
]

ADMIN = "lab-admin"
NODES_GROUP = "system:nodes"

_TRAVERSE_ONLY = 0o711
_PRIVATE = 0o700


def _chmod(path: Path, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_uid == os.geteuid():
        path.chmod(mode)


def protect_folders(layout: Layout) -> None:
    """Create the lab's folders with their modes (see the module docstring)."""
    _chmod(layout.lab, _TRAVERSE_ONLY)
    for folder in (layout.root, layout.volumes, layout.nodes):
        _chmod(folder, _TRAVERSE_ONLY)
    for folder in (layout.api, layout.pki, layout.logs, layout.pids, layout.secrets):
        _chmod(folder, _PRIVATE)


def lab_pki(layout: Layout) -> Pki:
    """The lab's CA, serving certificate and service-account key (created on first use)."""
    return ensure_pki(layout.pki)


def token_file(layout: Layout) -> Path:
    """kube-apiserver's static token file of this lab (mode 0600)."""
    return layout.pki / TOKEN_FILE


def node_user(node: str) -> str:
    return f"system:node:{node}"


def write_admin_kubeconfig(layout: Layout, url: str) -> Path:
    """``.lab/kubeconfig``: the CA and ``lab-admin``'s token (``system:masters``), mode 0600."""
    pki = lab_pki(layout)
    token = ensure_token(token_file(layout), ADMIN, ADMIN, (MASTERS, AUTHENTICATED))
    return write_kubeconfig(layout.kubeconfig, url, token=token, ca_pem=pki.ca_pem(), user=ADMIN)


def write_node_kubeconfig(layout: Layout, node: str, url: str) -> Path:
    """The kubelet's kubeconfig as ``system:node:<node>`` (its own token), mode 0600."""
    pki = lab_pki(layout)
    user = node_user(node)
    token = ensure_token(token_file(layout), user, user, (NODES_GROUP, AUTHENTICATED))
    path = layout.node_kubeconfig(node)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_kubeconfig(path, url, namespace="default", token=token, ca_pem=pki.ca_pem(), user=user)


def admin_client(layout: Layout, timeout: float = 10.0) -> KubeClient:
    """A client with the admin kubeconfig (the lab command line's own)."""
    return KubeClient.from_kubeconfig(layout.kubeconfig, timeout=timeout)
