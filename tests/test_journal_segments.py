"""Journal segments and their Parquet compaction: the same records whichever form a segment is in."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lab.paths import project_root
from loadgen import segments
from loadgen.errors import LoadgenError
from loadgen.journal import (
    ClockSample,
    JournalTail,
    JournalWriter,
    Write,
    journal_files,
    journal_run_ids,
    journal_segments,
    read_journal,
    read_segment,
    segment_writes,
    split_segment,
)
from loadgen.segments import SCHEMA, compact


def _write(i: int, tenants: int = 3) -> Write:
    base = 1_764_000_000.0 + i * 0.05
    return Write(
        tenant=f"tenant-{i % tenants}",
        writer=i % tenants,
        seq=i // tenants,
        start=base,
        end=base + 0.0123456789,
        latency=0.0123456789,
        outcome=("ok", "fail", "info")[i % 7 % 3],
        server_ts=None if i % 4 == 0 else base + 0.006,
        error=None if i % 5 else f'WriteTimeout "{i}" \u00e9',
        due=None if i % 6 == 0 else base - 0.001,
    )


def _rotating_journal(folder: Path, segments: int, per_segment: int = 50) -> list[Write]:
    """A journal of ``segments`` segments (the clock forced forward between them)."""
    journal = JournalWriter(folder, "run-seg", segment_seconds=3600)
    written = []
    for s in range(segments):
        for k in range(per_segment):
            record = _write(s * per_segment + k)
            journal.write(record)
            written.append(record)
        journal.clock(ClockSample(tenant=f"tenant-{s % 3}", at=1.7e9 + s, skew=0.001 * s, rtt=0.0004))
        journal._rotate_at = 0.0  # as if segment_seconds had passed: the next record rotates
    journal.close()
    return written


def test_segments_rotate_on_monotonic_time_each_with_its_own_meta_line(tmp_path: Path) -> None:
    journal = JournalWriter(tmp_path, "run-seg", segment_seconds=0.05)
    journal.write(_write(0))
    journal.write(_write(1))
    time.sleep(0.08)
    journal.write(_write(2))  # rotates: more than 0.05 s since the segment opened
    journal.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    prefix = f"{socket.gethostname()}-{os.getpid()}"
    assert names == [f"{prefix}.s000000.jsonl", f"{prefix}.s000001.jsonl"]
    lines = [[json.loads(x) for x in (tmp_path / n).read_text().splitlines()] for n in names]
    assert [rec["kind"] for rec in lines[0]] == ["meta", "write", "write"]
    assert [rec["kind"] for rec in lines[1]] == ["meta", "write"]
    assert lines[1][0] == {"kind": "meta", "run_id": "run-seg", "pid": os.getpid()}
    assert split_segment(tmp_path / names[1]) == (prefix, 1)
    assert split_segment(tmp_path / "host-1.jsonl") == ("host-1", None)
    assert read_journal(tmp_path)[0] == [_write(0), _write(1), _write(2)]
    assert journal_files(tmp_path) == [tmp_path / n for n in names]


def test_a_new_writer_numbers_on_after_every_segment_of_its_prefix(tmp_path: Path) -> None:
    _rotating_journal(tmp_path, 3)
    compact(tmp_path)
    again = JournalWriter(tmp_path, "run-seg", segment_seconds=60)  # a reused pid: never s000000 again
    again.write(_write(999))
    again.close()
    indexes = sorted(split_segment(p)[1] or 0 for p in journal_segments(tmp_path))
    assert indexes == [0, 1, 2, 3]
    assert again.path.name.endswith(".s000003.jsonl")


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf")])
def test_a_bad_segment_length_is_one_line_naming_the_fix(tmp_path: Path, seconds: float) -> None:
    with pytest.raises(LoadgenError, match=r"not a positive number of seconds: pass e\.g\. 60"):
        JournalWriter(tmp_path, "r", segment_seconds=seconds)
    assert list(tmp_path.iterdir()) == []


def test_one_segmented_writer_per_process_and_folder(tmp_path: Path) -> None:
    first = JournalWriter(tmp_path, "r", segment_seconds=60)
    with pytest.raises(LoadgenError, match="already open in this process"):
        JournalWriter(tmp_path, "r", segment_seconds=60)
    first.close()
    JournalWriter(tmp_path, "r", segment_seconds=60).close()  # once closed, a new one may start


def test_compaction_round_trip_gives_the_same_records_and_metadata(tmp_path: Path) -> None:
    written = _rotating_journal(tmp_path, 4)
    (tmp_path / "other-7.jsonl").write_text(  # unsegmented: never compacted
        '{"kind":"meta","run_id":"run-seg","pid":7}\n'
        + json.dumps({"kind": "write", **_write(500).__dict__})
        + "\n"
    )
    before = read_journal(tmp_path)
    ids_before = {k: [p.stem for p in v] for k, v in journal_run_ids(tmp_path).items()}
    stats = compact(tmp_path)
    assert (stats.segments, stats.rows, stats.refused) == (3, 150, ())
    assert 0 < stats.bytes_after < stats.bytes_before  # small files: mostly the footer; see the bench
    assert read_journal(tmp_path) == before
    assert sorted(before[0], key=lambda w: w.start) == sorted([*written, _write(500)], key=lambda w: w.start)
    assert {k: [p.stem for p in v] for k, v in journal_run_ids(tmp_path).items()} == ids_before
    kinds = sorted(p.suffix for p in journal_segments(tmp_path))
    assert kinds == [".jsonl", ".jsonl", ".parquet", ".parquet", ".parquet"]  # newest and unsegmented stay
    assert (tmp_path / "other-7.jsonl").exists()
    assert compact(tmp_path) == type(stats)()  # idempotent

    first = next(p for p in journal_segments(tmp_path) if p.suffix == ".parquet")
    assert split_segment(first)[1] == 0
    parquet = pq.ParquetFile(first)
    assert parquet.schema_arrow.remove_metadata() == SCHEMA.remove_metadata()
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    meta = parquet.metadata.metadata
    assert meta[b"run_id"] == b"run-seg" and meta[b"records"] == b"50"
    assert [ClockSample(**c) for c in json.loads(meta[b"clocks"])] == [
        ClockSample(tenant="tenant-0", at=1.7e9, skew=0.0, rtt=0.0004)
    ]
    assert list(segment_writes(first)) == written[:50]
    # DuckDB reads the segments as they are (one of the columnar readers).
    with duckdb.connect() as db:
        rows = db.execute(f"SELECT count(*), count(DISTINCT tenant) FROM '{tmp_path}/*.parquet'").fetchall()
        meta = db.execute(f"SELECT key, value FROM parquet_kv_metadata('{first}')").fetchall()
    assert rows == [(150, 3)]
    assert (b"run_id", b"run-seg") in meta


def test_a_segment_larger_than_a_chunk_is_written_a_row_group_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segments, "_CHUNK_ROWS", 7)  # memory bounded by the chunk, not the segment
    written = _rotating_journal(tmp_path, 2)
    before = read_journal(tmp_path)
    assert compact(tmp_path).rows == 50
    first = next(p for p in journal_segments(tmp_path) if p.suffix == ".parquet")
    parquet = pq.ParquetFile(first)
    assert parquet.metadata.num_row_groups == 8 and parquet.metadata.metadata[b"records"] == b"50"
    assert list(segment_writes(first)) == written[:50]
    assert read_journal(tmp_path) == before


def test_torn_and_undecodable_lines_are_skipped_as_the_json_reader_skips_them(tmp_path: Path) -> None:
    good = [json.dumps({"kind": "write", **_write(i).__dict__}) for i in range(4)]
    lines = [
        '{"kind":"meta","run_id":"run-t","pid":1}',
        good[0],
        '{"kind":"write","tenant":"tenant-0","wri',  # torn mid-file (a writer killed, then restarted)
        good[1],
        "\xff\xfe not json",
        "[1, 2]",
        good[2],
        '{"kind":"batch","batch":3}',
    ]
    (tmp_path / "h-1.s000000.jsonl").write_bytes(("\n".join(lines) + "\n" + good[3]).encode("latin-1"))
    (tmp_path / "h-1.s000001.jsonl").write_text('{"kind":"meta","run_id":"run-t","pid":1}\n')
    before = read_journal(tmp_path)
    assert before[0] == [_write(0), _write(1), _write(2)]  # the torn last line (good[3]) too
    assert compact(tmp_path).rows == 3
    assert read_journal(tmp_path) == before


@pytest.mark.parametrize(
    ("field", "value"),
    [("seq", 1.5), ("writer", True), ("start", "1.0"), ("tenant", None), ("error", {"a": 1}), ("extra", 1)],
)
def test_a_segment_parquet_cannot_hold_exactly_stays_json_lines(
    tmp_path: Path, field: str, value: object
) -> None:
    odd = {"kind": "write", **_write(1).__dict__, field: value}
    segment = tmp_path / "h-1.s000000.jsonl"
    segment.write_text(
        '{"kind":"meta","run_id":"r","pid":1}\n'
        + json.dumps({"kind": "write", **_write(0).__dict__})
        + "\n"
        + json.dumps(odd)
        + "\n"
    )
    (tmp_path / "h-1.s000001.jsonl").write_text('{"kind":"meta","run_id":"r","pid":1}\n')
    stats = compact(tmp_path)
    assert (
        stats.segments == 0 and len(stats.refused) == 1 and stats.refused[0].startswith("h-1.s000000.jsonl: ")
    )
    assert segment.exists() and not segment.with_suffix(".parquet").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary file left behind"


def test_a_reader_that_listed_the_json_lines_reads_the_parquet_that_replaced_them(tmp_path: Path) -> None:
    written = _rotating_journal(tmp_path, 2)
    listed = journal_segments(tmp_path)[0]
    compact(tmp_path)
    assert not listed.exists()
    assert read_segment(listed)[0] == written[:50]
    assert list(segment_writes(listed)) == written[:50]
    listed.with_suffix(".parquet").unlink()
    with pytest.raises(LoadgenError, match="disappeared while being read and no Parquet segment replaced it"):
        read_segment(listed)


def test_a_compaction_killed_midway_leaves_nothing_readers_see(tmp_path: Path) -> None:
    _rotating_journal(tmp_path, 2)
    before = read_journal(tmp_path)
    argv = [sys.executable, "-c", "import os; print(os.getpid())"]
    dead = subprocess.run(argv, capture_output=True, text=True, check=True)  # a pid no process has now
    stale = tmp_path / f".h.s000000.parquet.{int(dead.stdout)}.tmp"
    stale.write_bytes(b"PAR1 half a file")
    assert read_journal(tmp_path) == before
    compact(tmp_path)
    assert not stale.exists()
    assert read_journal(tmp_path) == before


def test_a_tail_reads_a_closed_segment_once_whatever_form_it_takes_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = _rotating_journal(tmp_path, 3)
    tail = JournalTail(tmp_path)
    assert sorted(tail.poll()[0], key=lambda w: w.start) == written
    read: list[Path] = []
    monkeypatch.setattr(JournalTail, "_read_parquet", staticmethod(lambda path, *_: read.append(path)))
    assert compact(tmp_path).segments == 2
    assert tail.poll() == ([], []) and read == []  # closed when read: not read again as Parquet


def test_a_tail_that_read_part_of_a_segment_returns_only_the_rest_after_compaction(tmp_path: Path) -> None:
    journal = JournalWriter(tmp_path, "r", segment_seconds=3600)
    tail = JournalTail(tmp_path)
    for i in range(10):
        journal.write(_write(i))
    journal.clock(ClockSample("tenant-0", 1.0, 0.001, 0.002))
    assert len(tail.poll()[0]) == 10
    for i in range(10, 25):
        journal.write(_write(i))
    journal.clock(ClockSample("tenant-1", 2.0, 0.002, 0.002))
    journal._rotate_at = 0.0
    journal.write(_write(25))  # segment 1: segment 0 is now closed
    assert compact(tmp_path).segments == 1
    writes, clocks = tail.poll()
    assert writes == [_write(i) for i in range(10, 26)]
    assert clocks == [ClockSample("tenant-1", 2.0, 0.002, 0.002)]
    assert tail.poll() == ([], [])
    journal.close()


def _race(folder: Path) -> tuple[int, int]:
    """A writer with 4 ms segments, a compaction loop and a tail, all at once; every record exactly once.

    Returns how many segments were compacted meanwhile, and how many of them the tail
    had partly read as JSON lines (so read the rest from Parquet).
    """
    journal = JournalWriter(folder, "r", segment_seconds=0.004)
    total = 6000
    stop = threading.Event()
    errors: list[BaseException] = []
    converted: list[int] = []
    resumed: list[int] = []
    read_parquet = JournalTail._read_parquet

    def counting(path: Path, seen: Any, writes: list[Write], clocks: list[ClockSample]) -> None:
        if seen.writes:
            resumed.append(seen.writes)
        read_parquet(path, seen, writes, clocks)

    def write() -> None:
        for i in range(total):
            journal.write(_write(i, tenants=5))
            if i % 200 == 0:
                journal.clock(ClockSample(f"tenant-{i % 5}", float(i), 0.0, 0.0))
            if i % 20 == 0:
                time.sleep(0.001)
        journal.close()

    def compacting() -> None:
        try:
            while not stop.is_set():
                converted.append(compact(folder).segments)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write), threading.Thread(target=compacting)]
    for t in threads:
        t.start()
    tail = JournalTail(folder)
    tail._read_parquet = counting  # type: ignore[method-assign]
    got: list[Write] = []
    samples: list[ClockSample] = []
    while threads[0].is_alive():
        w, c = tail.poll()
        got += w
        samples += c
        time.sleep(0.003)  # so that a segment it read while open is closed and compacted before the next poll
    threads[0].join()
    stop.set()
    threads[1].join()
    compact(folder)
    w, c = tail.poll()
    got += w
    samples += c
    assert errors == []
    assert sorted(x.key for x in got) == sorted(_write(i, tenants=5).key for i in range(total))
    assert len(got) == total and len(samples) == total // 200
    assert sorted(got, key=lambda x: x.start) == read_journal(folder)[0]
    return sum(converted), len(resumed)


def test_a_tail_across_concurrent_compaction_returns_every_record_exactly_once(tmp_path: Path) -> None:
    for attempt in range(3):  # the interleaving that matters most is likely, not certain: try again
        converted, resumed = _race(tmp_path / str(attempt))
        assert converted > 0, "compaction ran meanwhile"
        if resumed:
            return
    pytest.fail("in three runs the tail never met a segment it had partly read, compacted since")


_KILLED_WRITER = """
import sys, time
from loadgen.journal import JournalWriter, Write
journal = JournalWriter(sys.argv[1], "run-kill", segment_seconds=0.003)
i = 0
while True:
    journal.write(Write("t", 0, i, time.time(), time.time(), 0.0, "ok"))
    print(i, flush=True)  # acknowledged: write() returned
    i += 1
"""


def test_a_killed_segmented_writer_loses_nothing_it_acknowledged(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(tmp_path)],
        cwd=project_root(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    acked = -1
    try:
        for line in proc.stdout:
            acked = int(line)
            if acked >= 3000:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(journal_segments(tmp_path)) > 1
    seqs = {w.seq for w in read_journal(tmp_path)[0]}
    assert set(range(acked + 1)) <= seqs
    compact(tmp_path)
    assert {w.seq for w in read_journal(tmp_path)[0]} == seqs


def test_parquet_holds_the_columns_the_contract_names() -> None:
    assert [(f.name, str(f.type), f.nullable) for f in SCHEMA] == [
        ("tenant", "dictionary<values=string, indices=int32, ordered=0>", False),
        ("writer", "int64", False),
        ("seq", "int64", False),
        ("start", "double", False),
        ("end", "double", False),
        ("latency", "double", False),
        ("outcome", "dictionary<values=string, indices=int32, ordered=0>", False),
        ("server_ts", "double", True),
        ("error", "string", True),
        ("due", "double", True),
    ]
    assert pa.types.is_dictionary(SCHEMA.field("tenant").type)
