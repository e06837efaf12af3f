"""Durable state: an append-only write-ahead log of JSON lines plus a snapshot.

Every change is one line ``{"rv": N, "op": "put"|"del", "key": ..., "obj": {...}}``
appended to ``wal.jsonl``; :meth:`Wal.sync` makes everything appended so far durable
(``fsync``), batching concurrent callers into one ``fsync`` run in a worker thread.
A response is sent only after its change is synced, so an acknowledged write
survives SIGKILL. When the log outgrows ``compact_bytes`` the whole state is written
to ``snapshot.json`` (tmp file + fsync + rename + directory fsync) and the log is
truncated. Replay skips log records at or below the snapshot's resourceVersion, so a
crash between the rename and the truncation is harmless; a torn last line (crash
mid-write) is cut off, a corrupt line anywhere else stops the start with a LabError.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Any

from lab.errors import LabError

__all__ = ["Loaded", "Wal"]

Loaded = tuple[int, dict[str, list[dict[str, Any]]], list[dict[str, Any]]]


class Wal:
    """The log and snapshot in ``folder``; open it with :meth:`load` before appending."""

    def __init__(self, folder: Path, compact_bytes: int = 8 * 1024 * 1024) -> None:
        self.folder = folder
        self.log_path = folder / "wal.jsonl"
        self.snapshot_path = folder / "snapshot.json"
        self.compact_bytes = compact_bytes
        self._fd = -1
        self._size = 0
        self._written = 0
        self._synced = 0
        self._task: asyncio.Task[None] | None = None

    def load(self) -> Loaded:
        """Open the log; return (snapshot rv, snapshot objects by key, log records after the snapshot)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        snap_rv, objects = 0, {}
        if self.snapshot_path.exists():
            try:
                snap = json.loads(self.snapshot_path.read_text())
                snap_rv, objects = int(snap["rv"]), dict(snap["objects"])
            except (ValueError, KeyError, TypeError) as exc:
                raise LabError(
                    f"API server snapshot {self.snapshot_path} is unreadable ({exc}): restore or remove it"
                ) from exc
        records = self._read_log(snap_rv)
        self._fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = os.fstat(self._fd).st_size
        return snap_rv, objects, records

    def _read_log(self, after_rv: int) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        data = self.log_path.read_bytes()
        records: list[dict[str, Any]] = []
        good_end = 0
        lines = data.split(b"\n")
        for index, line in enumerate(lines):
            last = index == len(lines) - 1
            if not line.strip():
                if not last:
                    good_end += len(line) + 1
                continue
            try:
                record = json.loads(line)
                rv = int(record["rv"])
            except (ValueError, KeyError, TypeError) as exc:
                if last or all(not rest.strip() for rest in lines[index + 1 :]):
                    break
                raise LabError(
                    f"API server log {self.log_path} is corrupt at byte {good_end} ({exc}): "
                    "restore or remove it"
                ) from exc
            if last:
                break  # a line without its newline was never acknowledged
            good_end += len(line) + 1
            if rv > after_rv:
                records.append(record)
        if good_end < len(data):
            with open(self.log_path, "r+b") as fh:
                fh.truncate(good_end)
                fh.flush()
                os.fsync(fh.fileno())
        return records

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        view = memoryview(line)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(line)
        self._written += 1

    async def sync(self) -> None:
        """Return once every record appended before the call is on disk."""
        target = self._written
        while self._synced < target:
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(self._fsync())
            await asyncio.shield(self._task)

    async def _fsync(self) -> None:
        upto = self._written
        await asyncio.to_thread(os.fsync, self._fd)
        self._synced = max(self._synced, upto)

    @property
    def idle(self) -> bool:
        return self._task is None or self._task.done()

    def needs_compaction(self) -> bool:
        return self._size > self.compact_bytes and self.idle

    def compact(self, rv: int, objects: dict[str, list[dict[str, Any]]]) -> None:
        """Write the full state as the snapshot at ``rv`` and empty the log."""
        tmp = self.snapshot_path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            json.dump({"rv": rv, "objects": objects}, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.snapshot_path)
        dir_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        os.ftruncate(self._fd, 0)
        os.fsync(self._fd)
        self._size = 0
        self._synced = self._written

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
