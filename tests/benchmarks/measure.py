"""Measuring processes for the load benchmarks: run one to completion, CPU of trees and the machine.

Shared by :mod:`tests.benchmarks.bench_throughput` and :mod:`tests.benchmarks.bench_tenants`.
A process's exact CPU comes from ``wait4`` when it exits; while it runs, its CPU is sampled
every :data:`SAMPLE_EVERY` seconds so a steady-state window can be cut out of it.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psutil

__all__ = [
    "CLIENT_PACKAGES",
    "SAMPLE_EVERY",
    "BenchError",
    "Exit",
    "cpu_model",
    "machine_facts",
    "run_measured",
    "tail",
    "tree_cpu",
    "user_space_cpu",
]

SAMPLE_EVERY = 0.2
"""Seconds between CPU samples of a running process."""
CLIENT_PACKAGES = ("locust", "gevent", "pyodbc", "psutil")
"""Python packages whose versions the client side of a benchmark depends on."""


class BenchError(Exception):
    """The benchmark could not measure something; the message says what and where to look."""


@dataclass
class Exit:
    """How a measured process ended."""

    returncode: int
    cpu: float
    """User + system seconds of the process (and any children it reaped)."""
    samples: list[tuple[float, float]] = field(default_factory=list)
    """(wall-clock time, CPU seconds so far) every :data:`SAMPLE_EVERY` seconds."""


def run_measured(
    argv: list[str], *, env: dict[str, str], cwd: Path, log: Path, timeout: float, sample: bool
) -> Exit:
    """Run ``argv`` to completion, output to ``log``; its exact CPU comes from ``wait4``.

    With ``sample`` its CPU (user + system, all threads) is also sampled while it runs.
    BenchError when it is still running after ``timeout`` seconds (it is killed first);
    on any exception, Ctrl-C included, the process is killed and reaped.
    """
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd
        )
    samples: list[tuple[float, float]] = []
    watched = psutil.Process(proc.pid)
    deadline = time.monotonic() + timeout
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{Path(argv[0]).name} still running after {timeout:.0f}s: see {log}")
            if sample:
                try:
                    times = watched.cpu_times()
                    samples.append((time.time(), times.user + times.system))
                except psutil.Error:
                    pass
            time.sleep(SAMPLE_EVERY)
    except BaseException:
        proc.kill()
        os.wait4(proc.pid, 0)
        proc.returncode = -9
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Exit(proc.returncode, usage.ru_utime + usage.ru_stime, samples)


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid``, its live descendants and the children it has reaped."""
    root = psutil.Process(pid)
    times = root.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in root.children(recursive=True):
        try:
            ct = child.cpu_times()
            total += ct.user + ct.system
        except psutil.Error:
            continue
    return float(total)


def user_space_cpu() -> float:
    """Machine-wide CPU seconds of processes, kernel threads (I/O flushing) left out.

    Interrupt time (loopback networking) is not counted either: both are part of the
    work being measured, not interference.
    """
    times = psutil.cpu_times()
    total = times.user + times.nice + times.system
    for proc in psutil.process_iter(["pid", "ppid"]):
        if proc.info["pid"] == 2 or proc.info["ppid"] == 2:
            try:
                kt = proc.cpu_times()
                total -= kt.user + kt.system
            except psutil.Error:
                continue
    return float(total)


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file; empty when it cannot be read."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The first ``model name`` of ``/proc/cpuinfo``; ``unknown`` when there is none."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _package_version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def machine_facts(server: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the numbers depend on: CPUs, memory, kernel, ``server``'s facts, Python, clients.

    ``server`` (PostgreSQL version, durability, drivers) is placed after the kernel, in
    its own order; ``nproc`` counts the CPUs this process may run on.
    """
    facts = {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu_model(),
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
    }
    facts.update(server or {})
    facts["python"] = platform.python_version()
    facts["clients"] = ", ".join(f"{p} {_package_version(p)}" for p in CLIENT_PACKAGES)
    return facts
