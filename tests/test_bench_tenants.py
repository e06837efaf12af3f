"""The tenants-per-load-core benchmark's analysis on synthetic journal records, and its affinity watch."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from loadgen.journal import Write
from tests.benchmarks.bench_tenants import _AffinityWatch, main
from tests.benchmarks.measure import BenchError
from tests.benchmarks.tenants_analysis import (
    Pacing,
    Rates,
    analyze,
    check_rows,
    cpu_over_window,
    format_report,
    judge,
    pacing,
    percentile,
    steady_window,
    tenant_rates,
)

T0 = 1_700_000_000.0


def paced(
    tenant: str,
    *,
    writer: int = 0,
    rate: float = 20.0,
    first: float = 0.0,
    seconds: float = 20.0,
    late: float = 0.0005,
    latency: float = 0.002,
    outcome: str = "ok",
    every: int = 1,
) -> list[Write]:
    """One tenant's paced attempts from ``T0 + first``; every ``every``-th due slot is attempted."""
    out = []
    for seq in range(int(seconds * rate)):
        if seq % every:
            continue
        due = T0 + first + seq / rate
        start = due + late
        out.append(
            Write(
                tenant=tenant,
                writer=writer,
                seq=seq + 1,
                start=start,
                end=start + latency,
                latency=latency,
                outcome=outcome,  # type: ignore[arg-type]
                server_ts=start + latency / 2 if outcome == "ok" else None,
                error=None if outcome == "ok" else "WriteTimeout",
                due=due,
            )
        )
    return out


def healthy_rates(**overrides: object) -> Rates:
    values: dict[str, object] = {
        "offered": 200.0,
        "achieved": 200.0,
        "tenant_min": 20.0,
        "tenant_p5": 20.0,
        "tenant_median": 20.0,
        "error_max": 0.01,
        "error_p95": 0.01,
        "silent": [],
    }
    values.update(overrides)
    return Rates(**values)  # type: ignore[arg-type]


def healthy_pacing(**overrides: object) -> Pacing:
    values: dict[str, object] = {
        "interval": 0.05,
        "paced": 1000,
        "unpaced": 0,
        "lateness_p50": 0.0005,
        "lateness_p99": 0.003,
        "lateness_max": 0.01,
        "late_share": 0.002,
        "latency_p50": 0.002,
        "latency_p99": 0.01,
    }
    values.update(overrides)
    return Pacing(**values)  # type: ignore[arg-type]


# -- percentiles and the window ------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # unsorted on purpose
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 5) == 5.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_window_starts_after_the_last_tenants_first_ack_and_ends_before_the_last_record() -> None:
    writes = paced("a", first=0.0, seconds=20) + paced("b", first=1.5, seconds=18.5, writer=1)
    start, end = steady_window(writes)
    first_b = min(w.end for w in writes if w.tenant == "b")
    assert start == pytest.approx(first_b + 2.0)
    assert end == pytest.approx(max(w.end for w in writes) - 1.0)


def test_window_is_not_delayed_by_a_tenant_that_never_acked() -> None:
    writes = paced("a", seconds=20) + paced("b", writer=1, outcome="fail", seconds=20)
    start, _end = steady_window(writes)
    assert start == pytest.approx(min(w.end for w in writes if w.tenant == "a") + 2.0)


def test_ramp_runs_from_the_first_attempt_to_the_last_tenants_first_ack() -> None:
    writes = paced("a", seconds=20) + paced("b", writer=1, first=3.0, seconds=17)
    result = analyze(sorted(writes, key=lambda w: w.start), ["a", "b"], 20.0)
    assert result.ramp == pytest.approx(3.0 + 0.002, abs=1e-6)  # b's first ack ends its latency later


def test_window_refuses_a_run_without_acks_or_too_short() -> None:
    with pytest.raises(BenchError, match="no write was acknowledged"):
        steady_window(paced("a", outcome="info"))
    with pytest.raises(BenchError, match="run longer"):
        steady_window(paced("a", seconds=2.5))


# -- rates --------------------------------------------------------------------------------------


def test_tenant_rates_count_acks_in_the_window_and_absent_tenants_as_zero() -> None:
    writes = (
        paced("full", seconds=30)
        + paced("half", writer=1, seconds=30, every=2)
        + paced("failing", writer=2, seconds=30, outcome="fail")
    )
    window = (T0 + 5.0, T0 + 25.0)
    rates = {t.tenant: t for t in tenant_rates(writes, ["full", "half", "failing", "absent"], window, 20.0)}
    assert rates["full"].acks == 400
    assert rates["full"].rate == pytest.approx(20.0)
    assert rates["full"].error == pytest.approx(0.0)
    assert rates["half"].rate == pytest.approx(10.0)
    assert rates["half"].error == pytest.approx(0.5)
    assert rates["failing"].acks == 0 and rates["failing"].error == pytest.approx(1.0)
    assert rates["absent"].acks == 0 and rates["absent"].error == pytest.approx(1.0)


def test_analyze_reports_offered_achieved_per_tenant_and_silent_tenants() -> None:
    writes = [w for i in range(9) for w in paced(f"t{i}", writer=i, seconds=30)]
    writes += paced("slow", writer=9, seconds=30, every=2)
    names = [f"t{i}" for i in range(9)] + ["slow", "never"]
    result = analyze(sorted(writes, key=lambda w: w.start), names, 20.0)
    rates = result.rates
    assert rates.offered == pytest.approx(220.0)
    assert rates.achieved == pytest.approx(190.0, rel=0.01)
    assert rates.tenant_min == 0.0
    assert rates.tenant_median == pytest.approx(20.0, rel=0.01)
    assert rates.error_max == pytest.approx(1.0)
    assert rates.silent == ["never"]
    assert result.outcomes == {"ok": len(writes), "fail": 0, "info": 0}
    assert result.ramp == pytest.approx(0.002, abs=1e-6)  # every tenant acked its first write at once


# -- pacing ---------------------------------------------------------------------------------------


def test_pacing_lateness_percentiles_and_late_share() -> None:
    # 100 attempts due in the window: 97 start 0.5 ms late, 3 start 40 ms late.
    writes = paced("a", seconds=5)
    window = (T0, T0 + 5.0)
    lagging = {10, 50, 90}
    writes = [
        Write(**{**w.__dict__, "start": w.start + 0.0395, "end": w.end + 0.0395}) if w.seq in lagging else w
        for w in writes
    ]
    result = pacing(writes, window, 20.0)
    assert result.paced == 100
    assert result.interval == pytest.approx(0.05)
    assert result.lateness_p50 == pytest.approx(0.0005, abs=1e-6)
    assert result.lateness_p99 == pytest.approx(0.04, abs=1e-6)
    assert result.lateness_max == pytest.approx(0.04, abs=1e-6)
    assert result.late_share == pytest.approx(0.03)  # > 2.5 ms late
    assert result.latency_p50 == pytest.approx(0.0025, abs=1e-6)  # end - due
    assert result.latency_p99 == pytest.approx(0.042, abs=1e-6)


def test_pacing_leaves_out_attempts_due_outside_the_window_and_counts_unpaced_ones() -> None:
    writes = paced("a", seconds=10)
    unpaced = [Write(**{**w.__dict__, "due": None, "writer": 1}) for w in paced("b", seconds=10)]
    result = pacing(writes + unpaced, (T0 + 2.0, T0 + 4.0), 20.0)
    assert result.paced == 40
    assert result.unpaced == 40
    empty = pacing(unpaced, (T0 + 2.0, T0 + 4.0), 20.0)
    assert empty.paced == 0
    assert empty.lateness_p99 is None and empty.late_share is None


# -- the verdict ------------------------------------------------------------------------------------


def test_judge_passes_with_every_reason_stated() -> None:
    verdict = judge(healthy_rates(), healthy_pacing(), missing_acked=0, load_cores=0.6, affinity=[1], core=1)
    assert verdict.verdict == "PASS"
    assert any("rate error p95 1.0% < 5%" in r for r in verdict.reasons)
    assert any("lateness p99 3.0 ms < one interval (50 ms)" in r for r in verdict.reasons)
    assert any("pinned to CPU 1, using 0.60 of it" in r for r in verdict.reasons)


def test_judge_fails_on_rate_error_at_or_above_five_percent() -> None:
    verdict = judge(
        healthy_rates(error_p95=0.05), healthy_pacing(), missing_acked=0, load_cores=1.0, affinity=[1], core=1
    )
    assert verdict.verdict == "FAIL"
    assert verdict.reasons == ["per-tenant rate error p95 5.0% >= 5%"]


def test_judge_fails_on_lateness_p99_of_one_interval_or_more() -> None:
    verdict = judge(
        healthy_rates(),
        healthy_pacing(lateness_p99=0.05),
        missing_acked=0,
        load_cores=1.0,
        affinity=[1],
        core=1,
    )
    assert verdict.verdict == "FAIL"
    assert verdict.reasons == ["lateness p99 50.0 ms >= one interval (50 ms)"]


def test_judge_fails_on_silent_tenants_and_lost_acks_even_when_p95_hides_them() -> None:
    verdict = judge(
        healthy_rates(silent=["t7"]), healthy_pacing(), missing_acked=3, load_cores=0.5, affinity=[1], core=1
    )
    assert verdict.verdict == "FAIL"
    assert any("1 tenant(s) had no acknowledged write" in r for r in verdict.reasons)
    assert any("3 acknowledged write(s) missing" in r for r in verdict.reasons)


@pytest.mark.parametrize(
    ("pace", "missing", "cores", "affinity", "words"),
    [
        (healthy_pacing(lateness_p99=None), 0, 0.5, [1], "carried `due`"),
        (healthy_pacing(), None, 0.5, [1], "not checked against the tables"),
        (healthy_pacing(), 0, None, [1], "not sampled"),
        (healthy_pacing(), 0, 1.6, [1], "not held to one core"),
        (healthy_pacing(), 0, 0.5, None, "affinity was not seen"),
        (healthy_pacing(), 0, 0.5, [0, 1], "could run on CPUs [0, 1], not only on CPU 1"),
    ],
)
def test_judge_cannot_tell_rather_than_pass(
    pace: Pacing, missing: int | None, cores: float | None, affinity: list[int] | None, words: str
) -> None:
    verdict = judge(healthy_rates(), pace, missing_acked=missing, load_cores=cores, affinity=affinity, core=1)
    assert verdict.verdict == "CANNOT TELL"
    assert len(verdict.reasons) == 1 and words in verdict.reasons[0]


def test_judge_fail_keeps_the_unknowns_among_its_reasons() -> None:
    verdict = judge(
        healthy_rates(error_p95=0.2),
        healthy_pacing(lateness_p99=None),
        missing_acked=0,
        load_cores=1,
        affinity=[1],
        core=1,
    )
    assert verdict.verdict == "FAIL"
    assert len(verdict.reasons) == 2


# -- CPU, rows, the report, the command line ---------------------------------------------------------


def test_cpu_over_window_uses_the_first_and_last_sample_inside() -> None:
    samples = [(T0 + t * 0.2, 0.1 * t) for t in range(50)]  # half a core
    cores, cpu, t0, t1 = cpu_over_window(samples, (T0 + 1.0, T0 + 5.0)) or (0, 0, 0, 0)
    assert cores == pytest.approx(0.5)
    assert cpu == pytest.approx(2.0)
    assert (t0, t1) == (pytest.approx(T0 + 1.0), pytest.approx(T0 + 5.0))
    assert cpu_over_window(samples, (T0 + 1.01, T0 + 1.1)) is None


def test_check_rows_finds_lost_acks_misclassified_and_unexpected_rows() -> None:
    writes = paced("a", seconds=0.25) + paced("a", seconds=0.1, writer=1, outcome="fail")
    writes += paced("b", seconds=0.1, outcome="info")
    found = {"a": {(0, 1), (0, 2), (0, 3), (0, 4), (1, 1), (9, 9)}, "b": {(0, 1)}}
    assert check_rows(writes, found) == {
        "acked": 5,
        "missing_acked": 1,
        "fail_found": 1,
        "info_found": 1,
        "unexpected": 1,
        "rows": 7,
    }


def _result(cores: float, tenants: int = 200) -> dict[str, object]:
    return {
        "settings": {"tenants": tenants, "rate": 20.0, "seconds": 30, "servers": 4, "core": 1},
        "load": {
            "cores": cores,
            "cpu_us_per_ack": 240.0,
            "saturated": cores > 0.95,
            "cpu_us_per_ack_total": 260,
        },
        "servers": {"cpus": "0", "ncpus": 1, "cores": 0.5, "cpu_us_per_write": 120.0},
        "rows": {"acked": 10, "missing_acked": 0, "fail_found": 0, "info_found": 0, "unexpected": 0},
        "other_cores": 0.0,
    }


def test_report_says_when_the_load_core_is_saturated_and_judges_the_goal_only_at_scale() -> None:
    analysis = analyze(paced("t0", seconds=10), ["t0"], 20.0)
    verdict = judge(analysis.rates, analysis.pacing, missing_acked=0, load_cores=0.97, affinity=[1], core=1)
    text = format_report(_result(0.97), analysis, verdict)
    assert "load core saturated" in text
    assert "verdict (pacing error under 5%): PASS" in text
    assert "sustains >= 200 tenants at 20 writes/s: met" in text
    small = format_report(_result(0.5, tenants=20), analysis, verdict)
    assert "load core saturated" not in small
    assert "not measured at this scale" in small


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--core", "4096"], "--core 4096 is not a CPU"),
        (["--seconds", "3"], "--seconds at least 8"),
        (["--tenants", "2", "--servers", "3"], "--servers at most --tenants"),
        (["--locustfile", "nope/locustfile.py"], "--locustfile nope/locustfile.py not found"),
    ],
)
def test_bad_arguments_are_refused_in_one_line_before_anything_starts(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert words in capsys.readouterr().err


def test_affinity_watch_sees_the_cpus_taskset_gave_the_load_process() -> None:
    core = min(os.sched_getaffinity(0))
    watch = _AffinityWatch(timeout=5.0)
    watch.start()
    child = subprocess.Popen(
        ["taskset", "-c", str(core), sys.executable, "-c", "import time; time.sleep(5)", "locust"]
    )
    try:
        deadline = time.monotonic() + 5.0
        while watch.affinity is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watch.stop() == [core]
    finally:
        child.kill()
        child.wait()
