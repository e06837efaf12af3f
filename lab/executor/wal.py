"""Archived WAL segments: their names in order, what each holds, and the time a run of them covers.

A log backup must say which moments it can really restore to. A list of segment
names cannot say it: a segment deleted from the archive leaves no trace in the names
that remain. So each log backup expects every segment between the previous log
backup's last one and its own (names are consecutive numbers), records the ones it
holds with their SHA-256 and the first and last commit (or abort) time ``pg_waldump``
finds in them, and names the ones that are missing.

:func:`covered_ranges` turns that record into the stretches of time a restore can
reach. Recovery to a time T stops at the first commit after T, so it must be able to
read that commit: a stretch that ends at a missing or damaged segment ends just before
the last commit in the intact segments before it, and coverage resumes at the first
commit after the hole (reaching it needs a full backup taken after the hole). The
executor computes the ranges when it takes the backup; the harness recomputes them
later from the same record when the archive has changed since.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lab.executor.store import format_ts, parse_ts
from lab.paths import pg_bindir

__all__ = [
    "EPSILON",
    "covered_ranges",
    "expected_segments",
    "segment_info",
    "sha256_of",
]

#: one microsecond: the resolution of commit times, and how far before a commit a target may be.
EPSILON = 1e-6
SEGMENT_SIZE = 16 * 1024 * 1024
_NAME = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
_XACT = re.compile(r"desc: (?:COMMIT|ABORT)(?:_PREPARED)? (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC")
_CHUNK = 1 << 20


def _parts(name: str, size: int) -> tuple[int, int] | None:
    """``(timeline, segment number)`` of a segment file name; None for anything else."""
    match = _NAME.match(name)
    if not match:
        return None
    timeline, high, low = (int(g, 16) for g in match.groups())
    return timeline, high * (0x100000000 // size) + low


def _name(timeline: int, number: int, size: int) -> str:
    per = 0x100000000 // size
    return f"{timeline:08X}{number // per:08X}{number % per:08X}"


def expected_segments(after: str, last: str, present: Iterable[str], size: int = SEGMENT_SIZE) -> list[str]:
    """Every segment name a log backup should hold: after ``after`` up to ``last``, in order.

    Without ``after`` (the first log backup) the run starts at the oldest segment of
    ``last``'s timeline that is present. A previous segment on another timeline gives
    no way to tell what is missing at the start, so the run starts the same way.
    """
    end = _parts(last, size)
    if end is None:
        return [last]
    timeline, stop = end
    previous = _parts(after, size) if after else None
    if previous is not None and previous[0] == timeline:
        start = previous[1] + 1
    else:
        ours = [p for p in (_parts(n, size) for n in present) if p and p[0] == timeline]
        start = min((number for _, number in ours if number <= stop), default=stop)
    return [_name(timeline, n, size) for n in range(start, stop + 1)]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:08X}"


def _transaction_times(folder: Path, name: str) -> list[float]:
    """Commit and abort times in one segment, in WAL order (``pg_waldump``; empty when it cannot tell)."""
    proc = subprocess.run(
        [str(pg_bindir() / "pg_waldump"), "-p", str(folder), "-r", "Transaction", name, name],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": "UTC"},
    )
    # A record that runs into the next segment ends the dump with an error: what came before is good.
    return [parse_ts(m.group(1).replace(" ", "T") + "Z") for m in _XACT.finditer(proc.stdout)]


def segment_info(folder: Path, name: str) -> dict[str, Any]:
    """What a log backup records about one archived segment."""
    path = folder / name
    size = path.stat().st_size
    parts = _parts(name, size) or (0, 0)
    times = _transaction_times(folder, name)
    return {
        "segment": name,
        "sha256": sha256_of(path),
        "size": size,
        "start_lsn": _lsn(parts[1] * size),
        "end_lsn": _lsn((parts[1] + 1) * size),
        "first_commit": format_ts(min(times)) if times else None,
        "last_commit": format_ts(max(times)) if times else None,
    }


def covered_ranges(
    start: float, end: float, wal: Iterable[Mapping[str, Any]], bad: Iterable[str]
) -> list[tuple[float, float]]:
    """The stretches of ``[start, end]`` a log backup covers when the segments in ``bad`` are unusable.

    ``wal`` is every segment the backup should hold, in order, each with ``segment`` and
    (when known) ``first_commit``/``last_commit``. With nothing bad this is
    ``[(start, end)]``.
    """
    unusable = set(bad)
    ranges: list[tuple[float, float]] = []
    low: float | None = start
    last: float | None = None
    for entry in wal:
        first_text, last_text = entry.get("first_commit"), entry.get("last_commit")
        if entry.get("segment") in unusable:
            if low is not None:
                reach = low if last is None else max(low, min(end, last - EPSILON))
                ranges.append((low, reach))
            low, last = None, None
            continue
        if low is None and first_text:
            low = parse_ts(str(first_text))
        if last_text:
            last = parse_ts(str(last_text))
    if low is not None and low <= end:
        ranges.append((low, end))
    return ranges
