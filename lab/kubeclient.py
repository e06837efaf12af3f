"""A small synchronous Kubernetes API client for the lab's own processes.

The kubelet, the controllers and the lab operator talk to the API server over HTTP
exactly like real cluster components, using plain JSON dicts. Nothing here is
lab-specific: it works against any API server that accepts the kubeconfig's token.

Resources are named by :class:`Kind` (group, version, plural, namespaced); errors
from the server become :class:`ApiError` carrying the HTTP code and the Status reason.
Each client sends a User-Agent naming its component (:func:`user_agent`, e.g.
``lab-kubelet/v0.1.0 (linux) mssql-chaos-harness``): the API server takes the part
before the first ``/`` as the field manager, so ``kubectl get -o yaml
--show-managed-fields`` names who wrote what, as on a cluster.

Credentials and TLS as client-go takes them: a bearer ``token`` or a ``token_file``
(re-read when it changes, as rotated service-account tokens are), a CA given as PEM data
(``ca_pem``) or a file (``ca_file``) that alone is trusted for the server's certificate,
optionally a client certificate. :meth:`KubeClient.from_kubeconfig` reads them from a
kubeconfig, :meth:`KubeClient.in_cluster` from a pod's environment (the service-account
folder named by ``LAB_SERVICEACCOUNT_DIR``, else Kubernetes' own path, and
``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from lab.errors import LabError
from lab.kubeclient_tls import TokenSource, kubeconfig_credentials, service_account_dir, tls_adapter

__all__ = [
    "DEFAULT_USER_AGENT",
    "SERVICEACCOUNT_DIR_ENV",
    "Kind",
    "ApiError",
    "KubeClient",
    "KINDS",
    "user_agent",
]

Obj = dict[str, Any]
_VERSION = "v0.1.0"


def user_agent(component: str) -> str:
    """The User-Agent of a lab component, e.g. ``lab-kubelet/v0.1.0 (linux) mssql-chaos-harness``."""
    return f"{component}/{_VERSION} (linux) mssql-chaos-harness"


#: Clients that do not say which component they are (the ``lab`` command line).
DEFAULT_USER_AGENT = user_agent("lab")


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if sub:
                base += f"/{sub}"
        return base


KINDS: dict[str, Kind] = {
    "namespaces": Kind("", "v1", "namespaces", namespaced=False),
    "nodes": Kind("", "v1", "nodes", namespaced=False),
    "pods": Kind("", "v1", "pods"),
    "services": Kind("", "v1", "services"),
    "secrets": Kind("", "v1", "secrets"),
    "configmaps": Kind("", "v1", "configmaps"),
    "persistentvolumeclaims": Kind("", "v1", "persistentvolumeclaims"),
    "events": Kind("", "v1", "events"),
    "serviceaccounts": Kind("", "v1", "serviceaccounts"),
    "deployments": Kind("apps", "v1", "deployments"),
    "replicasets": Kind("apps", "v1", "replicasets"),
    "statefulsets": Kind("apps", "v1", "statefulsets"),
    "jobs": Kind("batch", "v1", "jobs"),
    "cronjobs": Kind("batch", "v1", "cronjobs"),
    "poddisruptionbudgets": Kind("policy", "v1", "poddisruptionbudgets"),
    "storageclasses": Kind("storage.k8s.io", "v1", "storageclasses", namespaced=False),
    "customresourcedefinitions": Kind(
        "apiextensions.k8s.io", "v1", "customresourcedefinitions", namespaced=False
    ),
    "leases": Kind("coordination.k8s.io", "v1", "leases"),
}


class ApiError(LabError):
    """The API server answered with an error Status."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason


#: The pod's service-account folder (token, ca.crt, namespace) as the lab's kubelet sets it.
SERVICEACCOUNT_DIR_ENV = "LAB_SERVICEACCOUNT_DIR"


class KubeClient:
    """JSON over HTTP(S) to one API server; thread-safe for independent calls."""

    def __init__(
        self,
        server: str,
        token: str = "",
        timeout: float = 10.0,
        user_agent: str = DEFAULT_USER_AGENT,
        *,
        ca_pem: bytes | None = None,
        ca_file: Path | None = None,
        token_file: Path | None = None,
        client_cert: tuple[bytes, bytes] | None = None,
        insecure_skip_tls_verify: bool = False,
        namespace: str | None = None,
    ) -> None:
        """``user_agent``: the header sent (see :func:`user_agent`); its part before the first
        ``/`` is the field manager the server records for this client's writes.

        ``token`` or ``token_file`` (re-read when it changes) is the bearer credential;
        ``ca_pem`` or ``ca_file`` the only CA trusted for an ``https://`` server (without
        either, the system's); ``client_cert`` a (certificate, key) PEM pair;
        ``namespace`` the default namespace the credential came with (in-cluster), for
        callers that want it. LabError (one line) when a file or PEM is unusable.
        """
        self.server = server.rstrip("/")
        self.timeout = timeout
        self.namespace = namespace
        self._session = requests.Session()
        self._session.headers["User-Agent"] = user_agent
        self._token = TokenSource(token, token_file)
        adapter = tls_adapter(ca_pem, ca_file, client_cert, insecure_skip_tls_verify)
        if adapter is not None:
            self._session.mount("https://", adapter)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        token = self._token.current()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    @classmethod
    def from_kubeconfig(
        cls, path: Path, user_agent: str = DEFAULT_USER_AGENT, timeout: float = 10.0
    ) -> KubeClient:
        """A client for the current context of a kubeconfig file (JSON or simple YAML).

        Reads the cluster's ``server``, ``certificate-authority-data`` or
        ``certificate-authority`` (relative to the file, as kubectl resolves it) and
        ``insecure-skip-tls-verify``, and the user's ``token`` or ``tokenFile`` and
        ``client-certificate[-data]``/``client-key[-data]``.
        """
        import yaml

        try:
            config: dict[str, Any] = yaml.safe_load(Path(path).read_text())
            context = next(c for c in config["contexts"] if c["name"] == config["current-context"])["context"]
            cluster = next(c for c in config["clusters"] if c["name"] == context["cluster"])["cluster"]
            users: list[dict[str, Any]] = config.get("users") or []
            user: dict[str, Any] = next(
                (u.get("user", {}) for u in users if u.get("name") == context.get("user")), {}
            )
            server = cluster["server"]
        except (OSError, KeyError, StopIteration, TypeError, AttributeError, yaml.YAMLError) as exc:
            raise LabError(f"cannot use kubeconfig {path} ({exc}): run `python -m lab up` first") from None
        creds = kubeconfig_credentials(Path(path), cluster or {}, user or {})
        return cls(
            server,
            creds.token,
            timeout,
            user_agent=user_agent,
            ca_pem=creds.ca_pem,
            token_file=creds.token_file,
            client_cert=creds.client_cert,
            insecure_skip_tls_verify=creds.insecure,
            namespace=context.get("namespace") if isinstance(context, dict) else None,
        )

    @classmethod
    def in_cluster(
        cls, environ: Mapping[str, str], user_agent: str = DEFAULT_USER_AGENT, timeout: float = 10.0
    ) -> KubeClient:
        """The client of a process in a pod: ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``,
        trusting the folder's ``ca.crt``, authenticating with its ``token`` (re-read when the
        kubelet rotates it), defaulting to its ``namespace``. The folder is
        ``$LAB_SERVICEACCOUNT_DIR``, else ``/var/run/secrets/kubernetes.io/serviceaccount``.
        LabError (one line) outside a pod."""
        host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise LabError(
                "unable to load in-cluster configuration: KUBERNETES_SERVICE_HOST and "
                "KUBERNETES_SERVICE_PORT must be defined (run inside a pod, or use a kubeconfig)"
            )
        folder = service_account_dir(environ.get(SERVICEACCOUNT_DIR_ENV))
        host = f"[{host}]" if ":" in host else host
        return cls(
            f"https://{host}:{port}",
            timeout=timeout,
            user_agent=user_agent,
            ca_file=folder.ca_file,
            token_file=folder.token_file,
            namespace=folder.namespace,
        )

    # -- plumbing -----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Any:
        headers = self._headers({"Content-Type": content_type} if body is not None else None)
        try:
            resp = self._session.request(
                method,
                self.server + path,
                params=params,
                headers=headers,
                data=json.dumps(body) if body is not None else None,
                timeout=timeout or self.timeout,
            )
        except requests.RequestException as exc:
            raise ApiError(0, "Unreachable", f"{self.server}: {exc.__class__.__name__}") from None
        if resp.status_code >= 400:
            try:
                status = resp.json()
                raise ApiError(
                    resp.status_code, status.get("reason", ""), status.get("message", resp.text[:200])
                )
            except ValueError:
                raise ApiError(resp.status_code, "", resp.text[:200]) from None
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.text

    # -- verbs ----------------------------------------------------------------------------

    def get(self, kind: Kind | str, name: str, namespace: str | None = None) -> Obj:
        k = KINDS[kind] if isinstance(kind, str) else kind
        return self.request("GET", k.path(namespace, name))

    def get_or_none(self, kind: Kind | str, name: str, namespace: str | None = None) -> Obj | None:
        try:
            return self.get(kind, name, namespace)
        except ApiError as exc:
            if exc.code == 404:
                return None
            raise

    def list(
        self,
        kind: Kind | str,
        namespace: str | None = None,
        labels: str | None = None,
        fields: str | None = None,
    ) -> list[Obj]:
        k = KINDS[kind] if isinstance(kind, str) else kind
        params = {k2: v for k2, v in (("labelSelector", labels), ("fieldSelector", fields)) if v}
        return list(self.request("GET", k.path(namespace), params=params).get("items", []))

    def create(self, kind: Kind | str, obj: Obj, namespace: str | None = None) -> Obj:
        k = KINDS[kind] if isinstance(kind, str) else kind
        return self.request("POST", k.path(namespace), obj)

    def replace(self, kind: Kind | str, obj: Obj, namespace: str | None = None) -> Obj:
        k = KINDS[kind] if isinstance(kind, str) else kind
        return self.request("PUT", k.path(namespace, obj["metadata"]["name"]), obj)

    def patch(
        self, kind: Kind | str, name: str, patch: Obj, namespace: str | None = None, sub: str | None = None
    ) -> Obj:
        """JSON merge patch of the object (or of its ``status`` with ``sub="status"``)."""
        k = KINDS[kind] if isinstance(kind, str) else kind
        return self.request(
            "PATCH", k.path(namespace, name, sub), patch, content_type="application/merge-patch+json"
        )

    def delete(
        self, kind: Kind | str, name: str, namespace: str | None = None, grace: int | None = None
    ) -> Obj | None:
        k = KINDS[kind] if isinstance(kind, str) else kind
        params = {"gracePeriodSeconds": grace} if grace is not None else None
        try:
            return self.request("DELETE", k.path(namespace, name), params=params)
        except ApiError as exc:
            if exc.code == 404:
                return None
            raise

    def evict(self, name: str, namespace: str) -> Obj:
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        return self.request("POST", KINDS["pods"].path(namespace, name, "eviction"), body)

    def watch(
        self,
        kind: Kind | str,
        namespace: str | None = None,
        resource_version: str | None = None,
        timeout_seconds: int = 30,
        labels: str | None = None,
        fields: str | None = None,
    ) -> Iterator[Obj]:
        """Yield watch events ``{"type", "object"}`` until the server ends the watch.

        BOOKMARK events (no uid, only a newer ``resourceVersion``) are asked for, so a
        caller that resumes from the last version it saw stays inside the server's
        watch window; an ERROR event (410 Expired: too old resource version) means list again.
        """
        k = KINDS[kind] if isinstance(kind, str) else kind
        params: dict[str, Any] = {
            "watch": "true",
            "timeoutSeconds": timeout_seconds,
            "allowWatchBookmarks": "true",
        }
        if resource_version:
            params["resourceVersion"] = resource_version
        if labels:
            params["labelSelector"] = labels
        if fields:
            params["fieldSelector"] = fields
        try:
            with self._session.get(
                self.server + k.path(namespace),
                params=params,
                headers=self._headers(),
                stream=True,
                timeout=(self.timeout, timeout_seconds + 5),
            ) as resp:
                if resp.status_code >= 400:
                    status = resp.json()
                    raise ApiError(resp.status_code, status.get("reason", ""), status.get("message", ""))
                for line in resp.iter_lines():
                    if line:
                        yield json.loads(line)
        except requests.RequestException as exc:
            raise ApiError(0, "Unreachable", f"{self.server}: {exc.__class__.__name__}") from None
