"""Control-plane observations reported beside the client-observed RTO.

Probes that measure the control plane (pod Ready again, MSSQLInstance Ready again,
the operator reconciling again after a restart) append one JSON line each to
``<run>/observations.jsonl``; the report shows them next to the RTO, never instead of it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["observe", "read_observations", "OBSERVATIONS_NAME"]

OBSERVATIONS_NAME = "observations.jsonl"


def observe(name: str, value: Any) -> None:
    """Append ``{"name", "value"}`` to the current run's observations (no-op outside a run)."""
    folder = os.environ.get("HARNESS_RUN_DIR")
    if not folder:
        return
    with (Path(folder) / OBSERVATIONS_NAME).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"name": name, "value": value}, default=str) + "\n")


def read_observations(run_dir: Path) -> list[dict[str, Any]]:
    """Every observation of a run, in the order taken (torn lines skipped)."""
    path = Path(run_dir) / OBSERVATIONS_NAME
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
