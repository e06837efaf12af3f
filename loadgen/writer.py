"""One writer: a connection to one tenant and the loop body that writes and journals.

Each call of :meth:`TenantWriter.write_once` is one attempt with a fresh sequence
number, ending in exactly one journal line. Outcomes follow Jepsen's rules:

- ``ok``: the server returned the row's server timestamp;
- ``fail``: the write cannot have happened (no connection; the server rejected it
  with a definite error such as a constraint or syntax error);
- ``info``: it may or may not have happened (timeout, connection lost mid-call).

The connection is dropped after any error that may have broken it and is reopened on
the next attempt; the caller waits :meth:`TenantWriter.backoff` between failed attempts
(capped, so the end of an outage is seen within ``backoff_cap`` seconds).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pyodbc

from loadgen.dialects import dialect
from loadgen.journal import ClockSample, JournalWriter, Outcome, Write
from loadgen.metrics import LoadMetrics
from loadgen.offload import CallTimeout, Offload
from loadgen.tenants import Tenant, redact

__all__ = ["TenantWriter", "classify"]

# SQLSTATE classes that mean "the statement certainly did not take effect".
_DEFINITE = ("22", "23", "42", "40", "28", "3D")


def classify(exc: BaseException) -> tuple[bool, str]:
    """``(definite, label)`` for a pyodbc error: definite means the write surely failed."""
    state = str(exc.args[0]) if exc.args else ""
    label = f"{type(exc).__name__}:{state}" if state else type(exc).__name__
    return state[:2] in _DEFINITE, label


class _Session:
    """A connection and the one cursor every write reuses.

    Reusing the cursor keeps psqlODBC's prepared insert: one round trip per write instead
    of four (Parse, Describe, Execute, Deallocate), as measured by ``make bench``.
    """

    def __init__(self, conn: Any, clock: ClockSample) -> None:
        self.conn = conn
        self.cursor = conn.cursor()
        self.clock = clock  # journaled by the caller: worker threads never touch the journal

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
    ``seq`` it identifies a row. Not thread-safe: one writer belongs to one user.
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
        backoff_cap: float = 0.5,
        max_abandoned: int = 3,
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
        self.max_abandoned = max_abandoned
        self._sql = dialect(tenant.dialect)
        self._conn_str = tenant.connection_string()
        self._conn: Any = None
        self._table_ready = False
        self.seq = 0
        self.failures = 0
        self.abandoned = 0

    # -- the loop body ----------------------------------------------------------------

    def backoff(self) -> float:
        """Seconds to wait before the next attempt after consecutive failures (0 if none)."""
        if not self.failures:
            return 0.0
        return float(min(self.backoff_cap, 0.025 * 2 ** min(self.failures, 10)))

    def write_once(self) -> Write | None:
        """Make one attempt and journal it; None if too many calls are still hung."""
        if self.abandoned >= self.max_abandoned:
            return None
        self.seq += 1
        start = time.time()
        began = time.perf_counter()
        try:
            outcome, server_ts, error = self._attempt()
        except BaseException:
            # Stopped mid-call (Locust kills user greenlets on stop): the insert may
            # have reached the server, so journal it as unknown before unwinding.
            self._conn = None
            self._journal(start, began, "info", None, "Interrupted")
            raise
        return self._journal(start, began, outcome, server_ts, error)

    def _journal(
        self, start: float, began: float, outcome: Outcome, server_ts: float | None, error: str | None
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
        )
        self.journal.write(record)
        if self.metrics is not None:
            self.metrics.observe(record.tenant, outcome, latency, record.end)
        self.failures = 0 if outcome == "ok" else self.failures + 1
        return record

    def close(self) -> None:
        """Close the connection (in a worker thread, bounded by the write timeout)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(CallTimeout):
                self.offload.run(lambda: _close(conn), self.write_timeout)

    # -- internals --------------------------------------------------------------------

    def _abandon(self, conn: Any) -> None:
        self.abandoned = max(0, self.abandoned - 1)
        _close(conn)

    def _call(self, fn: Any, timeout: float, conn: Any) -> Any:
        try:
            return self.offload.run(fn, timeout, cleanup=lambda value: self._abandon(conn or value))
        except CallTimeout:
            self.abandoned += 1
            raise

    def _attempt(self) -> tuple[Outcome, float | None, str | None]:
        if self._conn is None:
            try:
                self._conn = self._call(self._connect, self.connect_timeout, None)
                self.journal.clock(self._conn.clock)
            except CallTimeout:
                return "fail", None, "ConnectTimeout"
            except pyodbc.Error as exc:
                return "fail", None, classify(exc)[1]
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
            definite, label = classify(exc)
            if not definite:
                self._drop()
            return ("fail" if definite else "info"), None, label
        if row is None:
            self._drop()
            return "info", None, "NoRowReturned"
        return "ok", float(row[0]), None

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                self.offload.run(lambda: _close(conn), self.write_timeout)
            except CallTimeout:
                self.abandoned += 1

    def _connect(self) -> _Session:
        """Open a connection, ensure the table, sample the clock skew.

        Runs in a worker thread, so it must not touch the journal: its lock belongs to
        the event loop (gevent patches ``threading``), and taking it from another OS
        thread can hang that user for good.
        """
        conn = pyodbc.connect(self._conn_str, autocommit=True, timeout=max(1, round(self.connect_timeout)))
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
