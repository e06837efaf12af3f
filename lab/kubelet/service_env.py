"""Service links: the ``<NAME>_SERVICE_HOST`` variables a container gets for each Service.

As Kubernetes' kubelet does (``pkg/kubelet/envvars``, ``getServiceEnvVarMap``), every
container gets, for each Service of its pod's namespace that exists when the container
starts, unless the pod says ``enableServiceLinks: false``:

* ``<NAME>_SERVICE_HOST``, ``<NAME>_SERVICE_PORT`` (the first port), and
  ``<NAME>_SERVICE_PORT_<PORTNAME>`` for each named port;
* the Docker-link variables: ``<NAME>_PORT`` (``tcp://host:port`` of the first port) and,
  per port, ``<NAME>_PORT_<port>_<PROTO>`` with its ``_PROTO``, ``_PORT`` and ``_ADDR``.

``NAME`` is the Service's name upper-cased with ``-`` as ``_``. Headless Services
(``clusterIP: None``), ``ExternalName`` Services and Services without ports get none,
as in Kubernetes; so does ``kubernetes`` in ``default``, for which the kubelet's own
``KUBERNETES_*`` variables (the API server) stand, always set.

The lab has no kube-proxy and assigns no cluster IPs: the host is always
:data:`LAB_SERVICE_HOST` (``127.0.0.1``), where pods listen, so a Service is reachable
through these variables only when its ``port`` equals its ``targetPort`` (the pod listens
on the Service's port). The container's own ``env`` and ``envFrom`` win over these, and
``$(VAR)`` in ``command``/``args`` can name them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from common.names import env_name  # re-exported: Kubernetes' makeEnvVariableName

__all__ = ["LAB_SERVICE_HOST", "ServiceLister", "env_name", "link_env", "pod_service_env", "service_links"]

Obj = dict[str, Any]
#: ``lister(namespace)``: the Services of that namespace, as the API server lists them.
ServiceLister = Callable[[str], list[Obj]]

#: Where every Service is reached in the lab (no kube-proxy, no cluster IPs).
LAB_SERVICE_HOST = "127.0.0.1"


def _ports(service: Obj) -> list[tuple[str, int, str]]:
    """``(name, port, protocol)`` of each of the Service's ports that has a port number."""
    found = []
    for port in (service.get("spec") or {}).get("ports") or []:
        if not isinstance(port, dict):
            continue
        number = port.get("port")
        if isinstance(number, bool) or not isinstance(number, int):
            continue
        found.append((str(port.get("name") or ""), number, str(port.get("protocol") or "TCP")))
    return found


def _linked(service: Obj) -> bool:
    spec = service.get("spec") or {}
    return spec.get("clusterIP") != "None" and spec.get("type") != "ExternalName"


def link_env(service: Obj, host: str = LAB_SERVICE_HOST) -> dict[str, str]:
    """The variables of one Service reached at ``host`` (none for a Service that gets none)."""
    name = str((service.get("metadata") or {}).get("name") or "")
    ports = _ports(service)
    if not name or not ports or not _linked(service):
        return {}
    prefix = env_name(name)
    address = f"[{host}]" if ":" in host else host
    env = {f"{prefix}_SERVICE_HOST": host, f"{prefix}_SERVICE_PORT": str(ports[0][1])}
    for port_name, number, _protocol in ports:
        if port_name:
            env[f"{prefix}_SERVICE_PORT_{env_name(port_name)}"] = str(number)
    for index, (_port_name, number, protocol) in enumerate(ports):
        url = f"{protocol.lower()}://{address}:{number}"
        if index == 0:
            env[f"{prefix}_PORT"] = url
        port_prefix = f"{prefix}_PORT_{number}_{protocol.upper()}"
        env[port_prefix] = url
        env[f"{port_prefix}_PROTO"] = protocol.lower()
        env[f"{port_prefix}_PORT"] = str(number)
        env[f"{port_prefix}_ADDR"] = host
    return env


def service_links(services: Iterable[Obj], namespace: str, host: str = LAB_SERVICE_HOST) -> dict[str, str]:
    """The variables of every Service of ``namespace`` among ``services`` (see the module doc)."""
    env: dict[str, str] = {}
    for service in services:
        md = service.get("metadata") or {}
        if str(md.get("namespace") or namespace) != namespace:
            continue
        if namespace == "default" and md.get("name") == "kubernetes":
            continue
        env.update(link_env(service, host))
    return env


def pod_service_env(pod: Obj, lister: ServiceLister) -> dict[str, str]:
    """The service links of ``pod``'s containers: none with ``enableServiceLinks: false``,
    else those of the Services ``lister`` finds in the pod's namespace now."""
    if (pod.get("spec") or {}).get("enableServiceLinks") is False:
        return {}
    namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
    return service_links(lister(namespace), namespace)
