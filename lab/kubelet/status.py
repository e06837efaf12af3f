"""Pod status as the kubelet reports it: phase, conditions, container statuses.

Pure functions over :class:`ContainerState` values, so the rules can be tested
without processes. The phase follows the real kubelet's ``getPhase``: a container
that never started keeps the pod Pending; any running one makes it Running; when
all have stopped, ``Always`` means Running (they restart), all exit 0 means
Succeeded, otherwise ``Never`` means Failed and ``OnFailure`` Running. Succeeded and
Failed are final. Conditions keep their ``lastTransitionTime`` while their status
does not change; condition types the kubelet does not own are kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.times import format_time as rfc3339
from common.times import parse_time as parse_rfc3339

__all__ = [
    "OWNED_CONDITIONS",
    "TERMINAL",
    "ContainerState",
    "build_status",
    "parse_rfc3339",
    "pod_phase",
    "rfc3339",
]

Obj = dict[str, Any]
TERMINAL = ("Succeeded", "Failed")
OWNED_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready", "PodScheduled")


@dataclass
class ContainerState:
    """What the kubelet knows about one container (init or regular)."""

    name: str
    image: str
    state: str = "waiting"
    reason: str = "ContainerCreating"
    message: str = ""
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    pid: int | None = None
    last_terminated: Obj | None = None

    @property
    def container_id(self) -> str:
        return f"lab://{self.pid}" if self.pid else ""

    def terminated_view(self) -> Obj:
        view: Obj = {
            "exitCode": self.exit_code if self.exit_code is not None else 0,
            "reason": self.reason or ("Completed" if not self.exit_code else "Error"),
            "startedAt": rfc3339(self.started_at) if self.started_at else None,
            "finishedAt": rfc3339(self.finished_at) if self.finished_at else None,
        }
        if self.message:
            view["message"] = self.message
        if self.container_id:
            view["containerID"] = self.container_id
        return view

    def to_api(self) -> Obj:
        """The ``containerStatuses`` entry."""
        if self.state == "running":
            state: Obj = {"running": {"startedAt": rfc3339(self.started_at or 0)}}
        elif self.state == "terminated":
            state = {"terminated": self.terminated_view()}
        else:
            waiting: Obj = {"reason": self.reason}
            if self.message:
                waiting["message"] = self.message
            state = {"waiting": waiting}
        body: Obj = {
            "name": self.name,
            "image": self.image,
            "imageID": f"lab://{self.image}",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
        }
        if self.container_id:
            body["containerID"] = self.container_id
        return body


def pod_phase(
    restart_policy: str, init: list[ContainerState], regular: list[ContainerState], previous: str = ""
) -> str:
    """The pod phase (see the module doc)."""
    if previous in TERMINAL:
        return previous
    for c in init:
        if c.state == "terminated" and c.exit_code not in (0, None) and restart_policy == "Never":
            return "Failed"
    if any(not (c.state == "terminated" and c.exit_code == 0) for c in init):
        return "Pending"
    running = sum(1 for c in regular if c.state == "running")
    waiting = sum(1 for c in regular if c.state == "waiting" and not c.last_terminated)
    stopped = sum(
        1 for c in regular if c.state == "terminated" or (c.state == "waiting" and c.last_terminated)
    )
    succeeded = sum(1 for c in regular if c.state == "terminated" and c.exit_code == 0)
    if waiting > 0 or not regular:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(
    previous: dict[Any, Obj], ctype: str, ok: bool, now: float, reason: str = "", message: str = ""
) -> Obj:
    status = "True" if ok else "False"
    old = previous.get(ctype)
    since = old.get("lastTransitionTime") if old and old.get("status") == status else None
    cond: Obj = {
        "type": ctype,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": since or rfc3339(now),
    }
    if reason and not ok:
        cond["reason"] = reason
        if message:
            cond["message"] = message
    return cond


def build_status(
    old_status: Obj,
    *,
    phase: str,
    init: list[ContainerState],
    regular: list[ContainerState],
    start_time: float,
    now: float,
    terminating: bool = False,
) -> Obj:
    """The pod's whole ``status`` object, from the previous one and the containers' states."""
    previous = {c.get("type"): c for c in old_status.get("conditions") or [] if isinstance(c, dict)}
    initialized = all(c.state == "terminated" and c.exit_code == 0 for c in init)
    unready = [c.name for c in regular if not c.ready]
    all_ready = bool(regular) and not unready and phase == "Running" and not terminating
    if phase in TERMINAL:
        reason, message = "PodCompleted", ""
    else:
        reason, message = "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]"
    sandbox = phase not in TERMINAL and not terminating
    conditions = [
        _condition(previous, "PodReadyToStartContainers", sandbox, now),
        _condition(
            previous,
            "Initialized",
            initialized or phase in TERMINAL,
            now,
            "ContainersNotInitialized",
            "containers with incomplete status: "
            f"[{' '.join(c.name for c in init if c.state != 'terminated')}]",
        ),
        _condition(previous, "Ready", all_ready, now, reason, message),
        _condition(previous, "ContainersReady", all_ready, now, reason, message),
        _condition(previous, "PodScheduled", True, now),
    ]
    conditions += [c for t, c in previous.items() if t not in OWNED_CONDITIONS]
    status: Obj = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": "127.0.0.1",
        "podIPs": [{"ip": "127.0.0.1"}],
        "startTime": old_status.get("startTime") or rfc3339(start_time),
        "qosClass": old_status.get("qosClass") or "BestEffort",
        "containerStatuses": [c.to_api() for c in regular],
    }
    if init:
        status["initContainerStatuses"] = [c.to_api() for c in init]
    for key in ("nominatedNodeName", "reason", "message"):
        if old_status.get(key):
            status[key] = old_status[key]
    return status
