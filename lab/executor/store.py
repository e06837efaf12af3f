"""The backup store of one instance (its ``<instance>-backups`` volume) and what is in it.

Layout (the contract with the harness)::

    full/<backupId>/              pg_basebackup output (plain format, WAL included),
                                  backup_manifest and harness-backup.json
    full/.<backupId>.partial/     a full backup being taken (removed on retry)
    wal/<segment>                 WAL archived by the server (archive_command)
    log/<backupId>.json           one file per log backup
    restores/<restoreName>.json   the outcome of a restore from this store
    restores/<restoreName>.failed.json  why the last attempt of a restore failed

``harness-backup.json`` holds ``id, type, start, end, coveredFrom, coveredTo,
start_lsn, end_lsn, checksum``; a log file ``id, type, start, end, chainStart,
coveredFrom, coveredTo, ranges, last_segment, segments, missing, wal, checksum``:
``segments`` the archived segments it holds, ``missing`` those it should hold but the
archive lacked, ``wal`` one entry per held segment (``segment, sha256, size,
start_lsn, end_lsn, first_commit, last_commit``), ``ranges`` the stretches of time
it covers (``from``, ``to``; one from ``chainStart``, the previous log backup's
``coveredTo``, to ``coveredTo`` when nothing is missing; see
:mod:`lab.executor.wal`). A restore's outcome holds ``name, backupId, targetTime,
achievedRestorePoint, replayedTransactions, skippedBackups, start, end``; a failure
``name, reason, at, skippedBackups``. Times are RFC 3339 UTC with
microseconds. A checksum is ``sha256:<hex>`` over the files' relative paths and
contents in path order (``harness-backup.json`` itself excluded), so a changed,
added or removed file changes it. Files are written to a temporary name and renamed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from common.times import format_time, require_time
from lab.errors import LabError

__all__ = [
    "META",
    "BackupStore",
    "checksum_of",
    "format_ts",
    "parse_ts",
    "verify",
    "write_json",
]

META = "harness-backup.json"
_CHUNK = 1 << 20


def format_ts(moment: float) -> str:
    """RFC 3339 UTC with microseconds: ``2026-11-27T00:01:02.123456Z``."""
    return format_time(moment, digits=6)


def parse_ts(text: str) -> float:
    """Epoch seconds of an RFC 3339 time (``Z``, an offset or none for UTC; fraction optional)."""
    try:
        return require_time(str(text))
    except ValueError:
        raise LabError(f"{text!r} is not an RFC 3339 time") from None


def _files(root: Path) -> list[Path]:
    return sorted(
        (p for p in root.rglob("*") if p.is_file() and p.relative_to(root).as_posix() != META),
        key=lambda p: p.relative_to(root).as_posix(),
    )


def checksum_of(root: Path, files: list[Path] | None = None) -> str:
    """``sha256:<hex>`` over ``files`` (default: every file under ``root`` but the metadata)."""
    digest = hashlib.sha256()
    for path in files if files is not None else _files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Write ``value`` atomically (temporary file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as handle:
        json.dump(value, handle, indent=1, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


class BackupStore:
    """Read access to one instance's store folder (the executor also writes it)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def wal(self) -> Path:
        return self.root / "wal"

    def full_dir(self, backup_id: str) -> Path:
        return self.root / "full" / backup_id

    def log_file(self, backup_id: str) -> Path:
        return self.root / "log" / f"{backup_id}.json"

    def restore_file(self, name: str) -> Path:
        return self.root / "restores" / f"{name}.json"

    def full(self, backup_id: str) -> dict[str, Any] | None:
        return _load(self.full_dir(backup_id) / META)

    def log(self, backup_id: str) -> dict[str, Any] | None:
        return _load(self.log_file(backup_id))

    def result(self, backup_id: str) -> dict[str, Any] | None:
        """The metadata of a finished backup of either type, or None."""
        return self.full(backup_id) or self.log(backup_id)

    def restore_result(self, name: str) -> dict[str, Any] | None:
        return _load(self.restore_file(name))

    def restore_failure_file(self, name: str) -> Path:
        return self.root / "restores" / f"{name}.failed.json"

    def restore_failure(self, name: str) -> dict[str, Any] | None:
        """Why the last failed attempt of restore ``name`` failed, as the executor recorded it."""
        return _load(self.restore_failure_file(name))

    def fulls(self) -> list[dict[str, Any]]:
        """Finished full backups, oldest end first."""
        folder = self.root / "full"
        found = [_load(d / META) for d in folder.iterdir() if d.is_dir()] if folder.is_dir() else []
        return sorted((m for m in found if m), key=lambda m: parse_ts(m["end"]))

    def logs(self) -> list[dict[str, Any]]:
        """Finished log backups, oldest coveredTo first."""
        folder = self.root / "log"
        found = [_load(f) for f in folder.glob("*.json")] if folder.is_dir() else []
        return sorted((m for m in found if m), key=lambda m: parse_ts(m["coveredTo"]))

    def segments(self) -> list[str]:
        """Archived WAL segment names, in order."""
        if not self.wal.is_dir():
            return []
        return sorted(p.name for p in self.wal.iterdir() if len(p.name) == 24 and p.is_file())


def _load(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def verify(store: BackupStore, backup_id: str) -> tuple[bool, str]:
    """Recompute a backup's checksum: ``(ok, message)``."""
    meta = store.full(backup_id)
    if meta is not None:
        actual = checksum_of(store.full_dir(backup_id))
    else:
        meta = store.log(backup_id)
        if meta is None:
            return False, f"backup {backup_id} is not in {store.root}"
        files = [store.wal / s for s in meta.get("segments") or []]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            return False, f"backup {backup_id}: WAL segment {missing[0]} is missing"
        actual = checksum_of(store.wal, files)
    if actual != meta.get("checksum"):
        return (
            False,
            f"backup {backup_id}: checksum mismatch (recorded {meta.get('checksum')}, found {actual})",
        )
    return True, f"backup {backup_id}: checksum {actual} verified"
