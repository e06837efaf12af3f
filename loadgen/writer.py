"""One writer: a connection to one tenant and the loop body that writes and journals.

Each call of :meth:`TenantWriter.write_once` is one attempt with a fresh sequence
number, ending in exactly one journal line. Outcomes follow Jepsen's rules:

- ``ok``: the server returned the row's server timestamp;
- ``fail``: the write cannot have happened (no connection; the server rejected it
  with an error the tenant's dialect lists as definite, such as a constraint or
  syntax error: see :mod:`loadgen.dialects`);
- ``info``: it may or may not have happened (timeout, connection lost mid-call, or
  any error after which the server may have committed it).

The connection is dropped after any error that may have broken it and is reopened on
the next attempt. After a failure the next attempt waits a short, jittered backoff
(at most ``backoff_cap``, 0.1 s), so the end of an outage is seen within about that.
A call that overran its deadline is abandoned, not interrupted; when it returns later
with a working connection (a connect, or the hung insert, finishing the moment a frozen
server resumes), that connection is handed back and the next attempt uses it at once
instead of waiting out the backoff and connecting again.
"""

from __future__ import annotations

import collections
import contextlib
import math
import random
import time
from typing import Any

import pyodbc

from loadgen.dialects import Dialect, dialect
from loadgen.journal import ClockSample, JournalWriter, Outcome, Write
from loadgen.metrics import LoadMetrics
from loadgen.offload import CallTimeout, Offload
from loadgen.tenants import Tenant, redact

__all__ = ["TenantWriter", "classify"]


def classify(exc: BaseException, sql: Dialect) -> tuple[bool, str]:
    """``(definite, label)`` for a pyodbc error: definite means the write surely failed.

    Which SQLSTATEs are definite depends on the database and its driver, so the
    tenant's dialect decides (:attr:`loadgen.dialects.Dialect.definite_states`).
    """
    state = str(exc.args[0]) if exc.args else ""
    label = f"{type(exc).__name__}:{state}" if state else type(exc).__name__
    return bool(state) and sql.definite(state), label


class _Session:
    """A connection and the one cursor every write reuses.

    Reusing the cursor keeps psqlODBC's prepared insert: one round trip per write instead
    of four (Parse, Describe, Execute, Deallocate), as measured by ``make bench``.
    """

    def __init__(self, conn: Any, clock: ClockSample) -> None:
        self.conn = conn
        self.cursor = conn.cursor()
        self.clock = clock  # journaled by the caller: worker threads never touch the journal
        self.clock_journaled = False

    def close(self) -> None:
        try:
            self.cursor.close()
        finally:
            self.conn.close()


def _close(conn: Any) -> None:
    try:
        if conn is not None:
            conn.close()
    except pyodbc.Error:
        pass


class TenantWriter:
    """Writes numbered rows into one tenant, journaling every attempt.

    ``writer`` must be unique within a run across all load processes; together with
    ``seq`` it identifies a row. Not thread-safe: one writer belongs to one user. The
    only state worker threads touch is ``_late``, a deque (its ``append`` and
    ``popleft`` are atomic), through which abandoned calls report back when they end.
    """

    def __init__(
        self,
        tenant: Tenant,
        writer: int,
        run_id: str,
        journal: JournalWriter,
        offload: Offload,
        metrics: LoadMetrics | None = None,
        *,
        write_timeout: float = 0.5,
        connect_timeout: float = 0.5,
        backoff_cap: float = 0.1,
        poll_interval: float = 0.02,
        max_abandoned: int = 3,
        rng: random.Random | None = None,
    ) -> None:
        self.tenant = tenant
        self.writer = writer
        self.run_id = run_id
        self.journal = journal
        self.offload = offload
        self.metrics = metrics
        self.write_timeout = write_timeout
        self.connect_timeout = connect_timeout
        self.backoff_cap = backoff_cap
        self.poll_interval = poll_interval
        self.max_abandoned = max_abandoned
        self.rng = rng or random.Random()
        self._sql = dialect(tenant.dialect)
        self._conn_str = tenant.connection_string()
        self._conn: _Session | None = None
        self._table_ready = False
        # Abandoned calls that have since returned: a working session to hand back, or None.
        self._late: collections.deque[_Session | None] = collections.deque()
        self._retry_at = 0.0  # time.monotonic() before which no new connection is tried
        self.seq = 0
        self.failures = 0
        self.abandoned = 0

    # -- the loop body ----------------------------------------------------------------

    def blocked(self) -> bool:
        """True while too many abandoned calls are still running to start another one."""
        self._collect()
        return self.abandoned >= self.max_abandoned

    def backoff(self) -> float:
        """Seconds until the next attempt is worth making: 0 while healthy.

        After a failure the next attempt waits "equal jitter": half of the capped
        exponential delay plus a random part of the other half, so writers that failed
        together (one per tenant, all hit by the same node failure) do not retry in the
        same instant, and none waits more than ``backoff_cap``. While an abandoned call
        is still running, the wait is cut into short polls (``poll_interval``, also
        jittered): such a call returns the moment a frozen server resumes, and the
        connection it brings back is used at once.
        """
        if self._late:
            return 0.0
        if self.blocked():
            return self._jitter(self.poll_interval)
        if not self.failures:
            return 0.0
        remaining = max(0.0, self._retry_at - time.monotonic())
        if self.abandoned:
            return min(remaining, self._jitter(self.poll_interval))
        return remaining

    def write_once(self, due: float | None = None) -> Write | None:
        """Make one attempt and journal it; None if it is not due yet or too many calls hang.

        ``due`` is when the attempt was scheduled to start (epoch seconds), journaled with it.
        """
        if self.blocked():
            return None
        if self._conn is None and self.failures and time.monotonic() < self._retry_at:
            return None  # woken early to collect a late connection, but none came back
        self.seq += 1
        start = time.time()
        began = time.perf_counter()
        try:
            outcome, server_ts, error = self._attempt()
        except BaseException:
            # Stopped mid-call (Locust kills user greenlets on stop): the insert may
            # have reached the server, so journal it as unknown before unwinding.
            self._conn = None
            self._journal(start, began, "info", None, "Interrupted", due)
            raise
        return self._journal(start, began, outcome, server_ts, error, due)

    def _journal(
        self,
        start: float,
        began: float,
        outcome: Outcome,
        server_ts: float | None,
        error: str | None,
        due: float | None = None,
    ) -> Write:
        latency = time.perf_counter() - began
        record = Write(
            tenant=self.tenant.name,
            writer=self.writer,
            seq=self.seq,
            start=start,
            end=start + latency,
            latency=latency,
            outcome=outcome,
            server_ts=server_ts,
            error=error,
            due=due,
        )
        self.journal.write(record)
        if self.metrics is not None:
            self.metrics.observe(record.tenant, outcome, latency, record.end)
        self.failures = 0 if outcome == "ok" else self.failures + 1
        if self.failures:
            ceiling = min(self.backoff_cap, 0.025 * 2 ** min(self.failures, 10))
            self._retry_at = time.monotonic() + self._jitter(ceiling)
        return record

    def _jitter(self, ceiling: float) -> float:
        """Half of ``ceiling`` plus a uniformly random part of the other half."""
        return ceiling / 2 + self.rng.uniform(0.0, ceiling / 2)

    def close(self) -> None:
        """Close the connection and any handed-back ones (in worker threads, bounded)."""
        conn, self._conn = self._conn, None
        self._discard(conn)
        while self._late:
            self._discard(self._late.popleft())

    # -- internals --------------------------------------------------------------------

    def _settle(self, session: _Session | None, value: Any) -> None:
        """Runs in a worker thread when an abandoned call finally returns.

        ``session`` is the connection the call used (None for a connect, whose result
        ``value`` is the new session; ``value`` is None when the call raised). A
        session whose call succeeded works and is handed back; any other is closed.
        """
        live = value if session is None else session
        if not isinstance(live, _Session) or value is None:
            _close(live)
            live = None
        self._late.append(live)

    def _collect(self) -> None:
        """Count abandoned calls that have returned; adopt a working connection if needed."""
        while self._late:
            session = self._late.popleft()
            self.abandoned = max(0, self.abandoned - 1)
            if session is None:
                continue
            if self._conn is None:
                if not session.clock_journaled:
                    self.journal.clock(session.clock)
                    session.clock_journaled = True
                self._conn = session
            else:
                self._discard(session)

    def _call(self, fn: Any, timeout: float, session: _Session | None) -> Any:
        try:
            return self.offload.run(fn, timeout, cleanup=lambda value: self._settle(session, value))
        except CallTimeout:
            self.abandoned += 1
            raise

    def _attempt(self) -> tuple[Outcome, float | None, str | None]:
        if self._conn is None:
            try:
                self._conn = self._call(self._connect, self.connect_timeout, None)
                self.journal.clock(self._conn.clock)
                self._conn.clock_journaled = True
            except CallTimeout:
                return "fail", None, "ConnectTimeout"
            except pyodbc.Error as exc:
                return "fail", None, classify(exc, self._sql)[1]
        conn = self._conn
        params = (self.run_id, self.tenant.name, self.writer, self.seq)
        try:
            row = self._call(
                lambda: conn.cursor.execute(self._sql.insert, params).fetchone(), self.write_timeout, conn
            )
        except CallTimeout:
            self._conn = None
            return "info", None, "WriteTimeout"
        except pyodbc.Error as exc:
            definite, label = classify(exc, self._sql)
            if not definite:
                self._drop()
            return ("fail" if definite else "info"), None, label
        if row is None:
            self._drop()
            return "info", None, "NoRowReturned"
        return "ok", float(row[0]), None

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._discard(conn)

    def _discard(self, session: _Session | None) -> None:
        """Close ``session`` in a worker thread; a close that hangs is abandoned, and counted back."""
        if session is not None:
            with contextlib.suppress(CallTimeout):
                self._call(lambda: _close(session), self.write_timeout, None)

    def _connect(self) -> _Session:
        """Open a connection, ensure the table, sample the clock skew.

        Runs in a worker thread, so it must not touch the journal: its lock belongs to
        the event loop (gevent patches ``threading``), and taking it from another OS
        thread can hang that user for good.
        """
        # ODBC login timeouts are whole seconds: round up, so the driver never gives up
        # before the harness does (psqlODBC hands it to libpq, which waits at least 2 s).
        login_timeout = max(1, math.ceil(self.connect_timeout))
        conn = pyodbc.connect(self._conn_str, autocommit=True, timeout=login_timeout)
        try:
            if not self._table_ready:
                with contextlib.suppress(pyodbc.Error):  # a concurrent writer made it; the insert will tell
                    conn.execute(self._sql.create_table)
                self._table_ready = True
            before = time.time()
            server = float(conn.execute(self._sql.server_now).fetchone()[0])
            after = time.time()
        except pyodbc.Error:
            _close(conn)
            raise
        sample = ClockSample(
            tenant=self.tenant.name, at=after, skew=server - (before + after) / 2, rtt=after - before
        )
        return _Session(conn, sample)

    def __repr__(self) -> str:
        return redact(f"TenantWriter({self.tenant.describe()}, writer={self.writer}, seq={self.seq})")
