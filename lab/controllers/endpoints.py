"""Endpoints and EndpointSlices for Services, as Kubernetes' two endpoint controllers write them.

For every Service with a ``spec.selector`` (not ``ExternalName``), the pods of its
namespace whose labels match become its endpoints, as ``ShouldPodBeInEndpoints``
decides: not Succeeded/Failed, with a ``status.podIP`` (the lab's kubelets report
``127.0.0.1``), and, for the Endpoints object, not terminating. Each service port's
``targetPort`` is resolved per pod (a number as is; a name against the pod's
container ports of the same protocol; a pod without it is left out of that port).

* ``v1`` Endpoints, named as the Service, labels the Service's: Ready pods (or every
  pod with ``publishNotReadyAddresses``) in ``addresses``, the others in
  ``notReadyAddresses`` (``ip``, ``nodeName``, ``targetRef``; ``hostname`` when the
  pod's ``subdomain`` is the Service), grouped into subsets by resolved ports
  (RepackSubsets); no pods, no ``subsets``. An Endpoints object whose Service is gone
  is deleted, as the real controller does (except leader-election records); a Service
  without a selector keeps the Endpoints its owner writes.
* ``discovery.k8s.io/v1`` EndpointSlices, ``generateName: <service>-``, labels
  ``kubernetes.io/service-name`` and ``endpointslice.kubernetes.io/managed-by:
  endpointslice-controller.k8s.io``, owned by the Service (collected with it),
  ``addressType: IPv4``; one endpoint per pod, terminating pods included, with
  ``conditions`` ``ready`` (Ready and not terminating), ``serving`` (Ready) and
  ``terminating``; one slice per distinct set of resolved ports, and an empty
  placeholder slice when nothing matches.

Changes are written with the object's ``resourceVersion`` (a conflict waits for the
next pass); each Service is reconciled under :func:`~lab.controllers.loop.one_object`.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from lab.controllers.loop import Obj, controller_ref, is_pod_ready, is_terminating, one_object
from lab.kubeclient import ApiError, Kind, KubeClient

__all__ = ["ENDPOINTS", "ENDPOINT_SLICES", "MANAGED_BY", "SERVICE_NAME", "EndpointsController", "target_port"]

log = logging.getLogger(__name__)

ENDPOINTS = Kind("", "v1", "endpoints")
ENDPOINT_SLICES = Kind("discovery.k8s.io", "v1", "endpointslices")
SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
SLICE_CONTROLLER = "endpointslice-controller.k8s.io"
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"


def target_port(pod: Obj, port: Obj) -> int | None:
    """The pod's port for a service port (Kubernetes' FindPort), None when the pod has none."""
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = port.get("protocol") or "TCP"
    for container in pod.get("spec", {}).get("containers") or []:
        for cport in (container.get("ports") or []) if isinstance(container, dict) else []:
            if (
                isinstance(cport, dict)
                and cport.get("name") == target
                and (cport.get("protocol") or "TCP") == protocol
                and isinstance(cport.get("containerPort"), int)
            ):
                return int(cport["containerPort"])
    return None


def _in_endpoints(pod: Obj, include_terminating: bool) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return False
    if not status.get("podIP"):
        return False
    return include_terminating or not is_terminating(pod)


def _matches(selector: dict[str, Any], pod: Obj) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def _ports(service: Obj, pod: Obj) -> list[Obj]:
    """The endpoint ports of ``pod`` for ``service`` (name, port, protocol), sorted."""
    found = []
    for port in service.get("spec", {}).get("ports") or []:
        if not isinstance(port, dict):
            continue
        number = target_port(pod, port)
        if number is None:
            continue
        entry: Obj = {"port": number, "protocol": port.get("protocol") or "TCP"}
        if port.get("name"):
            entry["name"] = port["name"]
        if port.get("appProtocol"):
            entry["appProtocol"] = port["appProtocol"]
        found.append(entry)
    return sorted(found, key=lambda p: (p.get("name", ""), p["port"]))


def _target_ref(pod: Obj) -> Obj:
    md = pod["metadata"]
    return {"kind": "Pod", "namespace": md["namespace"], "name": md["name"], "uid": md["uid"]}


def _hostname(service: Obj, pod: Obj) -> str | None:
    spec = pod.get("spec", {})
    if spec.get("hostname") and spec.get("subdomain") == service["metadata"]["name"]:
        return str(spec["hostname"])
    return None


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def endpoints_subsets(service: Obj, pods: list[Obj]) -> list[Obj]:
    """The ``subsets`` of the service's Endpoints: addresses grouped by their resolved ports."""
    publish = bool(service.get("spec", {}).get("publishNotReadyAddresses"))
    headless = service.get("spec", {}).get("clusterIP") == "None"
    groups: dict[str, Obj] = {}
    for pod in pods:
        if not _in_endpoints(pod, include_terminating=False):
            continue
        ports = _ports(service, pod)
        if not ports and not (headless and not service.get("spec", {}).get("ports")):
            continue
        address: Obj = {"ip": pod["status"]["podIP"], "targetRef": _target_ref(pod)}
        if pod.get("spec", {}).get("nodeName"):
            address["nodeName"] = pod["spec"]["nodeName"]
        hostname = _hostname(service, pod)
        if hostname:
            address["hostname"] = hostname
        subset = groups.setdefault(_key(ports), {"ports": ports} if ports else {})
        field = "addresses" if publish or is_pod_ready(pod) else "notReadyAddresses"
        subset.setdefault(field, []).append(address)
    subsets = []
    for _, subset in sorted(groups.items()):
        for field in ("addresses", "notReadyAddresses"):
            if field in subset:
                subset[field].sort(key=lambda a: (a["ip"], a["targetRef"]["uid"]))
        subsets.append(subset)
    return subsets


def slice_groups(service: Obj, pods: list[Obj]) -> list[tuple[list[Obj], list[Obj]]]:
    """(ports, endpoints) of each EndpointSlice the service should have; one empty when none."""
    publish = bool(service.get("spec", {}).get("publishNotReadyAddresses"))
    groups: dict[str, tuple[list[Obj], list[Obj]]] = {}
    for pod in pods:
        if not _in_endpoints(pod, include_terminating=True) or ":" in str(pod["status"]["podIP"]):
            continue
        ports = _ports(service, pod)
        if not ports and service.get("spec", {}).get("ports"):
            continue
        terminating = is_terminating(pod)
        serving = publish or is_pod_ready(pod)
        endpoint: Obj = {
            "addresses": [pod["status"]["podIP"]],
            "conditions": {
                "ready": serving and not terminating,
                "serving": serving,
                "terminating": terminating,
            },
            "targetRef": _target_ref(pod),
        }
        if pod.get("spec", {}).get("nodeName"):
            endpoint["nodeName"] = pod["spec"]["nodeName"]
        hostname = _hostname(service, pod)
        if hostname:
            endpoint["hostname"] = hostname
        groups.setdefault(_key(ports), (ports, []))[1].append(endpoint)
    result = [groups[k] for k in sorted(groups)]
    for _, endpoints in result:
        endpoints.sort(key=lambda e: (e["addresses"][0], e["targetRef"]["uid"]))
    return result or [([], [])]


class EndpointsController:
    name = "endpoints"
    interval = 1.0
    watches: tuple[str, ...] = ("pods", "services")

    def __init__(self, client: KubeClient, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock

    def reconcile_once(self) -> None:
        services = {
            (s["metadata"]["namespace"], s["metadata"]["name"]): s for s in self.client.list("services")
        }
        endpoints = {
            (e["metadata"]["namespace"], e["metadata"]["name"]): e for e in self.client.list(ENDPOINTS)
        }
        slices: dict[tuple[str, str], list[Obj]] = {}
        for eps in self.client.list(ENDPOINT_SLICES, labels=f"{MANAGED_BY}={SLICE_CONTROLLER}"):
            owner = (eps["metadata"].get("labels") or {}).get(SERVICE_NAME, "")
            slices.setdefault((eps["metadata"]["namespace"], owner), []).append(eps)
        pods_by_ns: dict[str, list[Obj]] = {}
        for pod in self.client.list("pods"):
            pods_by_ns.setdefault(pod["metadata"]["namespace"], []).append(pod)
        for key, service in services.items():
            selector = service.get("spec", {}).get("selector")
            if (
                not isinstance(selector, dict)
                or not selector
                or service.get("spec", {}).get("type") == "ExternalName"
                or is_terminating(service)
            ):
                continue
            pods = [p for p in pods_by_ns.get(key[0], []) if _matches(selector, p)]
            with one_object(self.name, service):
                self._sync_endpoints(service, pods, endpoints.get(key))
                self._sync_slices(service, pods, slices.pop(key, []))
        for key, ep in endpoints.items():
            if key not in services and LEADER_ANNOTATION not in (ep["metadata"].get("annotations") or {}):
                with one_object(self.name, ep):
                    self.client.delete(ENDPOINTS, key[1], key[0])
        for key, leftovers in slices.items():
            owner = services.get(key)
            if owner is not None and owner.get("spec", {}).get("selector"):
                continue  # a terminating or ExternalName service: left as it is
            for eps in leftovers:
                with one_object(self.name, eps):
                    self.client.delete(ENDPOINT_SLICES, eps["metadata"]["name"], key[0])

    # -- v1 Endpoints ---------------------------------------------------------------------

    def _sync_endpoints(self, service: Obj, pods: list[Obj], current: Obj | None) -> None:
        md = service["metadata"]
        labels = dict(md.get("labels") or {})
        if service.get("spec", {}).get("clusterIP") == "None":
            labels["service.kubernetes.io/headless"] = ""
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": md["name"], "namespace": md["namespace"], "labels": labels},
        }
        subsets = endpoints_subsets(service, pods)
        if subsets:
            body["subsets"] = subsets
        if current is None:
            self._write(lambda: self.client.create(ENDPOINTS, body, md["namespace"]))
            return
        if (
            _key(current.get("subsets") or []) == _key(subsets)
            and (current["metadata"].get("labels") or {}) == labels
        ):
            return
        body["metadata"] = {**current["metadata"], "labels": labels}
        self._write(lambda: self.client.replace(ENDPOINTS, body, md["namespace"]))

    # -- EndpointSlices -----------------------------------------------------------------------

    def _slice_body(self, service: Obj, ports: list[Obj], endpoints: list[Obj]) -> Obj:
        md = service["metadata"]
        reserved = (SERVICE_NAME, MANAGED_BY)
        labels = {k: v for k, v in (md.get("labels") or {}).items() if k not in reserved}
        labels.update({SERVICE_NAME: md["name"], MANAGED_BY: SLICE_CONTROLLER})
        if service.get("spec", {}).get("clusterIP") == "None":
            labels["service.kubernetes.io/headless"] = ""
        body: Obj = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "generateName": f"{md['name']}-",
                "namespace": md["namespace"],
                "labels": labels,
                "ownerReferences": [controller_ref({**service, "apiVersion": "v1", "kind": "Service"})],
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": ports,
        }
        return body

    def _sync_slices(self, service: Obj, pods: list[Obj], current: list[Obj]) -> None:
        ns = service["metadata"]["namespace"]
        wanted = [self._slice_body(service, p, e) for p, e in slice_groups(service, pods)]
        remaining = sorted(current, key=lambda s: s["metadata"]["name"])
        unmatched = []
        for body in wanted:  # reuse the slice with the same ports first, then any left over
            same = next((s for s in remaining if _key(s.get("ports") or []) == _key(body["ports"])), None)
            if same is not None:
                remaining.remove(same)
                self._update_slice(same, body)
            else:
                unmatched.append(body)
        for body in unmatched:
            if remaining:
                self._update_slice(remaining.pop(0), body)
            else:
                self._write(functools.partial(self.client.create, ENDPOINT_SLICES, body, ns))
        for extra in remaining:
            self.client.delete(ENDPOINT_SLICES, extra["metadata"]["name"], ns)

    def _update_slice(self, current: Obj, body: Obj) -> None:
        fields = ("addressType", "endpoints", "ports")
        if (
            all(_key(current.get(f) or []) == _key(body[f] or []) for f in fields)
            and (current["metadata"].get("labels") or {}) == body["metadata"]["labels"]
        ):
            return
        updated = {**current, **{f: body[f] for f in fields}}
        updated["metadata"] = {
            **current["metadata"],
            "labels": body["metadata"]["labels"],
            "ownerReferences": body["metadata"]["ownerReferences"],
        }
        ns = current["metadata"]["namespace"]
        self._write(lambda: self.client.replace(ENDPOINT_SLICES, updated, ns))

    def _write(self, call: Callable[[], Any]) -> None:
        """One create or replace; a conflict, a vanished object or a closing namespace waits a pass."""
        try:
            call()
        except ApiError as exc:
            if exc.code not in (403, 404, 409):
                raise
            log.debug("endpoints: write deferred: %s", exc)
