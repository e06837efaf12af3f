"""Process trees: signal a whole tree, and reap what we adopt.

PostgreSQL's postmaster puts every backend in its own session (``setsid``), so a
process-group kill misses them: the tree has to be walked. A killed postmaster's
children are re-parented to the nearest *child subreaper*; a process that starts
servers should be one (:func:`become_subreaper`) and reap at once
(:func:`reap_adopted`), otherwise zombies pile up and a zombie postmaster keeps
its ``postmaster.pid`` looking alive, so the restart fails.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Container, Iterable

import psutil

__all__ = [
    "become_subreaper",
    "kill_tree",
    "kill_trees",
    "process_tree",
    "reap_adopted",
    "reap_orphans",
    "signal_tree",
    "wait_gone",
]

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make this process the child subreaper of its descendants (Linux only).

    Returns False where the kernel refuses; callers then rely on init to reap.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def reap_adopted(names: Iterable[str] = ("postgres",)) -> int:
    """Reap zombie children of this process whose command name is in ``names``.

    Only adopted orphans are touched, never a child some ``subprocess.Popen`` still
    owns under another name, so this is safe to call from any thread.
    Returns how many were reaped.
    """
    wanted = set(names)
    reaped = 0
    for child in psutil.Process().children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE or child.name() not in wanted:
                continue
            os.waitpid(child.pid, os.WNOHANG)
            reaped += 1
        except (psutil.Error, ChildProcessError):
            continue
    return reaped


def reap_orphans(keep: Container[int]) -> int:
    """Reap every zombie child of this process whose pid is not in ``keep``.

    For a subreaper that also runs children through ``subprocess``: pass the pids it
    still owns (and will ``wait`` for) as ``keep``, so their exit status is not stolen.
    Returns how many were reaped.
    """
    reaped = 0
    for child in psutil.Process().children():
        try:
            if child.pid in keep or child.status() != psutil.STATUS_ZOMBIE:
                continue
            os.waitpid(child.pid, os.WNOHANG)
            reaped += 1
        except (psutil.Error, ChildProcessError):
            continue
    return reaped


def process_tree(pid: int) -> list[psutil.Process]:
    """The process ``pid`` and all its descendants, root first; empty if it is gone."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def signal_tree(pid: int, sig: signal.Signals) -> list[psutil.Process]:
    """Send ``sig`` to ``pid`` and every descendant; returns the processes signalled.

    The root goes first so it cannot fork new children while the rest are signalled;
    the tree is walked again until no new member appears.
    """
    seen: dict[int, psutil.Process] = {}
    for _ in range(5):
        fresh = [p for p in process_tree(pid) if p.pid not in seen]
        if not fresh:
            break
        for proc in fresh:
            try:
                proc.send_signal(sig)
                seen[proc.pid] = proc
            except psutil.NoSuchProcess:
                continue
    return list(seen.values())


def wait_gone(procs: Iterable[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has exited (zombies count as exited); returns survivors."""
    deadline = time.monotonic() + timeout
    alive = list(procs)
    while alive:
        alive = [p for p in alive if _running(p)]
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    return alive


def kill_tree(pid: int, timeout: float = 5.0) -> list[psutil.Process]:
    """SIGKILL the whole tree under ``pid`` and wait for it; returns survivors (normally none)."""
    procs = signal_tree(pid, signal.SIGKILL)
    return wait_gone(procs, timeout)


def kill_trees(procs: Iterable[psutil.Process], timeout: float = 5.0) -> list[psutil.Process]:
    """SIGKILL ``procs`` and all their descendants without letting any of them escape.

    Every tree is first frozen (SIGSTOP, walked again until no new member appears),
    so nothing can fork or be re-parented out of sight, then killed. Processes whose
    pid was reused since ``procs`` were taken are left alone (psutil checks the
    creation time). Returns the survivors (normally none).
    """
    frozen: dict[int, psutil.Process] = {}
    roots = [p for p in procs if _running(p)]
    for _ in range(5):
        fresh: list[psutil.Process] = []
        for root in roots:
            try:
                members = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            fresh.extend(m for m in members if m.pid not in frozen)
        fresh.extend(
            child
            for member in list(frozen.values())
            for child in _children(member)
            if child.pid not in frozen
        )
        if not fresh:
            break
        for proc in fresh:
            try:
                proc.send_signal(signal.SIGSTOP)
                frozen[proc.pid] = proc
            except psutil.NoSuchProcess:
                continue
    for proc in frozen.values():
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            continue
    return wait_gone(frozen.values(), timeout)


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return list(proc.children())
    except psutil.NoSuchProcess:
        return []


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
