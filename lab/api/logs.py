"""Pod logs: ``GET .../pods/{name}/log`` served from the files the kubelet writes.

The file is ``<logs_dir>/<namespace>_<pod>_<container>.log`` if it exists, else
``<logs_dir>/<namespace>_<pod>.log``; no file yet means an empty log. The kubelet
writes CRI records (``<RFC3339Nano UTC> <stdout|stderr> <F|P> <text>``, see
:mod:`lab.kubelet.container_log`); the prefix is stripped, partial records are joined
into their line, and a line without the prefix (a file written by hand) is served as is.

Parameters, as the real server takes them: ``container`` must name one of the pod's
containers (required when there are several); ``previous=true`` serves the run before
the current one (``<file>.previous``; 400 ``previous terminated container "c" in pod "p"
not found`` when the container never restarted); ``timestamps=true`` prefixes each line
with its time; ``sinceSeconds`` / ``sinceTime`` keep the lines written at or after that
time (422 when both are given or ``sinceSeconds`` is not positive); ``tailLines`` keeps
the last lines, ``limitBytes`` cuts the answer; ``follow=true`` keeps streaming what is
appended and ends, as on a real server, when the container has exited (its status in the
store says ``terminated``; the file is read once more first) or its run ended (it
restarted: the file became ``<file>.previous``), or when the pod is gone or the client
leaves. A file the kubelet rotated for size (``<file>.<YYYYmmdd-HHMMSS>``) is read to its
end and the follower goes on with the new file.

Files are read and decoded in a worker thread (``asyncio.to_thread``), never on the event
loop; ``tailLines`` without ``since*`` reads backwards from the end of the file in
blocks, so the cost of a tail does not grow with the file.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from aiohttp import web

from common.times import parse_time
from lab.api.fields import as_list, as_str, dig
from lab.api.reads import bool_param, int_param
from lab.api.routing import Target
from lab.api.state import State
from lab.api.status import bad_request, invalid, not_found

__all__ = ["LogLine", "log_path", "parse_records", "pod_log", "previous_path"]

FOLLOW_POLL = 0.2
_READ = 1024 * 1024
_TAIL_BLOCK = 64 * 1024
_ROTATED = re.compile(r"\.(\d{8}-\d{6})(?:-(\d+))?")
_RECORD = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,9})?Z (stdout|stderr) ([FP]) ?(.*)$", re.S)


def log_path(logs_dir: Path, namespace: str, pod: str, container: str = "") -> Path:
    """The file a kubelet should append a pod's (or one container's) output to."""
    if container:
        per_container = logs_dir / f"{namespace}_{pod}_{container}.log"
        if per_container.exists():
            return per_container
    return logs_dir / f"{namespace}_{pod}.log"


def previous_path(path: Path) -> Path:
    """The previous run's log beside ``path`` (the kubelet's ``container_log.previous_log``)."""
    return path.with_name(path.name + ".previous")


@dataclass
class LogLine:
    """One line of output: its text (with newline) and time (epoch ns; None for a plain line)."""

    text: bytes
    ns: int | None = None
    stamp: bytes = b""


class _Decoder:
    """CRI records in, whole lines out; keeps an unfinished record and partial lines between chunks."""

    def __init__(self) -> None:
        self._rest = b""
        self._partial: LogLine | None = None
        self._second: tuple[bytes, int] = (b"", 0)

    def feed(self, data: bytes, final: bool = False) -> list[LogLine]:
        data = self._rest + data
        raw = data.split(b"\n")
        last = raw.pop()
        self._rest = b"" if final else last
        if final and last:
            raw.append(last)
        lines: list[LogLine] = []
        for record in raw:
            match = _RECORD.match(record)
            if match is None:
                lines.append(LogLine(record + b"\n"))
                continue
            seconds, fraction, _stream, tag, text = match.groups()
            stamp = seconds + (fraction or b"") + b"Z"
            if seconds != self._second[0]:
                parsed = calendar.timegm(time.strptime(seconds.decode(), "%Y-%m-%dT%H:%M:%S"))
                self._second = (seconds, parsed)
            parsed = self._second[1]
            ns = parsed * 1_000_000_000 + int(((fraction or b".")[1:] or b"0").ljust(9, b"0"))
            if self._partial is None:
                self._partial = LogLine(b"", ns, stamp)
            self._partial.text += text
            if tag == b"F":
                self._partial.text += b"\n"
                lines.append(self._partial)
                self._partial = None
        return lines


def parse_records(data: bytes) -> list[LogLine]:
    """Every line of a log file's content (CRI records or plain lines)."""
    return _Decoder().feed(data, final=True)


def _format(lines: list[LogLine], timestamps: bool) -> bytes:
    if not timestamps:
        return b"".join(line.text for line in lines)
    return b"".join((line.stamp + b" " if line.stamp else b"") + line.text for line in lines)


def _since_ns(request: web.Request, pod: str) -> int | None:
    """The earliest line time asked for (``sinceSeconds`` or ``sinceTime``), in epoch ns."""
    seconds = int_param(request.query, "sinceSeconds")
    since_time = request.query.get("sinceTime")
    if seconds is not None and since_time:
        raise invalid(
            "PodLogOptions",
            pod,
            "sinceSeconds",
            "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified",
        )
    if seconds is not None:
        if seconds < 1:
            raise invalid("PodLogOptions", pod, "sinceSeconds", "Invalid value: must be greater than 0")
        return time.time_ns() - seconds * 1_000_000_000
    if since_time:
        parsed = parse_time(since_time)
        if parsed is None or not re.match(r"^\d{4}-\d\d-\d\dT", since_time):
            raise bad_request(
                f"sinceTime {since_time[:40]!r} is not an RFC 3339 time: use e.g. 2026-11-30T15:04:05Z"
            )
        return int(parsed) * 1_000_000_000
    return None


def _select(lines: list[LogLine], since: int | None, tail: int | None) -> list[LogLine]:
    if since is not None:
        lines = [line for line in lines if line.ns is None or line.ns >= since]
    if tail is not None:
        lines = lines[-tail:] if tail > 0 else []
    return lines


@dataclass
class _Start:
    """What the first answer holds and where a follower goes on from."""

    body: bytes
    decoder: _Decoder
    inode: int | None
    offset: int


def _tail_lines(fh: BinaryIO, size: int, tail: int, final: bool) -> tuple[list[LogLine], _Decoder]:
    """At least the last ``tail`` lines of the open file of ``size`` bytes, read backwards in
    growing blocks from its end; the decoder has read to ``size``."""
    block = _TAIL_BLOCK
    while True:
        start = max(0, size - block)
        fh.seek(start)
        data = fh.read(size - start)
        if start > 0:
            first = data.find(b"\n")
            data = data[first + 1 :] if first >= 0 else b""
        if start == 0 or data.count(b"\n") > tail:
            decoder = _Decoder()
            lines = decoder.feed(data, final=final)
            # the first line may lack the partial records before the block: more than ``tail`` needed
            if start == 0 or len(lines) > tail:
                return lines, decoder
        block *= 4


def _start(path: Path | None, since: int | None, tail: int | None, timestamps: bool, final: bool) -> _Start:
    """The first answer from ``path`` (runs in a worker thread: it reads and decodes)."""
    decoder = _Decoder()
    if path is None:
        return _Start(b"", decoder, None, 0)
    try:
        with open(path, "rb") as fh:
            stat = os.fstat(fh.fileno())
            inode, size = stat.st_ino, stat.st_size
            if tail == 0 and since is None:
                return _Start(b"", decoder, inode, size)
            if tail is not None and since is None:
                lines, decoder = _tail_lines(fh, size, tail, final)
            else:
                data = fh.read(size)
                size = len(data)
                lines = decoder.feed(data, final=final)
    except OSError:
        return _Start(b"", decoder, None, 0)
    return _Start(_format(_select(lines, since, tail), timestamps), decoder, inode, size)


async def pod_log(request: web.Request, state: State, target: Target) -> web.StreamResponse:
    namespace, name = target.namespace or "", target.name or ""
    pod = state.store.peek("pods", namespace, name)
    if pod is None:
        raise not_found("pods", name)
    containers = [as_str(dig(c, "name")) for c in as_list(dig(pod, "spec", "containers"))]
    init = [as_str(dig(c, "name")) for c in as_list(dig(pod, "spec", "initContainers"))]
    container = request.query.get("container", "")
    if container and container not in containers and container not in init:
        raise bad_request(f"container {container} is not valid for pod {name}")
    if not container and len(containers) > 1:
        raise bad_request(
            f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
        )
    tail = int_param(request.query, "tailLines")
    limit = int_param(request.query, "limitBytes")
    if tail is not None and tail < 0:
        raise invalid("PodLogOptions", name, "tailLines", "Invalid value: must be greater than or equal to 0")
    if limit is not None and limit < 1:
        raise invalid("PodLogOptions", name, "limitBytes", "Invalid value: must be greater than 0")
    follow = bool_param(request.query, "follow")
    previous = bool_param(request.query, "previous")
    timestamps = bool_param(request.query, "timestamps")
    since = _since_ns(request, name)
    logs_dir = state.settings.resolved_logs_dir()
    path = log_path(logs_dir, namespace, name, container) if logs_dir is not None else None
    shown = container or (containers[0] if containers else "")
    if previous:
        path = previous_path(path) if path is not None else None
        if path is None or not path.is_file():
            raise bad_request(f'previous terminated container "{shown}" in pod "{name}" not found')
        follow = False
    start = await asyncio.to_thread(_start, path, since, tail, timestamps, not follow)
    body = start.body if limit is None else start.body[:limit]
    if not follow:
        return web.Response(body=body, content_type="text/plain")
    return await _follow(request, state, pod, shown, path, start, body, since, timestamps, limit)


def _terminated(pod: dict[str, object], container: str) -> bool:
    """Whether the pod's status says ``container`` has exited (its state is ``terminated``)."""
    for key in ("containerStatuses", "initContainerStatuses"):
        for status in as_list(dig(pod, "status", key)):
            if dig(status, "name") == container and isinstance(dig(status, "state", "terminated"), dict):
                return True
    return False


async def _follow(
    request: web.Request,
    state: State,
    pod: dict[str, object],
    container: str,
    path: Path | None,
    start: _Start,
    first: bytes,
    since: int | None,
    timestamps: bool,
    limit: int | None,
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    cursor = None if path is None else _Cursor(path, start.inode, start.offset, start.decoder)
    left = None if limit is None else limit - len(first)
    namespace, name, uid = (
        dig(pod, "metadata", "namespace"),
        dig(pod, "metadata", "name"),
        dig(pod, "metadata", "uid"),
    )
    try:
        await response.write(first)
        while cursor is not None and (left is None or left > 0):
            await asyncio.sleep(FOLLOW_POLL)
            current = state.store.peek("pods", as_str(namespace), as_str(name))
            if current is None or dig(current, "metadata", "uid") != uid:
                break
            exited = _terminated(current, container)  # looked at before the read: its last lines are in
            lines, ended = await asyncio.to_thread(cursor.read, exited)
            out = _format(_select(lines, since, None), timestamps)
            if left is not None:
                out, left = out[:left], left - len(out[:left])
            if out:
                await response.write(out)
            if ended or exited:
                break
    except ConnectionError:
        return response
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.write_eof()
    return response


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


class _Cursor:
    """Where a follower is: the file it reads (by inode), the offset in it, and its decoder."""

    def __init__(self, path: Path, inode: int | None, offset: int, decoder: _Decoder) -> None:
        self.path, self.inode, self.offset, self.decoder = path, inode, offset, decoder

    def read(self, to_end: bool) -> tuple[list[LogLine], bool]:
        """The lines appended since the last read (up to 1 MiB, everything with ``to_end``) and
        whether the container's run has ended (it restarted: its file is now ``previous``).
        Runs in a worker thread."""
        lines: list[LogLine] = []
        while True:
            chunk, ended = self._chunk()
            lines += self.decoder.feed(chunk, final=ended or (to_end and not chunk))
            if ended or not chunk or not to_end:
                return lines, ended

    def _chunk(self) -> tuple[bytes, bool]:
        now = _inode(self.path)
        if self.inode is None:  # no file when the follower began: the first one to appear
            self.inode = now
        if self.inode is not None and now != self.inode:
            old, ended, following = self._old_file()
            if old is None:
                return b"", True
            data = _read_from(old, self.offset)
            if data or ended:
                self.offset += len(data)
                return data, ended and len(data) < _READ
            # rotated for size and read to its end: on with the next file of the run
            self.inode, self.offset = _inode(following) if following is not None else now, 0
            return b"", False
        data = _read_from(self.path, self.offset)
        self.offset += len(data)
        return data, False

    def _old_file(self) -> tuple[Path | None, bool, Path | None]:
        """The followed file under its new name, whether the run ended (it is ``previous``), and
        the file written after it (the next rotated one; None: the current file)."""
        if _inode(previous_path(self.path)) == self.inode:
            return previous_path(self.path), True, None
        rotated = _rotated(self.path)
        for index, candidate in enumerate(rotated):
            if _inode(candidate) == self.inode:
                return candidate, False, rotated[index + 1] if index + 1 < len(rotated) else None
        return None, True, None


def _rotated(path: Path) -> list[Path]:
    """The files rotated for size from ``path``, oldest first (``<file>.<YYYYmmdd-HHMMSS>[-n]``)."""
    order: list[tuple[str, int, Path]] = []
    with contextlib.suppress(OSError):
        for candidate in path.parent.iterdir():
            match = candidate.name.startswith(path.name) and _ROTATED.fullmatch(
                candidate.name[len(path.name) :]
            )
            if match:
                order.append((match.group(1), int(match.group(2) or 0), candidate))
    return [p for _, _, p in sorted(order)]


def _read_from(path: Path, offset: int) -> bytes:
    with contextlib.suppress(OSError), open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(_READ)
    return b""
