"""The little SQL the harness issues, per database dialect.

Each write inserts one unique ``(run_id, tenant, writer, seq)`` row stamped with the
server's clock and returns that stamp (``RETURNING`` / ``OUTPUT INSERTED``), so the
journal holds the server time of every acknowledged write. Server times come back as
seconds since the Unix epoch, UTC, in both dialects.

``postgresql`` runs here against the lab's stand-in servers through psqlODBC.
``mssql`` is T-SQL for SQL Server (Microsoft ODBC Driver 18 or FreeTDS); no SQL Server
can run on the lab machine, so its statements are checked by parsing them as T-SQL.

Each dialect also says which errors are *definite* (``Dialect.definite_states``): the
SQLSTATEs, as pyodbc reports them in ``exc.args[0]``, that prove the insert did not take
effect, so the writer may journal the attempt as ``fail``. Anything else (a lost
connection, a timeout, a general error) is ``info``: the server may have committed the
row, and calling it failed would make a row found later look like a bug in the database.
Entries of two characters are SQLSTATE classes, entries of five are exact codes. When in
doubt a state is left out: an ``info`` that did fail costs nothing, a ``fail`` that did
commit is a false accusation.

PostgreSQL through psqlODBC: the driver passes the server's own SQLSTATE through
(checked here: 23505 duplicate key, 42601 syntax, 42P01 undefined table, 22012 division
by zero, 22P02 bad input, 40001 serialization failure, 57P01 terminated by an
administrator; a server killed mid-call gives 08S01). Definite: class 22 (data
exception), 23 (integrity constraint violation), 42 (syntax error or access rule
violation), 28 (invalid authorization), 3D (invalid catalog name: no such database),
and in class 40 only the codes after which PostgreSQL has rolled the transaction back:
40001 serialization failure, 40P01 deadlock detected, 40002 integrity constraint
violation at commit. Never 40003 "statement completion unknown", and never 40000 or
another code of class 40 whose outcome is not stated. Source: PostgreSQL 15 manual,
appendix A "PostgreSQL Error Codes".

SQL Server sends native error numbers, not SQLSTATEs; the ODBC driver maps them:

- Microsoft ODBC Driver 18: 1205 (chosen as deadlock victim, transaction rolled back)
  to 40001; 2627/2601 (duplicate key), 547 (constraint conflict), 515 (NULL into a NOT
  NULL column) to 23000; 8152/2628 (truncation) to 22001, 8115 (overflow) to 22003, 245
  (conversion) to 22018; 102 (syntax), 229 (permission denied) and 4060 (cannot open
  the database) to 42000; 208 (invalid object) to 42S02, 207 (invalid column) to
  42S22; 18456 (login failed) to 28000. A server error with no SQLSTATE of its own
  (RAISERROR and THROW among them) is 37000, which ODBC 3 calls 42000. A broken
  connection is 08S01 (communication link failure), a query or login timeout HYT00,
  and driver-level trouble HY000 (general error): none of those is definite.
- FreeTDS (``src/tds/mem.c`` ``tds_alloc_lookup_sqlstate``, ``src/odbc/odbc.c``
  ``odbc_errmsg_handler``, ``src/odbc/error.c`` ``sqlstate2to3``): 2627/2601/547/515 to
  23000, 8152 to 22001, 102 to 37000 and 208 to 42S02 (reported as 42000 and 42S02 under
  the ODBC 3 behaviour pyodbc asks for), 18456 to 28000; any server error without an
  entry (1205 among them) and of severity above 10 to 42000. Its own errors: 08S01 for
  a failed read or write, HYT00 (S1T00) for timeouts. It reports 22003 as HY019, which
  is then left as unknown.

So for SQL Server the definite states are classes 22, 23, 28 and 42, and 40001/40002.
Every one of them is an error the server raised for the statement itself, which with
autocommit rolls the statement back. Sources: Microsoft's "Appendix A: ODBC Error
Codes" (ODBC 3 SQLSTATEs), the SQL Server ODBC driver's "SQLSTATE (ODBC Error Codes)"
page (native errors without an ODBC code become 37000), the ``MSSQLSERVER_<n>``
Database Engine error pages (1205: "rolling back the victim's transaction") and the
FreeTDS sources named above.

**Commit times** (``Dialect.read_back_committed``: ``writer, seq, written_at,
committed_at`` of one run and tenant). A point-in-time restore keeps the transactions
that *committed* at or before its target time, but a row's ``written_at`` is stamped
inside its transaction, a little before the commit. Where the engine can say when each
row's transaction committed, the restore validation judges the row by that and needs no
window at all.

- PostgreSQL: ``pg_xact_commit_timestamp(xmin)``, the time of the commit record that
  ``recovery_target_time`` is compared with, to the microsecond. It is kept only while
  ``track_commit_timestamp`` is on (the lab's servers turn it on, ``lab/engine.py``);
  a restored server has it for replayed rows only if it was on where the WAL was
  written and is on in the restored server. While it is off the column is NULL (the
  ``CASE`` keeps the function from raising); it is also NULL for a transaction that
  committed while the setting was off.
- SQL Server keeps no commit time per row that T-SQL can read: the commit records are
  in the transaction log, which no supported statement maps to rows. Change tracking
  (``CHANGETABLE`` versions joined to ``sys.dm_tran_commit_table``) or change data
  capture (``cdc.lsn_time_mapping``) would give one, but only if switched on for the
  database and table before the writes, which the harness does not require of a
  tenant. So ``committed_at`` is always NULL there, and the validation falls back to
  each write's latency window (from its stamp to its acknowledgement). ``RESTORE LOG
  ... WITH STOPAT`` also stops at "the latest transaction commit at or before the
  datetime value": a ``datetime``, whose resolution is 1/300 s, so the restore point
  is only that precise (``Dialect.restore_resolution``).
"""

from __future__ import annotations

from dataclasses import dataclass

from loadgen.errors import LoadgenError

__all__ = ["DIALECTS", "Dialect", "dialect"]

TABLE = "harness_writes"


@dataclass(frozen=True)
class Dialect:
    """SQL text for one engine; every statement uses ``?`` parameters (ODBC style).

    ``definite_states``: SQLSTATE classes (two characters) and exact codes (five) that
    prove a statement did not take effect (see the module docstring for why each is
    there). ``read_back_committed``: ``read_back`` plus each row's commit time (epoch
    seconds, NULL where the engine cannot say). ``restore_resolution``: how finely a
    point-in-time restore of this engine places its target time, in seconds.
    ``read_back_first`` / ``read_back_after``: the streamed read-back's pages (see
    :meth:`read_back_page`), each with the names of its parameters in order
    (``run_id``, ``tenant``, ``writer``, ``seq``, ``limit``), because T-SQL's ``TOP (?)``
    comes before the ``WHERE`` clause and PostgreSQL's ``LIMIT ?`` after it.
    """

    name: str
    create_table: str
    insert: str
    read_back: str
    read_back_committed: str
    server_now: str
    read_back_first: str
    read_back_after: str
    read_back_first_args: tuple[str, ...]
    read_back_after_args: tuple[str, ...]
    definite_states: tuple[str, ...] = ()
    restore_resolution: float = 1e-6

    def read_back_page(
        self, run_id: str, tenant: str, after: tuple[int, int] | None, limit: int
    ) -> tuple[str, tuple[object, ...]]:
        """One page of the read-back: ``(statement, parameters)`` for the ``limit`` rows after key ``after``.

        Rows come as ``writer, seq`` in key order; ``after`` None is the first page.
        Keyset pagination: each page starts where the previous one ended, on the
        primary key's order, so it costs the same however deep into the table it is.
        """
        if after is None:
            statement, names = self.read_back_first, self.read_back_first_args
        else:
            statement, names = self.read_back_after, self.read_back_after_args
        values: dict[str, object] = {"run_id": run_id, "tenant": tenant, "limit": limit}
        if after is not None:
            values["writer"], values["seq"] = after
        return statement, tuple(values[name] for name in names)

    def definite(self, state: str) -> bool:
        """True if SQLSTATE ``state`` proves the statement did not take effect."""
        state = state.upper()
        return any(
            state == entry if len(entry) == 5 else state[:2] == entry for entry in self.definite_states
        )


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
    read_back_committed=(
        "SELECT writer, seq, extract(epoch FROM written_at)::float8, "
        "CASE WHEN current_setting('track_commit_timestamp') = 'on' "
        "THEN extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 END "
        f"FROM {TABLE} WHERE run_id = ? AND tenant = ?"
    ),
    server_now="SELECT extract(epoch FROM clock_timestamp())::float8",
    read_back_first=(
        f"SELECT writer, seq FROM {TABLE} WHERE run_id = ? AND tenant = ? ORDER BY writer, seq LIMIT ?"
    ),
    # A row comparison: the planner turns it into one index range condition on the key.
    read_back_after=(
        f"SELECT writer, seq FROM {TABLE} WHERE run_id = ? AND tenant = ? AND (writer, seq) > (?, ?) "
        "ORDER BY writer, seq LIMIT ?"
    ),
    read_back_first_args=("run_id", "tenant", "limit"),
    read_back_after_args=("run_id", "tenant", "writer", "seq", "limit"),
    definite_states=("22", "23", "28", "3D", "42", "40001", "40002", "40P01"),
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
    # No per-row commit time without change tracking or CDC (module docstring): always NULL.
    read_back_committed=(
        "SELECT writer, seq, "
        "CAST(DATEDIFF_BIG(microsecond, '19700101', written_at) AS float) / 1000000.0, "
        "CAST(NULL AS float) "
        f"FROM dbo.{TABLE} WHERE run_id = ? AND tenant = ?"
    ),
    server_now="SELECT CAST(DATEDIFF_BIG(microsecond, '19700101', SYSUTCDATETIME()) AS float) / 1000000.0",
    # pyodbc sends str parameters as nvarchar; against varchar key columns under a SQL collation
    # that conversion can turn the seek into a scan, so the pages cast them to the columns' type.
    read_back_first=(
        f"SELECT TOP (?) writer, seq FROM dbo.{TABLE} "
        "WHERE run_id = CAST(? AS varchar(64)) AND tenant = CAST(? AS varchar(128)) ORDER BY writer, seq"
    ),
    # T-SQL has no row comparison; "writer >= ?" gives the optimizer a seek predicate on the key.
    read_back_after=(
        f"SELECT TOP (?) writer, seq FROM dbo.{TABLE} "
        "WHERE run_id = CAST(? AS varchar(64)) AND tenant = CAST(? AS varchar(128)) "
        "AND writer >= ? AND (writer > ? OR (writer = ? AND seq > ?)) ORDER BY writer, seq"
    ),
    read_back_first_args=("limit", "run_id", "tenant"),
    read_back_after_args=("limit", "run_id", "tenant", "writer", "writer", "writer", "seq"),
    definite_states=("22", "23", "28", "42", "40001", "40002"),
    restore_resolution=1 / 300,
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
