"""Fault injection and measurement: Chaos Toolkit activities, the fault log, RTO/RPO.

``chaos discover --no-install mssql-chaos-harness`` lists the activities through
:func:`discover` (reached by way of ``chaosmssql``). Every module it names holds actions
only or probes only, so each is listed with the type Chaos Toolkit gives it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ACTION_MODULES", "PROBE_MODULES", "discover"]

#: the modules whose activities are actions, in the order ``chaos discover`` lists them.
ACTION_MODULES = (
    "probes.k8s.actions",
    "probes.k8s.node_loss_actions",
    "probes.k8s.evidence",
    "probes.k8s.backup_actions",
    "probes.k8s.alert_drill_actions",
)
#: the modules whose activities are probes, in the order ``chaos discover`` lists them.
PROBE_MODULES = (
    "probes.k8s.probes",
    "probes.k8s.node_loss_probes",
    "probes.k8s.preflight",
    "probes.k8s.backup_probes",
    "probes.k8s.alert_drill_probes",
)


def discover(discover_system: bool = True) -> Any:
    """The project's Chaos Toolkit activities (actions, probes) with their typed arguments."""
    from importlib.metadata import PackageNotFoundError, version

    from chaoslib.discovery.discover import discover_actions, discover_probes, initialize_discovery_result

    try:
        release = version("mssql-chaos-harness")
    except PackageNotFoundError:
        release = "unknown"
    discovery = initialize_discovery_result("mssql-chaos-harness", release, "mssql")
    for module in ACTION_MODULES:
        discovery["activities"].extend(discover_actions(module))
    for module in PROBE_MODULES:
        discovery["activities"].extend(discover_probes(module))
    return discovery
