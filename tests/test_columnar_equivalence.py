"""One analysis path for short runs and soaks: the columnar analysis equals today's, field by field.

Hypothesis draws small journals (several tenants and writers, ok/fail/info attempts,
outages and gaps, duplicated keys, faults whose times tie with attempts, read-backs
with missing, unexpected and failed rows or an error, clock samples, local and cluster
loads) and writes them as a run would leave them: segmented JSON lines per process with
closed segments compacted to Parquet (:func:`loadgen.segments.compact`), unsegmented
files, torn last lines (cut mid-object, or a whole object still waiting for its newline),
undecodable lines, a cluster master's batch lines, and a segment present in both forms.
Then :func:`probes.columnar.analyze_folder` must equal
``analyze(*read_journal(folder), ...)``: every count, every float bit for bit, every
violation in the same order. Latency and efficiency must equal theirs too.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from loadgen.journal import ClockSample, Write, read_journal
from loadgen.segments import compact
from probes.analysis import analyze
from probes.columnar import ColumnarJournal, EngineSettings, analyze_folder
from probes.efficiency import run_efficiency
from probes.latency import journal_latency, outage_windows
from probes.model import (
    Fault,
    LoadCollection,
    LoadLife,
    Objective,
    ReadBack,
    RunAnalysis,
    RunContext,
    WorkerCollection,
)

TENANTS = ("t1", "t2", "t3")
BASE = 1000.0


@dataclass
class Journal:
    """What one example writes, and what the analysis is asked."""

    writes: list[Write]
    clocks: list[ClockSample]
    faults: list[Fault]
    readbacks: dict[str, ReadBack]
    tenants: list[str]
    objective: Objective
    stability: float
    context: RunContext
    layout: list[tuple[int, list[int], str]] = field(default_factory=list)  # (process, cuts, tear)
    group_rows: int = 16_000_000  # tenants fetched together: small values make many groups


def _time(draw: st.DrawFn) -> float:
    """A time on a coarse grid (ties with other attempts and faults) or with a full mantissa."""
    k = draw(st.integers(0, 60))
    jitter = draw(
        st.sampled_from([0.0, 0.25])
        | st.floats(0.0, 0.49, allow_nan=False, allow_infinity=False, allow_subnormal=False)
    )
    return BASE + k * 0.5 + jitter


@st.composite
def attempts(draw: st.DrawFn, tenant: str, writer: int) -> list[Write]:
    out: list[Write] = []
    t = BASE + draw(st.sampled_from([0.0, 0.3, 1.7]))
    seq = 0
    for _ in range(draw(st.integers(0, 25))):
        t += draw(st.sampled_from([0.05, 0.5, 0.5, 1.0, 2.5, 4.5]))
        latency = draw(
            st.sampled_from([0.0, 0.01, 0.2, 1.5, 6.0]) | st.floats(0.0, 3.0, allow_subnormal=False)
        )
        outcome = draw(st.sampled_from(["ok", "ok", "ok", "fail", "info"]))
        end = t + latency if draw(st.integers(0, 30)) else t - 0.3  # now and then a clock stepped back
        due = draw(st.sampled_from([None, t, t - 0.02, t - 0.7]))
        if not draw(st.integers(0, 12)) and out:
            seq = out[-1].seq  # a key journaled twice
        else:
            seq += 1
        out.append(Write(tenant, writer, seq, t, end, latency, outcome, None, None, due))  # type: ignore[arg-type]
    return out


def _readback(draw: st.DrawFn, tenant: str, writes: list[Write]) -> ReadBack | None:
    kind = draw(st.sampled_from(["rows", "rows", "rows", "error", "none", "empty"]))
    if kind == "none":
        return None
    if kind == "error":
        return ReadBack(tenant, (), BASE + 100, "connection refused")
    if kind == "empty":
        return ReadBack(tenant, (), BASE + 100)
    keep = {"ok": 9, "info": 5, "fail": 1}
    keys = [w.key for w in writes if draw(st.integers(0, 9)) < keep[w.outcome]]
    keys += [(w, s) for w, s in draw(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 40)), max_size=3))]
    return ReadBack.of_keys(tenant, keys, BASE + 100)


def _context(draw: st.DrawFn, names: list[str], last: float) -> RunContext:
    load: LoadLife | None = None
    if draw(st.booleans()):
        stop = draw(st.sampled_from([None, last + 0.5, last + 5.0, last - 3.0]))
        died = draw(st.sampled_from([None, None, last + 1.0]))
        cluster = draw(st.integers(0, 3)) == 0
        collection = None
        if cluster and draw(st.booleans()):
            whole = draw(st.booleans())
            collection = LoadCollection(
                expected_workers=1,
                complete=whole,
                workers=(
                    WorkerCollection(
                        index=0,
                        worker="w-0",
                        tenants=tuple(names[:1]),
                        batches=3,
                        records=10,
                        final_batches=3,
                        final_records=10 if whole else 12,
                        complete=whole,
                    ),
                ),
            )
        load = LoadLife(
            started_at=BASE - 1.0,
            stop_requested_at=stop,
            ended_at=draw(st.sampled_from([None, last + 2.0])),
            exit_code=draw(st.sampled_from([None, 0, 1])),
            died_at=died,
            mode="cluster" if cluster else "local",
            workers=1 if cluster else None,
            collection=collection,
        )
    return RunContext(
        chaos_status=draw(st.sampled_from([None, "completed", "failed"])),
        load=load,
        write_rate=draw(st.sampled_from([None, 2.0, 20.0])),
    )


@st.composite
def journals(draw: st.DrawFn) -> Journal:
    writing = draw(st.lists(st.sampled_from(TENANTS), min_size=1, max_size=3, unique=True))
    writes: list[Write] = []
    for tenant in writing:
        for writer in draw(st.lists(st.sampled_from([0, 1, 7]), min_size=1, max_size=2, unique=True)):
            writes += draw(attempts(tenant, writer))
    last = max((w.end for w in writes), default=BASE)
    faults = [
        Fault(
            name=f"fault-{i}",
            kind="pod-kill",
            injected_at=_time(draw),
            target=draw(st.sampled_from([None, *writing])),
            ended_at=draw(st.sampled_from([None, BASE + 50.0])),
        )
        for i in range(draw(st.integers(0, 3)))
    ]
    asked = draw(st.lists(st.sampled_from([*TENANTS, "t4"]), max_size=4))
    readbacks = {}
    for tenant in [*writing, "t4"]:
        rb = _readback(draw, tenant, [w for w in writes if w.tenant == tenant])
        if rb is not None:
            readbacks[tenant] = rb
    clocks = [
        ClockSample(t, _time(draw), draw(st.sampled_from([-0.5, 0.0, 0.1, 0.3])), 0.001)
        for t in draw(st.lists(st.sampled_from(writing), max_size=4))
    ]
    layout = [
        (
            process,
            sorted(draw(st.lists(st.integers(1, 40), max_size=3, unique=True))),
            draw(st.sampled_from(["", "", "cut", "whole", "garbage"])),
        )
        for process in range(draw(st.integers(1, 3)))
    ]
    return Journal(
        writes=writes,
        clocks=clocks,
        faults=faults,
        readbacks=readbacks,
        tenants=asked,
        objective=Objective(
            rto_seconds=draw(st.sampled_from([1.0, 60.0])), rpo_seconds=draw(st.sampled_from([0.0, 5.0]))
        ),
        stability=draw(st.sampled_from([0.5, 2.0, 5.0])),
        context=_context(draw, writing, last),
        layout=layout,
        group_rows=draw(st.sampled_from([1, 30, 16_000_000])),
    )


def _line(record: Write | ClockSample) -> str:
    kind = "write" if isinstance(record, Write) else "clock"
    return json.dumps({"kind": kind, **asdict(record)}, separators=(",", ":")) + "\n"


def write_folder(folder: Path, j: Journal) -> None:
    """The records spread over processes and segments as a run leaves them; closed segments compacted."""
    records: list[Write | ClockSample] = sorted(
        [*j.writes, *j.clocks], key=lambda r: r.end if isinstance(r, Write) else r.at
    )
    processes = len(j.layout)
    for process, cuts, tear in j.layout:
        mine = records[process::processes]
        meta = json.dumps({"kind": "meta", "run_id": "run-1", "pid": process}) + "\n"
        pieces = [mine[a:b] for a, b in zip([0, *cuts], [*cuts, len(mine)], strict=True)]
        names = (
            [f"host-{process}.jsonl"]
            if not cuts
            else [f"host-{process}.s{i:06d}.jsonl" for i in range(len(pieces))]
        )
        if not cuts:
            pieces = [mine]
        for i, (name, piece) in enumerate(zip(names, pieces, strict=True)):
            text = meta + "".join(_line(r) for r in piece)
            if i == 1:
                text += '{"kind":"batch","worker":"w-0","batch":3}\n'
            if i == len(pieces) - 1:
                if tear == "garbage":
                    text = text.replace("\n", "\n{not json\n", 1)
                torn = _line(Write("t1", 5, 999, BASE, BASE + 1, 1.0, "ok"))  # type: ignore[arg-type]
                text += {"cut": torn[:40], "whole": torn[:-1]}.get(tear, "")
            (folder / name).write_text(text)
    stats = compact(folder)
    assert not stats.refused, stats.refused
    both = sorted(folder.glob("*.parquet"))
    if both:  # a segment caught mid-compaction: both forms present, readers take the Parquet
        (folder / both[0].with_suffix(".jsonl").name).write_text(
            _line(Write("t2", 8, 1, BASE, BASE, 0.0, "ok"))
        )  # type: ignore[arg-type]


def _events(folder: Path, a: RunAnalysis) -> None:
    """What this example exercised (``pytest --hypothesis-show-statistics``)."""
    event(f"parquet segments: {min(len(list(folder.glob('*.parquet'))), 2)}")
    results = [r for f in a.faults for r in f.results]
    event(f"recovered: {any(r.recovered for r in results)}, not: {any(not r.recovered for r in results)}")
    event(f"lost acks: {any(t.lost for t in a.totals)}")
    event(f"measurement gaps: {any(t.measurement_gaps for t in a.totals)}")
    event(f"misclassified or unexpected: {any(t.misclassified or t.unexpected for t in a.totals)}")
    event(f"verdict {a.verdict}")


def _diff(got: RunAnalysis, want: RunAnalysis) -> str:
    a, b = asdict(got), asdict(want)
    return "; ".join(f"{k}: got {a[k]!r}, want {b[k]!r}" for k in a if a[k] != b[k])


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(journals())
def test_columnar_analysis_equals_todays(j: Journal) -> None:
    folder = Path(tempfile.mkdtemp(prefix="columnar-eq-"))
    try:
        write_folder(folder, j)
        writes, clocks = read_journal(folder)
        want = analyze(
            "run-1", writes, clocks, j.faults, j.readbacks, j.tenants, j.objective, j.stability, j.context
        )
        got = analyze_folder(
            "run-1",
            folder,
            j.faults,
            j.readbacks,
            j.tenants,
            j.objective,
            j.stability,
            j.context,
            settings=EngineSettings(group_rows=j.group_rows),
        )
        assert got == want, _diff(got, want)
        _events(folder, want)
        json.dumps(asdict(got))  # plain Python numbers only: the summary writes them as they are

        outages = outage_windows(want)
        rate = j.context.write_rate
        interval = 1.0 / rate if rate else None
        with ColumnarJournal(folder) as journal:
            latency = journal.latency(outages, tenants=want.tenants, expected_interval=interval)
            efficiency = journal.efficiency(len(want.tenants), rate, j.context.load, outages)
        assert latency == journal_latency(folder, outages, tenants=want.tenants, expected_interval=interval)
        reference = run_efficiency(writes, len(want.tenants), rate, j.context.load, outages)
        assert efficiency.acked_writes == reference.acked_writes
        assert efficiency.window_seconds == reference.window_seconds
        for name in ("offered_per_second", "efficiency", "offered_writes"):
            mine, theirs = getattr(efficiency, name), getattr(reference, name)
            # outage time is summed over tenants in set order there, name order here
            assert (mine is None) == (theirs is None) and (
                mine is None or abs(mine - theirs) <= 1e-9 * abs(theirs)
            ), name
    finally:
        shutil.rmtree(folder, ignore_errors=True)
