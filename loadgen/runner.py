"""Run the Locust load as a separate process, around whatever else happens.

Load runs in its own process (``locust --headless``) so that fault injection and probes
never share its event loop. :func:`preflight` checks every tenant first, so a wrong
DSN, driver or password fails in one clear line before any load starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyodbc

from loadgen.dialects import dialect
from loadgen.errors import LoadgenError
from loadgen.identity import check_identity
from loadgen.journal import JournalTail
from loadgen.tenants import Tenant, redact

__all__ = [
    "LOCUSTFILE",
    "LoadRun",
    "active_load",
    "default_run_id",
    "preflight",
    "register_active",
    "unregister_active",
    "wait_steady_acks",
]

LOCUSTFILE = Path(__file__).with_name("locustfile.py")

_active: list[Any] = []


def active_load() -> Any:
    """The load this process started most recently, if any (probes ask it whether it lives).

    A :class:`LoadRun` or a :class:`loadgen.cluster_load.ClusterLoadRun`: both answer
    ``running()``, ``problem()`` and ``life()``.
    """
    return _active[-1] if _active else None


def register_active(load: Any) -> None:
    """Make ``load`` the one :func:`active_load` answers with (called by a load's ``start``)."""
    _active.append(load)


def unregister_active(load: Any) -> None:
    """Forget ``load`` (called when it has been stopped)."""
    if load in _active:
        _active.remove(load)


def default_run_id() -> str:
    """A sortable UTC run identifier with milliseconds, e.g. ``20261126T231501.123Z``."""
    now = time.time()
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def _explain(tenant: Tenant, exc: pyodbc.Error) -> str:
    state = str(exc.args[0]) if exc.args else ""
    text = redact(str(exc.args[-1] if exc.args else exc))
    if state.startswith("28") or "password authentication failed" in text or "Login failed" in text:
        fix = "check user and password_file/password_env"
    elif "does not exist" in text and "database" in text:
        fix = "check the database name"
    elif state.startswith("08") or "refused" in text or "timeout" in text:
        fix = "is the server running and reachable? check server and port"
    elif state == "IM002" or "Can't open lib" in text or "Data source name not found" in text:
        fix = "check the ODBC driver name (odbcinst -q -d lists them)"
    else:
        fix = "see the message above"
    first = text.splitlines()[0] if text else type(exc).__name__
    return f"tenant {tenant.describe()}: {first.strip()}: {fix}"


def preflight(tenants: list[Tenant], timeout: int = 5) -> None:
    """Connect to every tenant, check its lab, create the writes table; LoadgenError on the first failure.

    A lab's tenant whose server holds another lab's id, or none, is refused
    (:class:`loadgen.identity.WrongServer`) before anything is created in it.
    """
    for tenant in tenants:
        try:
            conn = pyodbc.connect(tenant.connection_string(), autocommit=True, timeout=timeout)
        except pyodbc.Error as exc:
            raise LoadgenError(_explain(tenant, exc)) from None
        try:
            check_identity(conn, tenant)
            conn.execute(dialect(tenant.dialect).create_table)
        except pyodbc.Error as exc:
            raise LoadgenError(_explain(tenant, exc)) from None
        finally:
            conn.close()


@dataclass
class LoadRun:
    """One headless Locust process writing to the tenants of ``tenants_file``.

    ``users`` defaults to one per tenant; ``rate`` is writes per second per tenant
    (0 = as fast as possible). Output goes to ``run_dir``: ``journal/``, ``metrics/``,
    ``locust.log``.

    The process is watched from the moment it starts: if it exits before anyone asked
    it to stop, :attr:`died_at` says when (a dead load must never pass for a quiet
    one). Failed writes are data, not errors, so Locust runs with
    ``--exit-code-on-error 0``: any non-zero exit means the load itself broke.
    """

    tenants_file: Path
    run_dir: Path
    run_id: str
    users: int
    rate: float = 20.0
    processes: int = 0
    duration: float | None = None
    write_timeout: float = 0.5
    connect_timeout: float = 0.5
    #: Start a new journal segment every this many seconds (0: one journal file; a soak uses 60).
    segment_seconds: float = 0.0
    extra_args: list[str] = field(default_factory=list)
    _proc: subprocess.Popen[bytes] | None = None
    _exited: threading.Event = field(default_factory=threading.Event)
    _code: int | None = None
    cpu_seconds: float | None = None
    started_at: float | None = None
    stop_requested_at: float | None = None
    ended_at: float | None = None
    died_at: float | None = None

    def command(self) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "-u",
            str(self.users),
            "-r",
            str(self.users),
            "--tenants-file",
            str(self.tenants_file),
            "--run-dir",
            str(self.run_dir),
            "--run-id",
            self.run_id,
            "--write-rate",
            f"{self.rate:g}",
            "--write-timeout",
            f"{self.write_timeout:g}",
            "--connect-timeout",
            f"{self.connect_timeout:g}",
            "--only-summary",
            "--stop-timeout",
            "5",
            "--exit-code-on-error",
            "0",
            "--loglevel",
            "WARNING",
            "--exit-with-parent",
        ]
        if self.segment_seconds:
            argv += ["--journal-segment-seconds", f"{self.segment_seconds:g}"]
        if self.duration is not None:
            argv += ["-t", f"{max(1, round(self.duration))}s"]
        if self.processes:
            argv += ["--processes", str(self.processes)]
        return argv + self.extra_args

    def start(self) -> None:
        """Start Locust; returns at once (see :meth:`wait_acks`)."""
        if self.users < 1:
            raise LoadgenError(f"users must be at least 1, got {self.users}")
        if self.rate < 0:
            raise LoadgenError(f"write rate must be 0 or more, got {self.rate:g}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = (self.run_dir / "locust.log").open("ab")
        try:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            log.close()
        self.started_at = time.time()
        register_active(self)
        threading.Thread(target=self._watch, name=f"load-watch-{self._proc.pid}", daemon=True).start()

    def _watch(self) -> None:
        """The only waiter: reaps Locust with ``wait4`` to keep its CPU time (and its workers')."""
        assert self._proc is not None
        code = -signal.SIGKILL  # what is recorded if the process cannot be waited for
        try:
            _, status, usage = os.wait4(self._proc.pid, 0)
            code = os.waitstatus_to_exitcode(status)
            self.cpu_seconds = usage.ru_utime + usage.ru_stime
        except ChildProcessError:
            pass  # reaped elsewhere: its exit status is lost, so it counts as killed
        finally:
            self._proc.returncode = code  # Popen must not wait for a process already reaped
            self.ended_at = time.time()
            self._code = code
            if self.stop_requested_at is None and not self._finished_by_itself(code):
                self.died_at = self.ended_at
            self._exited.set()  # last: whoever wakes sees every field above

    def _finished_by_itself(self, code: int) -> bool:
        """A run with a ``duration`` that ended cleanly around its end did not die."""
        if self.duration is None or code != 0 or self.started_at is None:
            return False
        return time.time() >= self.started_at + self.duration - 1.0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and not self._exited.is_set()

    def problem(self) -> str | None:
        """Why the load cannot be trusted right now (died, or ended badly), else None."""
        code = self.returncode()
        if self._proc is None or code is None:
            return None
        where = f"see {self.run_dir}/locust.log"
        if self.died_at is not None or (
            self.stop_requested_at is None and not self._finished_by_itself(code)
        ):
            return f"the load process (pid {self.pid}) died with {_describe_exit(code)}: {where}"
        if code != 0:
            return f"the load process (pid {self.pid}) ended with {_describe_exit(code)}: {where}"
        return None

    def life(self) -> dict[str, Any]:
        """What ``run.json`` records about the load: when it ran, how it ended, whether it died."""
        return {
            "pid": self.pid,
            "write_rate": self.rate,
            "users": self.users,
            "processes": self.processes,
            "started_at": self.started_at,
            "stop_requested_at": self.stop_requested_at,
            "ended_at": self.ended_at,
            "exit_code": self.returncode(),
            "died_at": self.died_at,
            "cpu_seconds": self.cpu_seconds,
        }

    def wait_acks(self, tenants: list[str], stability: float = 0.0, timeout: float = 30.0) -> None:
        """Block until every tenant has been acknowledging writes for ``stability`` seconds.

        A steady state checked before that would pass on a load that has barely started
        (or on a few stale acks). ``timeout`` counts on top of ``stability``.
        """

        where = f"see {self.run_dir}/locust.log"

        def gone() -> str | None:
            if self.running():
                return None
            return f"load process exited early ({_describe_exit(self.returncode())}): {where}"

        wait_steady_acks(self.run_dir / "journal", tenants, self.rate, stability, timeout, gone, where)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for Locust to finish by itself (``duration``); returns its exit code."""
        assert self._proc is not None
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(self.command(), timeout or 0.0)
        assert self._code is not None
        return self._code

    def returncode(self) -> int | None:
        return self._code if self._exited.is_set() else None

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM (Locust stops users and writes its summary), SIGKILL after ``grace`` seconds."""
        if self._proc is None:
            return None
        code = self.returncode()
        if code is not None and self.stop_requested_at is None and not self._finished_by_itself(code):
            self.died_at = self.died_at or self.ended_at or time.time()  # it was already gone
        if self.stop_requested_at is None:
            self.stop_requested_at = time.time()
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            if not self._exited.wait(grace):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                if not self._exited.wait(30.0):
                    raise LoadgenError(f"the load process (pid {self._proc.pid}) survived SIGKILL for 30 s")
        unregister_active(self)
        return self.returncode()


def wait_steady_acks(
    journal: Path,
    tenants: list[str],
    rate: float,
    stability: float,
    timeout: float,
    gone: Callable[[], str | None],
    where: str,
) -> None:
    """Block until every tenant of ``journal`` has acknowledged writes steadily for ``stability`` s.

    A tenant is steady once its first acknowledged write is ``stability`` s old with no
    failure since and its newest is fresh (two write intervals, at least 1 s). ``gone``
    says why the load cannot get there any more (LoadgenError with it at once); ``where``
    ends the timeout's message. Both the local and the cluster load wait this way.
    """
    tail = JournalTail(journal)
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    fresh = max(1.0, 2.0 / rate) if rate > 0 else 1.0
    deadline = time.monotonic() + timeout + stability
    while time.monotonic() < deadline:
        why = gone()
        if why is not None:
            raise LoadgenError(why)
        writes, _ = tail.poll()
        for w in writes:
            if w.outcome == "ok":
                first.setdefault(w.tenant, w.end)
                last[w.tenant] = max(last.get(w.tenant, w.end), w.end)
            elif w.tenant in first and w.end >= first[w.tenant]:
                first[w.tenant] = w.end  # a failure restarts the tenant's stable stretch
        now = time.time()
        if all(t in first and now - first[t] >= stability and now - last[t] <= fresh for t in tenants):
            return
        time.sleep(0.1)
    waiting = sorted(t for t in tenants if t not in first or time.time() - first[t] < stability)
    raise LoadgenError(
        f"tenants {waiting} did not acknowledge writes steadily for {stability:g}s within "
        f"{timeout + stability:g}s: {where}"
    )


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit code yet"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
