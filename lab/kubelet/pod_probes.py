"""Running a container's probes when they are due, as the kubelet's prober does.

Until the startup probe has succeeded nothing else runs; then liveness, then readiness.
Each failed probe is reported (an ``Unhealthy`` Warning, through ``report``); a startup or
liveness probe that failed its threshold means the container is killed (the caller does
it with the message :func:`check_probes` returns); readiness sets ``ready``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from lab.kubelet.probes import run_probe
from lab.kubelet.runtime import Spawner
from lab.kubelet.slots import Slot

__all__ = ["check_probes"]

log = logging.getLogger(__name__)


def check_probes(
    spawner: Spawner, slot: Slot, now: float, report: Callable[[str], None], pod: str = ""
) -> str | None:
    """Run the due probes of ``slot``'s running container; the kill message when it must be killed.

    ``report(message)`` is called for each failed probe (``Readiness probe failed: ...``);
    ``pod`` (``namespace/name``) names the pod in the log.
    """
    st, ctx = slot.state, slot.ctx
    if ctx is None or slot.proc is None:
        return None
    startup = slot.probes.get("startup")
    if startup is not None and not st.started:
        if startup.due(now):
            ok, message = run_probe(spawner, startup.spec, ctx)
            if not ok:
                report(f"Startup probe failed: {message}")
            verdict = startup.record(ok, message, time.monotonic())
            if verdict is True:
                st.started = True
                st.ready = "readiness" not in slot.probes
            elif verdict is False:
                return f"Startup probe failed: {message}"
        return None
    liveness = slot.probes.get("liveness")
    if liveness is not None and liveness.due(now):
        ok, message = run_probe(spawner, liveness.spec, ctx)
        if not ok:
            report(f"Liveness probe failed: {message}")
        if liveness.record(ok, message, time.monotonic()) is False:
            return f"Liveness probe failed: {message}"
    readiness = slot.probes.get("readiness")
    if readiness is not None and readiness.due(now):
        ok, message = run_probe(spawner, readiness.spec, ctx)
        if not ok:
            report(f"Readiness probe failed: {message}")
        verdict = readiness.record(ok, message, time.monotonic())
        if verdict is not None:
            st.ready = verdict
            log.info("%s container %s ready=%s", pod, st.name, verdict)
    return None
