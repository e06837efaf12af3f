"""Helpers shared by the lab API server tests (no tests here).

Servers run as real child processes (``python -m lab.api``) on free ports; clients are
the real ones: the Kubernetes Python client, kubectl, chaosk8s, and raw HTTP.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, config

from lab.api import write_kubeconfig

__all__ = ["api_client", "http", "owner_ref", "pod_body", "wait_for"]


def api_client(url: str, kubeconfig: Path) -> client.ApiClient:
    """A Python-client ApiClient for the server at ``url`` (through a real kubeconfig)."""
    write_kubeconfig(kubeconfig, url)
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return client.ApiClient(cfg)


def http(
    url: str,
    method: str = "GET",
    body: Any = None,
    content_type: str | None = "application/json",
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    """One request; returns (status, decoded JSON body or text)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if content_type and data is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload.decode(errors="replace")


def owner_ref(owner: Any, controller: bool = True) -> dict[str, Any]:
    """An ownerReference to a Python-client object or a dict."""
    if isinstance(owner, dict):
        md, api_version, kind = owner["metadata"], owner["apiVersion"], owner["kind"]
        return {
            "apiVersion": api_version,
            "kind": kind,
            "name": md["name"],
            "uid": md["uid"],
            "controller": controller,
        }
    return {
        "apiVersion": owner.api_version,
        "kind": owner.kind,
        "name": owner.metadata.name,
        "uid": owner.metadata.uid,
        "controller": controller,
    }


def pod_body(
    name: str,
    labels: dict[str, str] | None = None,
    node: str | None = None,
    owners: list[dict[str, Any]] | None = None,
    grace: int | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": labels or {}}
    if owners:
        metadata["ownerReferences"] = owners
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "postgres:15"}], "volumes": []}
    if node:
        spec["nodeName"] = node
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
