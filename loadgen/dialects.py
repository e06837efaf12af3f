"""The little SQL the harness issues, per database dialect.

Each write inserts one unique ``(run_id, tenant, writer, seq)`` row stamped with the
server's clock and returns that stamp (``RETURNING`` / ``OUTPUT INSERTED``), so the
journal holds the server time of every acknowledged write. Server times come back as
seconds since the Unix epoch, UTC, in both dialects.

``postgresql`` runs here against the lab's stand-in servers through psqlODBC.
``mssql`` is T-SQL for SQL Server (Microsoft ODBC Driver 18 or FreeTDS); no SQL Server
can run on the lab machine, so its statements are checked by parsing them as T-SQL.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadgen.errors import LoadgenError

__all__ = ["DIALECTS", "Dialect", "dialect"]

TABLE = "harness_writes"


@dataclass(frozen=True)
class Dialect:
    """SQL text for one engine; every statement uses ``?`` parameters (ODBC style)."""

    name: str
    create_table: str
    insert: str
    read_back: str
    server_now: str


POSTGRESQL = Dialect(
    name="postgresql",
    create_table=(
        f"CREATE TABLE IF NOT EXISTS {TABLE} ("
        "run_id varchar(64) NOT NULL, tenant varchar(128) NOT NULL, "
        "writer integer NOT NULL, seq bigint NOT NULL, "
        "written_at timestamptz NOT NULL DEFAULT clock_timestamp(), "
        "PRIMARY KEY (run_id, tenant, writer, seq))"
    ),
    insert=(
        f"INSERT INTO {TABLE} (run_id, tenant, writer, seq) VALUES (?, ?, ?, ?) "
        "RETURNING extract(epoch FROM written_at)::float8"
    ),
    read_back=(
        f"SELECT writer, seq, extract(epoch FROM written_at)::float8 FROM {TABLE} "
        "WHERE run_id = ? AND tenant = ?"
    ),
    server_now="SELECT extract(epoch FROM clock_timestamp())::float8",
)

MSSQL = Dialect(
    name="mssql",
    create_table=(
        f"IF OBJECT_ID(N'dbo.{TABLE}', N'U') IS NULL "
        f"CREATE TABLE dbo.{TABLE} ("
        "run_id varchar(64) NOT NULL, tenant varchar(128) NOT NULL, "
        "writer int NOT NULL, seq bigint NOT NULL, "
        "written_at datetime2(6) NOT NULL CONSTRAINT df_harness_writes_at DEFAULT SYSUTCDATETIME(), "
        "CONSTRAINT pk_harness_writes PRIMARY KEY (run_id, tenant, writer, seq))"
    ),
    insert=(
        f"INSERT INTO dbo.{TABLE} (run_id, tenant, writer, seq) "
        "OUTPUT CAST(DATEDIFF_BIG(microsecond, '19700101', INSERTED.written_at) AS float) / 1000000.0 "
        "VALUES (?, ?, ?, ?)"
    ),
    read_back=(
        "SELECT writer, seq, "
        "CAST(DATEDIFF_BIG(microsecond, '19700101', written_at) AS float) / 1000000.0 "
        f"FROM dbo.{TABLE} WHERE run_id = ? AND tenant = ?"
    ),
    server_now="SELECT CAST(DATEDIFF_BIG(microsecond, '19700101', SYSUTCDATETIME()) AS float) / 1000000.0",
)

DIALECTS: dict[str, Dialect] = {d.name: d for d in (POSTGRESQL, MSSQL)}


def dialect(name: str) -> Dialect:
    """The dialect called ``name``; LoadgenError naming the known ones otherwise."""
    try:
        return DIALECTS[name]
    except KeyError:
        raise LoadgenError(
            f"unknown SQL dialect {name!r}: use one of {', '.join(sorted(DIALECTS))}"
        ) from None
