"""The soak as a Chaos Toolkit action: the method of ``experiments/opt-in/soak.json``.

The control has already checked the soak's settings (before starting any load) and
started the load; this action reads the same settings from the experiment's
configuration (``HARNESS_SOAK_*``), runs :class:`orchestration.soak.SoakRunner` in the
run folder for the planned time and returns the soak's summary. A soak that cannot run,
or is interrupted, interrupts the experiment (``chaos run`` exits 1, its journal says
why); what was checked until then stays in ``soak/`` and the report marks it incomplete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chaoslib.exceptions import InterruptExecution
from chaoslib.types import Configuration, Secrets

from common.config import ConfigurationError
from orchestration.configuration import check_configuration
from orchestration.errors import OrchestrationError
from orchestration.soak import SoakRunner
from orchestration.soak_settings import soak_settings
from probes.errors import ProbeError
from probes.k8s import kube

__all__ = ["soak"]


def _tenants(run_dir: Path) -> list[str]:
    try:
        names = json.loads((run_dir / "run.json").read_text()).get("tenants") or []
    except (OSError, ValueError):
        names = []
    if not names:
        raise OrchestrationError(
            f"{run_dir}/run.json names no tenants: run the soak through the harness's control"
        )
    return [str(n) for n in names]


def soak(configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Chaos Toolkit action: run the soak for ``soak_seconds`` and return its summary.

    Every ``soak_check_seconds``: backup ages, failed backup Jobs, pod restarts, memory and
    connections, ack rate and p99 per tenant (``soak/checks.jsonl``); every
    ``soak_drill_seconds`` a point-in-time-restore drill; every ``soak_fault_every_seconds``
    the ``soak_fault``. Needs the harness's control (``orchestration.control``) to have
    started the load.
    """
    run_dir = kube.run_dir()
    try:
        if run_dir is None:
            raise OrchestrationError(
                "no run folder: the soak runs under the harness's control "
                "(experiments/opt-in/soak.json declares it)"
            )
        settings = soak_settings(check_configuration(configuration))
        runner = SoakRunner(settings, run_dir, _tenants(run_dir), configuration or {}, secrets)
        return runner.run()
    except (OrchestrationError, ProbeError, ConfigurationError) as exc:
        raise InterruptExecution(f"soak: {exc}") from None
    except KeyboardInterrupt:
        raise InterruptExecution("soak interrupted: the report covers the rounds checked so far") from None
    except Exception as exc:  # one line, and the report still covers the rounds so far
        raise InterruptExecution(f"soak: {type(exc).__name__}: {exc}") from None
