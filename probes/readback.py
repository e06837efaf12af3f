"""Read every row back from each tenant after the run, for the lost-write check.

The result is stored as ``<run>/readback.json`` so the analysis (and anyone auditing
it) works from a file, not from a database that may have changed since. A tenant that
cannot be read is recorded with its error and no rows: its loss is then unknown, and
the report says so instead of counting zero. So is a lab's tenant whose server turns
out to be another lab's (:mod:`loadgen.identity`): its rows are not this run's to count.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyodbc

from loadgen.dialects import dialect
from loadgen.identity import WrongServer, connect_tenant
from loadgen.tenants import Tenant, redact
from probes.errors import ProbeError
from probes.model import ReadBack

__all__ = ["load_readback", "read_back", "read_back_tenant", "save_readback"]


def read_back_tenant(tenant: Tenant, run_id: str, timeout: int = 10) -> ReadBack:
    """Every ``(writer, seq) -> server time`` row of this run in one tenant."""
    sql = dialect(tenant.dialect)
    try:
        conn = connect_tenant(tenant, timeout)
        try:
            rows = conn.execute(sql.read_back, (run_id, tenant.name)).fetchall()
        finally:
            conn.close()
    except WrongServer as exc:
        return ReadBack(tenant=tenant.name, rows={}, read_at=time.time(), error=str(exc))
    except pyodbc.Error as exc:
        message = redact(str(exc.args[-1] if exc.args else exc)).splitlines()[0]
        return ReadBack(tenant=tenant.name, rows={}, read_at=time.time(), error=message)
    return ReadBack(
        tenant=tenant.name, rows={(int(w), int(s)): float(ts) for w, s, ts in rows}, read_at=time.time()
    )


def read_back(tenants: list[Tenant], run_id: str) -> dict[str, ReadBack]:
    """:func:`read_back_tenant` for every tenant, keyed by tenant name."""
    return {t.name: read_back_tenant(t, run_id) for t in tenants}


def save_readback(path: Path, readbacks: dict[str, ReadBack]) -> None:
    """Write ``readback.json``: ``{tenant: {"read_at", "error", "rows": [[writer, seq, ts], ...]}}``."""
    doc = {
        name: {
            "read_at": rb.read_at,
            "error": rb.error,
            "rows": sorted([w, s, ts] for (w, s), ts in rb.rows.items()),
        }
        for name, rb in readbacks.items()
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")))
    tmp.replace(path)


def load_readback(path: Path) -> dict[str, ReadBack]:
    """Read ``readback.json``; a missing file means nothing was read back (empty dict)."""
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
        return {
            name: ReadBack(
                tenant=name,
                read_at=float(entry["read_at"]),
                error=entry.get("error"),
                rows={(int(w), int(s)): float(ts) for w, s, ts in entry["rows"]},
            )
            for name, entry in doc.items()
        }
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ProbeError(
            f"{path} is not a valid read-back file ({exc}): delete it and read back again"
        ) from None
