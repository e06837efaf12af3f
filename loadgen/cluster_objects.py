"""The distributed load's objects in the cluster: ports, creation, pods, deletion.

:class:`LoadObjectsApi` creates the run's Secret, Service and Jobs (remembering each, so
a failed start deletes exactly what it created) and returns each as the API stored it (the
master Job's uid is its dependents' owner), lists their pods and tells in one line
what a pod is doing (:mod:`loadgen.cluster_pods`), reads the master's exit code, and
deletes everything (Jobs with ``propagationPolicy: Background``), then waits until the
pods are gone. :func:`pick_ports` chooses the master's two ports: on the embedded lab
(which publishes its port block in ``kube-system/lab-identity``) two free loopback ports
from the top of the block, where the lab operator, allocating from the bottom, is least
likely to go; elsewhere Locust's own 5557 and 8089.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadgen.cluster_api import DELETE_BACKGROUND, Transport, collection_path, decode_json, object_path
from loadgen.cluster_manifests import selector
from loadgen.cluster_pods import pod_exit_code, pod_story
from loadgen.discovery import LAB_IDENTITY
from loadgen.errors import LoadgenError
from loadgen.tenants import load_tenants

__all__ = ["CLUSTER_PORTS", "LoadObjectsApi", "lab_ports", "pick_ports", "status_message"]

#: Locust's own ports, used on a real cluster (port == targetPort in the Service).
CLUSTER_PORTS = (5557, 8089)
_ANY = "0.0.0.0"  # a pod on a real cluster serves its Service on its own address


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def lab_ports(port_range: str, taken: set[int], count: int = 2) -> list[int]:
    """``count`` free loopback ports of the lab's block ``"LOW-HIGH"``, from the top, not in ``taken``."""
    low_text, _, high_text = str(port_range).partition("-")
    try:
        low, high = int(low_text), int(high_text)
    except ValueError:
        raise LoadgenError(
            f"the lab publishes portRange {port_range!r} in {'/'.join(LAB_IDENTITY)}, not LOW-HIGH: "
            "restart the lab (python -m lab up)"
        ) from None
    found = [p for p in range(high, low - 1, -1) if p not in taken and _free(p)][:count]
    if len(found) < count:
        raise LoadgenError(f"no {count} free ports in the lab's block {port_range}: stop what holds them")
    return found


def pick_ports(transport: Transport, tenants_file: Path) -> tuple[str, tuple[int, int]]:
    """``(bind host, (master port, web port))`` for this cluster (see the module's docstring)."""
    namespace, name = LAB_IDENTITY
    status, body = transport.request("GET", object_path("ConfigMap", namespace, name))
    if status in (403, 404):
        return _ANY, CLUSTER_PORTS
    if status != 200:
        raise LoadgenError(f"ConfigMap {namespace}/{name}: the API answered {status}: is the cluster up?")
    data = decode_json(body, f"ConfigMap {namespace}/{name}").get("data") or {}
    if not data.get("portRange"):
        return _ANY, CLUSTER_PORTS
    taken = {t.port for t in load_tenants(tenants_file)}
    master, web = lab_ports(str(data["portRange"]), taken)
    return "127.0.0.1", (master, web)


def status_message(body: bytes) -> str:
    """A Kubernetes Status's message, or the body's first line, short."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict) and doc.get("message"):
        return str(doc["message"])[:200]
    text = body.decode("utf-8", "replace").strip().splitlines()
    return text[0][:200] if text else "no message"


@dataclass
class LoadObjectsApi:
    """The objects one distributed load created in ``namespace`` (label instance ``ident``)."""

    transport: Transport
    namespace: str
    ident: str
    created: list[tuple[str, str]] = field(default_factory=list)

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj`` and return it as the API stored it (with its uid).

        LoadgenError in one line (denied: which Role to bind; exists; other).
        """
        kind, name = str(obj["kind"]), str(obj["metadata"]["name"])
        # Recorded before asking: a POST that times out may still have created it (the
        # Secret holds every tenant's password), and deleting what is not there is a 404.
        self.created.append((kind, name))
        status, body = self.transport.request("POST", collection_path(obj), body=obj, timeout=15.0)
        if status in (200, 201, 202):
            created = decode_json(body, f"the created {kind} {self.namespace}/{name}")
            return created if isinstance(created, dict) else {}
        if status == 409:
            self.created.remove((kind, name))  # someone else's: never delete it
        where = f"{kind} {self.namespace}/{name}"
        if status in (401, 403):
            raise LoadgenError(
                f"{where}: access denied ({status}): apply deploy/load/rbac.yaml in {self.namespace} "
                "and bind it to the harness's user"
            )
        if status == 409:
            raise LoadgenError(f"{where} already exists: delete it (kubectl delete -n {self.namespace} ...)")
        raise LoadgenError(f"{where}: the API answered {status}: {status_message(body)}")

    def pods(self, component: str | None = None) -> list[dict[str, Any]]:
        query = [("labelSelector", selector(self.ident, component))]
        status, body = self.transport.request("GET", object_path("Pod", self.namespace), query=query)
        if status != 200:
            raise LoadgenError(f"listing the load's pods: the API answered {status}")
        return list(decode_json(body, "the load's pods").get("items") or [])

    def phases(self, component: str) -> set[str]:
        return {str((p.get("status") or {}).get("phase")) for p in self.pods(component)}

    def story(self, component: str) -> str:
        """One line about the component's pods: state and last log line each."""
        try:
            pods = self.pods(component)
        except LoadgenError as exc:
            return f"its pods cannot be listed ({exc})"
        return pod_story(self.transport, self.namespace, component, pods)

    def exit_code(self, grace: float) -> int | None:
        """The master container's exit code once it ended (waiting up to ``grace`` s), else None."""
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with contextlib.suppress(LoadgenError):
                code = pod_exit_code(self.pods("master"))
                if code is not None:
                    return code
            time.sleep(0.5)
        return None

    def delete_all(self, timeout: float) -> list[str]:
        """Delete what was created, newest first, and wait until the pods are gone; the problems met."""
        problems = []
        for kind, name in reversed(self.created):
            try:
                status, body = self.transport.request(
                    "DELETE", object_path(kind, self.namespace, name), body=DELETE_BACKGROUND, timeout=15.0
                )
            except LoadgenError as exc:
                status, body = 0, str(exc).encode()
            if status not in (200, 202, 404):
                problems.append(
                    f"deleting {kind} {self.namespace}/{name} failed ({status}: {status_message(body)}): "
                    "delete it by hand"
                )
        self.created.clear()
        deadline = time.monotonic() + timeout
        left: list[str] = []
        while time.monotonic() < deadline:
            try:
                left = [str(p["metadata"]["name"]) for p in self.pods()]
            except LoadgenError as exc:
                left = [f"(cannot list: {exc})"]
            if not left:
                return problems
            time.sleep(0.5)
        problems.append(
            f"load pods {left} still exist {timeout:g} s after their Jobs were deleted: "
            f"kubectl delete pods -n {self.namespace} -l {selector(self.ident)}"
        )
        return problems
