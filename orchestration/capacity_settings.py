"""The capacity sweep's knobs, checked before anything is created: one line per mistake."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from common.config import ConfigurationError, name_list
from orchestration.errors import OrchestrationError

__all__ = ["Settings", "read_var_files"]


@dataclass(frozen=True)
class Settings:
    """What a sweep runs; the defaults are the demo's short sweep on the lab."""

    tenants_from: int = 2
    tenants_to: int = 6
    tenants_step: int = 2
    write_rates: tuple[float, ...] = (20.0,)
    fault: str = "pod-eviction"
    trials: int = 1
    objective_seconds: float = 60.0
    latency_limit_ms: float = 200.0
    min_efficiency: float = 0.85
    precision: int = 1
    namespace: str = "tenants"
    template: Path | None = None
    experiments_dir: Path = Path("experiments")
    var_files: tuple[Path, ...] = ()
    out: Path = Path("runs")
    observe_seconds: float = 10.0
    stability_seconds: float = 5.0
    ready_timeout: float = 180.0
    extra_vars: Mapping[str, str] = field(default_factory=dict)

    def check(self) -> Settings:
        """Refuse impossible knobs (one line with the fix); returns self."""
        ints = {"tenants_from": 1, "tenants_step": 1, "trials": 1, "precision": 1}
        for name, low in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise OrchestrationError(f"{name} must be a whole number of at least {low}, got {value!r}")
        if isinstance(self.tenants_to, bool) or not isinstance(self.tenants_to, int):
            raise OrchestrationError(f"tenants_to must be a whole number, got {self.tenants_to!r}")
        if self.tenants_from > self.tenants_to:
            raise OrchestrationError(
                f"tenants_from ({self.tenants_from}) is above tenants_to ({self.tenants_to}): swap them"
            )
        if not self.write_rates or any(not _positive(r) for r in self.write_rates):
            raise OrchestrationError(
                f"write rates must be positive writes/s per tenant, got {list(self.write_rates)}"
            )
        for name in ("objective_seconds", "latency_limit_ms", "observe_seconds", "ready_timeout"):
            if not _positive(getattr(self, name)) and not (
                name == "observe_seconds" and getattr(self, name) == 0
            ):
                raise OrchestrationError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        if self.observe_seconds < self.stability_seconds + 1:
            raise OrchestrationError(
                f"observe_seconds ({self.observe_seconds:g}) must be at least stability_seconds + 1 "
                f"({self.stability_seconds + 1:g}): a recovery counts only after that long healthy in the run"
            )
        if not _positive(self.min_efficiency) or self.min_efficiency > 1:
            raise OrchestrationError(
                f"min_efficiency must be above 0 and at most 1, got {self.min_efficiency!r}"
            )
        if not self.namespace:
            raise OrchestrationError("namespace is empty: name the namespace the sweep's instances go in")
        return self

    @property
    def experiment(self) -> Path:
        return self.experiments_dir / f"{self.fault}.json"

    def as_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["write_rates"] = list(self.write_rates)
        for key in ("template", "experiments_dir", "out"):
            doc[key] = None if doc[key] is None else str(doc[key])
        doc["var_files"] = [str(p) for p in self.var_files]
        doc["extra_vars"] = dict(self.extra_vars)
        return doc


def _positive(value: Any) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def read_var_files(paths: tuple[Path, ...]) -> dict[str, Any]:
    """The ``configuration`` of the var files, merged in order; one line for a bad file."""
    merged: dict[str, Any] = {}
    for path in paths:
        try:
            doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise OrchestrationError(f"var file {path}: cannot read it ({exc.strerror})") from None
        except yaml.YAMLError:
            raise OrchestrationError(f"var file {path}: not JSON or YAML: fix the file") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("configuration", {}), dict):
            raise OrchestrationError(
                f"var file {path}: must be a mapping with a 'configuration' mapping "
                "(as experiments/vars/lab.vars.json)"
            )
        merged.update(doc.get("configuration") or {})
    try:
        name_list(merged.get("allowed_namespaces"))
    except ConfigurationError as exc:
        raise OrchestrationError(f"allowed_namespaces: {exc}") from None
    return merged
