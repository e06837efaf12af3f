"""Why a restore failed, in words a DBA can act on.

When recovery stops, the last lines of the server log are its shutdown ("terminating
any other active server processes", "database system is shut down"); the line that
says why comes before them. :func:`server_log_reason` finds it: the last PANIC or
FATAL of the startup process (not the "starting up" refusals our own status queries
get), else the last ERROR, with the WAL complaint logged just before it ("incorrect
resource manager data checksum in record at 0/9000118"). :func:`damaged_wal` then
re-checks the archived segments the restore needed against what the log backups
recorded, so the reason names the segment and the backup that hold the damage.
"""

from __future__ import annotations

import re
from typing import Any

from lab.executor.store import BackupStore, parse_ts, verify
from lab.executor.wal import sha256_of

__all__ = ["damaged_wal", "server_log_reason"]

_LEVEL = re.compile(r"\b(PANIC|FATAL|ERROR):\s+(.*)$")
#: FATALs a client gets while the server starts or stops: they say nothing about recovery.
_REFUSALS = (
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "not yet accepting",
)
_WAL_TROUBLE = re.compile(
    r"\bLOG:\s+((?:incorrect|invalid|unexpected|missing contrecord|record with incorrect|"
    r"could not (?:read|open|restore|find))\b.*)$"
)


def server_log_reason(text: str) -> str | None:
    """The line of a server log that explains why the server stopped (None: no such line)."""
    lines = text.splitlines()
    found: tuple[int, str] | None = None
    for wanted in (("PANIC", "FATAL"), ("ERROR",)):
        for index in range(len(lines) - 1, -1, -1):
            match = _LEVEL.search(lines[index])
            if match and match.group(1) in wanted and not any(r in match.group(2) for r in _REFUSALS):
                found = (index, f"{match.group(1)}: {match.group(2).strip()}")
                break
        if found:
            break
    if found is None:
        return None
    index, reason = found
    for earlier in range(index - 1, -1, -1):
        if _LEVEL.search(lines[earlier]):
            break  # an earlier failure is not this one's cause
        trouble = _WAL_TROUBLE.search(lines[earlier])
        if trouble:
            return f"{reason} (after: {trouble.group(1).strip()})"
    return reason


def _needed_logs(store: BackupStore, full: dict[str, Any], target_time: float) -> list[dict[str, Any]]:
    """The log backups a restore from ``full`` to ``target_time`` reads WAL from, oldest first."""
    since = parse_ts(str(full["start"]))
    needed = []
    for log in store.logs():
        if parse_ts(str(log["coveredTo"])) < since:
            continue
        needed.append(log)
        if parse_ts(str(log["coveredTo"])) >= target_time:
            break
    return needed


def damaged_wal(store: BackupStore, full: dict[str, Any], target_time: float) -> list[str]:
    """Each missing or changed WAL segment a restore from ``full`` to ``target_time`` needed."""
    problems = []
    for log in _needed_logs(store, full, target_time):
        name = log.get("id")
        for segment in log.get("missing") or []:
            problems.append(f"WAL segment {segment} was already missing when log backup {name} was taken")
        entries = log.get("wal")
        if not entries:  # recorded before per-segment checksums: the backup's own checksum
            ok, message = verify(store, str(name))
            problems += [] if ok else [message]
            continue
        for entry in entries:
            path = store.wal / str(entry["segment"])
            if not path.is_file():
                problems.append(f"WAL segment {entry['segment']} of log backup {name} is missing")
                continue
            found = sha256_of(path)
            if found != entry.get("sha256"):
                problems.append(
                    f"WAL segment {entry['segment']} of log backup {name}: checksum mismatch "
                    f"(recorded {entry.get('sha256')}, found {found})"
                )
    return problems
