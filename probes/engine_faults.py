"""Faults injected straight into local engine instances, recorded in the fault log.

These act on :class:`lab.engine.Engine` processes with real signals; the Kubernetes
faults (pod eviction, node drain, ...) come through the API instead. Each function
records the fault in ``<run>/faults.jsonl`` *before* injecting it, with the wall-clock
time taken just before the signal, so RTO is never measured from a late timestamp.
"""

from __future__ import annotations

import time
from pathlib import Path

from lab.engine import Engine
from probes.faultlog import mark_ended, record_fault
from probes.model import Fault

__all__ = ["freeze_tenant", "kill_tenant"]


def freeze_tenant(engine: Engine, tenant: str, seconds: float, fault_log: Path) -> Fault:
    """SIGSTOP every process of ``tenant``'s server for ``seconds``, then SIGCONT them."""
    fault = Fault(
        name=f"freeze {tenant} {seconds:g}s",
        kind="freeze",
        target=tenant,
        injected_at=time.time(),
        details={"seconds": seconds},
    )
    record_fault(fault_log, fault)
    began = time.monotonic()
    with engine.frozen(tenant):
        time.sleep(max(0.0, seconds - (time.monotonic() - began)))
    mark_ended(fault_log, fault.name, time.time())
    return fault


def kill_tenant(engine: Engine, tenant: str, fault_log: Path, restart: bool = True) -> Fault:
    """SIGKILL ``tenant``'s whole server tree; restart it at once unless ``restart`` is False."""
    fault = Fault(
        name=f"kill {tenant}",
        kind="kill",
        target=tenant,
        injected_at=time.time(),
        details={"restart": restart},
    )
    record_fault(fault_log, fault)
    engine.kill(tenant)
    if restart:
        engine.start(tenant)
    mark_ended(fault_log, fault.name, time.time())
    return fault
