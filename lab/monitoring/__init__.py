"""Monitoring of the embedded lab: what probes read, and where each piece lives.

``python -m lab up`` (unless ``--no-monitoring``) starts Debian's Prometheus and
Alertmanager (:mod:`lab.monitoring.stack`) on free loopback ports, with their configs,
data and logs under ``<lab>/monitoring/``, and records where they are in
``<lab>/monitoring/endpoints.json``; ``lab down`` stops them and removes that file.
Prometheus scrapes the control plane's kube-state-metrics stand-in
(:mod:`lab.monitoring.ksm`), the lab operator and the load processes (file_sd target
files in ``<lab>/monitoring/targets/``) and evaluates the repository's alert rules
(``deploy/alerts/mssql-harness.rules.yaml``).

Probes call :func:`monitoring_endpoints` (this module imports nothing heavy).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError
from lab.paths import project_root

__all__ = ["ENDPOINTS_FILE", "MonitoringEndpoints", "default_lab_home", "monitoring_endpoints"]

ENDPOINTS_FILE = "endpoints.json"


@dataclass(frozen=True)
class MonitoringEndpoints:
    """Where the lab's monitoring is (``<lab>/monitoring/endpoints.json``)."""

    prometheus: str
    alertmanager: str
    scrape_interval_seconds: float
    evaluation_interval_seconds: float
    targets_dir: Path
    rules_file: Path
    kube_state_metrics: str | None = None


def default_lab_home() -> Path:
    """The lab folder without creating it: ``$HARNESS_LAB_DIR``, else ``.lab`` at the project root."""
    override = os.environ.get("HARNESS_LAB_DIR")
    return Path(override) if override else project_root() / ".lab"


def monitoring_endpoints(lab_home: Path | None = None) -> MonitoringEndpoints | None:
    """The lab's monitoring endpoints; None when the lab has no monitoring (none started, or stopped).

    ``lab_home`` is the lab folder (default :func:`default_lab_home`). LabError (one line)
    when the file exists but is not what ``lab up`` writes.
    """
    path = (lab_home if lab_home is not None else default_lab_home()) / "monitoring" / ENDPOINTS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LabError(f"cannot read {path} ({exc}): run `python -m lab up` again to rewrite it") from None
    try:
        return MonitoringEndpoints(
            prometheus=str(data["prometheus"]),
            alertmanager=str(data["alertmanager"]),
            scrape_interval_seconds=float(data["scrape_interval_seconds"]),
            evaluation_interval_seconds=float(data["evaluation_interval_seconds"]),
            targets_dir=Path(data["targets_dir"]),
            rules_file=Path(data["rules_file"]),
            kube_state_metrics=str(data["kube_state_metrics"]) if data.get("kube_state_metrics") else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LabError(f"{path} lacks or mangles {exc}: run `python -m lab up` again to rewrite it") from None
