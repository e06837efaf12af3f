"""A pod's containers as the pod worker tracks them: one :class:`Slot` each.

:func:`adopt_slot` rebuilds a slot from the pod's last published status, so a kubelet
that restarts knows what ran before it: a container that was ``running`` when its node
went down counts as terminated with exit 137 (restarted with ``restartCount`` + 1, or
failed under ``restartPolicy: Never``), a ``terminated`` one keeps its exit.
:func:`stop_slots` stops containers the way the kubelet stops a pod (SIGTERM to each
main process, a grace period, then SIGKILL to every process left).
"""

from __future__ import annotations

import contextlib
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from lab.kubelet.probes import ProbeContext, ProbeState
from lab.kubelet.runtime import ContainerProcess
from lab.kubelet.status import ContainerState, parse_rfc3339

__all__ = ["Slot", "adopt_slot", "kill_slots", "stop_slots"]

Obj = dict[str, Any]


@dataclass
class Slot:
    """One container of the pod and everything the worker tracks about it."""

    spec: Obj
    init: bool
    state: ContainerState
    proc: ContainerProcess | None = None
    probes: dict[str, ProbeState] = field(default_factory=dict)
    ctx: ProbeContext | None = None
    next_start: float = 0.0
    backoff: float = 0.0
    has_run: bool = False
    kill_reason: str = ""
    refreshed: float = 0.0

    @property
    def name(self) -> str:
        return self.state.name


def adopt_slot(spec: Obj, init: bool, statuses: Any) -> Slot:
    """The slot of container ``spec``, carrying over what ``statuses`` (the pod's) say about it."""
    name = str(spec.get("name", ""))
    state = ContainerState(name=name, image=str(spec.get("image", "")))
    slot = Slot(spec=spec, init=init, state=state)
    prev = next((s for s in statuses or [] if isinstance(s, dict) and s.get("name") == name), None)
    if prev is None:
        return slot
    state.restart_count = int(prev.get("restartCount") or 0)
    last = (prev.get("lastState") or {}).get("terminated")
    current = prev.get("state") or {}
    if last:
        state.last_terminated = last
        slot.has_run = True
    if "running" in current:
        slot.has_run = True
        state.state, state.exit_code, state.reason = "terminated", 137, "Error"
        state.message = "the container was running when its node went down"
        state.started_at = parse_rfc3339((current["running"] or {}).get("startedAt"))
        state.finished_at = time.time()
    elif "terminated" in current:
        slot.has_run = True
        term = current["terminated"] or {}
        state.state, state.exit_code = "terminated", int(term.get("exitCode") or 0)
        state.reason, state.message = str(term.get("reason") or ""), str(term.get("message") or "")
        state.started_at = parse_rfc3339(term.get("startedAt"))
        state.finished_at = parse_rfc3339(term.get("finishedAt")) or time.time()
    return slot


def stop_slots(running: list[Slot], grace: float) -> None:
    """SIGTERM every main process, wait up to ``grace``, SIGKILL every process left; mark them terminated."""
    for slot in running:
        assert slot.proc is not None
        slot.proc.refresh_members()
        slot.proc.signal_main(signal.SIGTERM)
    deadline = time.monotonic() + max(0.0, grace)
    while time.monotonic() < deadline and any(s.proc is not None and s.proc.poll() is None for s in running):
        time.sleep(0.02)
    for slot in running:
        assert slot.proc is not None
        code = slot.proc.kill()
        st = slot.state
        st.state, st.exit_code, st.finished_at = "terminated", code, time.time()
        st.reason = "Completed" if code == 0 else "Error"
        st.ready = st.started = False
        slot.proc, slot.probes = None, {}


def kill_slots(running: list[Slot]) -> None:
    """SIGKILL every container of ``running`` now, whatever happens (the worker failed)."""
    for slot in running:
        assert slot.proc is not None
        with contextlib.suppress(Exception):
            slot.proc.kill()
        slot.proc = None
