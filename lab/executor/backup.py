"""Full and log backups of a running instance into its store (see :mod:`lab.executor.store`).

The instance is reached like any client: ``LAB_DB_HOST``, ``LAB_DB_PORT``,
``LAB_DB_USER`` and ``PGPASSWORD`` (from the instance's credentials Secret). The role
needs ``REPLICATION`` (pg_basebackup) and ``EXECUTE`` on ``pg_switch_wal()``, which
the engine image grants.

Both are idempotent by backup id: a finished backup is reported again, not taken
twice; a full backup killed half-way leaves ``full/.<id>.partial``, which the retry
removes before starting over, and the finished folder appears by one rename.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.executor.store import META, BackupStore, checksum_of, format_ts, parse_ts, write_json
from lab.executor.wal import covered_ranges, expected_segments, segment_info
from lab.paths import pg_bindir

__all__ = ["Connection", "full_backup", "log_backup", "psql"]

ARCHIVE_TIMEOUT = 60.0


class Connection:
    """Where the instance is, from the environment."""

    def __init__(self, environ: dict[str, str]) -> None:
        missing = [
            k for k in ("LAB_DB_HOST", "LAB_DB_PORT", "LAB_DB_USER", "PGPASSWORD") if not environ.get(k)
        ]
        if missing:
            raise LabError(f"the job needs {', '.join(missing)} in its environment")
        self.host = environ["LAB_DB_HOST"]
        self.port = environ["LAB_DB_PORT"]
        self.user = environ["LAB_DB_USER"]
        self.env = {
            "PATH": environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "PGPASSWORD": environ["PGPASSWORD"],
            "PGCONNECT_TIMEOUT": "5",
        }

    def args(self) -> list[str]:
        return ["-h", self.host, "-p", self.port, "-U", self.user, "-w"]


def _run(argv: list[str], env: dict[str, str], what: str, stdin: str | None = None) -> str:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(f"{what} failed: {detail[-1] if detail else f'exit {proc.returncode}'}")
    return proc.stdout


def psql(conn: Connection, sql: str, database: str = "postgres") -> list[str]:
    """Run ``sql`` (statements separated by newlines, each its own transaction); rows as lines."""
    argv = [
        str(pg_bindir() / "psql"),
        "-X",
        "-A",
        "-t",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        *conn.args(),
        "-d",
        database,
    ]
    out = _run(argv, conn.env, "psql", stdin=sql)
    return [line for line in out.splitlines() if line.strip()]


def _lsns(folder: Path) -> tuple[str, str]:
    start = ""
    match = re.search(r"START WAL LOCATION: (\S+)", (folder / "backup_label").read_text())
    if match:
        start = match.group(1)
    manifest = json.loads((folder / "backup_manifest").read_text())
    ranges = manifest.get("WAL-Ranges") or [{}]
    return start or str(ranges[0].get("Start-LSN", "")), str(ranges[-1].get("End-LSN", ""))


def full_backup(store: BackupStore, backup_id: str, conn: Connection) -> dict[str, Any]:
    """Take full backup ``backup_id`` (or return the finished one)."""
    done = store.full(backup_id)
    if done is not None:
        return done
    final = store.full_dir(backup_id)
    partial = final.with_name(f".{backup_id}.partial")
    if final.exists():  # renamed but metadata lost: cannot happen by design, start over
        shutil.rmtree(final)
    if partial.exists():
        print(f"executor: removing the partial backup of an earlier attempt: {partial}", flush=True)
        shutil.rmtree(partial)
    partial.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    argv = [
        str(pg_bindir() / "pg_basebackup"),
        *conn.args(),
        "-D",
        str(partial),
        "-F",
        "p",
        "-X",
        "stream",
        "-c",
        "fast",
        "-l",
        backup_id,
    ]
    _run(argv, conn.env, "pg_basebackup")
    end = time.time()
    start_lsn, end_lsn = _lsns(partial)
    meta: dict[str, Any] = {
        "id": backup_id,
        "type": "full",
        "start": format_ts(start),
        "end": format_ts(end),
        "coveredFrom": format_ts(end),
        "coveredTo": format_ts(end),
        "start_lsn": start_lsn,
        "end_lsn": end_lsn,
        "checksum": checksum_of(partial),
    }
    write_json(partial / META, meta)
    _fsync_dir(partial)
    partial.rename(final)
    _fsync_dir(final.parent)
    return meta


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def log_backup(store: BackupStore, backup_id: str, conn: Connection) -> dict[str, Any]:
    """Close the current WAL segment, wait until it is archived, record log backup ``backup_id``.

    ``coveredTo`` is the server's clock just before a marker transaction commits and the
    segment is switched, so every transaction committed up to ``coveredTo`` is in the
    archive, and the archive holds a commit after it (which recovery to a time needs).
    The backup holds every segment after the previous log backup's last one; it covers
    from the previous log backup's ``coveredTo`` (the first: from the oldest commit it
    holds) unless a segment is missing from the archive. Then ``ranges`` lists the
    stretches it really covers (see :func:`lab.executor.wal.covered_ranges`),
    ``missing`` the absent segments, and ``coveredFrom`` is where the stretch that
    reaches ``coveredTo`` begins, so a reader of only ``coveredFrom``/``coveredTo`` sees
    the hole as a gap.
    """
    done = store.log(backup_id)
    if done is not None:
        return done
    start = time.time()
    (covered_to,) = psql(
        conn, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    )
    rows = psql(conn, "SELECT txid_current();\nSELECT pg_walfile_name(pg_switch_wal());")
    segment = rows[-1].strip()
    deadline = time.monotonic() + ARCHIVE_TIMEOUT
    while not (store.wal / segment).is_file():
        if time.monotonic() > deadline:
            raise LabError(f"WAL segment {segment} was not archived within {ARCHIVE_TIMEOUT:.0f}s")
        time.sleep(0.05)
    previous = [m for m in store.logs() if str(m.get("last_segment", "")) < segment]
    before = previous[-1] if previous else None
    after = str(before["last_segment"]) if before else ""
    present = [s for s in store.segments() if after < s <= segment]
    expected = expected_segments(after, segment, present)
    missing = [s for s in expected if s not in present]
    wal = [segment_info(store.wal, s) for s in present]
    commits = [parse_ts(w["first_commit"]) for w in wal if w["first_commit"]]
    end = parse_ts(covered_to)
    chain_start = parse_ts(before["coveredTo"]) if before else min(commits, default=min(start, end))
    entries = sorted([*wal, *({"segment": s} for s in missing)], key=lambda w: str(w["segment"]))
    ranges = covered_ranges(chain_start, end, entries, missing)
    reaching = [r for r in ranges if r[1] >= end]
    meta: dict[str, Any] = {
        "id": backup_id,
        "type": "log",
        "start": format_ts(start),
        "end": format_ts(time.time()),
        "chainStart": format_ts(chain_start),
        "coveredFrom": format_ts(reaching[-1][0]) if reaching else covered_to,
        "coveredTo": covered_to,
        "ranges": [{"from": format_ts(a), "to": format_ts(b)} for a, b in ranges],
        "last_segment": segment,
        "segments": present,
        "missing": missing,
        "wal": wal,
        "checksum": checksum_of(store.wal, [store.wal / s for s in present]),
    }
    if missing:
        print(
            f"executor: WAL segment(s) {', '.join(missing)} missing from the archive: "
            f"log backup {backup_id} covers only {meta['ranges']}",
            flush=True,
        )
    store.log_file(backup_id).parent.mkdir(parents=True, exist_ok=True)
    write_json(store.log_file(backup_id), meta)
    return meta
