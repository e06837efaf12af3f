"""Fault injection and measurement: Chaos Toolkit activities, the fault log, RTO/RPO.

``chaos discover --no-install probes`` lists the activities through :func:`discover`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["discover"]


def discover(discover_system: bool = True) -> Any:
    """The project's Chaos Toolkit activities (actions, probes) with their typed arguments."""
    from importlib.metadata import PackageNotFoundError, version

    from chaoslib.discovery.discover import discover_actions, discover_probes, initialize_discovery_result

    try:
        release = version("mssql-chaos-harness")
    except PackageNotFoundError:
        release = "unknown"
    discovery = initialize_discovery_result("mssql-chaos-harness", release, "mssql")
    discovery["activities"].extend(discover_actions("probes.k8s.actions"))
    from probes.k8s.node_loss import PROBES as NODE_LOSS_PROBES

    for activity in discover_actions("probes.k8s.node_loss"):
        if activity["name"] in NODE_LOSS_PROBES:
            activity["type"] = "probe"
        discovery["activities"].append(activity)
    discovery["activities"].extend(discover_probes("probes.k8s.probes"))
    discovery["activities"].extend(discover_actions("probes.k8s.evidence"))
    discovery["activities"].extend(discover_probes("probes.k8s.preflight"))
    from probes.k8s.backups import PROBES as BACKUP_PROBES

    for activity in discover_actions("probes.k8s.backups"):
        if activity["name"] in BACKUP_PROBES:
            activity["type"] = "probe"
        discovery["activities"].append(activity)
    from probes.k8s.alert_drill import PROBES as DRILL_PROBES

    for activity in discover_actions("probes.k8s.alert_drill"):
        if activity["name"] in DRILL_PROBES:
            activity["type"] = "probe"
        discovery["activities"].append(activity)
    return discovery
