"""Read every row back from each tenant after the run, for the lost-write check.

The result is stored as ``<run>/readback.json`` so the analysis (and anyone auditing
it) works from a file, not from a database that may have changed since. A tenant that
cannot be read is recorded with its error and no rows: its loss is then unknown, and
the report says so instead of counting zero. So is a lab's tenant whose server turns
out to be another lab's (:mod:`loadgen.identity`): its rows are not this run's to count.

The rows stream: pages of :data:`PAGE_ROWS` by keyset pagination on ``(writer, seq)``
(the primary key's order, so each page is an index range scan), folded into ranges of
consecutive keys as they arrive. Memory grows with the number of ranges (a handful per
writer, plus one per gap), never with the number of rows, so a soak's 86 million rows
read back like a short run's thousand.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pyodbc

from loadgen.dialects import Dialect, dialect
from loadgen.identity import WrongServer, connect_tenant
from loadgen.tenants import Tenant, redact
from probes.errors import ProbeError
from probes.model import Range, ReadBack

__all__ = ["PAGE_ROWS", "load_readback", "read_back", "read_back_tenant", "save_readback"]

PAGE_ROWS = 50_000
"""Rows per read-back page: one round trip each, and the most a page holds in memory."""

_FETCH = 5_000  # rows taken from the cursor at a time


class _OutOfOrder(Exception):
    """The server returned keys out of ``(writer, seq)`` order: the ranges would be wrong."""


class _Folder:
    """Keys in ascending order folded into ranges of consecutive sequence numbers."""

    def __init__(self) -> None:
        self.ranges: list[Range] = []
        self.last: tuple[int, int] | None = None

    def add(self, writer: int, seq: int) -> None:
        if self.last is not None and (writer, seq) <= self.last:
            raise _OutOfOrder(f"row {(writer, seq)} came after {self.last}")
        ranges = self.ranges
        if ranges and ranges[-1][0] == writer and ranges[-1][2] == seq - 1:
            ranges[-1] = (writer, ranges[-1][1], seq)
        else:
            ranges.append((writer, seq, seq))
        self.last = (writer, seq)


def _pages(conn: Any, sql: Dialect, run_id: str, tenant: str, page_rows: int, folder: _Folder) -> None:
    """Fold every row of ``run_id`` in ``tenant`` into ``folder``, a page at a time."""
    while True:
        statement, params = sql.read_back_page(run_id, tenant, folder.last, page_rows)
        cursor = conn.execute(statement, params)
        taken = 0
        while rows := cursor.fetchmany(_FETCH):
            for writer, seq in rows:
                folder.add(int(writer), int(seq))
            taken += len(rows)
        if taken < page_rows:
            return


def read_back_tenant(tenant: Tenant, run_id: str, timeout: int = 10, page_rows: int = PAGE_ROWS) -> ReadBack:
    """Every ``(writer, seq)`` row of this run in one tenant, as ranges.

    ``page_rows`` is the page size (rows per query). A failure is recorded as the
    tenant's ``error`` (one line, passwords redacted), never raised.
    """
    if page_rows < 1:
        raise ProbeError(f"read-back page size {page_rows} is not a positive number of rows: use e.g. 50000")
    sql = dialect(tenant.dialect)
    folder = _Folder()
    try:
        conn = connect_tenant(tenant, timeout)
        try:
            _pages(conn, sql, run_id, tenant.name, page_rows, folder)
        finally:
            conn.close()
    except WrongServer as exc:
        return ReadBack(tenant=tenant.name, ranges=(), read_at=time.time(), error=str(exc))
    except pyodbc.Error as exc:
        message = redact(str(exc.args[-1] if exc.args else exc)).splitlines()[0]
        return ReadBack(tenant=tenant.name, ranges=(), read_at=time.time(), error=message)
    except _OutOfOrder as exc:
        return ReadBack(
            tenant=tenant.name,
            ranges=(),
            read_at=time.time(),
            error=f"the server returned rows out of key order ({exc}): its read-back cannot be trusted",
        )
    return ReadBack(tenant=tenant.name, ranges=tuple(folder.ranges), read_at=time.time())


def read_back(tenants: list[Tenant], run_id: str) -> dict[str, ReadBack]:
    """:func:`read_back_tenant` for every tenant, keyed by tenant name."""
    return {t.name: read_back_tenant(t, run_id) for t in tenants}


def save_readback(path: Path, readbacks: dict[str, ReadBack]) -> None:
    """Write ``readback.json``: ``{tenant: {"read_at", "error", "ranges": [[writer, first, last], ...]}}``."""
    doc = {
        name: {"read_at": rb.read_at, "error": rb.error, "ranges": [list(r) for r in rb.ranges]}
        for name, rb in readbacks.items()
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")))
    tmp.replace(path)


def _entry(name: str, entry: dict[str, Any]) -> ReadBack:
    read_at, error = float(entry["read_at"]), entry.get("error")
    if "ranges" in entry:
        return ReadBack(
            tenant=name, ranges=tuple(tuple(r) for r in entry["ranges"]), read_at=read_at, error=error
        )
    # Written before read-backs were ranges: one [writer, seq, server time] per row.
    return ReadBack.of_keys(name, ((int(w), int(s)) for w, s, _ in entry["rows"]), read_at, error)


def load_readback(path: Path) -> dict[str, ReadBack]:
    """Read ``readback.json`` (ranges, or the older per-row form); no file: nothing was read back."""
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
        return {name: _entry(name, entry) for name, entry in doc.items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProbeError(
            f"{path} is not a valid read-back file ({exc}): delete it and read back again"
        ) from None
