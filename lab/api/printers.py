"""Table columns of the core (v1) kinds, as ``kubectl get`` shows them; :data:`PRINTERS` has all kinds.

Pod STATUS follows kubectl's rules (waiting/terminated reasons, ``Init:x/y``,
``Terminating`` once ``deletionTimestamp`` is set); READY counts ready container
statuses over spec containers; RESTARTS adds ``(5m ago)`` from the last termination.
Node STATUS is ``Ready``/``NotReady``/``Unknown`` plus ``,SchedulingDisabled`` when
cordoned. Kinds not listed print NAME and AGE.
"""

from __future__ import annotations

from typing import Any

from lab.api.columns import AGE, NAME, SELECTOR, Cell, Column, count, path, since
from lab.api.fields import as_dict, as_int, as_list, as_str, dig, human_duration, meta, parse_time
from lab.api.printers_apps import APPS_PRINTERS
from lab.api.printers_objects import OBJECT_PRINTERS

__all__ = ["PRINTERS"]


def _ready_condition(conditions: Any) -> str | None:
    for cond in as_list(conditions):
        if isinstance(cond, dict) and cond.get("type") == "Ready":
            return as_str(cond.get("status"))
    return None


def _pod_status(pod: dict[str, Any], _now: float) -> str:
    status = as_dict(pod.get("status"))
    reason = as_str(status.get("reason")) or as_str(status.get("phase")) or "Unknown"
    init_specs = as_list(dig(pod, "spec", "initContainers"))
    for i, cs in enumerate(as_list(status.get("initContainerStatuses"))):
        term, wait = dig(cs, "state", "terminated"), dig(cs, "state", "waiting")
        if isinstance(term, dict) and as_int(term.get("exitCode")) != 0:
            reason = "Init:" + (as_str(term.get("reason")) or f"ExitCode:{as_int(term.get('exitCode'))}")
            break
        if isinstance(wait, dict) and as_str(wait.get("reason")) not in ("", "PodInitializing"):
            reason = "Init:" + as_str(wait.get("reason"))
            break
        if not isinstance(term, dict):
            reason = f"Init:{i}/{len(init_specs)}"
            break
    else:
        running_ready = False
        for cs in reversed(as_list(status.get("containerStatuses"))):
            state = as_dict(dig(cs, "state"))
            if isinstance(state.get("waiting"), dict) and as_str(state["waiting"].get("reason")):
                reason = as_str(state["waiting"].get("reason"))
            elif isinstance(state.get("terminated"), dict):
                term = state["terminated"]
                reason = as_str(term.get("reason")) or f"ExitCode:{as_int(term.get('exitCode'))}"
            elif isinstance(state.get("running"), dict) and dig(cs, "ready") is True:
                running_ready = True
        if reason == "Completed" and running_ready:
            reason = "Running" if _ready_condition(status.get("conditions")) == "True" else "NotReady"
    if meta(pod).get("deletionTimestamp") is not None:
        reason = "Unknown" if as_str(status.get("reason")) == "NodeLost" else "Terminating"
    return reason


def _pod_ready(pod: dict[str, Any], _now: float) -> str:
    total = len(as_list(dig(pod, "spec", "containers")))
    ready = sum(1 for cs in as_list(dig(pod, "status", "containerStatuses")) if dig(cs, "ready") is True)
    return f"{ready}/{total}"


def _pod_restarts(pod: dict[str, Any], now: float) -> str:
    restarts, last = 0, None
    for cs in as_list(dig(pod, "status", "containerStatuses")):
        restarts += as_int(dig(cs, "restartCount"))
        finished = parse_time(dig(cs, "lastState", "terminated", "finishedAt"))
        if finished is not None and (last is None or finished > last):
            last = finished
    return (
        f"{restarts} ({human_duration(now - last)} ago)" if restarts and last is not None else str(restarts)
    )


def _node_status(node: dict[str, Any], _now: float) -> str:
    ready = _ready_condition(dig(node, "status", "conditions"))
    text = {"True": "Ready", "False": "NotReady"}.get(ready or "", "Unknown")
    return text + (",SchedulingDisabled" if dig(node, "spec", "unschedulable") is True else "")


def _node_roles(node: dict[str, Any], _now: float) -> str:
    labels = as_dict(meta(node).get("labels"))
    roles = sorted(
        {
            k.split("/", 1)[1]
            for k in labels
            if k.startswith("node-role.kubernetes.io/") and k.split("/", 1)[1]
        }
        | ({labels["kubernetes.io/role"]} if labels.get("kubernetes.io/role") else set())
    )
    return ",".join(roles) or "<none>"


def _node_ip(kind: str) -> Cell:
    def cell(node: dict[str, Any], _now: float) -> str:
        for addr in as_list(dig(node, "status", "addresses")):
            if dig(addr, "type") == kind:
                return as_str(dig(addr, "address"))
        return "<none>"

    return cell


def _access_modes(pvc: dict[str, Any], _now: float) -> str:
    short = {
        "ReadWriteOnce": "RWO",
        "ReadOnlyMany": "ROX",
        "ReadWriteMany": "RWX",
        "ReadWriteOncePod": "RWOP",
    }
    return ",".join(short.get(m, str(m)) for m in as_list(dig(pvc, "status", "accessModes")))


def _ports(svc: dict[str, Any], _now: float) -> str:
    parts = []
    for p in as_list(dig(svc, "spec", "ports")):
        node = f":{as_int(dig(p, 'nodePort'))}" if dig(p, "nodePort") else ""
        parts.append(f"{as_int(dig(p, 'port'))}{node}/{as_str(dig(p, 'protocol'), 'TCP')}")
    return ",".join(parts) or "<none>"


def _event_object(ev: dict[str, Any], _now: float) -> str:
    kind, name = as_str(dig(ev, "involvedObject", "kind")).lower(), as_str(dig(ev, "involvedObject", "name"))
    return f"{kind}/{name}" if name else kind


def _event_first(ev: dict[str, Any], now: float) -> str:
    """kubectl's FIRST SEEN: ``firstTimestamp``, else ``eventTime``."""
    return since(dig(ev, "firstTimestamp") or dig(ev, "eventTime"), now)


def _event_seen(ev: dict[str, Any], now: float) -> str:
    """kubectl's LAST SEEN: the series' last observation, ``lastTimestamp``, else the first seen."""
    if isinstance(ev.get("series"), dict):
        return since(dig(ev, "series", "lastObservedTime"), now)
    if dig(ev, "lastTimestamp"):
        return since(dig(ev, "lastTimestamp"), now)
    return _event_first(ev, now)


def _event_count(ev: dict[str, Any], _now: float) -> int:
    if isinstance(ev.get("series"), dict):
        return as_int(dig(ev, "series", "count"))
    return as_int(ev.get("count")) or 1


def _event_source(ev: dict[str, Any], _now: float) -> str:
    """kubectl's formatEventSource: ``component, host``, else the reporting controller and instance."""
    component = as_str(dig(ev, "source", "component")) or as_str(ev.get("reportingComponent"))
    host = as_str(dig(ev, "source", "host")) or as_str(ev.get("reportingInstance"))
    return ", ".join(p for p in (component, host) if p)


PRINTERS: dict[str, list[Column]] = {
    **APPS_PRINTERS,
    **OBJECT_PRINTERS,
    "pods": [
        NAME,
        Column("Ready", _pod_ready),
        Column("Status", _pod_status),
        Column("Restarts", _pod_restarts),
        AGE,
        Column("IP", path("status", "podIP"), priority=1),
        Column("Node", path("spec", "nodeName"), priority=1),
        Column("Nominated Node", path("status", "nominatedNodeName"), priority=1),
        Column("Readiness Gates", lambda o, _n: "<none>", priority=1),
    ],
    "nodes": [
        NAME,
        Column("Status", _node_status),
        Column("Roles", _node_roles),
        AGE,
        Column("Version", path("status", "nodeInfo", "kubeletVersion", default="")),
        Column("Internal-IP", _node_ip("InternalIP"), priority=1),
        Column("External-IP", _node_ip("ExternalIP"), priority=1),
        Column("OS-Image", path("status", "nodeInfo", "osImage", default="<unknown>"), priority=1),
        Column(
            "Kernel-Version", path("status", "nodeInfo", "kernelVersion", default="<unknown>"), priority=1
        ),
        Column(
            "Container-Runtime",
            path("status", "nodeInfo", "containerRuntimeVersion", default="<unknown>"),
            priority=1,
        ),
    ],
    "namespaces": [NAME, Column("Status", path("status", "phase", default="")), AGE],
    "services": [
        NAME,
        Column("Type", path("spec", "type", default="ClusterIP")),
        Column("Cluster-IP", path("spec", "clusterIP")),
        Column("External-IP", lambda o, _n: ",".join(as_list(dig(o, "spec", "externalIPs"))) or "<none>"),
        Column("Port(s)", _ports),
        AGE,
        SELECTOR,
    ],
    "secrets": [
        NAME,
        Column("Type", path("type", default="Opaque")),
        Column("Data", count("data"), "integer"),
        AGE,
    ],
    "configmaps": [
        NAME,
        Column("Data", lambda o, n: count("data")(o, n) + count("binaryData")(o, n), "integer"),
        AGE,
    ],
    "serviceaccounts": [NAME, Column("Secrets", count("secrets"), "integer"), AGE],
    "persistentvolumeclaims": [
        NAME,
        Column("Status", path("status", "phase", default="")),
        Column("Volume", path("spec", "volumeName", default="")),
        Column("Capacity", path("status", "capacity", "storage", default="")),
        Column("Access Modes", _access_modes),
        Column("StorageClass", path("spec", "storageClassName", default="<unset>")),
        Column(
            "VolumeAttributesClass", path("spec", "volumeAttributesClassName", default="<unset>"), priority=1
        ),
        AGE,
        Column("VolumeMode", path("spec", "volumeMode", default=""), priority=1),
    ],
    "events": [
        Column("Last Seen", _event_seen),
        Column("Type", path("type", default="")),
        Column("Reason", path("reason", default="")),
        Column("Object", _event_object),
        Column("Subobject", path("involvedObject", "fieldPath", default=""), priority=1),
        Column("Source", _event_source, priority=1),
        Column("Message", lambda o, _n: as_str(o.get("message")).strip()),
        Column("First Seen", _event_first, priority=1),
        Column("Count", _event_count, "integer", priority=1),
        Column("Name", lambda o, _n: as_str(meta(o).get("name")), priority=1, format="name"),
    ],
}
