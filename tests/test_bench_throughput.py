"""The throughput benchmark's arithmetic on synthetic inputs: pgbench's report, journals, the table."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from loadgen.journal import Write
from tests.benchmarks import bench_throughput
from tests.benchmarks.measure import BenchError
from tests.benchmarks.throughput_analysis import (
    RunResult,
    client_counts,
    cpu_in_window,
    format_report,
    harness_window,
    journal_result,
    parse_pgbench,
    results_document,
    rows_mismatch,
    schedule,
    summarize,
)

T0 = 1_700_000_000.0

PGBENCH_OUTPUT = """pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: /tmp/insert.sql
scaling factor: 1
query mode: extended
number of clients: 8
number of threads: 8
maximum number of tries: 1
duration: 15 s
number of transactions actually processed: 113407
number of failed transactions: 0 (0.000%)
latency average = 1.054 ms
initial connection time = 12.345 ms
tps = 7583.012345 (without initial connection time)
"""


def acks(writer: int, first: float, last: float, every: float = 0.01, outcome: str = "ok") -> list[Write]:
    """One writer's attempts ending every ``every`` s from ``T0 + first`` to ``T0 + last``."""
    out = []
    for seq in range(1, round((last - first) / every) + 2):
        end = T0 + first + (seq - 1) * every
        out.append(Write("bench", writer, seq, end - 0.001, end, 0.001, outcome, end - 0.0005))  # type: ignore[arg-type]
    return out


def run(tool: str, clients: int, round_: int, rate: float, **kw: float) -> RunResult:
    values: dict[str, object] = {
        "tool": tool,
        "clients": clients,
        "round": round_,
        "run_id": f"{tool}-c{clients}-r{round_}",
        "rate": rate,
        "window": 10.0,
        "writes": int(rate * 10),
        "acked": int(rate * 10),
        "failed": 0,
        "rows": int(rate * 10),
        "latency_ms": 1.0,
        "client_cpu_us": 100.0,
        "client_cpu_total_us": 120.0,
        "server_cpu_us": 200.0,
    }
    values.update(kw)
    return RunResult(**values)  # type: ignore[arg-type]


# -- pgbench and the journal window ---------------------------------------------------------------


def test_parse_pgbench_reads_tps_transactions_failures_and_latency() -> None:
    assert parse_pgbench(PGBENCH_OUTPUT) == {
        "transactions": 113407.0,
        "failed": 0.0,
        "latency_ms": 1.054,
        "tps": 7583.012345,
    }
    older = PGBENCH_OUTPUT.replace("number of failed transactions: 0 (0.000%)\n", "")
    assert parse_pgbench(older)["failed"] == 0.0


def test_parse_pgbench_refuses_output_without_tps() -> None:
    with pytest.raises(BenchError, match=r"pgbench printed no tps.*connection refused"):
        parse_pgbench("pgbench: error: connection refused\n")


def test_window_runs_from_the_last_first_ack_to_the_first_last_ack() -> None:
    start, end, count = harness_window({0: [1.0, 2.0, 3.0, 4.0, 5.0], 1: [2.5, 3.5, 4.5]})
    assert (start, end) == (2.5, 4.5)
    assert count == 4  # 3.0, 4.0 and 3.5, 4.5: strictly after the start, up to the end


def test_window_refuses_a_silent_writer_and_writers_never_acked_together() -> None:
    with pytest.raises(BenchError, match="a writer had no acknowledged write"):
        harness_window({0: [1.0, 2.0], 1: []})
    with pytest.raises(BenchError, match="never all acknowledged at the same time"):
        harness_window({0: [1.0, 2.0], 1: [3.0, 4.0]})


def test_cpu_in_window_is_per_ack_between_the_samples_inside() -> None:
    samples = [(t, 0.001 * t) for t in range(0, 11)]  # 1 ms of CPU per second
    ends = [t + 0.5 for t in range(10)]  # one ack per second
    assert cpu_in_window(samples, ends, 2.0, 6.0) == pytest.approx(1000.0)  # 4 ms over 4 acks
    assert cpu_in_window(samples, ends, 2.5, 3.5) is None  # fewer than two samples inside
    assert cpu_in_window(samples, [], 2.0, 6.0) is None


def test_journal_result_counts_the_all_writers_window_and_its_cpu() -> None:
    writes = acks(0, 0.0, 10.0) + acks(1, 1.0, 9.0) + acks(1, 9.01, 9.01, outcome="info")[-1:]
    samples = [(T0 + t * 0.2, 0.05 * t * 0.2) for t in range(60)]  # 0.05 cores
    result = journal_result("bare", 2, 1, "bare-c2-r1", writes, samples, cpu=1.0)
    assert result.tool == "bare" and result.round == 1 and result.run_id == "bare-c2-r1"
    assert result.window == pytest.approx(8.0)
    assert result.rate == pytest.approx(200.0, rel=0.01)  # two writers at 100/s each
    assert result.acked == 1001 + 801
    assert result.failed == 1
    assert result.latency_ms == pytest.approx(1.0)
    assert result.client_cpu_total_us == pytest.approx(1.0 / 1802 * 1e6)
    assert result.client_cpu_us == pytest.approx(0.05 / 200 * 1e6, rel=0.02)


def test_journal_result_falls_back_to_whole_process_cpu_and_refuses_missing_writers() -> None:
    writes = acks(0, 0.0, 2.0)
    result = journal_result("harness", 1, 0, "h", writes, [], cpu=0.5)
    assert result.client_cpu_us == result.client_cpu_total_us == pytest.approx(0.5 / len(writes) * 1e6)
    with pytest.raises(BenchError, match="1 of 2 writers were acknowledged: see the log at X"):
        journal_result("harness", 2, 0, "h", writes, [], cpu=0.5, see="the log at X")


# -- order, summary, report -----------------------------------------------------------------------


def test_schedule_is_abba_for_two_tools_as_before() -> None:
    assert schedule([1, 8], 2) == [
        (1, 0, "pgbench"),
        (1, 0, "harness"),
        (1, 1, "harness"),
        (1, 1, "pgbench"),
        (8, 0, "harness"),
        (8, 0, "pgbench"),
        (8, 1, "pgbench"),
        (8, 1, "harness"),
    ]


def test_schedule_mirrors_three_tools_so_every_tool_sits_on_average_in_the_middle() -> None:
    order = schedule([1], 2, ("pgbench", "harness", "bare"))
    assert [tool for _, _, tool in order] == ["pgbench", "harness", "bare", "bare", "harness", "pgbench"]
    positions = {
        t: [i for i, (_, _, tool) in enumerate(order) if tool == t] for t in ("pgbench", "harness", "bare")
    }
    assert {sum(p) / len(p) for p in positions.values()} == {2.5}
    assert [tool for _, _, tool in schedule([1, 8], 1, ("a", "b", "c"))] == ["a", "b", "c", "c", "b", "a"]


def test_summary_without_bare_leaves_the_bare_columns_out() -> None:
    runs = [run("pgbench", 8, 0, 1000.0), run("harness", 8, 0, 400.0), run("pgbench", 8, 1, 800.0)]
    runs.append(run("harness", 8, 1, 400.0))
    (s,) = summarize(runs)
    assert s.ratio == pytest.approx(400 / 900)
    assert s.ratios == [pytest.approx(0.4), pytest.approx(0.5)]
    assert s.bare_acks is None and s.harness_bare_ratio is None
    text = format_report(runs, [s], {"nproc": "2"}, 10)
    assert "bare" not in text
    header, row = text.split("summary (mean over rounds):\n")[1].splitlines()[:2]
    assert len(row) == len(header)
    assert "server CPU us/w pgbench/harness" in text and "pgbench/harness/" not in text
    assert "goal: harness/pgbench >= 0.7 at 8 clients: NOT met (0.44)" in text


def test_summary_with_bare_gives_its_rate_ratios_and_cpu() -> None:
    runs = [
        run("pgbench", 1, 0, 2000.0, server_cpu_us=150.0),
        run("harness", 1, 0, 500.0, client_cpu_us=450.0),
        run("bare", 1, 0, 1000.0, client_cpu_us=120.0, server_cpu_us=250.0, latency_ms=0.5),
        run("bare", 1, 1, 1200.0, client_cpu_us=140.0, server_cpu_us=270.0, latency_ms=0.7),
    ]
    (s,) = summarize(runs)
    assert s.bare_acks == pytest.approx(1100.0)
    assert s.bare_ratio == pytest.approx(0.55)
    assert s.bare_cpu_us == pytest.approx(130.0)
    assert s.harness_bare_ratio == pytest.approx(500 / 1100)
    assert s.server_cpu_us_bare == pytest.approx(260.0)
    assert s.bare_latency_ms == pytest.approx(0.6)
    text = format_report(runs, [s], {"nproc": "2"}, 10)
    header, row = text.split("summary (mean over rounds):\n")[1].splitlines()[:2]
    for column in ("bare acks/s", "bare/pgbench", "bare CPU us/ack", "harness/bare", "pgbench/harness/bare"):
        assert column in header
    assert row.split()[-4:] == ["1100.0", "0.55", "130", "0.45"]
    assert row.split()[-5] == "150/200/260"  # server CPU per write of each tool
    assert len(row) == len(header)  # right-aligned under their headers
    assert row.split()[4] == "0.25"  # harness/pgbench by round


def test_summary_with_bare_at_one_count_only_says_n_a_at_the_other() -> None:
    runs = [run("pgbench", 1, 0, 100.0), run("harness", 1, 0, 50.0), run("pgbench", 8, 0, 100.0)]
    runs += [run("harness", 8, 0, 50.0), run("bare", 8, 0, 80.0)]
    text = format_report(runs, summarize(runs), {}, 10)
    one = next(line for line in text.splitlines() if line.split()[:1] == ["1"] and "n/a" in line)
    assert one.split()[-4:] == ["n/a", "n/a", "n/a", "n/a"]


@pytest.mark.parametrize(
    ("tool", "acked", "failed", "rows", "mismatch"),
    [
        ("pgbench", 100, 0, 100, False),
        ("pgbench", 100, 0, 99, True),
        ("pgbench", 100, 0, 101, True),
        ("harness", 100, 2, 101, False),  # an info write reached the server
        ("harness", 100, 2, 99, True),  # an acknowledged write is missing
        ("harness", 100, 2, 103, True),  # more rows than attempts
        ("bare", 100, 0, 100, False),
        ("bare", 100, 0, 99, True),
        ("bare", 100, 0, 101, True),
    ],
)
def test_rows_are_checked_against_what_each_client_saw(
    tool: str, acked: int, failed: int, rows: int, mismatch: bool
) -> None:
    r = run(tool, 1, 0, 10.0, acked=acked, failed=failed, rows=rows)
    assert rows_mismatch(r) is mismatch
    text = format_report([r], summarize([r]), {}, 10)
    warning = f"WARNING: {tool} run {r.run_id} acknowledged {acked} writes but left {rows} rows"
    assert (warning in text) is mismatch


def test_disturbed_runs_are_flagged() -> None:
    runs = [run("pgbench", 1, 0, 10.0), run("bare", 1, 0, 10.0, other_cores=0.3)]
    text = format_report(runs, summarize(runs), {"nproc": "2"}, 10)
    assert "WARNING: during bare-c1-r0 other processes used 0.30 cores" in text
    assert "pgbench-c1-r0 other processes" not in text
    assert text.endswith("machine:\n  nproc: 2")


def test_results_document_is_plain_json() -> None:
    runs = [run("pgbench", 1, 0, 10.0), run("harness", 1, 0, 5.0)]
    document = results_document({"seconds": 5, "bare": False}, {"nproc": "2"}, runs, "2026-01-01T00:00:00Z")
    again = json.loads(json.dumps(document, allow_nan=False))
    assert again["summary"][0]["ratio"] == 0.5 and again["summary"][0]["bare_acks"] is None
    assert [r["tool"] for r in again["runs"]] == ["pgbench", "harness"]
    assert again["date"] == "2026-01-01T00:00:00Z"


# -- the command line -------------------------------------------------------------------------------


def test_client_counts_take_positive_numbers_only() -> None:
    assert client_counts("1, 8,") == [1, 8]
    for bad, words in (("1,x", "separated by commas"), ("0,8", "positive numbers"), ("", "positive")):
        with pytest.raises(argparse.ArgumentTypeError, match=words):
            client_counts(bad)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--seconds", "2"], "--seconds must be at least 3"),
        (["--repeat", "0"], "--repeat at least 1"),
        (["--clients", "0"], "--clients wants positive numbers"),
        (["--bare", "--clients", "a"], "--clients wants numbers separated by commas"),
    ],
)
def test_bad_arguments_are_refused_in_one_line_before_anything_starts(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        bench_throughput.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_public_names_stay_importable_from_the_benchmark() -> None:
    for name in bench_throughput.__all__:
        assert getattr(bench_throughput, name) is not None
    assert bench_throughput.parse_pgbench is parse_pgbench
    assert not math.isnan(bench_throughput.summarize([run("pgbench", 1, 0, 1.0)])[0].pgbench_tps)
