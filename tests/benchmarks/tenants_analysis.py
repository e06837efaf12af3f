"""The tenants-per-load-core benchmark's analysis: journal records in, numbers, a verdict and text out.

Pure (no processes): :mod:`tests.benchmarks.bench_tenants` runs the servers and the
pinned load and hands the journal, the rows it found and its CPU samples here. The
steady window, the rates, pacing lateness, the verdict (fail closed: CANNOT TELL rather
than PASS) and the report are explained in that module's docstring. Percentiles are
nearest-rank.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from loadgen.journal import Write
from tests.benchmarks.measure import BenchError

__all__ = [
    "DISTURBED",
    "GOAL_RATE",
    "GOAL_TENANTS",
    "LATE_FRACTION",
    "LEAD",
    "MAX_RATE_ERROR",
    "SATURATED",
    "TAIL",
    "Analysis",
    "Pacing",
    "Rates",
    "TenantRate",
    "Verdict",
    "analyze",
    "check_rows",
    "cpu_over_window",
    "format_report",
    "judge",
    "pacing",
    "percentile",
    "steady_window",
    "summarize_rates",
    "tenant_rates",
]

GOAL_TENANTS = 200
GOAL_RATE = 20.0
MAX_RATE_ERROR = 0.05  # per-tenant rate error p95 must stay under this
LATE_FRACTION = 0.05  # an attempt is "late" when it starts this share of an interval late
SATURATED = 0.95  # cores of the load process above which its core counts as saturated
_NOT_PINNED = 1.05  # more than one core: taskset did not hold
DISTURBED = 0.1  # cores used by other processes during the run before the report warns
LEAD = 2.0  # seconds after the last tenant's first ack before the steady window opens
TAIL = 1.0  # seconds before the last journal record at which it closes


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank ``q``-th percentile (0 < q <= 100); None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def steady_window(writes: Sequence[Write], lead: float = LEAD, tail: float = TAIL) -> tuple[float, float]:
    """``(start, end)`` epoch seconds: the last tenant's first ack + ``lead`` to the last record - ``tail``.

    Tenants never acknowledged do not delay the start (they count as silent). BenchError
    when nothing was acknowledged or the window is empty.
    """
    first: dict[str, float] = {}
    for w in writes:
        if w.outcome == "ok" and w.end < first.get(w.tenant, math.inf):
            first[w.tenant] = w.end
    if not first:
        raise BenchError("no write was acknowledged: see the Locust log of the run")
    start = max(first.values()) + lead
    end = max(w.end for w in writes) - tail
    if end <= start:
        raise BenchError(
            f"no steady window left after the spawn ramp ({end - start:.1f} s): run longer (--seconds)"
        )
    return start, end


@dataclass(frozen=True)
class TenantRate:
    """One tenant's acknowledged writes in the window."""

    tenant: str
    acks: int
    rate: float
    """Acks per second."""
    error: float
    """``|rate / target - 1|``."""


def tenant_rates(
    writes: Sequence[Write], tenants: Sequence[str], window: tuple[float, float], rate: float
) -> list[TenantRate]:
    """Acks per second of every tenant named in ``tenants`` (absent ones at 0), acks ending in the window."""
    start, end = window
    acks = Counter(w.tenant for w in writes if w.outcome == "ok" and start < w.end <= end)
    out = []
    for name in tenants:
        achieved = acks[name] / (end - start)
        out.append(TenantRate(name, acks[name], achieved, abs(achieved / rate - 1.0)))
    return out


@dataclass(frozen=True)
class Rates:
    """Offered and achieved acks per second over the window."""

    offered: float
    achieved: float
    tenant_min: float
    tenant_p5: float
    tenant_median: float
    error_max: float
    error_p95: float
    silent: list[str]
    """Tenants with no acknowledged write in the window."""


def summarize_rates(per_tenant: Sequence[TenantRate], rate: float, seconds: float) -> Rates:
    """Overall and per-tenant figures from :func:`tenant_rates`."""
    rates = [t.rate for t in per_tenant]
    errors = [t.error for t in per_tenant]
    return Rates(
        offered=rate * len(per_tenant),
        achieved=sum(t.acks for t in per_tenant) / seconds,
        tenant_min=min(rates),
        tenant_p5=percentile(rates, 5) or 0.0,
        tenant_median=statistics.median(rates),
        error_max=max(errors),
        error_p95=percentile(errors, 95) or 0.0,
        silent=[t.tenant for t in per_tenant if t.acks == 0],
    )


@dataclass(frozen=True)
class Pacing:
    """How late paced attempts due in the window started, and how long they took from ``due``."""

    interval: float
    paced: int
    """Attempts due in the window (every outcome)."""
    unpaced: int
    """Attempts started in the window without a ``due``."""
    lateness_p50: float | None
    lateness_p99: float | None
    lateness_max: float | None
    late_share: float | None
    """Share of paced attempts that started more than ``LATE_FRACTION`` of an interval late."""
    latency_p50: float | None
    latency_p99: float | None


def pacing(writes: Sequence[Write], window: tuple[float, float], rate: float) -> Pacing:
    """Lateness (``start - due``) and latency from due (``end - due``) over the window, seconds."""
    start, end = window
    interval = 1.0 / rate
    paced = [w for w in writes if w.due is not None and start <= w.due < end]
    unpaced = sum(1 for w in writes if w.due is None and start <= w.start < end)
    late = [w.start - w.due for w in paced if w.due is not None]
    from_due = [w.end - w.due for w in paced if w.due is not None]
    threshold = LATE_FRACTION * interval
    return Pacing(
        interval=interval,
        paced=len(paced),
        unpaced=unpaced,
        lateness_p50=percentile(late, 50),
        lateness_p99=percentile(late, 99),
        lateness_max=max(late, default=None),
        late_share=sum(1 for x in late if x > threshold) / len(late) if late else None,
        latency_p50=percentile(from_due, 50),
        latency_p99=percentile(from_due, 99),
    )


def cpu_over_window(
    samples: Sequence[tuple[float, float]], window: tuple[float, float]
) -> tuple[float, float, float, float] | None:
    """``(cores, cpu_seconds, t0, t1)`` between the first and last ``(time, cpu)`` sample in the window."""
    inside = [s for s in samples if window[0] <= s[0] <= window[1]]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return None
    (t0, c0), (t1, c1) = inside[0], inside[-1]
    return (c1 - c0) / (t1 - t0), c1 - c0, t0, t1


@dataclass(frozen=True)
class Verdict:
    """PASS, FAIL or CANNOT TELL, and every reason in words."""

    verdict: str
    reasons: list[str] = field(default_factory=list)


def judge(
    rates: Rates,
    pace: Pacing,
    *,
    missing_acked: int | None,
    load_cores: float | None,
    affinity: list[int] | None,
    core: int,
) -> Verdict:
    """Pacing error under 5%: rate error p95 < 5% and lateness p99 < one interval, fail closed.

    ``affinity`` is the CPUs the load process was seen allowed to run on (None: not seen);
    anything but ``[core]``, or more than one core used, is CANNOT TELL.
    """
    fails: list[str] = []
    unknown: list[str] = []
    passes: list[str] = []
    ms = 1000.0 * pace.interval
    if rates.error_p95 < MAX_RATE_ERROR:
        passes.append(f"per-tenant rate error p95 {rates.error_p95:.1%} < {MAX_RATE_ERROR:.0%}")
    else:
        fails.append(f"per-tenant rate error p95 {rates.error_p95:.1%} >= {MAX_RATE_ERROR:.0%}")
    if pace.lateness_p99 is None:
        unknown.append(
            "no attempt in the window carried `due` (unpaced load or an old journal): lateness unknown"
        )
    elif pace.lateness_p99 < pace.interval:
        passes.append(f"lateness p99 {1000 * pace.lateness_p99:.1f} ms < one interval ({ms:.0f} ms)")
    else:
        fails.append(f"lateness p99 {1000 * pace.lateness_p99:.1f} ms >= one interval ({ms:.0f} ms)")
    if rates.silent:
        fails.append(
            f"{len(rates.silent)} tenant(s) had no acknowledged write in the window: {rates.silent[:5]}"
        )
    if missing_acked is None:
        unknown.append("acknowledged writes were not checked against the tables")
    elif missing_acked:
        fails.append(f"{missing_acked} acknowledged write(s) missing from the tables")
    else:
        passes.append("every acknowledged write is in its table")
    if affinity is None:
        unknown.append("the load process's CPU affinity was not seen: cannot tell it was pinned")
    elif affinity != [core]:
        unknown.append(f"the load process could run on CPUs {affinity}, not only on CPU {core}")
    if load_cores is None:
        unknown.append("the load process's CPU was not sampled in the window: cannot tell it ran on one core")
    elif load_cores > _NOT_PINNED:
        unknown.append(f"the load process used {load_cores:.2f} cores: it was not held to one core")
    elif affinity == [core]:
        passes.append(f"the load process ran pinned to CPU {core}, using {load_cores:.2f} of it")
    if fails:
        return Verdict("FAIL", fails + unknown)
    if unknown:
        return Verdict("CANNOT TELL", unknown)
    return Verdict("PASS", passes)


@dataclass(frozen=True)
class Analysis:
    """Everything the journal says about one run."""

    window: tuple[float, float]
    rates: Rates
    pacing: Pacing
    outcomes: dict[str, int]
    """ok / fail / info over the whole run."""
    window_outcomes: dict[str, int]
    """ok / fail / info of attempts started in the window."""
    errors: dict[str, int]
    """Error labels of fail / info attempts over the run, most frequent first."""
    per_tenant: list[TenantRate]
    ramp: float
    """Seconds from the first attempt to the last tenant's first ack (the spawn ramp)."""


def analyze(writes: Sequence[Write], tenants: Sequence[str], rate: float) -> Analysis:
    """The steady window and every figure over it; BenchError when there is no window."""
    window = steady_window(writes)
    per_tenant = tenant_rates(writes, tenants, window, rate)
    counts = Counter(w.outcome for w in writes)
    in_window = Counter(w.outcome for w in writes if window[0] <= w.start < window[1])
    errors = Counter(w.error or "?" for w in writes if w.outcome != "ok")
    return Analysis(
        window=window,
        rates=summarize_rates(per_tenant, rate, window[1] - window[0]),
        pacing=pacing(writes, window, rate),
        outcomes={k: counts[k] for k in ("ok", "fail", "info")},
        window_outcomes={k: in_window[k] for k in ("ok", "fail", "info")},
        errors=dict(errors.most_common()),
        per_tenant=per_tenant,
        ramp=window[0] - LEAD - min(w.start for w in writes),
    )


# -- report ------------------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{1000 * seconds:.1f} ms"


def _load_cpu(load: dict[str, Any]) -> str:
    total = f"(whole run {load['cpu_us_per_ack_total']:.0f} us/ack)"
    if load["cores"] is None:
        return f"not sampled {total}"
    per_ack = "n/a" if load["cpu_us_per_ack"] is None else f"{load['cpu_us_per_ack']:.0f}"
    saturated = "  -- load core saturated" if load["saturated"] else ""
    return f"{load['cores']:.2f} cores, {per_ack} us/ack {total}{saturated}"


def format_report(result: dict[str, Any], analysis: Analysis, verdict: Verdict) -> str:
    """The summary table, the verdict with its reasons, the goal and any warnings."""
    s, r, p = result["settings"], analysis.rates, analysis.pacing
    server, rows = result["servers"], result["rows"]
    share = "n/a" if p.late_share is None else f"{p.late_share:.2%}"
    counts = "  ".join(f"{k} {v}" for k, v in analysis.outcomes.items())
    in_window = "  ".join(f"{k} {v}" for k, v in analysis.window_outcomes.items())
    table = [
        ("offered", f"{r.offered:.1f} writes/s"),
        ("achieved", f"{r.achieved:.1f} acks/s ({r.achieved / r.offered:.1%} of offered)"),
        ("per tenant acks/s", f"min {r.tenant_min:.2f}  p5 {r.tenant_p5:.2f}  median {r.tenant_median:.2f}"),
        ("rate error", f"max {r.error_max:.2%}  p95 {r.error_p95:.2%}"),
        (
            "lateness",
            f"p50 {_ms(p.lateness_p50)}  p99 {_ms(p.lateness_p99)}  max {_ms(p.lateness_max)}; "
            f"{share} of {p.paced} paced attempts > {_ms(LATE_FRACTION * p.interval)} late",
        ),
        ("latency from due", f"p50 {_ms(p.latency_p50)}  p99 {_ms(p.latency_p99)}"),
        ("load CPU (window)", _load_cpu(result["load"])),
        (
            "server CPU (run)",
            f"{server['cores']:.2f} cores, {server['cpu_us_per_write']:.0f} us/write "
            f"(servers on CPUs {server['cpus']})",
        ),
        ("outcomes", f"{counts}  (started in the window: {in_window})"),
        ("spawn ramp", f"{analysis.ramp:.1f} s from the first attempt to the last tenant's first ack"),
        (
            "rows",
            f"{rows['acked']} acknowledged, {rows['missing_acked']} missing; found {rows['fail_found']} "
            f"fail, {rows['info_found']} info, {rows['unexpected']} unexpected",
        ),
        ("other processes", f"{result['other_cores']:.2f} cores"),
    ]
    lines = [
        f"tenants per load core: {s['tenants']} tenants x {s['rate']:g}/s on {s['servers']} servers, "
        f"load pinned to CPU {s['core']}, {s['seconds']} s "
        f"(steady window {analysis.window[1] - analysis.window[0]:.1f} s)"
    ]
    lines += [f"  {label:<18} {text}" for label, text in table]
    lines.append(f"verdict (pacing error under {MAX_RATE_ERROR:.0%}): {verdict.verdict}")
    lines += [f"  - {reason}" for reason in verdict.reasons]
    goal = f"goal: one load core sustains >= {GOAL_TENANTS} tenants at {GOAL_RATE:g} writes/s: "
    if s["tenants"] < GOAL_TENANTS or s["rate"] < GOAL_RATE:
        lines.append(goal + f"not measured at this scale ({s['tenants']} tenants at {s['rate']:g}/s)")
    else:
        lines.append(goal + {"PASS": "met", "FAIL": "NOT met"}.get(verdict.verdict, "cannot tell"))
    if analysis.errors:
        lines.append("errors: " + ", ".join(f"{k} x{v}" for k, v in list(analysis.errors.items())[:5]))
    if result["other_cores"] > DISTURBED:
        lines.append(
            f"WARNING: other processes used {result['other_cores']:.2f} cores during the run: disturbed"
        )
    if server["cores"] > SATURATED * server["ncpus"]:
        lines.append("WARNING: the servers' CPUs were saturated: they, not the load core, may set the pace")
    if result.get("machine"):
        lines += ["machine:"] + [f"  {key}: {value}" for key, value in result["machine"].items()]
    return "\n".join(lines)


def check_rows(writes: Sequence[Write], found: dict[str, set[tuple[int, int]]]) -> dict[str, int]:
    """Acknowledged writes missing from the tables, and rows of other outcomes (or none) found."""
    attempted = {(w.tenant, w.writer, w.seq): w.outcome for w in writes}
    present = {(t, *key) for t, keys in found.items() for key in keys}
    return {
        "acked": sum(1 for o in attempted.values() if o == "ok"),
        "missing_acked": sum(1 for k, o in attempted.items() if o == "ok" and k not in present),
        "fail_found": sum(1 for k, o in attempted.items() if o == "fail" and k in present),
        "info_found": sum(1 for k, o in attempted.items() if o == "info" and k in present),
        "unexpected": len(present - attempted.keys()),
        "rows": len(present),
    }
