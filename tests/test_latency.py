"""Write latency as HDR histograms, the load's efficiency, and both in summary.json.

Journals are written with the load's own JournalWriter into a temporary folder; two
files stand for two load processes (the writer names its file after the host and the
pid, so the first file is renamed before the second writer opens its own).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadgen.journal import JournalWriter, Write, read_journal
from probes.efficiency import run_efficiency
from probes.latency import (
    ALL_TENANTS,
    LatencyRecorder,
    histogram_stats,
    journal_latency,
    latency_summary,
    merge_encoded,
    new_histogram,
    outage_windows,
)
from probes.model import Fault, FaultResult, LoadLife, Objective, RunAnalysis, TenantResult
from reports.build import build

T0 = 1_700_000_000.0
PERCENTILES = {"p50_ms": 50.0, "p90_ms": 90.0, "p99_ms": 99.0, "p999_ms": 99.9}


def _write(tenant: str, seq: int, start: float, latency: float, outcome: str = "ok", **kw: object) -> Write:
    return Write(
        tenant,
        seq % 4,
        seq,
        start,
        start + latency,
        latency,
        outcome,  # type: ignore[arg-type]
        start + latency / 2 if outcome == "ok" else None,
        None if outcome == "ok" else "down",
        **kw,  # type: ignore[arg-type]
    )


def _journal(folder: Path, files: list[list[Write]], run_id: str = "r") -> Path:
    """One journal file per list, as separate load processes would write them."""
    for index, writes in enumerate(files):
        writer = JournalWriter(folder, run_id)
        try:
            for w in writes:
                writer.write(w)
        finally:
            writer.close()
        writer.path.rename(folder / f"process-{index}.jsonl")
    return folder


def _exact_ms(values_s: list[float], pct: float) -> float:
    """The value HdrHistogram reports at ``pct`` computed exactly: rank round(p*N), in whole µs."""
    micros = sorted(max(1, round(v * 1e6)) for v in values_s)
    rank = max(1, int(pct / 100 * len(micros) + 0.5))
    return micros[rank - 1] / 1000.0


def _lognormal(rng: random.Random, n: int) -> list[float]:
    return [rng.lognormvariate(math.log(0.004), 0.8) for _ in range(n)]


def test_percentiles_match_the_exact_values_within_hdr_precision(tmp_path: Path) -> None:
    rng = random.Random(7)
    lat_a, lat_b = _lognormal(rng, 4000), _lognormal(rng, 3000)
    file_a = [_write("alpha", i, T0 + i * 0.05, v) for i, v in enumerate(lat_a)]
    file_b = [_write("alpha", 10_000 + i, T0 + i * 0.05, v) for i, v in enumerate(lat_b)]
    file_b += [_write("beta", i, T0 + i * 0.05, 0.002) for i in range(100)]
    folder = _journal(tmp_path / "journal", [file_a, file_b])

    result = journal_latency(folder, tenants=["alpha", "beta"])
    alpha = result["alpha"]
    everything = lat_a + lat_b
    assert alpha["count"] == len(everything)
    for key, pct in PERCENTILES.items():
        exact = _exact_ms(everything, pct)
        # HDR reports the highest value equivalent to the recorded one: at most 0.1 % above.
        assert exact <= alpha[key] <= exact * 1.001 + 0.001, key
        assert alpha[key] == pytest.approx(float(np.percentile(everything, pct)) * 1000, rel=0.02), key
    assert max(everything) * 1000 <= alpha["max_ms"] <= max(everything) * 1000 * 1.001 + 0.001
    assert result["beta"]["count"] == 100 and result["beta"]["p99_ms"] == pytest.approx(2.0, abs=0.002)
    assert result[ALL_TENANTS]["count"] == len(everything) + 100
    assert alpha["measured_from_schedule"] == 0  # no due times: the journaled latency


def test_histograms_per_file_merged_equal_one_histogram_over_every_record(tmp_path: Path) -> None:
    rng = random.Random(11)
    files = [
        [
            _write(t, i, T0 + i * 0.05 + k, v)
            for t in ("alpha", "beta")
            for i, v in enumerate(_lognormal(rng, 800))
        ]
        for k in range(2)
    ]
    folder = _journal(tmp_path / "journal", files)
    per_file = journal_latency(folder, tenants=["alpha", "beta"])
    writes, _ = read_journal(folder)
    single = latency_summary(LatencyRecorder().record_all(writes), ["alpha", "beta"])
    assert per_file == single
    assert len(list(folder.glob("*.jsonl"))) == 2


def _stalled_writer(tenant: str, due_at: float, n: int = 200, stall_at: int = 100) -> list[Write]:
    """Due every 50 ms, 5 ms per call; attempt ``stall_at`` starts 400 ms late and the
    writer then catches up back to back (open-model pacing)."""
    out = []
    free = due_at
    for i in range(n):
        due = due_at + i * 0.05
        start = max(due, free) + (0.4 if i == stall_at else 0.0)
        out.append(_write(tenant, i, start, 0.005, due=due))
        free = start + 0.005
    return out


def test_latency_counts_from_the_scheduled_time_and_late_starts_are_counted(tmp_path: Path) -> None:
    writes = _stalled_writer("alpha", T0)
    folder = _journal(tmp_path / "journal", [writes])
    alpha = journal_latency(folder)["alpha"]
    # From the schedule: 405 ms, 360 ms, 315 ms, ... while the writer caught up.
    assert alpha["max_ms"] == pytest.approx(405, rel=0.002)
    assert alpha["p99_ms"] == pytest.approx(315, rel=0.002)  # rank 198 of 200: the third largest
    assert alpha["p50_ms"] == pytest.approx(5, rel=0.002)
    assert alpha["late_starts"] == 9  # 400 ms late, then 355, 310, ... 40 ms: 9 beyond 10 ms
    assert alpha["measured_from_schedule"] == 200
    # The same attempts without due times (an old journal) hide the stall entirely.
    old = [Write(**{**w.__dict__, "due": None}) for w in writes]
    unpaced = latency_summary(LatencyRecorder().record_all(old))["alpha"]
    assert unpaced["max_ms"] == pytest.approx(5, rel=0.002) and unpaced["late_starts"] == 0
    assert unpaced["measured_from_schedule"] == 0


def test_late_start_threshold_is_a_parameter(tmp_path: Path) -> None:
    folder = _journal(tmp_path / "journal", [_stalled_writer("alpha", T0)])
    assert journal_latency(folder, late_start=0.2)["alpha"]["late_starts"] == 5  # 400..220 ms


def test_failed_and_unknown_writes_outside_outages_count_at_the_time_they_took(tmp_path: Path) -> None:
    """A server that stalls outside any fault must show: a timed-out write waited at least that long."""
    writes = [_write("alpha", i, T0 + i * 0.05, 0.004) for i in range(50)]
    writes += [
        _write("alpha", 100 + i, T0 + i * 0.05, 0.5, "info", due=T0 + i * 0.05 - 0.1) for i in range(5)
    ]
    writes += [_write("alpha", 200 + i, T0 + i * 0.05, 0.3, "fail") for i in range(5)]
    alpha = journal_latency(_journal(tmp_path / "journal", [writes]))["alpha"]
    assert alpha["count"] == 60 and alpha["unacknowledged"] == 10
    assert alpha["max_ms"] == pytest.approx(600, rel=0.002)  # 0.1 s late + 0.5 s until it gave up
    assert alpha["late_starts"] == 5  # any attempt may start late, whatever its outcome
    inside = journal_latency(_journal(tmp_path / "again", [writes]), {"alpha": [(T0 - 1, None)]})["alpha"]
    assert inside["count"] == 0 and inside["unacknowledged"] == 0  # an outage is RTO's, whatever the outcome


def test_the_writes_a_stall_kept_back_are_added_back(tmp_path: Path) -> None:
    """Coordinated omission: a 1 s stall at 20 writes/s kept about 19 writes from being sent."""
    writes = [_write("alpha", i, T0 + i * 0.05, 0.004) for i in range(99)]
    writes.append(_write("alpha", 99, T0 + 5.0, 1.0))
    folder = _journal(tmp_path / "journal", [writes])
    plain = journal_latency(folder)["alpha"]
    corrected = journal_latency(folder, expected_interval=0.05)["alpha"]
    assert plain["count"] == 100 and plain["p99_ms"] == pytest.approx(4, rel=0.002)
    assert corrected["count"] == 100 + 19
    assert corrected["p99_ms"] > 800  # the stall now weighs what it cost the writes behind it


def test_percentiles_are_nearest_rank(tmp_path: Path) -> None:
    writes = [_write("alpha", i, T0 + i * 0.05, 0.001) for i in range(59)]
    writes.append(_write("alpha", 59, T0 + 3.0, 0.9))
    alpha = journal_latency(_journal(tmp_path / "journal", [writes]))["alpha"]
    assert alpha["p99_ms"] == pytest.approx(900, rel=0.002)  # rank ceil(0.99 * 60) = 60: the slow one


def test_writes_scheduled_inside_an_outage_are_counted_apart(tmp_path: Path) -> None:
    writes = [_write("alpha", i, T0 + i * 0.1, 0.004, due=T0 + i * 0.1) for i in range(400)]  # 40 s
    writes += [_write("beta", i, T0 + i * 0.1, 0.004) for i in range(400)]
    slow = [_write("alpha", 1000 + i, T0 + 10.5 + i * 0.1, 2.0, due=T0 + 10.5 + i * 0.1) for i in range(10)]
    folder = _journal(tmp_path / "journal", [writes + slow])
    outages = {"alpha": [(T0 + 10.0, T0 + 14.0), (T0 + 30.0, None)], "beta": []}
    result = journal_latency(folder, outages, tenants=["alpha", "beta"])
    alpha = result["alpha"]
    inside = 41 + 100 + 10  # 10.0..14.0 s inclusive, 30.0 s to the end, the slow ones
    assert alpha["excluded_in_outage"] == inside
    assert alpha["count"] == 410 - inside
    assert alpha["max_ms"] == pytest.approx(4, rel=0.002)  # the 2 s writes belong to the RTO
    assert result["beta"]["excluded_in_outage"] == 0 and result["beta"]["count"] == 400


def _result(tenant: str, affected: bool, recovered_at: float | None) -> TenantResult:
    return TenantResult(
        tenant=tenant,
        affected=affected,
        recovered=recovered_at is not None,
        rto_seconds=None if recovered_at is None else recovered_at - T0 - 10,
        max_ack_gap_seconds=1.0,
        gap_open=False,
        acked_writes=1,
        failed_writes=0,
        unknown_writes=0,
        lost_acked_writes=0,
        rpo_seconds=0.0,
        recovered_at=recovered_at,
    )


def test_outage_windows_come_from_the_analysis() -> None:
    fault = Fault("pod-eviction", "pod-eviction", T0 + 10, "alpha", T0 + 11)
    analysis = RunAnalysis(
        run_id="r",
        objective=Objective(),
        stability_seconds=5,
        tenants=["alpha", "beta", "gamma"],
        faults=[
            FaultResult(
                fault,
                [
                    _result("alpha", True, T0 + 14),
                    _result("beta", False, T0 + 10.01),  # untouched: its latency is latency
                    _result("gamma", False, None),  # never recovered: to the end
                ],
            )
        ],
        totals=[],
        verdict="NO-GO",
        violations=[],
    )
    assert outage_windows(analysis) == {"alpha": [(T0 + 10, T0 + 14)], "gamma": [(T0 + 10, None)]}


def test_encoded_histograms_round_trip_and_merge(tmp_path: Path) -> None:
    rng = random.Random(3)
    writes = [_write("alpha", i, T0 + i * 0.05, v) for i, v in enumerate(_lognormal(rng, 500))]
    writes += [_write("beta", i, T0 + i * 0.05, v * 3) for i, v in enumerate(_lognormal(rng, 700))]
    result = journal_latency(_journal(tmp_path / "journal", [writes]), tenants=["alpha", "beta"])
    for name in ("alpha", "beta", ALL_TENANTS):
        entry = result[name]
        decoded = histogram_stats(merge_encoded([entry["histogram"]]))
        assert decoded == {k: entry[k] for k in decoded}
    merged = histogram_stats(merge_encoded([result["alpha"]["histogram"], result["beta"]["histogram"]]))
    assert merged == {k: result[ALL_TENANTS][k] for k in merged}
    # Trials of a capacity search combine the same way, across runs.
    twice = merge_encoded([result[ALL_TENANTS]["histogram"]] * 2)
    assert twice.get_total_count() == 2 * 1200
    assert histogram_stats(merge_encoded([]))["p99_ms"] is None
    assert histogram_stats(new_histogram()) == {
        "count": 0,
        "p50_ms": None,
        "p90_ms": None,
        "p99_ms": None,
        "p999_ms": None,
        "max_ms": None,
    }


def test_every_named_tenant_has_an_entry_and_a_tenant_named_all_is_kept_apart(tmp_path: Path) -> None:
    writes = [_write("all", i, T0 + i * 0.05, 0.003) for i in range(10)]
    result = journal_latency(_journal(tmp_path / "journal", [writes]), tenants=["idle", "all"])
    assert result["idle"]["count"] == 0 and result["idle"]["p99_ms"] is None
    assert result["tenant:all"]["count"] == 10 and result[ALL_TENANTS]["count"] == 10


# ---- efficiency


def test_efficiency_is_acks_per_second_over_offered_writes_per_second() -> None:
    load = LoadLife(started_at=T0, stop_requested_at=T0 + 10)
    writes = [_write(t, i, T0 + i * 0.1, 0.01) for t in ("alpha", "beta") for i in range(90)]  # 9 s of 10/s
    writes += [_write("alpha", 500 + i, T0 + 3 + i * 0.1, 0.01, "fail") for i in range(5)]
    writes += [_write("alpha", 900, T0 + 10.5, 0.01), _write("alpha", 901, T0 - 1, 0.01)]  # outside
    result = run_efficiency(writes, 2, 10.0, load)
    assert result.window_seconds == pytest.approx(10.0)
    assert result.offered_per_second == pytest.approx(20.0)
    assert result.acked_writes == 180
    assert result.acked_per_second == pytest.approx(18.0)
    assert result.efficiency == pytest.approx(0.9)
    assert result.offered_writes == pytest.approx(200.0)


def test_efficiency_window_falls_back_to_the_journal() -> None:
    writes = [_write("alpha", i, T0 + i * 0.5, 0.5) for i in range(20)]  # T0 .. T0 + 10
    result = run_efficiency(writes, 1, 2.0, None)
    assert result.window_seconds == pytest.approx(10.0)
    assert result.efficiency == pytest.approx(1.0)
    # The process started 10 s before its first write (imports, connections): not offered load.
    started_early = run_efficiency(writes, 1, 2.0, LoadLife(started_at=T0 - 10))
    assert started_early.window_seconds == pytest.approx(10.0)
    assert started_early.efficiency == pytest.approx(1.0)
    # A tenant that never wrote is still offered load for the whole window.
    silent = run_efficiency(writes, 2, 2.0, LoadLife(started_at=T0 - 10))
    assert silent.efficiency == pytest.approx(0.5)


@pytest.mark.parametrize("rate", [None, 0.0])
def test_efficiency_is_unknown_without_a_write_rate(rate: float | None) -> None:
    writes = [_write("alpha", i, T0 + i * 0.1, 0.01) for i in range(100)]
    result = run_efficiency(writes, 1, rate, LoadLife(started_at=T0, stop_requested_at=T0 + 10))
    assert result.efficiency is None and result.offered_per_second is None and result.write_rate is None
    assert result.acked_per_second == pytest.approx(10.0)  # what is known stays known


def test_efficiency_is_unknown_without_a_window() -> None:
    result = run_efficiency([], 2, 10.0, None)
    assert result.as_dict() == {
        "window_seconds": None,
        "offered_per_second": None,
        "acked_per_second": None,
        "efficiency": None,
        "acked_writes": None,
        "offered_writes": None,
        "tenants": 2,
        "write_rate": 10.0,
    }


# ---- summary.json, report.md, metrics.prom


def _alpha_fails(seq: int) -> bool:
    return 200 <= seq < 280  # due 10 s to 14 s after T0


def _run_folder(root: Path) -> Path:
    """alpha and beta paced at 20/s for 40 s; alpha fails 10-14 s after T0 (fault at 10 s);
    one of beta's writers stalls 400 ms at 20 s."""
    run = root / "run-l"
    run.mkdir()
    (run / "run.json").write_text(
        json.dumps(
            {
                "run_id": "run-l",
                "tenants": ["alpha", "beta"],
                "stability_seconds": 2,
                "target": "lab",
                "write_rate": 20,
                "load": {"started_at": T0 - 1, "stop_requested_at": T0 + 40},
            }
        )
    )
    writes: list[Write] = []
    for seq in range(800):
        due = T0 + seq * 0.05
        outcome = "fail" if _alpha_fails(seq) else "ok"
        writes.append(_write("alpha", seq, due + 0.001, 0.004 if outcome == "ok" else 0.3, outcome, due=due))
    writes += _stalled_writer("beta", T0, n=800, stall_at=400)
    _journal(run / "journal", [writes[:800], writes[800:]], run_id="run-l")
    faults = [
        {
            "name": "pod-eviction",
            "kind": "pod-eviction",
            "injected_at": T0 + 10,
            "target": "alpha",
            "ended_at": None,
            "details": {},
        },
        {"event": "ended", "name": "pod-eviction", "ended_at": T0 + 10.5},
    ]
    (run / "faults.jsonl").write_text("".join(json.dumps(f) + "\n" for f in faults))
    rows = {
        t: sorted([w.writer, w.seq, w.server_ts] for w in writes if w.tenant == t and w.outcome == "ok")
        for t in ("alpha", "beta")
    }
    (run / "readback.json").write_text(
        json.dumps({t: {"read_at": T0 + 45, "error": None, "rows": r} for t, r in rows.items()})
    )
    return run


def test_build_puts_latency_and_efficiency_in_every_output(tmp_path: Path) -> None:
    run = _run_folder(tmp_path)
    build(run)
    doc = json.loads((run / "summary.json").read_text())
    assert doc["verdict"] == "GO", doc["violations"]
    alpha, beta, merged = doc["latency"]["alpha"], doc["latency"]["beta"], doc["latency"]["all"]
    recovered_at = doc["faults"][0]["results"][0]["recovered_at_epoch"]
    in_outage = sum(
        1 for seq in range(800) if T0 + 10 <= T0 + seq * 0.05 <= recovered_at and not _alpha_fails(seq)
    )
    assert alpha["excluded_in_outage"] == in_outage > 0
    assert alpha["count"] == 800 - 80 - in_outage  # 80 failed
    assert alpha["p99_ms"] == pytest.approx(5.0, rel=0.002)  # 1 ms late + 4 ms, from the schedule
    # the 400 ms stall at 20/s: the writes it kept back are added by the correction
    assert beta["count"] > 800 and beta["late_starts"] == 9
    assert beta["max_ms"] == pytest.approx(405, rel=0.002)
    assert merged["count"] == alpha["count"] + beta["count"]
    assert (
        histogram_stats(merge_encoded([alpha["histogram"], beta["histogram"]]))["p99_ms"] == merged["p99_ms"]
    )

    eff = doc["efficiency"]
    assert eff["window_seconds"] == pytest.approx(40.0)  # from the first attempt, not the process start
    # alpha's outage (fault at 10 s to its recovery) is RTO's: neither offered nor acked there
    down = recovered_at - (T0 + 10)
    assert eff["offered_per_second"] == pytest.approx(20 * (80 - down) / 40)
    acked = sum(1 for seq in range(800) if not _alpha_fails(seq)) + 800 - alpha["excluded_in_outage"]
    assert eff["acked_writes"] == acked
    assert eff["efficiency"] == pytest.approx(acked / (20 * (80 - down)))

    text = (run / "report.md").read_text()
    line = next(x for x in text.splitlines() if x.startswith("- Write latency p99"))
    assert f"{merged['p99_ms']:.1f} ms" in line and f"efficiency {eff['efficiency']:.3f}" in line

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families((run / "metrics.prom").read_text())
        for s in family.samples
    }
    assert samples[("harness_write_latency_p99_seconds", (("tenant", "beta"),))] == pytest.approx(
        beta["p99_ms"] / 1000
    )
    assert samples[("harness_run_write_latency_p99_seconds", ())] == pytest.approx(merged["p99_ms"] / 1000)
    assert samples[("harness_load_efficiency", ())] == pytest.approx(eff["efficiency"])


def test_unpaced_run_has_latency_but_no_efficiency(tmp_path: Path) -> None:
    run = _run_folder(tmp_path)
    meta = json.loads((run / "run.json").read_text())
    del meta["write_rate"]
    (run / "run.json").write_text(json.dumps(meta))
    build(run)
    doc = json.loads((run / "summary.json").read_text())
    assert doc["efficiency"]["efficiency"] is None and doc["efficiency"]["offered_per_second"] is None
    assert doc["efficiency"]["acked_per_second"] is not None
    assert doc["latency"]["all"]["count"] > 0
    assert "cannot tell" in next(
        x for x in (run / "report.md").read_text().splitlines() if "Write latency" in x
    )
    assert not any(
        s.name == "harness_load_efficiency"
        for family in text_string_to_metric_families((run / "metrics.prom").read_text())
        for s in family.samples
    )


def test_the_faults_own_outage_does_not_count_against_efficiency() -> None:
    """One of two tenants down 30 s of 60 (within the objective): not a capacity shortfall."""
    up = [_write("alpha", i, T0 + i * 0.05, 0.004) for i in range(1200)]
    down = [_write("beta", i, T0 + i * 0.05, 0.004) for i in range(1200) if not 200 <= i < 800]
    outages = {"beta": [(T0 + 10.0, T0 + 40.0)]}
    result = run_efficiency(up + down, 2, 20.0, LoadLife(started_at=T0, stop_requested_at=T0 + 60), outages)
    assert result.efficiency == pytest.approx(1.0, abs=0.002)
    blind = run_efficiency(up + down, 2, 20.0, LoadLife(started_at=T0, stop_requested_at=T0 + 60))
    assert blind.efficiency == pytest.approx(0.75, abs=0.002)
