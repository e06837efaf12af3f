"""Run the Locust load as a separate process, around whatever else happens.

Load runs in its own process (``locust --headless``) so that fault injection and probes
never share its event loop. :func:`preflight` checks every tenant first, so a wrong
DSN, driver or password fails in one clear line before any load starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyodbc

from loadgen.dialects import dialect
from loadgen.errors import LoadgenError
from loadgen.journal import read_journal
from loadgen.tenants import Tenant, redact

__all__ = ["LOCUSTFILE", "LoadRun", "default_run_id", "preflight"]

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


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
    """Connect to every tenant and create the writes table; LoadgenError on the first failure."""
    for tenant in tenants:
        try:
            conn = pyodbc.connect(tenant.connection_string(), autocommit=True, timeout=timeout)
        except pyodbc.Error as exc:
            raise LoadgenError(_explain(tenant, exc)) from None
        try:
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
    extra_args: list[str] = field(default_factory=list)
    _proc: subprocess.Popen[bytes] | None = None

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
            "--loglevel",
            "WARNING",
        ]
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

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait_acks(self, tenants: list[str], timeout: float = 30.0) -> None:
        """Block until every tenant has an acknowledged write in the journal."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise LoadgenError(
                    f"load process exited early (code {self.returncode()}): see {self.run_dir}/locust.log"
                )
            writes, _ = read_journal(self.run_dir / "journal")
            if set(tenants) <= {w.tenant for w in writes if w.outcome == "ok"}:
                return
            time.sleep(0.1)
        raise LoadgenError(
            f"no acknowledged write from every tenant within {timeout:g}s: see {self.run_dir}/locust.log"
        )

    def wait(self, timeout: float | None = None) -> int:
        """Wait for Locust to finish by itself (``duration``); returns its exit code."""
        assert self._proc is not None
        return self._proc.wait(timeout=timeout)

    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM (Locust stops users and writes its summary), SIGKILL after ``grace`` seconds."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        return self._proc.returncode
