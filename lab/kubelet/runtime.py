"""Containers as process trees, and the bookkeeping that lets nothing escape.

* :class:`Spawner` starts every child of the kubelet and knows which pids are still
  owned by a ``subprocess.Popen``; its :meth:`Spawner.reap` reaps only the others
  (orphans adopted by the subreaper kubelet), so no exit status is stolen.
* :class:`ContainerProcess` is one running container: its own session, stdout and
  stderr read through pipes by a :class:`~lab.kubelet.container_log.LogPump` that appends
  CRI log records to the log file (a restart keeps the last run's file as ``previous``; a
  first run moves a file left by an earlier pod of the name aside; the writer rotates the
  file at 10 MiB), run as the user :mod:`lab.kubelet.run_as` chose. It remembers every
  process ever seen in its tree (a re-parented grandchild is no longer below the
  root), so when the main process exits or the container is stopped, all of them
  are killed, like a container runtime killing the container's cgroup.
* A record per running container (``<state>/containers/*.json``: pids with their
  creation times) lets a restarted kubelet, or ``python -m lab restart-node``,
  kill what a crashed kubelet left running: :func:`kill_leftovers`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

from lab import processes
from lab.kubelet.container_log import LogPump, start_new_run
from lab.kubelet.run_as import RunAs

__all__ = ["ContainerProcess", "Spawner", "exit_code", "kill_leftovers", "load_records", "process_table"]

log = logging.getLogger(__name__)

#: How long a finished container's log writer may take to drain its pipes.
PUMP_DRAIN = 2.0


def exit_code(returncode: int) -> int:
    """A container exit code: a death by signal N is 128 + N, as container runtimes report it."""
    return 128 - returncode if returncode < 0 else returncode


class Spawner:
    """Starts children and reaps adopted orphans without touching children it still owns."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owned: set[int] = set()

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            proc: subprocess.Popen[bytes] = subprocess.Popen(argv, **kwargs)
            self._owned.add(proc.pid)
        return proc

    def release(self, proc: subprocess.Popen[bytes]) -> None:
        """``proc`` has been waited for; its pid may be reaped by :meth:`reap` from now on."""
        with self._lock:
            self._owned.discard(proc.pid)

    def run(self, argv: list[str], timeout: float, **kwargs: Any) -> tuple[int | None, bytes]:
        """Run to completion; ``(exit code, output)``, code None when killed after ``timeout``."""
        proc = self.popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kwargs,
        )
        try:
            out, _ = proc.communicate(timeout=timeout)
            return exit_code(proc.returncode), out
        except subprocess.TimeoutExpired:
            processes.kill_tree(proc.pid)
            out, _ = proc.communicate()
            return None, out
        finally:
            self.release(proc)

    def reap(self) -> int:
        """Reap zombie children nobody waits for; returns how many."""
        with self._lock:
            return processes.reap_orphans(self._owned)


def process_table() -> tuple[dict[int, float], dict[int, list[int]]]:
    """Every live process: ``{pid: create_time}`` and ``{ppid: [child pids]}`` (zombies left out)."""
    alive: dict[int, float] = {}
    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid", "create_time", "status"]):
        info = proc.info
        if info.get("status") in (None, psutil.STATUS_ZOMBIE) or info.get("create_time") is None:
            continue
        alive[proc.pid] = float(info["create_time"])
        children.setdefault(int(info.get("ppid") or 0), []).append(proc.pid)
    return alive, children


def _alive(pid: int, created: float) -> psutil.Process | None:
    """The process ``pid`` if it is still the one created at ``created`` and not a zombie."""
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - created) > 0.05 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


class ContainerProcess:
    """One container's process tree (see the module doc)."""

    def __init__(
        self,
        spawner: Spawner,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        log_path: Path,
        record_path: Path,
        record_meta: dict[str, Any],
        run_as: RunAs | None = None,
        keep_previous: bool = False,
    ) -> None:
        self.spawner = spawner
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.log_path = log_path
        self.record_path = record_path
        self.record_meta = record_meta
        self.run_as = run_as
        self.keep_previous = keep_previous
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.started_mono = 0.0
        self.returncode: int | None = None
        self._members: dict[int, float] = {}
        self._pump: LogPump | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> int:
        """Start the main process (own session, output through pipes into the log); returns its pid."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.cwd.mkdir(parents=True, exist_ok=True)
        start_new_run(self.log_path, self.keep_previous)
        user_kwargs = self.run_as.popen_kwargs() if self.run_as is not None else {}
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        pump: LogPump | None = None
        try:
            pump = LogPump(self.log_path.stem, {out_r: b"stdout", err_r: b"stderr"}, self.log_path)
            self.proc = self.spawner.popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                close_fds=True,
                **user_kwargs,
            )
        except OSError:
            for fd in (out_r, err_r, *([pump.log_fd] if pump is not None else [])):
                os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        self._pump = pump
        pump.start()
        self.started_at = time.time()
        self.started_mono = time.monotonic()
        with contextlib.suppress(psutil.Error):
            self._members[self.proc.pid] = psutil.Process(self.proc.pid).create_time()
        self._write_record()
        return self.proc.pid

    def poll(self) -> int | None:
        """The container's exit code once the main process has exited (leftovers are killed)."""
        if self.returncode is not None:
            return self.returncode
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is None:
            return None
        self._finish(code)
        return self.returncode

    def refresh_members(self) -> None:
        """Remember every process now in the tree (call regularly while running; one pass over /proc)."""
        if self.proc is None or self.returncode is not None:
            return
        alive, children = process_table()
        members = {pid: c for pid, c in self._members.items() if abs(alive.get(pid, -1.0) - c) <= 0.05}
        stack = list(members)
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in members and child in alive:
                    members[child] = alive[child]
                    stack.append(child)
        if members != self._members:
            self._members = members
            self._write_record()

    def _current_members(self) -> list[psutil.Process]:
        self.refresh_members()
        found = []
        for pid, created in self._members.items():
            proc = _alive(pid, created)
            if proc is not None:
                found.append(proc)
        return found

    def signal_main(self, sig: signal.Signals) -> bool:
        """Send ``sig`` to the main process only (what ``docker stop`` does); False if it is gone."""
        if self.proc is None or self.poll() is not None:
            return False
        try:
            self.proc.send_signal(sig)
            return True
        except ProcessLookupError:
            return False

    def stop(self, grace: float) -> int:
        """SIGTERM the main process, wait up to ``grace`` s, then SIGKILL every process; the exit code."""
        if self.proc is None:
            return self.returncode if self.returncode is not None else 0
        self.refresh_members()
        if self.signal_main(signal.SIGTERM):
            deadline = time.monotonic() + max(0.0, grace)
            while self.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
        return self.kill()

    def kill(self) -> int:
        """SIGKILL every process of the container now; the exit code."""
        if self.proc is None:
            return self.returncode if self.returncode is not None else 0
        if self.returncode is None:
            self.refresh_members()
            self._kill_members()
            try:
                code = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log.warning("container process %s survived SIGKILL", self.proc.pid)
                code = -signal.SIGKILL
            self._finish(code)
        return self.returncode if self.returncode is not None else 0

    def _kill_members(self) -> None:
        procs = self._current_members()
        if procs:
            survivors = processes.kill_trees(procs)
            if survivors:
                log.warning("processes %s survived SIGKILL", [p.pid for p in survivors])

    def _finish(self, code: int) -> None:
        self.returncode = exit_code(code)
        self._kill_members()
        if self.proc is not None:
            self.spawner.release(self.proc)
        if self._pump is not None:
            self._pump.join(PUMP_DRAIN)  # the last lines are in the file before the exit is reported
            if self._pump.is_alive():
                log.warning("output of %s still open after its processes were killed", self.log_path.name)
            self._pump = None
        with contextlib.suppress(OSError):
            self.record_path.unlink()

    def _write_record(self) -> None:
        record = {**self.record_meta, "members": sorted([pid, c] for pid, c in self._members.items())}
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.record_path.with_name(self.record_path.name + ".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.record_path)


def load_records(folder: Path) -> list[dict[str, Any]]:
    """The container records under ``folder`` (unreadable ones are skipped)."""
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            records.append({**json.loads(path.read_text()), "_path": str(path)})
        except (OSError, ValueError):
            continue
    return records


def kill_leftovers(folder: Path, extra: Iterable[psutil.Process] = ()) -> int:
    """SIGKILL every still-running process recorded under ``folder`` (and ``extra``), with its tree.

    Records are removed. Returns how many processes were found alive.
    """
    targets: list[psutil.Process] = list(extra)
    records = load_records(folder)
    for record in records:
        for pid, created in record.get("members", []):
            proc = _alive(int(pid), float(created))
            if proc is not None:
                targets.append(proc)
    if targets:
        survivors = processes.kill_trees(targets)
        if survivors:
            log.warning("leftover processes %s survived SIGKILL", [p.pid for p in survivors])
    for record in records:
        with contextlib.suppress(OSError):
            Path(record["_path"]).unlink()
    return len(targets)
