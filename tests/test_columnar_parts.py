"""The columnar analysis's parts against the code they stand in for, and its refusals of bad input.

Each numpy piece of :mod:`probes.columnar_tenant` is held equal to the Python it replaces
on drawn attempts (medians and counts against ``probes.analysis._Timeline``, coverage gaps
against ``probes.trust``, the read-back verdict against ``probes.analysis._rpo``); the
timeline counts against ``numpy.histogram``; the per-minute roll-ups against HdrHistogram
percentiles computed from the records one by one. Bad journals fail with one line naming
the file and the fix.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadgen.journal import Write, read_journal
from loadgen.segments import compact
from probes.analysis import _rpo, _Timeline, analyze
from probes.columnar import ColumnarJournal, EngineSettings, analyze_folder, minute_rollups
from probes.columnar_arrays import TenantArrays
from probes.columnar_tenant import ArrayTimeline, _loss, coverage_gaps
from probes.errors import ProbeError
from probes.latency import attempt_latency, histogram_stats, new_histogram
from probes.model import ReadBack
from probes.trust import _coverage_gaps

OUTCOME_CODES = {"ok": 0, "fail": 1, "info": 2}


def arrays(tenant: str, writes: list[Write]) -> TenantArrays:
    return TenantArrays(
        tenant,
        np.array([w.writer for w in writes], np.int64),
        np.array([w.seq for w in writes], np.int64),
        np.array([w.start for w in writes], np.float64),
        np.array([w.end for w in writes], np.float64),
        np.array([OUTCOME_CODES[w.outcome] for w in writes], np.uint8),
    )


grid = st.integers(0, 40).map(lambda k: 100.0 + k * 0.25)
attempt = st.builds(
    lambda start, length, outcome, writer, seq: Write(
        "t", writer, seq, start, start + length, length, outcome
    ),
    grid,
    st.sampled_from([-0.5, 0.0, 0.25, 0.5, 3.0]),
    st.sampled_from(["ok", "ok", "fail", "info"]),
    st.integers(0, 2),
    st.integers(1, 30),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(attempt, max_size=40), grid, grid, st.sampled_from([0.5, 2.0]))
def test_array_timeline_answers_as_the_timeline_does(
    writes: list[Write], at: float, later: float, stable: float
) -> None:
    mine, theirs = ArrayTimeline.of_arrays(arrays("t", writes)), _Timeline.of(writes)
    assert mine.baseline(at) == theirs.baseline(at)
    assert mine.count(at, later) == theirs.count(at, later)
    assert mine.count(at, None) == theirs.count(at, None)
    assert mine.recovery(at, stable) == theirs.recovery(at, stable)


@settings(max_examples=150, deadline=None)
@given(st.lists(attempt, max_size=40), st.sampled_from([None, 105.0, 120.0]), st.sampled_from([0.3, 2.0]))
def test_coverage_gaps_are_the_readers(writes: list[Write], until: float | None, limit: float) -> None:
    ordered = sorted(writes, key=lambda w: (w.start, w.tenant, w.writer, w.seq))  # as read_journal sorts
    assert coverage_gaps(arrays("t", writes), until, limit) == _coverage_gaps(ordered, until, limit)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(attempt, max_size=40), st.lists(st.tuples(st.integers(0, 3), st.integers(0, 32)), max_size=30)
)
def test_read_back_verdict_is_analysis_own(writes: list[Write], present: list[tuple[int, int]]) -> None:
    # A key journaled twice (a retried line) is kept; one journaled twice with the same start is not
    # a journal a writer can write (its clock moves on), and there the two paths pick a different
    # twin (file order vs end): a documented difference, not what this test is about.
    writes = list({(w.writer, w.seq, w.start): w for w in writes}.values())
    readback = ReadBack.of_keys("t", present, 200.0)
    ordered = sorted(writes, key=lambda w: (w.start, w.tenant, w.writer, w.seq))
    want = _rpo(ordered, readback)
    got = _loss(arrays("t", writes), readback)
    assert want.lost is not None
    assert (got.rpo.unexpected, got.rpo.recovered_unknown, got.rpo.misclassified) == (
        want.unexpected,
        want.recovered_unknown,
        want.misclassified,
    )
    assert got.count == len(want.lost)
    assert got.ends.tolist() == [w.end for w in want.lost]
    assert got.keys == sorted(w.key for w in want.lost)


def _journal(folder: Path, lines: list[str], name: str = "host-1.jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(lines))
    return folder


def _write(w: Write) -> str:
    return json.dumps({"kind": "write", **asdict(w)}) + "\n"


def test_timeline_counts_bin_as_numpy_histogram(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    origin, width = 1000.0, 0.5
    edges = np.arange(0.0, 30.0 + width, width)
    ends = np.concatenate([origin + rng.uniform(-2, 33, 400), origin + edges[::3], [origin + edges[-1]]])
    outcomes = rng.choice(["ok", "fail", "info"], len(ends))
    lines = [
        _write(Write("a", 1, i, e - 0.01, float(e), 0.01, o))
        for i, (e, o) in enumerate(zip(ends, outcomes, strict=True))
    ]
    lines.append(_write(Write("b", 1, 1, origin, origin + 1.0, 1.0, "ok")))  # another tenant
    lines.append(_write(Write("c", 1, 1, origin, origin + 99.0, 1.0, "ok")))  # after the last edge
    with ColumnarJournal(_journal(tmp_path / "journal", lines)) as journal:
        counts = journal.timeline_counts(origin, edges)
    assert sorted(counts) == ["a", "b", "c"]
    a = counts["a"]
    for outcome, got in (("ok", a.acks), ("fail", a.fails), ("info", a.infos)):
        want, _ = np.histogram(ends[outcomes == outcome] - origin, bins=edges)
        assert got.tolist() == want.tolist()
    assert counts["b"].acks.sum() == 1 and counts["c"].acks.sum() == 0


def test_minute_rollups_match_hdr_percentiles_per_minute(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    writes = []
    for i in range(900):
        start = 120.0 + rng.uniform(0, 170)
        latency = float(rng.lognormal(math.log(0.004), 0.8))
        due = start - float(rng.choice([0.0, 0.002, 0.05]))
        outcome = str(rng.choice(["ok", "ok", "ok", "fail", "info"]))
        writes.append(
            Write(str(rng.choice(["a", "b"])), 1, i, start, start + latency, latency, outcome, due=due)
        )  # type: ignore[arg-type]
    got = minute_rollups(_journal(tmp_path / "journal", [_write(w) for w in writes]))
    keys = sorted({(w.tenant, math.floor(w.end / 60) * 60.0) for w in writes})
    assert [(r.tenant, r.minute) for r in got] == keys
    for r in got:
        mine = [w for w in writes if (w.tenant, math.floor(w.end / 60) * 60.0) == (r.tenant, r.minute)]
        assert (r.acks, r.fails, r.infos) == tuple(
            sum(w.outcome == o for w in mine) for o in ("ok", "fail", "info")
        )
        histogram = new_histogram()
        for w in mine:
            if w.outcome == "ok":
                histogram.record_value(max(1, round(attempt_latency(w) * 1_000_000)))
        assert r.p99_ms == histogram_stats(histogram)["p99_ms"]


def test_empty_folder_is_a_run_without_writes(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    folder.mkdir()
    want = analyze("r", [], [], [], {}, ["a"])
    assert analyze_folder("r", folder, [], {}, ["a"]) == want
    assert minute_rollups(folder) == []


def test_missing_folder_is_one_line_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(
        ProbeError, match=r"journal folder .*nowhere does not exist; pass a run's journal/ folder"
    ):
        analyze_folder("r", tmp_path / "nowhere", [], {}, [])


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (
            '{"kind":"write","tenant":"a","writer":1,"start":1.0,"end":2.0,"latency":1.0,"outcome":"ok"}\n',
            "no seq",
        ),
        (
            '{"kind":"write","tenant":"a","writer":1,"seq":1,"start":1.0,"end":2.0,"latency":1.0,"outcome":"maybe"}\n',
            "outcome",
        ),
        (
            '{"kind":"write","tenant":"a","writer":"x","seq":1,"start":1.0,"end":2.0,"latency":1.0,"outcome":"ok"}\n',
            "type",
        ),
    ],
)
def test_a_write_record_that_cannot_be_read_names_its_file(tmp_path: Path, line: str, why: str) -> None:
    good = _write(Write("a", 1, 2, 1.0, 2.0, 1.0, "ok"))
    folder = _journal(tmp_path / "journal", [good, line, good])
    with pytest.raises(
        ProbeError, match=r"journal file .*host-1\.jsonl has 1 write record\(s\) with a missing"
    ):
        analyze_folder("r", folder, [], {}, [])


def test_a_torn_last_line_is_skipped_even_when_it_is_a_whole_object(tmp_path: Path) -> None:
    whole = _write(Write("a", 1, 1, 1.0, 2.0, 1.0, "ok"))
    torn = _write(Write("a", 1, 2, 3.0, 4.0, 1.0, "ok")).rstrip("\n")  # its newline not written yet
    folder = _journal(tmp_path / "journal", [whole, torn])
    with ColumnarJournal(folder) as journal:
        assert journal.counts == {"a": 1}
    assert (folder / "host-1.jsonl").read_text().endswith(torn)  # the file itself is left alone
    assert len(read_journal(folder)[0]) == 1


def test_a_parquet_segment_whose_row_count_lies_is_refused(tmp_path: Path) -> None:
    folder = _journal(
        tmp_path / "journal",
        ['{"kind":"meta","run_id":"r"}\n', _write(Write("a", 1, 1, 1.0, 2.0, 1.0, "ok"))],
        "host-1.s000000.jsonl",
    )
    (folder / "host-1.s000001.jsonl").write_text('{"kind":"meta","run_id":"r"}\n')
    compact(folder)
    segment = folder / "host-1.s000000.parquet"
    table = pq.read_table(segment)
    metadata = {k.decode(): v.decode() for k, v in (pq.read_metadata(segment).metadata or {}).items()}
    assert metadata["records"] == "1"
    writer = pq.ParquetWriter(segment, table.schema)
    writer.write_table(table)
    writer.add_key_value_metadata({**metadata, "records": "2"})
    writer.close()
    with pytest.raises(
        ProbeError,
        match=r"host-1\.s000000\.parquet holds 1 rows but its metadata says 2: the file is damaged",
    ):
        analyze_folder("r", folder, [], {}, [])


def test_a_segment_compacted_while_listed_is_read_in_its_new_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _journal(
        tmp_path / "journal", [_write(Write("a", 1, 1, 1.0, 2.0, 1.0, "ok"))], "host-1.s000000.jsonl"
    )
    (folder / "host-1.s000001.jsonl").write_text('{"kind":"meta","run_id":"r"}\n')
    stale = sorted(folder.glob("*.jsonl"))  # listed before the compaction below
    compact(folder)
    from probes import columnar_source

    listings = iter([stale])
    monkeypatch.setattr(
        columnar_source, "journal_segments", lambda f: next(listings, None) or sorted(Path(f).iterdir())
    )
    with ColumnarJournal(folder) as journal:
        assert journal.counts == {"a": 1}


def test_an_unwritable_temp_directory_is_one_line(tmp_path: Path) -> None:
    folder = _journal(tmp_path / "journal", [_write(Write("a", 1, 1, 1.0, 2.0, 1.0, "ok"))])
    with pytest.raises(
        ProbeError, match=r"cannot make a temporary folder under .*missing.*pass a writable temp_directory"
    ):
        analyze_folder("r", folder, [], {}, [], settings=EngineSettings(temp_directory=tmp_path / "missing"))
