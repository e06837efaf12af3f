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
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from lab.errors import LabError

__all__ = ["DEFAULT_USER_AGENT", "Kind", "ApiError", "KubeClient", "KINDS", "user_agent"]

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


class KubeClient:
    """JSON over HTTP to one API server; thread-safe for independent calls."""

    def __init__(
        self, server: str, token: str = "", timeout: float = 10.0, user_agent: str = DEFAULT_USER_AGENT
    ) -> None:
        """``user_agent``: the header sent (see :func:`user_agent`); its part before the first
        ``/`` is the field manager the server records for this client's writes."""
        self.server = server.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._session.headers["User-Agent"] = user_agent
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def from_kubeconfig(cls, path: Path, user_agent: str = DEFAULT_USER_AGENT) -> KubeClient:
        """A client for the current context of a kubeconfig file (JSON or simple YAML)."""
        import yaml

        try:
            config: dict[str, Any] = yaml.safe_load(Path(path).read_text())
            context = next(c for c in config["contexts"] if c["name"] == config["current-context"])["context"]
            cluster = next(c for c in config["clusters"] if c["name"] == context["cluster"])["cluster"]
            users: list[dict[str, Any]] = config.get("users") or []
            user: dict[str, Any] = next(
                (u.get("user", {}) for u in users if u.get("name") == context["user"]), {}
            )
        except (OSError, KeyError, StopIteration, TypeError, yaml.YAMLError) as exc:
            raise LabError(f"cannot use kubeconfig {path} ({exc}): run `python -m lab up` first") from None
        return cls(cluster["server"], user.get("token", ""), user_agent=user_agent)

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
        headers = {"Content-Type": content_type} if body is not None else {}
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
