"""The machine-readable summary of a run: ``summary.json``.

Shape (``schema`` 1)::

    {"schema": 1, "run_id", "generated_at", "generated_at_epoch",
     "started_at", "started_at_epoch", "ended_at", "ended_at_epoch",
     "objective": {"rto_seconds", "rpo_seconds"}, "stability_seconds",
     "tenants": [names], "verdict": "GO" | "NO-GO", "violations": [text],
     "faults": [{"name", "kind", "tenant", "injected_at", "injected_at_epoch",
                 "ended_at", "ended_at_epoch", "details",
                 "results": [{every TenantResult field}]}],
     "totals": {tenant: {every TenantTotals field, "lost_keys": [[writer, seq], ...]}},
     "latency": {tenant: LATENCY, ..., "all": LATENCY} | null,
     "efficiency": {"window_seconds", "offered_per_second", "acked_per_second",
                    "efficiency", "acked_writes", "offered_writes", "tenants",
                    "write_rate"} | null,
     ...extra}

    LATENCY = {"count", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms",
               "late_starts", "excluded_in_outage", "measured_from_schedule",
               "histogram"}

``latency`` and ``efficiency`` were added to schema 1 (additive: older summaries lack
them; ``null`` when not computed). ``latency`` (:mod:`probes.latency`) is per tenant
plus ``all`` (every tenant merged; a tenant literally named ``all`` is listed as
``tenant:all``): acknowledged writes outside the tenant's outage windows, latency from
the scheduled time when the journal has it (``measured_from_schedule`` of ``count``),
percentiles and ``max_ms`` in milliseconds (``null`` when ``count`` is 0),
``late_starts`` (attempts that started more than 10 ms after they were due),
``excluded_in_outage`` (acknowledged writes left out because they were scheduled
inside an outage) and ``histogram``, HdrHistogram's compressed base64 encoding
(``probes.latency.merge_encoded`` merges tenants, runs or trials). ``efficiency``
(:mod:`probes.efficiency`) is acknowledged writes per second over offered writes per
second between the load's start and its stop request; each rate is ``null`` when
unknown (no write rate: unpaced load; no window).

A soak run (``experiments/opt-in/soak.json``) carries ``soak`` among its extra keys:
:func:`probes.soak_summary.summarize`'s block (planned and covered seconds, complete or
not and why, backup-age maxima, failed backup Jobs, restarts, slopes, drills and every
violation, documented there). ``reports.gates_soak`` judges the soak gate from it alone:
a run without it is no soak, however long it ran.

Every ``*_at`` field is an ISO-8601 UTC string ending in ``Z`` with an ``*_at_epoch``
sibling holding the epoch seconds. A value the analysis could not know is ``null``,
never ``0``. ``extra`` keys (such as ``target``) are added at the top level; a key
that would overwrite one of the fields above is a ``ReportError``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from common.files import replace_text
from probes.model import FaultResult, RunAnalysis, TenantResult, TenantTotals
from reports.errors import ReportError
from reports.times import utc_iso

__all__ = ["SCHEMA_VERSION", "summary_dict", "write_summary"]

SCHEMA_VERSION = 1


def _stamp(out: dict[str, Any], name: str, epoch: float | None) -> None:
    """Set ``out[name]`` (ISO) and ``out[name + '_epoch']``."""
    out[name] = utc_iso(epoch)
    out[f"{name}_epoch"] = epoch


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become None, tuples become lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _result_dict(result: TenantResult) -> dict[str, Any]:
    out = asdict(result)
    for name in ("first_failure_at", "recovered_at"):
        _stamp(out, name, getattr(result, name))
    return out


def _fault_dict(fault_result: FaultResult) -> dict[str, Any]:
    fault = fault_result.fault
    out: dict[str, Any] = {"name": fault.name, "kind": fault.kind, "tenant": fault.target}
    _stamp(out, "injected_at", fault.injected_at)
    _stamp(out, "ended_at", fault.ended_at)
    out["details"] = dict(fault.details)
    out["results"] = [_result_dict(r) for r in fault_result.results]
    return out


def _totals_dict(totals: TenantTotals) -> dict[str, Any]:
    out = asdict(totals)
    out["lost_keys"] = [[int(writer), int(seq)] for writer, seq in totals.lost_keys]
    return out


def summary_dict(
    analysis: RunAnalysis,
    extra: dict[str, Any] | None = None,
    *,
    latency: dict[str, Any] | None = None,
    efficiency: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The summary as plain JSON-ready data (see the module docstring for the shape)."""
    out: dict[str, Any] = {"schema": SCHEMA_VERSION, "run_id": analysis.run_id}
    _stamp(out, "generated_at", time.time())
    _stamp(out, "started_at", analysis.started_at)
    _stamp(out, "ended_at", analysis.ended_at)
    out["objective"] = {
        "rto_seconds": analysis.objective.rto_seconds,
        "rpo_seconds": analysis.objective.rpo_seconds,
    }
    out["stability_seconds"] = analysis.stability_seconds
    out["tenants"] = list(analysis.tenants)
    out["verdict"] = analysis.verdict
    out["violations"] = list(analysis.violations)
    out["faults"] = [_fault_dict(f) for f in analysis.faults]
    out["totals"] = {t.tenant: _totals_dict(t) for t in analysis.totals}
    out["latency"] = latency
    out["efficiency"] = efficiency
    for key, value in (extra or {}).items():
        if key in out:
            raise ReportError(f"summary field {key!r} is computed from the analysis; rename the extra field")
        out[key] = value
    return _clean(out)


def write_summary(
    path: str | Path,
    analysis: RunAnalysis,
    extra: dict[str, Any] | None = None,
    *,
    latency: dict[str, Any] | None = None,
    efficiency: dict[str, Any] | None = None,
) -> Path:
    """Write ``summary.json`` atomically (temp file + rename); returns the path."""
    target = Path(path)
    summary = summary_dict(analysis, extra, latency=latency, efficiency=efficiency)
    text = json.dumps(summary, indent=2, allow_nan=False, default=str)
    return replace_text(target, text + "\n")
