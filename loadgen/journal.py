"""The acknowledged-write journal: one line per write attempt, one file (or series of segments) per process.

Every attempt ends ``ok`` (the server acknowledged it), ``fail`` (it certainly did not
happen) or ``info`` (outcome unknown: a timeout or a connection lost mid-call), as in
Jepsen's checkers. RTO and RPO are computed from these lines, never from Locust's stats.

Files are JSON lines, opened in append mode and line-buffered: every record reaches
the kernel as it is written (so a reader sees it at once and a killed load process
loses nothing acknowledged), and no run ever truncates an earlier file. One writer per
process, shared by its threads. A reader skips a torn last line, an undecodable line
and every kind it does not know: the ``batch`` and ``final`` lines a cluster-load master
writes between shipped lines (:mod:`loadgen.collector`), whose files hold each worker's
lines exactly as its own spool did. Wall-clock times are seconds since the epoch, UTC;
``latency`` comes from a monotonic clock. Under paced load ``due`` is when the attempt
was scheduled to start: latency counted from it (``end - due``) includes the time a
stalled writer spent behind schedule, so slow servers cannot hide by slowing the client
down (no coordinated omission).

**Segments.** With ``segment_seconds`` the writer rotates: ``<host>-<pid>.s<NNNNNN>.jsonl``,
a new segment (with its own ``meta`` line) once that much monotonic time passed since the
current one opened, checked on each record under the lock every record takes anyway. A
segment is *closed* once a higher-numbered one of the same prefix exists: the writer
closes N before it creates N+1. Closed segments may be turned into Parquet by
:func:`loadgen.segments.compact`; every reader here reads both forms and returns the same
records from either (``.parquet`` preferred while both exist). Unsegmented files are
never compacted. pyarrow is imported only when a Parquet segment is read, so a load
process never pays for it.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Literal

from loadgen import native
from loadgen.errors import LoadgenError

__all__ = [
    "ClockSample",
    "JournalTail",
    "JournalWriter",
    "Write",
    "journal_files",
    "journal_run_ids",
    "journal_segments",
    "decode_record",
    "parse_line",
    "read_journal",
    "read_segment",
    "segment_writes",
    "split_segment",
]

Outcome = Literal["ok", "fail", "info"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "fail", "info")


@dataclass(frozen=True)
class Write:
    """One write attempt, as the client saw it."""

    tenant: str
    writer: int
    seq: int
    start: float
    end: float
    latency: float
    outcome: Outcome
    server_ts: float | None = None
    error: str | None = None
    #: When the attempt was scheduled to start (epoch seconds), under paced load; None
    #: when unpaced, and in journals written before pacing was recorded.
    due: float | None = None

    @property
    def key(self) -> tuple[int, int]:
        """The row identity within a tenant: ``(writer, seq)``."""
        return (self.writer, self.seq)


@dataclass(frozen=True)
class ClockSample:
    """Server clock minus client clock, taken at the midpoint of one round trip."""

    tenant: str
    at: float
    skew: float
    rtt: float


_SEGMENT = re.compile(r"\.s(\d{6,})$")
_open_segmented: set[Path] = set()  # prefixes with a live segmented writer in this process
_open_lock = native.allocate_lock()
_monotonic = time.monotonic


def split_segment(path: str | Path) -> tuple[str, int | None]:
    """``(prefix, segment number)`` of a journal file; the number is None for an unsegmented file."""
    stem = Path(path).stem
    found = _SEGMENT.search(stem)
    return (stem[: found.start()], int(found.group(1))) if found else (stem, None)


class JournalWriter:
    """Appends records to ``<folder>/<host>-<pid>.jsonl``; safe to share between threads.

    With ``segment_seconds`` it writes ``<host>-<pid>.s<NNNNNN>.jsonl`` segments instead
    (module docstring), numbered on from the highest one already in the folder for that
    prefix, so a reused pid never writes into a segment that may be compacted. ``path``
    is the file being written now.
    """

    def __init__(self, folder: str | Path, run_id: str, segment_seconds: float | None = None) -> None:
        if segment_seconds is not None and not 0 < segment_seconds < math.inf:
            raise LoadgenError(
                f"journal segment length {segment_seconds!r} is not a positive number of seconds: "
                "pass e.g. 60, or None for one file per process"
            )
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._prefix = f"{socket.gethostname()}-{os.getpid()}"
        self._meta = json.dumps({"kind": "meta", "run_id": run_id, "pid": os.getpid()}, separators=(",", ":"))
        self._lock = native.allocate_lock()  # taken from writers' OS threads, even under gevent
        self._names: dict[str, str] = {}  # tenant name -> its JSON string
        self._seconds = segment_seconds
        self._rotate_at: float | None = None  # monotonic time of the next rotation; None: never
        self._index = -1
        if segment_seconds is None:
            self.path = self.folder / f"{self._prefix}.jsonl"
            self._file: IO[str] = self._open(self.path)
            return
        self._claim()
        self._index = _highest_segment(self.folder, self._prefix)
        try:
            self._next_segment()
        except BaseException:
            self._release()
            raise

    def _claim(self) -> None:
        key = self.folder.resolve() / self._prefix
        with _open_lock:
            if key in _open_segmented:
                raise LoadgenError(
                    f"a segmented journal writer for {key} is already open in this process: "
                    "share that one (one writer per process) or close it first"
                )
            _open_segmented.add(key)

    def _release(self) -> None:
        with _open_lock:
            _open_segmented.discard(self.folder.resolve() / self._prefix)

    def _open(self, path: Path) -> IO[str]:
        handle = path.open("a", buffering=1, encoding="utf-8")
        handle.write(self._meta + "\n")
        return handle

    def _next_segment(self) -> None:
        """Open segment ``index + 1`` (the previous one is closed already): called under the lock."""
        path = self.folder / f"{self._prefix}.s{self._index + 1:06d}.jsonl"
        self._file = self._open(path)
        self._index += 1
        self.path = path
        assert self._seconds is not None
        self._rotate_at = _monotonic() + self._seconds

    def _rotate(self) -> None:
        self._file.close()  # closed before N+1 exists: compaction may take N from then on
        self._next_segment()  # raises (and rotates again on the next record) when it cannot open

    def _line(self, record: dict[str, object]) -> None:
        text = json.dumps(record, separators=(",", ":"))
        with self._lock:
            if self._rotate_at is not None and _monotonic() >= self._rotate_at:
                self._rotate()
            self._file.write(text + "\n")

    def write(self, record: Write) -> None:
        """Append one attempt (flushed to the kernel before returning).

        The line is spelled out rather than built with ``dataclasses.asdict`` and
        ``json.dumps``: that took half of the harness's own CPU per write. Same keys,
        same values, same JSON (``tests/test_tenants_journal.py`` holds the two equal).
        """
        tenant = self._names.get(record.tenant)
        if tenant is None:
            tenant = self._names[record.tenant] = json.dumps(record.tenant)
        text = (
            f'{{"kind":"write","tenant":{tenant},"writer":{record.writer:d},"seq":{record.seq:d},'
            f'"start":{_number(record.start)},"end":{_number(record.end)},'
            f'"latency":{_number(record.latency)},"outcome":{json.dumps(record.outcome)},'
            f'"server_ts":{_number(record.server_ts)},'
            f'"error":{"null" if record.error is None else json.dumps(record.error)},'
            f'"due":{_number(record.due)}}}\n'
        )
        with self._lock:
            if self._rotate_at is not None and _monotonic() >= self._rotate_at:
                self._rotate()
            self._file.write(text)

    def clock(self, sample: ClockSample) -> None:
        """Append one clock-skew sample."""
        self._line({"kind": "clock", **asdict(sample)})

    def close(self) -> None:
        with self._lock:
            self._rotate_at = None  # a closed writer never opens another segment
            if not self._file.closed:
                self._file.close()
        if self._seconds is not None:
            self._release()


def _number(value: float | None) -> str:
    """A float as JSON (``repr`` is the shortest exact form, as ``json.dumps`` writes it)."""
    if value is None:
        return "null"
    return repr(float(value)) if math.isfinite(value) else json.dumps(value)


def _highest_segment(folder: Path, prefix: str) -> int:
    """The highest segment number of ``prefix`` in ``folder`` in either form; -1 if none."""
    found = [split_segment(p)[1] for p in folder.glob(f"{glob.escape(prefix)}.s*.*")]
    return max((n for n in found if n is not None), default=-1)


def journal_files(folder: str | Path) -> list[Path]:
    """Every JSON-lines journal file in ``folder``, sorted (segments still in that form included)."""
    return sorted(Path(folder).glob("*.jsonl"))


def _segment_order(path: Path) -> tuple[str, int, str]:
    prefix, index = split_segment(path)
    return (prefix, -1 if index is None else index, path.suffix)


def journal_segments(folder: str | Path) -> list[Path]:
    """Every journal file in ``folder`` in either form, one per stem (Parquet preferred), in order.

    JSON lines are listed before Parquet: compaction renames the Parquet file into place
    before it removes the JSON lines, so a segment compacted meanwhile is still seen once.
    """
    folder = Path(folder)
    found = {p.stem: p for p in folder.glob("*.jsonl")}
    found.update({p.stem: p for p in folder.glob("*.parquet")})
    return sorted(found.values(), key=_segment_order)


def parse_line(line: bytes) -> dict[str, Any] | None:
    """One journal line as a dict; None for an undecodable line (skipped by every reader)."""
    try:
        rec = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        return None
    return rec if isinstance(rec, dict) else None


def decode_record(rec: dict[str, Any], path: Path) -> Write | ClockSample | None:
    """A parsed line as a record; None for kinds that are not writes or clock samples."""
    kind = rec.pop("kind", None)
    try:
        if kind == "write":
            return Write(**rec)
        if kind == "clock":
            return ClockSample(**rec)
    except TypeError as exc:
        raise LoadgenError(
            f"{path}: a {kind} record this version cannot read ({exc}): read this journal with the "
            "harness version that wrote it"
        ) from None
    return None


def _source(path: Path) -> IO[bytes] | Path:
    """A JSON-lines segment opened, or the Parquet file to read instead.

    That is ``path`` itself, or the Parquet segment compaction replaced it with after
    it was listed (the JSON lines are removed only once that is in place).
    """
    if path.suffix == ".jsonl":
        try:
            return path.open("rb")
        except FileNotFoundError:
            path = path.with_suffix(".parquet")
            if not path.exists():
                raise LoadgenError(
                    f"journal file {path.with_suffix('.jsonl')} disappeared while being read and no Parquet "
                    "segment replaced it: something other than the harness removed it; its records are lost"
                ) from None
    return path


def _jsonl_records(handle: IO[bytes], path: Path) -> Iterator[Write | ClockSample]:
    with handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break  # torn last line of a file still being written
            rec = parse_line(line)
            if rec is not None:
                record = decode_record(rec, path)
                if record is not None:
                    yield record


def read_segment(path: str | Path) -> tuple[list[Write], list[ClockSample]]:
    """The writes and clock samples of one journal file of either form, in file order."""
    source = _source(Path(path))
    if isinstance(source, Path):
        from loadgen.segments import read_parquet  # pyarrow only when needed

        return read_parquet(source)
    writes: list[Write] = []
    clocks: list[ClockSample] = []
    for record in _jsonl_records(source, Path(path)):
        if type(record) is Write:
            writes.append(record)
        elif type(record) is ClockSample:
            clocks.append(record)
    return writes, clocks


def segment_writes(path: str | Path) -> Iterator[Write]:
    """The write records of one journal file of either form, in file order, streamed."""
    source = _source(Path(path))
    if isinstance(source, Path):
        from loadgen.segments import parquet_writes  # pyarrow only when needed

        yield from parquet_writes(source)
        return
    for record in _jsonl_records(source, Path(path)):
        if type(record) is Write:
            yield record


def read_journal(folder: str | Path) -> tuple[list[Write], list[ClockSample]]:
    """All write attempts (sorted by start time) and clock samples under ``folder``, either form."""
    writes: list[Write] = []
    clocks: list[ClockSample] = []
    for path in journal_segments(folder):
        some, samples = read_segment(path)
        writes += some
        clocks += samples
    writes.sort(key=lambda w: (w.start, w.tenant, w.writer, w.seq))
    return writes, clocks


def journal_run_ids(folder: str | Path) -> dict[str, list[Path]]:
    """The run ids named by the ``meta`` lines under ``folder``, each with the files naming it.

    A journal written by another run (a reused folder, a wrong ``--run-id``) would make
    every acknowledged write look lost, because the read-back selects rows by run id.
    A Parquet segment names the run id of the ``meta`` line it was made from.
    """
    found: dict[str, list[Path]] = {}
    for path in journal_segments(folder):
        source = _source(path)
        if isinstance(source, Path):
            from loadgen.segments import parquet_run_id  # pyarrow only when needed

            run_id = parquet_run_id(source)
            if run_id is not None:
                found.setdefault(run_id, []).append(source)
            continue
        with source:
            for line in source:
                if not line.endswith(b"\n"):
                    break
                rec = parse_line(line)
                if rec is not None and rec.get("kind") == "meta":
                    found.setdefault(str(rec.get("run_id")), []).append(path)
    return found


@dataclass
class _Progress:
    """How far a tail has read one segment: bytes, and records returned, per kind."""

    offset: int = 0
    writes: int = 0
    clocks: int = 0
    done: bool = False  # a Parquet segment never changes: read once


class JournalTail:
    """Reads only what was appended to a journal folder since the last :meth:`poll`.

    Probes that watch a live run call ``poll`` every fraction of a second; re-reading the
    whole journal each time would cost O(run length) per call. Each file's offset is
    kept; a torn last line is left for the next poll. New files (a new load process, a
    new segment) are picked up as they appear. A closed segment is read to its end once
    and never opened again; one it had partly read that has been compacted meanwhile is
    read from Parquet, skipping the writes and clock samples already returned. Not
    thread-safe: one tail per reader.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._seen: dict[str, _Progress] = {}

    def poll(self) -> tuple[list[Write], list[ClockSample]]:
        """The records appended since the previous call (the first call reads everything)."""
        writes: list[Write] = []
        clocks: list[ClockSample] = []
        paths = journal_segments(self.folder)
        newest: dict[str, int] = {}
        for path in paths:
            prefix, index = split_segment(path)
            newest[prefix] = max(-1 if index is None else index, newest.get(prefix, -1))
        for path in paths:
            seen = self._seen.setdefault(path.stem, _Progress())
            if seen.done:
                continue
            source = _source(path)
            if isinstance(source, Path):
                self._read_parquet(source, seen, writes, clocks)
                continue
            self._read_lines(source, path, seen, writes, clocks)
            prefix, index = split_segment(path)
            # Closed before it was listed: all of it is read now, whatever form it takes later.
            seen.done = index is not None and index < newest[prefix]
        return writes, clocks

    @staticmethod
    def _read_lines(
        handle: IO[bytes], path: Path, seen: _Progress, writes: list[Write], clocks: list[ClockSample]
    ) -> None:
        with handle:
            handle.seek(seen.offset)
            chunk = handle.read()
        end = chunk.rfind(b"\n")
        if end < 0:
            return
        seen.offset += end + 1
        for line in chunk[:end].split(b"\n"):
            rec = parse_line(line)
            record = None if rec is None else decode_record(rec, path)
            if type(record) is Write:
                writes.append(record)
                seen.writes += 1
            elif type(record) is ClockSample:
                clocks.append(record)
                seen.clocks += 1

    @staticmethod
    def _read_parquet(path: Path, seen: _Progress, writes: list[Write], clocks: list[ClockSample]) -> None:
        some, samples = read_segment(path)
        writes += some[seen.writes :]
        clocks += samples[seen.clocks :]
        seen.writes, seen.clocks, seen.done = len(some), len(samples), True
