"""Is the server on a tenant's port really that tenant's? The lab identity check.

Two labs on one machine hand their tenants ports from separate blocks, but a port can
still change hands (a lab whose block went to another lab, a stray server). So a tenant
entry from a lab carries ``lab_id`` (its lab's id, from ``tenants.json``), and each
tenant database of a lab holds its lab's id in the table ``harness_identity`` (written
by the lab's engine). On every new connection to such a tenant, before anything is
written, :func:`check_identity` runs one query, :data:`IDENTITY_QUERY`, and raises
:class:`WrongServer` (naming the tenant, the expected and the found lab id, and the fix)
when the server holds another id, several, or none (the table missing or unreadable).
Tenants without ``lab_id`` (real SQL Server instances) are not queried at all.

:func:`connect_tenant` is the connection the probes use: connect, then check.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pyodbc

from loadgen.errors import LoadgenError
from loadgen.tenants import Tenant, redact

__all__ = ["IDENTITY_QUERY", "WrongServer", "check_identity", "connect_tenant"]

IDENTITY_QUERY = "SELECT lab_id FROM harness_identity"


class WrongServer(LoadgenError):
    """The server on a tenant's port is not known to belong to the tenant's lab."""

    def __init__(self, tenant: Tenant, found: list[str], why: str = "") -> None:
        expected = tenant.lab_id or ""
        if found:
            ids = ", ".join(found)
            text = (
                f"tenant {tenant.describe()}: the server there belongs to lab {ids}, not to lab {expected} "
                "the tenant was found in: another lab's server holds the port, so the harness refuses it: "
                "stop the other lab, or run `python -m lab up` in this lab and discover its tenants again"
            )
        else:
            text = (
                f"tenant {tenant.describe()}: the server there records no lab id (table harness_identity "
                f"{why or 'is empty'}), expected lab {expected}: the harness refuses a server not known to "
                "be its lab's: if it is this lab's tenant, restart its pod so its engine records the id; "
                f"otherwise stop whatever else listens on port {tenant.port}"
            )
        super().__init__(text)
        self.tenant = tenant.name
        self.expected = expected
        self.found = found


def check_identity(conn: Any, tenant: Tenant) -> None:
    """WrongServer unless the server holds exactly ``tenant.lab_id``; nothing to do without one.

    A SQLSTATE of class 42 (the table is missing, or the user may not read it) is an
    unknown identity; any other driver error (the connection broke) is raised as it is.
    """
    if not tenant.lab_id:
        return
    try:
        rows = conn.execute(IDENTITY_QUERY).fetchall()
    except pyodbc.Error as exc:
        state = str(exc.args[0]) if exc.args else ""
        if not state.startswith("42"):
            raise
        text = redact(str(exc.args[-1] if exc.args else exc)).splitlines()
        raise WrongServer(tenant, [], f"unreadable: {text[0].strip() if text else state}") from None
    found = sorted({str(row[0]) for row in rows})
    if found != [tenant.lab_id]:
        raise WrongServer(tenant, found)


def connect_tenant(tenant: Tenant, timeout: int) -> Any:
    """A pyodbc connection (autocommit) to ``tenant`` whose identity was checked; closed on failure."""
    conn = pyodbc.connect(tenant.connection_string(), autocommit=True, timeout=timeout)
    try:
        check_identity(conn, tenant)
    except BaseException:
        with contextlib.suppress(pyodbc.Error):
            conn.close()
        raise
    return conn
