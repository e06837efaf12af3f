"""The few Kubernetes API calls the distributed load makes, as plain REST through one client.

The load creates and deletes a Secret, a Service and two Jobs, lists their pods, reads a
pod's last log line, and talks to the load master through the API server's service
proxy (``/api/v1/namespaces/<ns>/services/<svc>:web/proxy/harness/...``). All of it goes
through :class:`KubeTransport`: the ``kubernetes`` client's ``ApiClient`` (its
kubeconfig, TLS and credentials) with raw paths, so no call depends on a generated model.
Anything with the same ``request`` method can stand in (the tests use plain HTTP).
"""

from __future__ import annotations

import json
import os
from typing import Any, Protocol
from urllib.parse import quote

from loadgen.errors import LoadgenError

__all__ = [
    "DELETE_BACKGROUND",
    "KubeTransport",
    "Transport",
    "api_client",
    "collection_path",
    "decode_json",
    "object_path",
    "proxy_path",
]

#: DeleteOptions: remove a Job now and let the garbage collector take its pods.
DELETE_BACKGROUND = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}

_GROUPS = {"Secret": "/api/v1", "Service": "/api/v1", "Pod": "/api/v1", "ConfigMap": "/api/v1"}
_PLURALS = {
    "Secret": "secrets",
    "Service": "services",
    "Pod": "pods",
    "ConfigMap": "configmaps",
    "Job": "jobs",
}


class Transport(Protocol):
    """One HTTP request to the API server: ``(status, body)``; LoadgenError when it cannot be made."""

    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        timeout: float = 5.0,
    ) -> tuple[int, bytes]: ...


def api_client(kubeconfig: str | None = None) -> Any:
    """An ``ApiClient`` of its own (the process-wide default configuration is left alone)."""
    from kubernetes import client, config

    try:
        if kubeconfig:
            return config.new_client_from_config(config_file=kubeconfig)
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
        return config.new_client_from_config()
    except Exception as exc:
        first = str(exc).splitlines()[0][:120] if str(exc) else ""
        raise LoadgenError(
            f"no usable kubeconfig ({exc.__class__.__name__}: {first}): "
            "set KUBECONFIG or the kubeconfig configuration key"
        ) from None


class KubeTransport:
    """:class:`Transport` over a ``kubernetes`` ``ApiClient``."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        timeout: float = 5.0,
    ) -> tuple[int, bytes]:
        headers = {"Accept": "application/json, */*"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            serialized = self.client.param_serialize(
                method=method,
                resource_path=path,
                query_params=query or None,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.client.call_api(*serialized, _request_timeout=timeout)
            return int(response.status), bytes(response.read() or b"")
        except Exception as exc:  # urllib3's connection errors, timeouts, TLS failures
            status = getattr(exc, "status", None)
            if isinstance(status, int) and status:
                return status, str(getattr(exc, "body", "") or "").encode()
            first = str(exc).splitlines()[0][:160] if str(exc) else ""
            raise LoadgenError(f"{method} {path}: {exc.__class__.__name__} {first}".strip()) from None


def object_path(kind: str, namespace: str, name: str | None = None) -> str:
    """The REST path of a namespaced ``kind`` (its collection when ``name`` is None)."""
    group = "/apis/batch/v1" if kind == "Job" else _GROUPS[kind]
    path = f"{group}/namespaces/{quote(namespace, safe='')}/{_PLURALS[kind]}"
    return f"{path}/{quote(name, safe='')}" if name else path


def collection_path(obj: dict[str, Any]) -> str:
    """Where ``obj`` (a manifest) is created."""
    return object_path(str(obj["kind"]), str(obj["metadata"]["namespace"]))


def proxy_path(namespace: str, service: str, port: str, rest: str) -> str:
    """``rest`` on the Service's ``port`` through the API server's service proxy."""
    return (
        f"/api/v1/namespaces/{quote(namespace, safe='')}/services/"
        f"{quote(service, safe='')}:{quote(port, safe='')}/proxy/{rest.lstrip('/')}"
    )


def decode_json(body: bytes, what: str) -> Any:
    """``body`` as JSON; LoadgenError naming ``what`` otherwise."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        shown = body[:80].decode("utf-8", "replace").strip()
        raise LoadgenError(f"{what} is not JSON ({shown!r})") from None
