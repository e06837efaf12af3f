"""Table columns of PersistentVolumes, Endpoints, EndpointSlices and ControllerRevisions.

Merged into :data:`lab.api.printers.PRINTERS`. The cells follow kubectl's printers:
at most three endpoints are listed, then ``+ N more...``; a PV's CLAIM is
``namespace/name`` of its ``claimRef``; a ControllerRevision's CONTROLLER is
``<kind>.<group>/<name>`` of its controller ownerReference.
"""

from __future__ import annotations

from typing import Any

from lab.api.columns import AGE, NAME, Column, integer, path
from lab.api.fields import as_int, as_list, as_str, dig, meta

__all__ = ["OBJECT_PRINTERS"]

_SHORT_MODES = {
    "ReadWriteOnce": "RWO",
    "ReadOnlyMany": "ROX",
    "ReadWriteMany": "RWX",
    "ReadWriteOncePod": "RWOP",
}
_SHOWN = 3


def _listed(items: list[str], empty: str) -> str:
    if not items:
        return empty
    text = ",".join(items[:_SHOWN])
    return text + (f" + {len(items) - _SHOWN} more..." if len(items) > _SHOWN else "")


def _endpoints(ep: dict[str, Any], _now: float) -> str:
    subsets = as_list(ep.get("subsets"))
    if not subsets:
        return "<none>"
    items: list[str] = []
    for subset in subsets:
        ips = [as_str(dig(a, "ip")) for a in as_list(dig(subset, "addresses"))]
        ports = as_list(dig(subset, "ports"))
        if not ports:  # a headless service without ports
            items += ips
        for port in ports:
            items += [f"{ip}:{as_int(dig(port, 'port'))}" for ip in ips]
    return _listed(items, "")


def _slice_ports(eps: dict[str, Any], _now: float) -> str:
    ports = [
        str(as_int(dig(p, "port"))) if dig(p, "port") is not None else as_str(dig(p, "name")) or "*"
        for p in as_list(eps.get("ports"))
    ]
    return _listed(ports, "<unset>")


def _slice_endpoints(eps: dict[str, Any], _now: float) -> str:
    addresses = [as_str(a) for e in as_list(eps.get("endpoints")) for a in as_list(dig(e, "addresses"))]
    return _listed(addresses, "<unset>")


def _pv_modes(pv: dict[str, Any], _now: float) -> str:
    return ",".join(_SHORT_MODES.get(as_str(m), as_str(m)) for m in as_list(dig(pv, "spec", "accessModes")))


def _pv_claim(pv: dict[str, Any], _now: float) -> str:
    ref = dig(pv, "spec", "claimRef")
    if not isinstance(ref, dict):
        return ""
    return f"{as_str(ref.get('namespace'))}/{as_str(ref.get('name'))}"


def _revision_controller(rev: dict[str, Any], _now: float) -> str:
    for ref in as_list(meta(rev).get("ownerReferences")):
        if isinstance(ref, dict) and ref.get("controller") is True:
            group = as_str(ref.get("apiVersion")).rpartition("/")[0]
            kind = as_str(ref.get("kind")).lower() + (f".{group}" if group else "")
            return f"{kind}/{as_str(ref.get('name'))}"
    return "<none>"


OBJECT_PRINTERS: dict[str, list[Column]] = {
    "persistentvolumes": [
        NAME,
        Column("Capacity", path("spec", "capacity", "storage", default="")),
        Column("Access Modes", _pv_modes),
        Column("Reclaim Policy", path("spec", "persistentVolumeReclaimPolicy", default="")),
        Column("Status", path("status", "phase", default="")),
        Column("Claim", _pv_claim),
        Column("StorageClass", path("spec", "storageClassName", default="")),
        Column("VolumeAttributesClass", path("spec", "volumeAttributesClassName", default="<unset>")),
        Column("Reason", path("status", "reason", default="")),
        AGE,
        Column("VolumeMode", path("spec", "volumeMode", default=""), priority=1),
    ],
    "endpoints": [NAME, Column("Endpoints", _endpoints), AGE],
    "endpointslices.discovery.k8s.io": [
        NAME,
        Column("AddressType", path("addressType", default="")),
        Column("Ports", _slice_ports),
        Column("Endpoints", _slice_endpoints),
        AGE,
    ],
    "controllerrevisions.apps": [
        NAME,
        Column("Controller", _revision_controller),
        Column("Revision", integer("revision"), "integer"),
        AGE,
    ],
}
