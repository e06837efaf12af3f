"""One writer's connection to its tenant: connect, check the server's lab, sample the clock, classify errors.

Everything here blocks and runs in the writer's own OS thread (:mod:`loadgen.writer`).
A lab's tenant (``lab_id``) is checked before anything is written: a server of another
lab raises :class:`loadgen.identity.WrongServer`.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import pyodbc

from loadgen.dialects import Dialect
from loadgen.identity import check_identity
from loadgen.journal import ClockSample
from loadgen.tenants import Tenant

__all__ = ["Session", "classify", "close_quietly", "connect"]


def classify(exc: BaseException, sql: Dialect) -> tuple[bool, str]:
    """``(definite, label)`` for a pyodbc error: definite means the write surely failed.

    Which SQLSTATEs are definite depends on the database and its driver, so the
    tenant's dialect decides (:attr:`loadgen.dialects.Dialect.definite_states`).
    """
    state = str(exc.args[0]) if exc.args else ""
    label = f"{type(exc).__name__}:{state}" if state else type(exc).__name__
    return bool(state) and sql.definite(state), label


class Session:
    """A connection and the one cursor every write reuses.

    Reusing the cursor keeps psqlODBC's prepared insert: one round trip per write instead
    of four (Parse, Describe, Execute, Deallocate), as measured by ``make bench``.
    """

    def __init__(self, conn: Any, clock: ClockSample) -> None:
        self.conn = conn
        self.cursor = conn.cursor()
        self.clock = clock
        self.clock_journaled = False

    def close(self) -> None:
        try:
            self.cursor.close()
        finally:
            self.conn.close()


def close_quietly(conn: Any) -> None:
    """Close a connection or :class:`Session`, ignoring the driver's complaints."""
    with contextlib.suppress(pyodbc.Error):
        if conn is not None:
            conn.close()


def connect(tenant: Tenant, sql: Dialect, conn_str: str, timeout: float, create_table: bool) -> Session:
    """Open a connection, check its lab (WrongServer), create the table if asked, sample the clock skew."""
    # ODBC login timeouts are whole seconds: round up, so the driver never gives up
    # before the harness does (psqlODBC hands it to libpq, which waits at least 2 s).
    login_timeout = max(1, math.ceil(timeout))
    conn = pyodbc.connect(conn_str, autocommit=True, timeout=login_timeout)
    try:
        check_identity(conn, tenant)
        if create_table:
            with contextlib.suppress(pyodbc.Error):  # a concurrent writer made it; the insert will tell
                conn.execute(sql.create_table)
        before = time.time()
        server = float(conn.execute(sql.server_now).fetchone()[0])
        after = time.time()
    except BaseException:
        close_quietly(conn)
        raise
    sample = ClockSample(tenant=tenant.name, at=after, skew=server - (before + after) / 2, rtt=after - before)
    return Session(conn, sample)
