"""Chaos Toolkit probes: steady state, recovery, and the control plane's own times.

``instances_ready`` and ``write_success_rate`` make the steady-state hypothesis (every
tenant's MSSQLInstance Ready; every tenant writing, fresh, with at least 99% of its
writes of the last 10 s acknowledged). A load that died, or a tenant gone quiet, fails
the steady state: liveness is measured, not assumed (:mod:`probes.live`).
``wait_for_recovery`` and ``wait_for_canary`` bound the wait after a fault and record
the control-plane times (instance Ready again, operator reconciling again) beside the
client-observed RTO, which is computed from the journal afterwards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from common.crd import is_restore_target
from loadgen.discovery import CrdCoordinates, lookup, name_list
from loadgen.runner import active_load
from probes.errors import ProbeError
from probes.faultlog import FAULT_LOG_NAME, read_faults
from probes.k8s import kube
from probes.k8s.crs import custom_resources
from probes.live import live_journal, run_facts
from probes.observations import observe, read_observations

logger = logging.getLogger("chaostoolkit")

__all__ = ["instances_ready", "write_success_rate", "wait_for_recovery", "wait_for_canary"]

Configuration = Mapping[str, Any] | None
Secrets = Mapping[str, Any] | None


def _instances(namespace: str, configuration: Configuration, secrets: Secrets) -> list[dict[str, Any]]:
    items = custom_resources(configuration, secrets)["instance"].list(namespace)
    names = name_list((configuration or {}).get("tenants"))
    if names:
        return [i for i in items if i["metadata"]["name"] in names]
    return [i for i in items if not is_restore_target(i)]  # restore targets are not tenants


def _not_ready(namespace: str, configuration: Configuration, secrets: Secrets) -> list[str]:
    coords = CrdCoordinates.from_configuration(configuration or {})
    items = _instances(namespace, configuration, secrets)
    if not items:
        raise ProbeError(f"no MSSQLInstance in namespace {namespace}")
    return [i["metadata"]["name"] for i in items if str(lookup(i, coords.ready_path)) != "True"]


def instances_ready(
    namespace: str = "tenants", configuration: Configuration = None, secrets: Secrets = None
) -> bool:
    """True when every tenant's MSSQLInstance reports condition Ready=True."""
    return not _not_ready(namespace, configuration, secrets)


def _check_load_alive() -> None:
    load = active_load()
    problem = load.problem() if load is not None else None
    if problem:
        raise ProbeError(problem)


def write_success_rate(window_seconds: float = 10.0) -> float:
    """The lowest per-tenant share of acknowledged writes among attempts of the last ``window_seconds``.

    A tenant counts as 0.0 when it is stale: its newest acknowledged write is older
    than two write intervals (at least 1 s), or it acknowledged fewer than half the writes it
    was offered in the window. A load process that died is a ProbeError naming how.
    """
    folder = kube.run_dir()
    if folder is None:
        raise ProbeError("write_success_rate needs the load control (HARNESS_RUN_DIR is not set)")
    _check_load_alive()
    journal = live_journal(folder)
    tenants, rate = run_facts(folder)
    journal.refresh()
    tenants = tenants or sorted(journal.first_seen)
    if not tenants:
        return 0.0
    health = journal.health(tenants, window_seconds, rate)
    for h in health:
        if h.stale:
            logger.warning(f"tenant {h.tenant} is not writing steadily: {h.stale}")
    return min(h.success_rate for h in health)


def _last_fault_at() -> float | None:
    """When the last fault's injection was over: its injection time plus how long it may
    still have been going on (killing a node's processes takes a few milliseconds)."""
    folder = kube.run_dir()
    if folder is None:
        return None
    faults = read_faults(folder / FAULT_LOG_NAME)
    if not faults:
        return None
    uncertainty = faults[-1].details.get("injection_uncertainty_seconds")
    spread = float(uncertainty) if isinstance(uncertainty, int | float) and uncertainty > 0 else 0.0
    return faults[-1].injected_at + spread


def wait_for_recovery(
    namespace: str = "tenants",
    timeout: float = 120.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Wait until every instance is Ready and every tenant acknowledged a write sent after the last fault.

    Returns the seconds from the fault to each; raises ProbeError after ``timeout``
    (set it to twice the RTO objective), naming what had not recovered.
    """
    fault_at = _last_fault_at() or time.time()
    folder = kube.run_dir()
    deadline = time.monotonic() + timeout
    ready_at: float | None = None
    missing: list[str] = []
    not_ready: list[str] = []
    while time.monotonic() < deadline:
        _check_load_alive()
        not_ready = _not_ready(namespace, configuration, secrets)
        if not not_ready and ready_at is None:
            ready_at = time.time()
        missing = []
        if folder is not None:
            journal = live_journal(folder)
            journal.refresh()
            tenants = run_facts(folder)[0] or sorted(journal.first_seen)
            # an ack counts only for a write sent after the fault: one in flight at the fault
            # may be answered by the server just before it died
            missing = sorted(t for t in tenants if journal.last_ack_start.get(t, float("-inf")) <= fault_at)
        if not not_ready and not missing:
            result = {
                "instances_ready_seconds": round((ready_at or time.time()) - fault_at, 3),
                "writes_acknowledged_seconds": round(time.time() - fault_at, 3),
            }
            observe("recovery", result)
            return result
        time.sleep(0.5)
    observe("recovery", {"timeout": timeout, "not_ready": not_ready, "no_ack": missing})
    raise ProbeError(
        f"not recovered within {timeout:g}s: instances not Ready {not_ready or 'none'}, "
        f"tenants without an acknowledged write since the fault {missing or 'none'}"
    )


def wait_for_canary(
    tenant: str,
    namespace: str = "tenants",
    timeout: float = 120.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> float:
    """Wait until the operator echoes the last canary of ``tenant``; returns seconds since the last fault.

    That is the operator's own recovery time: it is reconciling again.
    """
    folder = kube.run_dir()
    canaries = [o["value"] for o in read_observations(folder) if o["name"] == "canary_set"] if folder else []
    wanted = next((c["value"] for c in reversed(canaries) if c["tenant"] == tenant), None)
    if wanted is None:
        raise ProbeError(f"no canary was set on {tenant}: run set_canary first")
    fault_at = _last_fault_at() or time.time()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for item in _instances(namespace, {**(configuration or {}), "tenants": [tenant]}, secrets):
            if (item.get("status") or {}).get("observedCanary") == wanted:
                seconds = round(time.time() - fault_at, 3)
                observe("operator_reconciling_again_seconds", seconds)
                return seconds
        time.sleep(0.25)
    observe("operator_reconciling_again_seconds", None)
    raise ProbeError(f"the operator did not reconcile {tenant} within {timeout:g}s (canary not echoed)")
