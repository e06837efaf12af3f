"""The acknowledged-write journal: one line per write attempt, one file per process.

Every attempt ends ``ok`` (the server acknowledged it), ``fail`` (it certainly did not
happen) or ``info`` (outcome unknown: a timeout or a connection lost mid-call), as in
Jepsen's checkers. RTO and RPO are computed from these lines, never from Locust's stats.

Files are JSON lines, opened in append mode and line-buffered: every record reaches
the kernel as it is written (so a reader sees it at once and a killed load process
loses nothing acknowledged), and no run ever truncates an earlier file. A reader
skips a torn last line, and every kind it does not know: the ``batch`` and ``final``
lines a cluster-load master writes between shipped lines (:mod:`loadgen.collector`), whose
files hold each worker's lines exactly as its own spool did. Wall-clock times are
seconds since the epoch, UTC; ``latency`` comes from a monotonic clock. Under paced
load ``due`` is when the attempt was scheduled to start: latency counted from it
(``end - due``) includes the time a stalled writer spent behind schedule, so slow
servers cannot hide by slowing the client down (no coordinated omission).
"""

from __future__ import annotations

import json
import math
import os
import socket
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Literal

from loadgen import native

__all__ = [
    "ClockSample",
    "JournalTail",
    "JournalWriter",
    "Write",
    "journal_files",
    "journal_run_ids",
    "read_journal",
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


class JournalWriter:
    """Appends records to ``<folder>/<host>-<pid>.jsonl``; safe to share between threads."""

    def __init__(self, folder: str | Path, run_id: str) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / f"{socket.gethostname()}-{os.getpid()}.jsonl"
        self._lock = native.allocate_lock()  # taken from writers' OS threads, even under gevent
        self._names: dict[str, str] = {}  # tenant name -> its JSON string
        self._file: IO[str] = self.path.open("a", buffering=1, encoding="utf-8")
        self._line({"kind": "meta", "run_id": run_id, "pid": os.getpid()})

    def _line(self, record: dict[str, object]) -> None:
        text = json.dumps(record, separators=(",", ":"))
        with self._lock:
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
            self._file.write(text)

    def clock(self, sample: ClockSample) -> None:
        """Append one clock-skew sample."""
        self._line({"kind": "clock", **asdict(sample)})

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()


def _number(value: float | None) -> str:
    """A float as JSON (``repr`` is the shortest exact form, as ``json.dumps`` writes it)."""
    if value is None:
        return "null"
    return repr(float(value)) if math.isfinite(value) else json.dumps(value)


def journal_files(folder: str | Path) -> list[Path]:
    """Every journal file in ``folder``, sorted."""
    return sorted(Path(folder).glob("*.jsonl"))


def _records(paths: Iterable[Path]) -> Iterator[dict[str, object]]:
    for path in paths:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if not line.endswith("\n"):
                    break  # torn last line of a file still being written
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue


def _decode(rec: dict[str, object], writes: list[Write], clocks: list[ClockSample]) -> None:
    kind = rec.pop("kind", None)
    if kind == "write":
        writes.append(Write(**rec))  # type: ignore[arg-type]
    elif kind == "clock":
        clocks.append(ClockSample(**rec))  # type: ignore[arg-type]


def read_journal(folder: str | Path) -> tuple[list[Write], list[ClockSample]]:
    """All write attempts (sorted by start time) and clock samples under ``folder``."""
    writes: list[Write] = []
    clocks: list[ClockSample] = []
    for rec in _records(journal_files(folder)):
        _decode(rec, writes, clocks)
    writes.sort(key=lambda w: (w.start, w.tenant, w.writer, w.seq))
    return writes, clocks


def journal_run_ids(folder: str | Path) -> dict[str, list[Path]]:
    """The run ids named by the ``meta`` lines under ``folder``, each with the files naming it.

    A journal written by another run (a reused folder, a wrong ``--run-id``) would make
    every acknowledged write look lost, because the read-back selects rows by run id.
    """
    found: dict[str, list[Path]] = {}
    for path in journal_files(folder):
        for rec in _records([path]):
            if rec.get("kind") == "meta":
                found.setdefault(str(rec.get("run_id")), []).append(path)
    return found


class JournalTail:
    """Reads only what was appended to a journal folder since the last :meth:`poll`.

    Probes that watch a live run call ``poll`` every fraction of a second; re-reading the
    whole journal each time would cost O(run length) per call. Each file's offset is
    kept; a torn last line is left for the next poll. New files (a new load process)
    are picked up as they appear. Not thread-safe: one tail per reader.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._offsets: dict[Path, int] = {}

    def poll(self) -> tuple[list[Write], list[ClockSample]]:
        """The records appended since the previous call (the first call reads everything)."""
        writes: list[Write] = []
        clocks: list[ClockSample] = []
        for path in journal_files(self.folder):
            offset = self._offsets.get(path, 0)
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            end = chunk.rfind(b"\n")
            if end < 0:
                continue
            self._offsets[path] = offset + end + 1
            for line in chunk[: end + 1].decode("utf-8", errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict):
                    _decode(rec, writes, clocks)
        return writes, clocks
