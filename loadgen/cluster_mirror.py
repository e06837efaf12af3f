"""The local copy of the load master's journal files, and its completeness in run.json's words.

:class:`JournalMirror` appends what the master serves (``/harness/journal/<name>?offset=N``)
to ``<run-dir>/journal/<name>``: append-only, only at the local file's current end (an
answer for another offset, late or duplicated, is dropped, so nothing is written twice),
and only complete lines (the rest is asked for again next time), so every probe reads
the mirror as it reads a local load's journal. A name the master lists that is not a
plain ``*.jsonl`` file name is refused, never used as a path.

:func:`collection_view` turns the master's completeness report
(``loadgen.collector.Collector.status``) into the ``collection`` block of ``run.json``:
``{"expected_workers": K, "complete": bool, "workers": [{"worker", "index", "tenants"
(names), "batches", "missing" ([lo, hi] ranges), "records", "final" ({"batches",
"records"} or None), "complete", "reason"}]}``. Fail closed: a worker counts as complete
only when the master says so *and* its final totals match what was received; the whole
collection only when every expected worker index is there and complete.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["JOURNAL_NAME", "JournalMirror", "collection_view", "complete_lines"]

#: What a mirrored file may be called: one plain file name, no path.
JOURNAL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}\.jsonl$")


def complete_lines(data: bytes) -> bytes:
    """``data`` up to and including its last newline (a torn last line is left for later)."""
    return data[: data.rfind(b"\n") + 1]


class JournalMirror:
    """Append-only copies of the master's journal files in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        #: Names the master listed that are not plain journal file names (never fetched).
        self.refused: set[str] = set()

    def local_size(self, name: str) -> int:
        try:
            return (self.folder / name).stat().st_size
        except FileNotFoundError:
            return 0

    def wanted(self, files: Mapping[str, Any]) -> list[tuple[str, int]]:
        """``(name, offset)`` for each listed file the master holds more of than the mirror."""
        out = []
        for name, size in sorted(files.items()):
            if not JOURNAL_NAME.match(str(name)):
                self.refused.add(str(name))
                continue
            offset = self.local_size(name)
            if isinstance(size, int) and size > offset:
                out.append((name, offset))
        return out

    def append(self, name: str, offset: int, data: bytes) -> int:
        """Append the complete lines of ``data``, read from ``offset``, if that is still the local end.

        Returns the bytes written (0 for a stale or duplicated answer). Never truncates.
        """
        if not JOURNAL_NAME.match(name):
            self.refused.add(name)
            return 0
        chunk = complete_lines(data)
        # The size check and the write are one step: two fetchers of the same offset (the
        # mirror thread still running while stop() mirrors the rest) must not both append.
        with self._lock:
            if not chunk or offset != self.local_size(name):
                return 0
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                written = 0
                while written < len(chunk):
                    written += os.write(fd, chunk[written:])
            finally:
                os.close(fd)
            return written

    def shortfall(self, files: Mapping[str, Any]) -> dict[str, int]:
        """Bytes the mirror lacks per file, against the master's listed sizes (empty: all copied)."""
        short = {}
        for name, size in files.items():
            if not isinstance(size, int):
                continue
            have = self.local_size(str(name)) if JOURNAL_NAME.match(str(name)) else 0
            if size > have:
                short[str(name)] = size - have
        return short


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _entries(raw: Any) -> list[dict[str, Any]]:
    """The per-worker entries of the master's status (:meth:`loadgen.collector.Collector.status`)."""
    listed = raw.get("workers") if isinstance(raw, Mapping) else None
    return [dict(e) for e in listed if isinstance(e, Mapping)] if isinstance(listed, list) else []


def _ranges(value: Any) -> list[list[int]]:
    """``[[lo, hi], ...]`` as the collector writes missing batches; anything else is dropped."""
    pairs = value if isinstance(value, list) else []
    return [
        [int(p[0]), int(p[1])]
        for p in pairs
        if isinstance(p, list | tuple) and len(p) == 2 and all(_int(v) is not None for v in p)
    ]


def _tenant_names(value: Any, names: Sequence[str]) -> list[str]:
    out = []
    for item in value if isinstance(value, list) else []:
        index = _int(item)
        if index is not None and 0 <= index < len(names):
            out.append(names[index])
        else:
            out.append(str(item))
    return out


def _worker(entry: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    batches = _int(entry.get("batches")) or 0
    records = _int(entry.get("records")) or 0
    missing = _ranges(entry.get("missing"))
    raw_final = entry.get("final")
    final = None
    if isinstance(raw_final, Mapping):
        final = {"batches": _int(raw_final.get("batches")), "records": _int(raw_final.get("records"))}
    reason = entry.get("reason") if isinstance(entry.get("reason"), str) else None
    if final is None:
        reason = reason or (
            "never seen by the master" if entry.get("worker") is None and not batches
            else "no final message: the worker stopped before it had shipped everything"
        )  # fmt: skip
    elif missing:
        reason = reason or f"batches missing: {', '.join(f'{lo}-{hi}' for lo, hi in missing)}"
    elif final["batches"] != batches or final["records"] != records:
        reason = reason or (
            f"received {batches} batches / {records} records, the worker's final says "
            f"{final['batches']} / {final['records']}"
        )
    complete = entry.get("complete") is True and reason is None and entry.get("contiguous", True) is not False
    if not complete and reason is None:
        reason = "the master reports it incomplete"
    return {
        "worker": entry.get("worker") if isinstance(entry.get("worker"), str) else None,
        "index": _int(entry.get("index")),
        "tenants": _tenant_names(entry.get("tenants"), names),
        "batches": batches,
        "missing": missing,
        "records": records,
        "final": final,
        "complete": complete,
        "reason": None if complete else reason,
    }


def collection_view(raw: Any, expected_workers: int, tenant_names: Sequence[str]) -> dict[str, Any]:
    """run.json's ``collection`` from the master's ``collection`` (None: never read, all unknown)."""
    workers = sorted(
        (_worker(e, tenant_names) for e in _entries(raw)),
        key=lambda w: (w["index"] is None, w["index"] or 0, w["worker"] or ""),
    )
    seen = {w["index"] for w in workers if w["complete"]}
    complete = (
        bool(workers)
        and all(w["complete"] for w in workers)
        and seen >= set(range(expected_workers))
        and not (isinstance(raw, Mapping) and raw.get("complete") is False)
    )
    return {"expected_workers": expected_workers, "complete": complete, "workers": workers}
