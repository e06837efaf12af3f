"""How the kubelet reaches the API server: its kubeconfig (server, token, CA), or a bare URL.

A lab kubelet is started with ``--kubeconfig FILE``, its own credential as
``system:node:<node>`` and the CA that signed the API server's certificate, as a real
kubelet is. :func:`api_access` reads the current context of that file (JSON or YAML):
``server``, and through :func:`lab.kubeclient_tls.kubeconfig_credentials` the user's
credential and the cluster's ``certificate-authority-data`` (or ``certificate-authority``,
a file). The CA is kept as PEM bytes because the kubelet hands it on to pods as their ``ca.crt``
(:mod:`lab.kubelet.sa_token`). ``--server URL`` (with an optional ``--token``) is for bare
test servers that do not authenticate. Clients are made by
:meth:`ApiAccess.client`, through :meth:`lab.kubeclient.KubeClient.from_kubeconfig` when
there is a kubeconfig, so TLS verification is the client's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lab.errors import LabError
from lab.kubeclient import KubeClient
from lab.kubeclient_tls import kubeconfig_credentials

__all__ = ["ApiAccess", "api_access"]


@dataclass(frozen=True)
class ApiAccess:
    """The API server's URL, the bearer token, the CA (PEM, empty: none) and the kubeconfig it came from."""

    server: str
    token: str = ""
    ca_pem: bytes = b""
    kubeconfig: Path | None = None
    #: The kubeconfig gives a credential (a token, a token file or a client certificate).
    kubeconfig_credential: bool = False

    @property
    def has_credentials(self) -> bool:
        """The kubelet authenticates with a credential of its own, as every real kubelet does."""
        return bool(self.token) or self.kubeconfig_credential

    def client(self, user_agent: str, timeout: float = 5.0) -> KubeClient:
        """A new client (one HTTP session: one per thread)."""
        if self.kubeconfig is not None:
            return KubeClient.from_kubeconfig(self.kubeconfig, user_agent=user_agent, timeout=timeout)
        return KubeClient(self.server, self.token, timeout=timeout, user_agent=user_agent)


def _bad(path: Path, problem: str) -> LabError:
    return LabError(f"kubeconfig {path}: {problem}: give the kubelet the kubeconfig `python -m lab up` wrote")


def _named(items: Any, name: str, key: str, path: Path) -> dict[str, Any]:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name and isinstance(item.get(key), dict):
            return dict(item[key])
    raise _bad(path, f"no {key} named {name!r}")


def api_access(kubeconfig: Path) -> ApiAccess:
    """Server, credential and CA of the current context of ``kubeconfig``; LabError naming what is wrong."""
    path = Path(kubeconfig)
    try:
        config = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise _bad(path, f"cannot read it ({exc.strerror or exc})") from None
    except yaml.YAMLError:
        raise _bad(path, "not YAML or JSON") from None
    if not isinstance(config, dict) or not config.get("current-context"):
        raise _bad(path, "no current-context")
    context = _named(config.get("contexts"), str(config["current-context"]), "context", path)
    cluster = _named(config.get("clusters"), str(context.get("cluster", "")), "cluster", path)
    user = _named(config.get("users"), str(context.get("user", "")), "user", path)
    server = str(cluster.get("server") or "").rstrip("/")
    if not server.startswith(("http://", "https://")):
        raise _bad(path, f"cluster server {server!r} is not an http(s) URL")
    creds = kubeconfig_credentials(path, cluster, user)
    if server.startswith("https://") and not creds.ca_pem:
        raise _bad(path, "an https server without certificate-authority(-data)")
    credential = bool(creds.token or creds.token_file or creds.client_cert)
    return ApiAccess(server, creds.token, creds.ca_pem or b"", path, credential)
