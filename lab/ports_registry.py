"""The port registry's file: its entries (:class:`Holding`) read and written under an exclusive lock.

``registry.json`` and ``registry.lock`` live in :func:`registry_dir`
(``$HARNESS_PORTS_DIR``, else ``/var/tmp/mssql-harness-ports``). The folder is made
``1777`` (world-writable and sticky, like ``/tmp``) and both files ``0666``, so labs of
every user of the machine can record their blocks; files are opened without following
symlinks, and ``registry.json`` is written in place under the ``flock`` (in a sticky
folder nobody may rename over another user's file). :func:`locked` yields the entries
and writes them back when they changed. What the entries mean, and when a block is
free again, is :mod:`lab.ports`'s.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from common.times import format_time
from lab.errors import LabError

__all__ = [
    "DEFAULT_REGISTRY",
    "LOCK_TIMEOUT",
    "MARKER",
    "REGISTRY_ENV",
    "Book",
    "Holding",
    "locked",
    "now_text",
    "registry_dir",
    "started",
]

REGISTRY_ENV = "HARNESS_PORTS_DIR"
DEFAULT_REGISTRY = Path("/var/tmp/mssql-harness-ports")  # noqa: S108 - machine-wide on purpose
MARKER = "port-range.json"
LOCK_TIMEOUT = 10.0


# -- the registry's entries ------------------------------------------------------------------------


@dataclass
class Holding:
    """One lab's block: ``[low, high)``, whose it is and whether its lab runs."""

    lab_id: str
    low: int
    high: int
    owner_dir: str
    uid: int
    pid: int | None
    pid_started: float | None
    state: str  # "up" (claimed or running) or "down" (stopped by `lab down`)
    claimed_at: str
    changed_at: str

    def overlaps(self, low: int, high: int) -> bool:
        """True when ``[low, high)`` shares a port with this block."""
        return self.low < high and low < self.high

    def describe(self) -> str:
        """``lab-id (first-last, folder, uid N)`` for messages."""
        return f"{self.lab_id} ({self.low}-{self.high - 1}, {self.owner_dir}, uid {self.uid})"

    def live(self) -> bool:
        """The recorded pid runs and is the process recorded (start time); unreadable counts as live."""
        if self.pid is None:
            return False
        try:
            proc = psutil.Process(self.pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            started = proc.create_time()
        except psutil.NoSuchProcess:
            return False
        except psutil.Error:
            return True
        return self.pid_started is None or abs(started - self.pid_started) < 0.05

    def owner_present(self) -> bool:
        """False when the lab's folder or marker is gone or names another lab; True when unsure."""
        try:
            # the registry is anyone's to edit: never follow a link, never block on a FIFO
            fd = os.open(
                Path(self.owner_dir) / MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            )
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError:
            return True  # unreadable (another user's folder): cannot tell it is gone
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return False  # not a marker this module writes
            with os.fdopen(fd, "rb", closefd=False) as fh:
                data = json.loads(fh.read(65536))
        except (OSError, ValueError):
            return True  # half-written: cannot tell it is gone
        finally:
            os.close(fd)
        return not isinstance(data, dict) or data.get("lab_id") == self.lab_id

    def verdict(self) -> str:
        """``live``, ``gone``, ``crashed`` or ``down`` (the stale-owner rule of :mod:`lab.ports`)."""
        if self.live():
            return "live"
        if not self.owner_present():
            return "gone"
        return "down" if self.state == "down" else "crashed"


def _holding(raw: Any, where: Path) -> Holding:
    try:
        return Holding(
            lab_id=str(raw["lab_id"]),
            low=int(raw["low"]),
            high=int(raw["high"]),
            owner_dir=str(raw["owner_dir"]),
            uid=int(raw.get("uid", -1)),
            pid=None if raw.get("pid") is None else int(raw["pid"]),
            pid_started=None if raw.get("pid_started") is None else float(raw["pid_started"]),
            state=str(raw.get("state") or "up"),
            claimed_at=str(raw.get("claimed_at") or ""),
            changed_at=str(raw.get("changed_at") or ""),
        )
    except (KeyError, TypeError, ValueError):
        raise LabError(
            f"port registry {where} has a malformed entry {raw!r}: remove that entry "
            "(its lab claims again at its next `up`)"
        ) from None


def started(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds, as psutil reads it); None when it is gone."""
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def now_text() -> str:
    """Now, as RFC 3339 UTC with milliseconds (the registry's timestamps)."""
    return format_time(time.time(), digits=3)


# -- the locked file -------------------------------------------------------------------------------


def registry_dir() -> Path:
    """``$HARNESS_PORTS_DIR``, else ``/var/tmp/mssql-harness-ports``."""
    return Path(os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY)


def _prepare_dir(folder: Path) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir(mode=0o1777)
        os.chmod(folder, 0o1777)  # noqa: S103 - every user's labs share it; mkdir's mode met the umask
    except FileExistsError:
        pass
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise LabError(
            f"port registry {folder} is not a folder (a file or a symlink): remove it, or set "
            f"{REGISTRY_ENV} to a folder every lab of this machine uses"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LabError(
            f"cannot write the port registry {folder} (owner uid {info.st_uid}, mode "
            f"{stat.S_IMODE(info.st_mode):o}): its owner runs `chmod 1777 {folder}` so every user's "
            f"labs share it, or set {REGISTRY_ENV} to a folder every lab of this machine uses"
        )


def _open_shared(path: Path) -> int:
    """Open ``path`` read-write, creating it 0666; never through a symlink.

    An existing file is opened without ``O_CREAT`` (``fs.protected_regular`` refuses that
    on another user's file in a sticky folder).
    """
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    for _ in range(3):
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise LabError(
                f"cannot open {path} ({exc.strerror}): it must be a regular file every lab user may "
                f"write (chmod 666), or set {REGISTRY_ENV} elsewhere"
            ) from None
        else:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                return fd
            os.close(fd)
            raise LabError(f"{path} is not a regular file: remove it, or set {REGISTRY_ENV} elsewhere")
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue  # made meanwhile by another lab: open it as it is
        os.fchmod(fd, 0o666)
        return fd
    raise LabError(f"cannot open {path}: it keeps appearing and vanishing; check what removes it")


def _lock(fd: int, path: Path) -> None:
    deadline = time.monotonic() + LOCK_TIMEOUT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LabError(
                    f"the port registry lock {path} is held for more than {LOCK_TIMEOUT:.0f}s: "
                    f"see which process holds it (`fuser {path}`) and stop it"
                ) from None
            time.sleep(0.01)


class Book:
    """The registry's entries while the lock is held; written back when changed."""

    def __init__(self, path: Path, entries: list[Holding]) -> None:
        self.path = path
        self.entries = entries
        self.changed = False

    def find(self, lab_id: str) -> Holding | None:
        """Lab ``lab_id``'s entry, if it holds one."""
        return next((h for h in self.entries if h.lab_id == lab_id), None)

    def drop(self, holding: Holding) -> None:
        """Remove ``holding`` (written back when the lock is let go)."""
        self.entries.remove(holding)
        self.changed = True


def _read(fd: int, path: Path) -> list[Holding]:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 65536, offset):
        chunks.append(chunk)
        offset += len(chunk)
    text = b"".join(chunks).decode(errors="replace")
    if not text.strip():
        return []
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("ranges"), list):
        raise LabError(
            f'port registry {path} is not {{"ranges": [...]}} JSON: fix it, or delete it while no lab '
            "runs (each lab claims its block again at its next `up`)"
        )
    return [_holding(raw, path) for raw in doc["ranges"]]


def _write(fd: int, entries: list[Holding]) -> None:
    doc = {"version": 1, "ranges": [asdict(h) for h in sorted(entries, key=lambda h: h.low)]}
    data = (json.dumps(doc, indent=2) + "\n").encode()
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))
    os.fsync(fd)


@contextlib.contextmanager
def locked(registry: Path | None) -> Iterator[Book]:
    """The registry of folder ``registry`` (default :func:`registry_dir`) under its lock, saved if changed."""
    folder = registry or registry_dir()
    _prepare_dir(folder)
    lock_path = folder / "registry.lock"
    lock_fd = _open_shared(lock_path)
    try:
        _lock(lock_fd, lock_path)
        path = folder / "registry.json"
        fd = _open_shared(path)
        try:
            book = Book(path, _read(fd, path))
            yield book
            if book.changed:
                _write(fd, book.entries)
        finally:
            os.close(fd)
    finally:
        os.close(lock_fd)  # releases the flock
