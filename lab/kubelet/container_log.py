"""A container's output as CRI log records: ``<RFC3339Nano UTC> <stream> <F|P> <text>``.

As a container runtime does, the kubelet gives each container pipes for stdout and
stderr and one :class:`LogPump` thread reads both and appends one record per line to the
container's log file (``2026-11-30T15:04:05.123456789Z stdout F hello``). A line longer
than :data:`MAX_LINE` bytes is split into partial records (tag ``P``) followed by a full
one (``F``); an unterminated last line is written as a full record at end of file. Each
batch read is written at once (no buffering), so a reader sees a line as soon as it was
printed, and the container never waits on anything slower than a local file append.

Each run of a container gets a fresh log: when it restarts, the previous run's file is
kept beside it as ``<file>.previous`` (:func:`previous_log`, only the one run before the
current), which ``kubectl logs --previous`` serves. A file left by a pod that is gone (a
pod of the same name recreated after a force-delete, whose dead kubelet never rotated it)
is moved aside to ``<logs>/previous/<stem>.<UTC time>.log`` (:func:`retire_log`, as the
kubelet does with a deleted pod's log, the newest :data:`KEEP_RETIRED` per file kept), so
a new pod's log starts empty.

Like the kubelet's ``containerLogMaxSize`` (10 MiB), the writer rotates a file that has
grown past :data:`MAX_SIZE`: it is renamed to ``<file>.<YYYYmmdd-HHMMSS>`` (UTC; the
newest ``MAX_FILES - 1`` kept, :func:`rotated_logs`) and a fresh file is started at the
same path; ``kubectl logs`` serves the current file, and a follower reads the rest of
the renamed one and goes on with the new one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import selectors
import threading
import time
from pathlib import Path
from typing import Any

__all__ = [
    "KEEP_RETIRED",
    "MAX_FILES",
    "MAX_LINE",
    "MAX_SIZE",
    "LogPump",
    "cri_timestamp",
    "log_file_for",
    "previous_log",
    "retire_log",
    "rotated_logs",
    "start_new_run",
]

log = logging.getLogger(__name__)

#: Longest text in one record (CRI runtimes split lines at 16 KiB).
MAX_LINE = 16 * 1024
_READ = 64 * 1024
#: Size at which a container's log file is rotated (the kubelet's ``containerLogMaxSize``).
MAX_SIZE = 10 * 1024 * 1024
#: Files per container log, the current one included (the kubelet's ``containerLogMaxFiles``).
MAX_FILES = 5
#: Retired logs kept per file name under ``<logs>/previous``.
KEEP_RETIRED = 3
_ROTATED = re.compile(r"\.(\d{8}-\d{6})(?:-(\d+))?")


def log_file_for(logs_dir: Path, pod: dict[str, Any], container: str, init: bool = False) -> Path:
    """Where a container's output goes: one file per pod, per container when there are several
    (an init container always has a file of its own, so the main container's log is its alone)."""
    md = pod.get("metadata") or {}
    base = f"{md.get('namespace', 'default')}_{md.get('name', '')}"
    name = (
        f"{base}_{container}.log"
        if init or len((pod.get("spec") or {}).get("containers") or []) > 1
        else f"{base}.log"
    )
    if "/" in name or "\0" in name:  # the API refuses such names; never write outside the folder
        raise ValueError(f"container log name {name!r} is not a file name")
    return logs_dir / name


def cri_timestamp(ns: int | None = None) -> bytes:
    """``ns`` epoch nanoseconds (default now) as RFC3339Nano UTC with nine fraction digits."""
    ns = time.time_ns() if ns is None else ns
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode() + b".%09dZ" % fraction


def previous_log(path: Path) -> Path:
    """Where the previous run's log of the container logging to ``path`` is kept."""
    return path.with_name(path.name + ".previous")


def _rotated(path: Path) -> list[tuple[str, int, Path]]:
    try:
        found = [p for p in path.parent.iterdir() if p.name.startswith(path.name + ".")]
    except OSError:
        return []
    order: list[tuple[str, int, Path]] = []
    for candidate in found:
        match = _ROTATED.fullmatch(candidate.name[len(path.name) :])
        if match:
            order.append((match.group(1), int(match.group(2) or 0), candidate))
    return sorted(order)


def rotated_logs(path: Path) -> list[Path]:
    """The size-rotated files of the log at ``path`` (``<file>.<YYYYmmdd-HHMMSS>[-n]``), oldest first."""
    return [p for _, _, p in _rotated(path)]


def _rotation_target(path: Path) -> Path:
    """A name after every rotated file's (``-n`` counts rotations within one second)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    existing = _rotated(path)
    if not existing or existing[-1][0] < stamp:
        return path.with_name(f"{path.name}.{stamp}")
    last_stamp, n, _ = existing[-1]
    return path.with_name(f"{path.name}.{last_stamp}-{n + 1}")


def retire_log(path: Path, tag: str = "") -> Path | None:
    """Move ``path`` to ``<logs>/previous/<stem>.<tag>.log`` (tag default: the UTC time) and drop
    its size-rotated files and ``previous`` run; keeps the newest :data:`KEEP_RETIRED` retired
    logs of that name. Returns where it went (None when there was no file)."""
    for old in (previous_log(path), *rotated_logs(path)):
        with contextlib.suppress(OSError):
            old.unlink()
    if not path.exists():
        return None
    folder = path.parent / "previous"
    if not tag:
        micros = time.time_ns() // 1000 % 1_000_000
        tag = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{micros:06d}Z"
    target = folder / f"{path.stem}.{tag}.log"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path.replace(target)
        os.utime(target)  # retired now: the newest of its name, whenever it was last written
    except OSError as exc:
        log.warning("could not move the old log %s aside (%s); removing it", path.name, exc)
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    mine = re.compile(re.escape(path.stem) + r"\.[^.]+\.log")
    kept = []
    for old in folder.iterdir():
        with contextlib.suppress(OSError):
            if mine.fullmatch(old.name):
                kept.append((old.stat().st_mtime_ns, old.name, old))
    for _, _, old in sorted(kept)[:-KEEP_RETIRED]:
        with contextlib.suppress(OSError):
            old.unlink()
    return target


def start_new_run(path: Path, keep_previous: bool) -> None:
    """Before a run: keep the last run's log as ``previous`` (a restart), or, for a container's
    first run, move any file already there aside (:func:`retire_log`) so the log starts empty."""
    if not keep_previous:
        retire_log(path)
        return
    for old in rotated_logs(path):  # the last run's older parts: ``previous`` is its last file
        with contextlib.suppress(OSError):
            old.unlink()
    with contextlib.suppress(OSError):
        if path.exists():
            os.replace(path, previous_log(path))


def _records(stream: bytes, data: bytes, final: bool) -> tuple[bytes, bytes]:
    """CRI records for the complete lines of ``data`` and what is left (an unfinished line)."""
    out: list[bytes] = []
    start = 0
    while True:
        end = data.find(b"\n", start, start + MAX_LINE + 1)
        if end < 0:
            if len(data) - start > MAX_LINE:
                out.append(b"%s %s P %s\n" % (cri_timestamp(), stream, data[start : start + MAX_LINE]))
                start += MAX_LINE
                continue
            break
        line = data[start:end]
        if line.endswith(b"\r"):
            line = line[:-1]
        out.append(b"%s %s F %s\n" % (cri_timestamp(), stream, line))
        start = end + 1
    rest = data[start:]
    if final and rest:
        out.append(b"%s %s F %s\n" % (cri_timestamp(), stream, rest))
        rest = b""
    return b"".join(out), rest


class LogPump(threading.Thread):
    """Reads a container's stdout and stderr pipes until both close; appends CRI records.

    Owns the pipes' read ends and the log file descriptor and closes them when done. A file
    is rotated before it would grow past ``max_size`` (records are never split).
    """

    def __init__(
        self, name: str, streams: dict[int, bytes], log_path: Path, max_size: int = MAX_SIZE
    ) -> None:
        super().__init__(name=f"log-{name}", daemon=True)
        self.streams = dict(streams)
        self.path = log_path
        self.max_size = max_size
        self.log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = os.fstat(self.log_fd).st_size
        self._limit = max_size  # rotate at this size

    def run(self) -> None:
        selector = selectors.DefaultSelector()
        pending: dict[int, bytes] = {}
        try:
            for fd in self.streams:
                selector.register(fd, selectors.EVENT_READ)
                pending[fd] = b""
            while pending:
                for key, _ in selector.select():
                    fd = int(key.fd)
                    try:
                        chunk = os.read(fd, _READ)
                    except OSError:
                        chunk = b""
                    records, pending[fd] = _records(self.streams[fd], pending[fd] + chunk, not chunk)
                    if records:
                        self._write(records)
                    if not chunk:
                        selector.unregister(fd)
                        del pending[fd]
        except Exception:
            log.exception("container log writer %s failed", self.name)
        finally:
            selector.close()
            for fd in self.streams:
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(OSError):
                os.close(self.log_fd)

    def _write(self, data: bytes) -> None:
        """Append whole records; the file is rotated before it would grow past ``max_size``
        (a single record larger than that gets a file of its own)."""
        while data:
            room = max(0, self._limit - self._size)
            cut = len(data) if len(data) <= room else data.rfind(b"\n", 0, room) + 1
            if cut == 0:
                if self._size > 0 and self._rotate():
                    continue
                cut = data.find(b"\n") + 1 or len(data)
            if not self._append(data[:cut]):
                return
            data = data[cut:]
            if self._size >= self._limit:
                self._rotate()

    def _append(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.log_fd, view)
            except OSError as exc:
                log.warning("container log %s: %s; output dropped", self.name, exc)
                return False
            view = view[written:]
            self._size += written
        return True

    def _rotate(self) -> bool:
        """Rename the full file aside, start a fresh one, drop the oldest beyond :data:`MAX_FILES`;
        False when that failed (then the file may grow by another ``max_size`` before a retry).

        The full file is linked to its rotated name first and the fresh one then renamed over
        ``path``, so a reader always finds a file there.
        """
        fresh_path = self.path.with_name(self.path.name + ".new")
        try:
            fresh = os.open(fresh_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        except OSError as exc:
            log.warning("container log %s not rotated: %s", self.name, exc)
            self._limit = self._size + self.max_size
            return False
        try:
            os.link(self.path, _rotation_target(self.path))
            os.replace(fresh_path, self.path)
        except OSError as exc:
            log.warning("container log %s not rotated: %s", self.name, exc)
            os.close(fresh)
            with contextlib.suppress(OSError):
                fresh_path.unlink()
            self._limit = self._size + self.max_size
            return False
        os.close(self.log_fd)
        self.log_fd, self._size, self._limit = fresh, 0, self.max_size
        for old in rotated_logs(self.path)[: -(MAX_FILES - 1)]:
            with contextlib.suppress(OSError):
                old.unlink()
        return True
