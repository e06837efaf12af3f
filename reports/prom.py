"""The run's results as a Prometheus text file (``metrics.prom``).

Meant for node_exporter's textfile collector or a push to a Pushgateway, so
dashboards can follow RTO across runs. Gauges (all in their own registry):

- ``harness_run_info{run_id}`` 1
- ``harness_objective_rto_seconds``, ``harness_objective_rpo_seconds``
- ``harness_verdict_go`` 1 for GO, 0 for NO-GO
- ``harness_recovered{fault,tenant}`` 1/0
- ``harness_rto_seconds{fault,tenant}``, ``harness_max_ack_gap_seconds{fault,tenant}``,
  ``harness_rpo_seconds{fault,tenant}``: absent when the value is unknown (never 0)
- ``harness_acked_writes{tenant}``, ``harness_lost_acked_writes{tenant}`` (whole run;
  lost is absent when the read-back failed)
- ``harness_write_latency_p99_seconds{tenant}``: p99 latency of acknowledged writes
  outside the tenant's outages, from their scheduled time when known
  (``probes.latency``); ``harness_run_write_latency_p99_seconds`` the same over every
  tenant; absent when no write was measured
- ``harness_load_efficiency``: acknowledged ÷ offered writes per second over the
  load's window (``probes.efficiency``); absent when unknown (unpaced load)

A soak (summary.json's ``soak`` block, :mod:`probes.soak_summary`) adds:

- ``harness_soak_planned_seconds``, ``harness_soak_covered_seconds``
- ``harness_soak_complete`` 1 when the soak ran its planned time, else 0
- ``harness_soak_violations`` (all) and ``harness_soak_violations_by_check{check}``
  (every kind of check, 0 when it found nothing)
- ``harness_soak_backup_age_max_seconds{tenant}``: the oldest the newest log backup got;
  absent when never measured
- ``harness_soak_drills{result}``: ``planned``, ``run``, ``validated``, ``failed``
- ``harness_soak_leak{pod,role,metric}`` 1 for a leak, 0 for none, absent without a
  verdict; ``harness_soak_slope_per_hour{pod,role,metric}``: the floors' slope per hour
  (bytes or connections)

A fault name that repeats within a run gets ``#2``, ``#3``... so no series is overwritten.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from probes.latency import ALL_TENANTS, tenant_key
from probes.model import RunAnalysis
from probes.soak_summary import CHECKS
from reports.errors import ReportError

__all__ = ["fault_labels", "metrics_registry", "write_metrics"]


def fault_labels(analysis: RunAnalysis) -> list[str]:
    """One unique label per fault, in order: the name, suffixed ``#n`` when it repeats."""
    seen: dict[str, int] = {}
    labels = []
    for fault_result in analysis.faults:
        name = fault_result.fault.name
        seen[name] = seen.get(name, 0) + 1
        labels.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return labels


def metrics_registry(
    analysis: RunAnalysis,
    *,
    latency: Mapping[str, Any] | None = None,
    efficiency: Mapping[str, Any] | None = None,
    soak: Mapping[str, Any] | None = None,
) -> CollectorRegistry:
    """A fresh registry holding the run's gauges (``latency``/``efficiency``/``soak``: as in summary.json)."""
    registry = CollectorRegistry()

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, labels, registry=registry)

    gauge("harness_run_info", "The run these metrics describe.", ("run_id",)).labels(
        run_id=analysis.run_id
    ).set(1)
    gauge("harness_objective_rto_seconds", "RTO objective per tenant per fault.").set(
        analysis.objective.rto_seconds
    )
    gauge("harness_objective_rpo_seconds", "RPO objective (loss window allowed).").set(
        analysis.objective.rpo_seconds
    )
    gauge("harness_verdict_go", "1 when the run's verdict is GO, 0 for NO-GO.").set(
        1 if analysis.verdict == "GO" else 0
    )

    pair = ("fault", "tenant")
    recovered = gauge("harness_recovered", "1 when the tenant recovered after the fault, else 0.", pair)
    rto = gauge("harness_rto_seconds", "Client-observed RTO; absent when not recovered or unknown.", pair)
    gap = gauge(
        "harness_max_ack_gap_seconds", "Largest gap between acknowledged writes around the fault.", pair
    )
    rpo = gauge(
        "harness_rpo_seconds", "Loss window: fault time minus earliest lost acknowledged write.", pair
    )
    for label, fault_result in zip(fault_labels(analysis), analysis.faults, strict=True):
        for result in fault_result.results:
            key = {"fault": label, "tenant": result.tenant}
            recovered.labels(**key).set(1 if result.recovered else 0)
            if result.rto_seconds is not None:
                rto.labels(**key).set(result.rto_seconds)
            if result.max_ack_gap_seconds is not None:
                gap.labels(**key).set(result.max_ack_gap_seconds)
            if result.rpo_seconds is not None:
                rpo.labels(**key).set(result.rpo_seconds)

    acked = gauge("harness_acked_writes", "Acknowledged writes over the whole run.", ("tenant",))
    lost = gauge(
        "harness_lost_acked_writes",
        "Acknowledged writes missing after the run; absent if unknown.",
        ("tenant",),
    )
    for totals in analysis.totals:
        acked.labels(tenant=totals.tenant).set(totals.acked)
        if totals.lost is not None:
            lost.labels(tenant=totals.tenant).set(totals.lost)
    _load_gauges(registry, analysis, latency or {}, efficiency or {})
    if soak is not None:
        _soak_gauges(registry, soak)
    return registry


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _soak_gauges(registry: CollectorRegistry, soak: Mapping[str, Any]) -> None:
    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, labels, registry=registry)

    for key, doc in (
        ("planned_seconds", "Seconds the soak was planned to run."),
        ("covered_seconds", "Seconds the soak's checks covered."),
    ):
        value = _number(soak.get(key))
        if value is not None:
            gauge(f"harness_soak_{key}", doc).set(value)
    gauge("harness_soak_complete", "1 when the soak ran its planned time, 0 when it stopped early.").set(
        1 if soak.get("complete") is True else 0
    )
    violations = [v for v in soak.get("violations") or [] if isinstance(v, Mapping)]
    gauge("harness_soak_violations", "Violations the soak's checks found.").set(len(violations))
    by_check = gauge("harness_soak_violations_by_check", "The soak's violations by check.", ("check",))
    for check in CHECKS:
        by_check.labels(check=check).set(sum(1 for v in violations if v.get("check") == check))
    ages = gauge(
        "harness_soak_backup_age_max_seconds",
        "The oldest the newest log backup got during the soak; absent when never measured.",
        ("tenant",),
    )
    backup_ages = soak.get("backup_age_max")
    for tenant, age in backup_ages.items() if isinstance(backup_ages, Mapping) else []:
        value = _number(age)
        if value is not None:
            ages.labels(tenant=str(tenant)).set(value)
    drills = gauge("harness_soak_drills", "Restore drills of the soak by result.", ("result",))
    counts: Mapping[str, Any] = soak["drills"] if isinstance(soak.get("drills"), Mapping) else {}
    for result in ("planned", "run", "validated", "failed"):
        drills.labels(result=result).set(_number(counts.get(result)) or 0)
    series = ("pod", "role", "metric")
    leak = gauge(
        "harness_soak_leak", "1 when the pod's series leaks, 0 when not; absent without a verdict.", series
    )
    slope = gauge("harness_soak_slope_per_hour", "Slope of the series' window floors per hour.", series)
    for entry in soak.get("slopes") or []:
        if not isinstance(entry, Mapping):
            continue
        names = {name: str(entry.get(name)) for name in series}
        if isinstance(entry.get("leak"), bool):
            leak.labels(**names).set(1 if entry["leak"] else 0)
        per_hour = _number(entry.get("per_hour"))
        if per_hour is not None:
            slope.labels(**names).set(per_hour)


def _p99_seconds(entry: Any) -> float | None:
    value = entry.get("p99_ms") if isinstance(entry, Mapping) else None
    return None if value is None else float(value) / 1000.0


def _load_gauges(
    registry: CollectorRegistry,
    analysis: RunAnalysis,
    latency: Mapping[str, Any],
    efficiency: Mapping[str, Any],
) -> None:
    p99 = Gauge(
        "harness_write_latency_p99_seconds",
        "p99 latency of acknowledged writes outside outages, from their scheduled time when known.",
        ("tenant",),
        registry=registry,
    )
    for tenant in analysis.tenants:
        value = _p99_seconds(latency.get(tenant_key(tenant)))
        if value is not None:
            p99.labels(tenant=tenant).set(value)
    run_p99 = _p99_seconds(latency.get(ALL_TENANTS))
    if run_p99 is not None:
        Gauge(
            "harness_run_write_latency_p99_seconds",
            "p99 write latency over every tenant (same writes as harness_write_latency_p99_seconds).",
            registry=registry,
        ).set(run_p99)
    share = efficiency.get("efficiency")
    if share is not None:
        Gauge(
            "harness_load_efficiency",
            "Acknowledged writes per second over offered writes per second during the load.",
            registry=registry,
        ).set(float(share))


def write_metrics(
    path: str | Path,
    analysis: RunAnalysis,
    *,
    latency: Mapping[str, Any] | None = None,
    efficiency: Mapping[str, Any] | None = None,
    soak: Mapping[str, Any] | None = None,
) -> Path:
    """Write the Prometheus text file atomically; returns the path."""
    target = Path(path)
    try:
        registry = metrics_registry(analysis, latency=latency, efficiency=efficiency, soak=soak)
        write_to_textfile(str(target), registry)
    except OSError as exc:
        raise ReportError(f"cannot write metrics {target}: {exc.strerror or exc}; check the folder") from exc
    return target
