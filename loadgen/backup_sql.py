"""The SQL of backup checks and point-in-time restore validation, per dialect.

Beside :mod:`loadgen.dialects` (the load's own statements, unchanged). Every statement
uses ``?`` parameters (ODBC style); server times are seconds since the epoch, UTC, as
there. ``read_rows`` returns ``run_id, tenant, writer, seq, written_at`` of one run,
``count_until`` counts every row (any run) stamped at or before a time.

``mssql`` adds the SQL Server side a real cluster needs: ``backup_history`` reads
``msdb.dbo.backupset`` (with the backup file from ``backupmediafamily``) in chain order
(``first_lsn``, then finish time) with the checksum and damage flags;
``restore_database`` / ``restore_log`` / ``restore_log_norecovery`` are the T-SQL a
point-in-time restore runs (the database name is formatted in with
:func:`quote_name`, the file and ``STOPAT`` are parameters); ``verify_only`` checks a
backup file's checksums without restoring it. RESTORE statements must run with
autocommit on, and the caller must drain every result set (``while cursor.nextset()``)
or the server stops at the first progress message. ``postgresql`` (the lab) has no
equivalent: the lab's executor restores, so those fields are ``None`` there.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadgen.dialects import TABLE
from loadgen.errors import LoadgenError

__all__ = ["BACKUP_SQL", "BackupSql", "backup_sql", "quote_name"]

_MSSQL_EPOCH = "CAST(DATEDIFF_BIG(microsecond, '19700101', written_at) AS float) / 1000000.0"
_PG_EPOCH = "extract(epoch FROM written_at)::float8"


@dataclass(frozen=True)
class BackupSql:
    """Backup and restore-validation SQL for one engine (``None``: the engine has no such statement)."""

    name: str
    read_rows: str
    count_until: str
    backup_history: str | None = None
    restore_database: str | None = None
    restore_log: str | None = None
    restore_log_norecovery: str | None = None
    verify_only: str | None = None


POSTGRESQL = BackupSql(
    name="postgresql",
    read_rows=f"SELECT run_id, tenant, writer, seq, {_PG_EPOCH} FROM {TABLE} WHERE run_id = ?",
    count_until=f"SELECT COUNT(*) FROM {TABLE} WHERE {_PG_EPOCH} <= ?",
)

MSSQL = BackupSql(
    name="mssql",
    read_rows=f"SELECT run_id, tenant, writer, seq, {_MSSQL_EPOCH} FROM dbo.{TABLE} WHERE run_id = ?",
    count_until=f"SELECT COUNT_BIG(*) FROM dbo.{TABLE} WHERE {_MSSQL_EPOCH} <= ?",
    backup_history=(
        "SELECT b.type, b.backup_start_date, b.backup_finish_date, b.first_lsn, b.last_lsn, "
        "b.has_backup_checksums, b.is_damaged, m.physical_device_name "
        "FROM msdb.dbo.backupset AS b "
        "JOIN msdb.dbo.backupmediafamily AS m ON m.media_set_id = b.media_set_id "
        "WHERE b.database_name = ? AND b.type IN ('D', 'L') "
        "ORDER BY b.first_lsn, b.backup_finish_date"
    ),
    restore_database="RESTORE DATABASE {database} FROM DISK = ? WITH NORECOVERY, CHECKSUM",
    restore_log="RESTORE LOG {database} FROM DISK = ? WITH STOPAT = ?, RECOVERY",
    restore_log_norecovery="RESTORE LOG {database} FROM DISK = ? WITH STOPAT = ?, NORECOVERY",
    verify_only="RESTORE VERIFYONLY FROM DISK = ? WITH CHECKSUM",
)

BACKUP_SQL: dict[str, BackupSql] = {d.name: d for d in (POSTGRESQL, MSSQL)}


def backup_sql(name: str) -> BackupSql:
    """The backup SQL of dialect ``name``; LoadgenError naming the known ones otherwise."""
    try:
        return BACKUP_SQL[name]
    except KeyError:
        raise LoadgenError(
            f"unknown SQL dialect {name!r}: use one of {', '.join(sorted(BACKUP_SQL))}"
        ) from None


def quote_name(name: str) -> str:
    """A T-SQL delimited identifier: ``harness`` -> ``[harness]``, ``a]b`` -> ``[a]]b]``."""
    if not name or len(name) > 128:
        raise LoadgenError(f"database name {name!r} must have 1 to 128 characters")
    return "[" + name.replace("]", "]]") + "]"
