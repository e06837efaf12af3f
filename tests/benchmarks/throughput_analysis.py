"""The throughput benchmark's arithmetic: pgbench's report and the journal in, runs and a summary out.

Pure (no processes, no files): :mod:`tests.benchmarks.bench_throughput` runs the clients
and hands what they left here. Three client programs can be compared at each client
count: ``pgbench``, the ``harness`` (the real Locust CLI) and ``bare``
(:mod:`tests.benchmarks.bare_probe`, plain threads and pyodbc: the floor of a Python
client). The harness and the bare probe are counted the same way, from their journals.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from loadgen.journal import Write
from tests.benchmarks.measure import BenchError

__all__ = [
    "DISTURBED",
    "GOAL_CLIENTS",
    "GOAL_RATIO",
    "JOURNAL_TOOLS",
    "TOOLS",
    "RunResult",
    "Summary",
    "client_counts",
    "cpu_in_window",
    "format_report",
    "harness_window",
    "journal_result",
    "parse_pgbench",
    "results_document",
    "rows_mismatch",
    "schedule",
    "summarize",
]

GOAL_RATIO = 0.7
GOAL_CLIENTS = 8
DISTURBED = 0.1  # cores used by other processes during a run before the report warns
TOOLS = ("pgbench", "harness", "bare")
JOURNAL_TOOLS = ("harness", "bare")
"""Tools counted from their journal (acks in the all-writers window, sampled CPU)."""


@dataclass(frozen=True)
class RunResult:
    """One timed run of one client program."""

    tool: str
    clients: int
    round: int
    run_id: str
    rate: float
    """Writes per second: pgbench's tps, or acks/s in the all-writers window (harness, bare)."""
    window: float
    """Seconds the rate is measured over."""
    writes: int
    """Acknowledged writes counted in that window."""
    acked: int
    """All acknowledged writes of the run."""
    failed: int
    """Journal ``fail`` + ``info`` attempts; pgbench failed transactions."""
    rows: int
    """Rows the run left in the table."""
    latency_ms: float
    """Mean latency of acknowledged writes as the client measured it."""
    client_cpu_us: float
    """Client CPU per acknowledged write (harness, bare: steady-state window)."""
    client_cpu_total_us: float
    """Client CPU of the whole process, start-up included, per acknowledged write."""
    server_cpu_us: float
    """PostgreSQL CPU (all its processes) per acknowledged write, over the whole run."""
    other_cores: float = 0.0
    """CPU used by anything else on the machine during the run, in cores (0 = undisturbed)."""
    steal_cores: float = 0.0
    """CPU the hypervisor took from this machine during the run, in cores."""


@dataclass(frozen=True)
class Summary:
    """The programs at one client count, averaged over rounds (``bare_*`` None when not run)."""

    clients: int
    pgbench_tps: float
    harness_acks: float
    ratio: float
    harness_cpu_us: float
    pgbench_cpu_us: float
    server_cpu_us_pgbench: float
    server_cpu_us_harness: float
    harness_latency_ms: float
    pgbench_latency_ms: float
    ratios: list[float] = field(default_factory=list)
    """harness/pgbench of each round."""
    bare_acks: float | None = None
    bare_ratio: float | None = None
    """bare/pgbench."""
    bare_cpu_us: float | None = None
    harness_bare_ratio: float | None = None
    """harness/bare: the share of the floor of a Python/pyodbc client the harness reaches."""
    server_cpu_us_bare: float | None = None
    bare_latency_ms: float | None = None


def parse_pgbench(output: str) -> dict[str, float]:
    """``tps``, ``transactions``, ``failed`` and ``latency_ms`` from pgbench's report."""
    found: dict[str, float] = {}
    patterns = {
        "transactions": r"number of transactions actually processed: (\d+)",
        "failed": r"number of failed transactions: (\d+)",
        "latency_ms": r"latency average = ([\d.]+) ms",
        "tps": r"tps = ([\d.]+) \(without initial connection time\)",
    }
    for key, pattern in patterns.items():
        match = re.search(pattern, output)
        if match:
            found[key] = float(match.group(1))
    if "tps" not in found or "transactions" not in found:
        raise BenchError(f"pgbench printed no tps; its output ends with: {output.strip()[-400:]!r}")
    found.setdefault("failed", 0.0)
    return found


def harness_window(ack_ends: dict[int, list[float]]) -> tuple[float, float, int]:
    """``(start, end, acks)``: the span in which every writer was being acknowledged.

    ``ack_ends`` maps each writer to the end times of its acknowledged writes. The span
    runs from the last writer's first ack to the first writer's last ack; ``acks``
    counts the acknowledgements strictly after its start and up to its end, so with one
    writer it is the usual "acks between the first and the last one".
    """
    lists = [sorted(ends) for ends in ack_ends.values() if ends]
    if not lists or len(lists) < len(ack_ends):
        raise BenchError("a writer had no acknowledged write: see the client's log of the run")
    start = max(ends[0] for ends in lists)
    end = min(ends[-1] for ends in lists)
    if end <= start:
        raise BenchError("the writers were never all acknowledged at the same time: run longer (--seconds)")
    acks = sum(1 for ends in lists for t in ends if start < t <= end)
    return start, end, acks


def cpu_in_window(
    samples: Sequence[tuple[float, float]], ends: Sequence[float], start: float, end: float
) -> float | None:
    """CPU microseconds per ack between the first and last CPU sample inside [start, end]."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2:
        return None
    (t0, cpu0), (t1, cpu1) = inside[0], inside[-1]
    acks = sum(1 for t in ends if t0 < t <= t1)
    return (cpu1 - cpu0) / acks * 1e6 if acks else None


def journal_result(
    tool: str,
    clients: int,
    round_: int,
    run_id: str,
    writes: Sequence[Write],
    samples: Sequence[tuple[float, float]],
    cpu: float,
    see: str = "the client's log",
) -> RunResult:
    """A harness or bare-probe run counted from its journal: acks/s in the all-writers window.

    ``samples`` are the client process's (time, CPU seconds) samples and ``cpu`` its whole
    CPU from ``wait4``; CPU per ack is taken over the window when at least two samples fall
    inside it, else over the whole process. ``see`` ends every error (where to look).
    Rows and server CPU are filled in by the caller.
    """
    ok = [w for w in writes if w.outcome == "ok"]
    ack_ends: dict[int, list[float]] = {}
    for w in ok:
        ack_ends.setdefault(w.writer, []).append(w.end)
    if len(ack_ends) != clients:
        raise BenchError(f"{len(ack_ends)} of {clients} writers were acknowledged: see {see}")
    start, end, acks = harness_window(ack_ends)
    steady = cpu_in_window(samples, [w.end for w in ok], start, end)
    total = cpu / len(ok) * 1e6
    return RunResult(
        tool=tool,
        clients=clients,
        round=round_,
        run_id=run_id,
        rate=acks / (end - start),
        window=end - start,
        writes=acks,
        acked=len(ok),
        failed=len(writes) - len(ok),
        rows=0,
        latency_ms=sum(w.latency for w in ok) / len(ok) * 1000.0,
        client_cpu_us=steady if steady is not None else total,
        client_cpu_total_us=total,
        server_cpu_us=0.0,
    )


def schedule(
    clients: Sequence[int], repeat: int, tools: Sequence[str] = ("pgbench", "harness")
) -> list[tuple[int, int, str]]:
    """``(clients, round, tool)`` in run order: ``tools`` then the mirror (ABBA, ABCCBA, ...).

    The order alternates by round and by client count, starting with ``tools`` as given
    for the first count, so a linear warm-up drift falls on every tool alike.
    """
    order: list[tuple[int, int, str]] = []
    for i, count in enumerate(clients):
        for round_ in range(repeat):
            turn = tuple(tools) if (i + round_) % 2 == 0 else tuple(reversed(tools))
            order += [(count, round_, tool) for tool in turn]
    return order


def rows_mismatch(run: RunResult) -> bool:
    """True when the rows a run left cannot match what its client saw.

    pgbench: rows == transactions. Journal tools: every ``ok`` row must be there, and no
    more rows than attempts that may have reached the server (``ok`` + ``fail`` + ``info``).
    """
    if run.tool == "pgbench":
        return run.rows != run.acked
    return run.rows < run.acked or run.rows > run.acked + run.failed


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def summarize(runs: list[RunResult]) -> list[Summary]:
    """One :class:`Summary` per client count, in the order the counts were first run."""
    rows: list[Summary] = []
    for clients in dict.fromkeys(r.clients for r in runs):
        pg = [r for r in runs if r.clients == clients and r.tool == "pgbench"]
        hx = [r for r in runs if r.clients == clients and r.tool == "harness"]
        bare = [r for r in runs if r.clients == clients and r.tool == "bare"]
        pg_tps = _mean([r.rate for r in pg])
        hx_acks = _mean([r.rate for r in hx])
        bare_acks = _mean([r.rate for r in bare]) if bare else None
        by_round = {r.round: r.rate for r in pg}
        rows.append(
            Summary(
                clients=clients,
                pgbench_tps=pg_tps,
                harness_acks=hx_acks,
                ratio=hx_acks / pg_tps if pg_tps else float("nan"),
                harness_cpu_us=_mean([r.client_cpu_us for r in hx]),
                pgbench_cpu_us=_mean([r.client_cpu_us for r in pg]),
                server_cpu_us_pgbench=_mean([r.server_cpu_us for r in pg]),
                server_cpu_us_harness=_mean([r.server_cpu_us for r in hx]),
                harness_latency_ms=_mean([r.latency_ms for r in hx]),
                pgbench_latency_ms=_mean([r.latency_ms for r in pg]),
                ratios=[r.rate / by_round[r.round] for r in hx if by_round.get(r.round)],
                bare_acks=bare_acks,
                bare_ratio=None if bare_acks is None else (bare_acks / pg_tps if pg_tps else float("nan")),
                bare_cpu_us=_mean([r.client_cpu_us for r in bare]) if bare else None,
                harness_bare_ratio=None if not bare_acks else hx_acks / bare_acks,
                server_cpu_us_bare=_mean([r.server_cpu_us for r in bare]) if bare else None,
                bare_latency_ms=_mean([r.latency_ms for r in bare]) if bare else None,
            )
        )
    return rows


def _num(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _summary_lines(summary: list[Summary]) -> list[str]:
    with_bare = any(s.bare_acks is not None for s in summary)
    server_label = "server CPU us/w pgbench/harness" + ("/bare" if with_bare else "")
    width = max(31, len(server_label))
    header = (
        f"{'clients':>7} {'pgbench tx/s':>12} {'harness acks/s':>14} {'ratio':>6} {'ratio by round':>15} "
        f"{'harness CPU us/ack':>18} {'pgbench CPU us/tx':>17} {server_label:>{width}}"
    )
    if with_bare:
        header += f" {'bare acks/s':>11} {'bare/pgbench':>12} {'bare CPU us/ack':>15} {'harness/bare':>12}"
    lines = [header]
    for s in summary:
        by_round = "/".join(f"{x:.2f}" for x in s.ratios)
        server = f"{s.server_cpu_us_pgbench:.0f}/{s.server_cpu_us_harness:.0f}"
        if with_bare:
            server += "/" + _num(s.server_cpu_us_bare, ".0f")
        line = (
            f"{s.clients:>7} {s.pgbench_tps:>12.1f} {s.harness_acks:>14.1f} {s.ratio:>6.2f} {by_round:>15} "
            f"{s.harness_cpu_us:>18.0f} {s.pgbench_cpu_us:>17.0f} {server:>{width}}"
        )
        if with_bare:
            line += (
                f" {_num(s.bare_acks, '.1f'):>11} {_num(s.bare_ratio, '.2f'):>12} "
                f"{_num(s.bare_cpu_us, '.0f'):>15} {_num(s.harness_bare_ratio, '.2f'):>12}"
            )
        lines.append(line)
    return lines


def format_report(
    runs: list[RunResult], summary: list[Summary], machine: dict[str, str], seconds: int
) -> str:
    """The text the benchmark prints: every run, the summary table, the goal, the machine."""
    lines = [f"runs ({seconds} s each, in the order they ran):"]
    lines.append(
        f"{'clients':>7} {'round':>5}  {'tool':<8} {'writes/s':>9} {'latency ms':>10} "
        f"{'client CPU us/w':>15} {'server CPU us/w':>15} {'acked':>7} {'failed':>6} {'rows':>7} "
        f"{'other cores':>11}"
    )
    for r in runs:
        lines.append(
            f"{r.clients:>7} {r.round:>5}  {r.tool:<8} {r.rate:>9.1f} {r.latency_ms:>10.2f} "
            f"{r.client_cpu_us:>15.0f} {r.server_cpu_us:>15.0f} {r.acked:>7} {r.failed:>6} {r.rows:>7} "
            f"{r.other_cores:>11.2f}"
        )
    lines += ["", "summary (mean over rounds):"]
    lines += _summary_lines(summary)
    goal = [s for s in summary if s.clients == GOAL_CLIENTS]
    if goal:
        verdict = "met" if goal[0].ratio >= GOAL_RATIO else "NOT met"
        ratio = goal[0].ratio
        lines.append(
            f"goal: harness/pgbench >= {GOAL_RATIO} at {GOAL_CLIENTS} clients: {verdict} ({ratio:.2f})"
        )
    for r in runs:
        if rows_mismatch(r):
            lines.append(
                f"WARNING: {r.tool} run {r.run_id} acknowledged {r.acked} writes but left {r.rows} rows"
            )
    for r in runs:
        if r.other_cores > DISTURBED or r.steal_cores > DISTURBED:
            lines.append(
                f"WARNING: during {r.run_id} other processes used {r.other_cores:.2f} cores and the "
                f"hypervisor stole {r.steal_cores:.2f}: that run's numbers are disturbed"
            )
    lines += ["", "machine:"]
    lines += [f"  {key}: {value}" for key, value in machine.items()]
    return "\n".join(lines)


def client_counts(text: str) -> list[int]:
    """``--clients``: positive numbers separated by commas (an argparse type)."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--clients wants numbers separated by commas, got {text!r}"
        ) from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"--clients wants positive numbers, got {text!r}")
    return counts


def results_document(
    settings: dict[str, Any], machine: dict[str, str], runs: list[RunResult], date: str
) -> dict[str, Any]:
    """What ``--out`` writes as JSON: date, settings, machine, every run and the summary."""
    return {
        "date": date,
        "settings": settings,
        "machine": machine,
        "runs": [asdict(r) for r in runs],
        "summary": [asdict(s) for s in summarize(runs)],
    }
