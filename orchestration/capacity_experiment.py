"""The capacity sweep as a Chaos Toolkit action: ``chaos run experiments/opt-in/capacity.json``.

The experiment's configuration (``HARNESS_CAPACITY_*``) becomes the action's typed
arguments; the sweep itself is :func:`orchestration.capacity.run_sweep`. A sweep that
cannot run or is interrupted interrupts the experiment, so ``chaos run`` exits 1 and
its journal says why, instead of reporting a completed experiment.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from chaoslib.exceptions import InterruptExecution

from common.config import name_list
from orchestration.capacity import CAPACITY_NAME, run_sweep
from orchestration.capacity_settings import Settings
from orchestration.control import cli_values
from orchestration.errors import OrchestrationError
from orchestration.experiment_tree import tree_home
from probes.errors import ProbeError
from reports.capacity import answer

__all__ = ["capacity_sweep"]


def capacity_sweep(
    tenants_from: int = 2,
    tenants_to: int = 6,
    tenants_step: int = 2,
    write_rates: str = "20",
    fault: str = "pod-eviction",
    trials: int = 1,
    objective_seconds: float = 60.0,
    latency_limit_ms: float = 200.0,
    min_efficiency: float = 0.85,
    precision: int = 1,
    namespace: str = "tenants",
    template: str = "",
    experiments_dir: str = "",
    var_files: str = "",
    out: str = "runs",
    observe_seconds: float = 10.0,
    stability_seconds: float = 5.0,
) -> dict[str, Any]:
    """Chaos Toolkit action: run a capacity sweep and return its boundaries and folder.

    ``write_rates`` and ``var_files`` are comma-separated; without ``var_files`` every step
    gets the var files this ``chaos run`` was given, and without ``experiments_dir`` the
    fault experiments are looked up in the tree of the experiment being run
    (:func:`orchestration.experiment_tree.tree_home`). When the knobs, the
    target or a step cannot be run, or the sweep is interrupted, the experiment is
    interrupted (``chaos run`` then exits 1) with one line saying why; the sweep's
    instances are deleted in every case.
    """
    try:
        return _capacity_sweep(
            tenants_from, tenants_to, tenants_step, write_rates, fault, trials, objective_seconds,
            latency_limit_ms, min_efficiency, precision, namespace, template, experiments_dir, var_files, out,
            observe_seconds, stability_seconds,
        )  # fmt: skip
    except (OrchestrationError, ProbeError, ValueError) as exc:
        raise InterruptExecution(f"capacity sweep: {exc}") from None
    except KeyboardInterrupt:
        raise InterruptExecution("capacity sweep interrupted: the report covers the finished steps") from None


def _experiment_folder(argv: list[str]) -> Path:
    """The tree of the experiment this ``chaos run`` runs (the last JSON argument not a var file):
    ``experiments/`` for ``experiments/opt-in/capacity.json``."""
    var_files = set(cli_values("--var-file", argv))
    files = [a for a in argv[1:] if a.endswith((".json", ".yaml", ".yml")) and a not in var_files]
    return tree_home(Path(files[-1])) if files else Path("experiments")


def _capacity_sweep(
    tenants_from: int,
    tenants_to: int,
    tenants_step: int,
    write_rates: str,
    fault: str,
    trials: int,
    objective_seconds: float,
    latency_limit_ms: float,
    min_efficiency: float,
    precision: int,
    namespace: str,
    template: str,
    experiments_dir: str,
    var_files: str,
    out: str,
    observe_seconds: float,
    stability_seconds: float,
) -> dict[str, Any]:
    settings = Settings(
        tenants_from=int(tenants_from),
        tenants_to=int(tenants_to),
        tenants_step=int(tenants_step),
        write_rates=tuple(float(r) for r in str(write_rates).split(",") if r.strip()),
        fault=fault,
        trials=int(trials),
        objective_seconds=float(objective_seconds),
        latency_limit_ms=float(latency_limit_ms),
        min_efficiency=float(min_efficiency),
        precision=int(precision),
        namespace=namespace,
        template=Path(template) if template else None,
        experiments_dir=Path(experiments_dir) if experiments_dir else _experiment_folder(sys.argv),
        var_files=tuple(Path(p) for p in (name_list(var_files) or cli_values("--var-file", sys.argv))),
        out=Path(out),
        observe_seconds=float(observe_seconds),
        stability_seconds=float(stability_seconds),
    )
    folder = run_sweep(settings)
    doc = json.loads((folder / CAPACITY_NAME).read_text())
    if doc.get("interrupted"):
        raise KeyboardInterrupt
    print(answer(doc))
    print(f"report: {folder / 'capacity.md'}")
    return {"folder": str(folder), "complete": doc["complete"], "boundaries": doc["boundaries"]}
