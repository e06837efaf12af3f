"""Point-in-time restore of a source's store into a stopped target's data folder.

:func:`restore` runs inside the restore Job while the target's StatefulSet has 0
replicas. It picks the newest full backup that ended at or before the target time and
verifies its checksum; a damaged one is skipped for the next older intact one (which
then replays more log: what a SQL Server DBA does with an older full backup), and the
result says which were skipped and why. It copies the full backup to
``<home>/data.restoring`` and replays the
source's archived WAL there with a private server (Unix socket only, no archiving):
``restore_command`` copying from ``<store>/wal``, ``recovery_target_time`` = the
target time, ``recovery_target_action = pause``. At the pause the last replayed
commit time (``pg_last_xact_replay_timestamp()``) is the achieved restore point; the
server is then resumed (it promotes) and shut down cleanly, the recovery settings are
removed, and ``data.restoring`` replaces ``<home>/data``. The outcome is written to
``<store>/restores/<name>.json`` last: it is the commit point, a retry before it starts
over from the full backup and a retry after it reports it again.

A failed attempt writes ``<store>/restores/<name>.failed.json`` with the reason the
operator reports: the server log's FATAL line rather than its shutdown lines, and the
missing or changed WAL segments the restore needed. ``data.restoring`` and
``restore-<name>.log`` stay in the target's folder for inspection; ``data`` is untouched.
"""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from lab.engine import server_run_kwargs
from lab.errors import LabError
from lab.executor.diagnose import damaged_wal, server_log_reason
from lab.executor.store import META, BackupStore, format_ts, parse_ts, verify, write_json
from lab.paths import pg_bindir, server_user

__all__ = ["choose_full", "full_candidates", "restore"]

RECOVERY_TIMEOUT = 600.0
_BEGIN = "# lab restore: begin"
_END = "# lab restore: end"
_TS = "to_char(%s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


def full_candidates(store: BackupStore, target_time: float) -> list[dict[str, Any]]:
    """Full backups that ended at or before ``target_time``, newest first; LabError with the reason."""
    fulls = store.fulls()
    stamp = format_ts(target_time)
    if not fulls or parse_ts(fulls[0]["end"]) > target_time:
        first = fulls[0]["end"] if fulls else "none"
        raise LabError(f"targetTime {stamp} is before the first full backup ({first})")
    logs = store.logs()
    last = logs[-1]["coveredTo"] if logs else None
    if last is None or parse_ts(last) < target_time:
        raise LabError(
            f"targetTime {stamp} is after the last archived log ({last or 'none'}): take a log backup first"
        )
    return [m for m in reversed(fulls) if parse_ts(m["end"]) <= target_time]


def choose_full(store: BackupStore, target_time: float) -> dict[str, Any]:
    """The newest full backup that ended at or before ``target_time``; LabError with the reason."""
    return full_candidates(store, target_time)[0]


def _intact_full(store: BackupStore, target_time: float, skipped: list[dict[str, str]]) -> dict[str, Any]:
    """The newest candidate whose checksum verifies; each damaged newer one is added to ``skipped``."""
    for full in full_candidates(store, target_time):
        ok, message = verify(store, full["id"])
        if ok:
            if skipped:
                print(
                    f"executor: falling back to full backup {full['id']} "
                    f"({'; '.join(s['reason'] for s in skipped)})",
                    flush=True,
                )
            return full
        skipped.append({"backupId": str(full["id"]), "reason": message})
    raise LabError(
        f"no intact full backup ends at or before targetTime {format_ts(target_time)}: "
        + "; ".join(s["reason"] for s in skipped)
    )


def _chown_tree(root: Path) -> None:
    user = server_user()
    if user is None:
        return
    shutil.chown(root, user, user)
    for path in root.rglob("*"):
        shutil.chown(path, user, user)


def _settings(store: BackupStore, target_time: float) -> str:
    wal = store.wal.resolve()
    moment = format_ts(target_time).replace("T", " ").replace("Z", "+00")
    return "\n".join(
        [
            _BEGIN,
            f"restore_command = 'cp {wal}/%f %p'",
            f"recovery_target_time = '{moment}'",
            "recovery_target_inclusive = on",
            "recovery_target_action = 'pause'",
            _END,
            "",
        ]
    )


def _strip_settings(conf: Path) -> None:
    lines, skipping = [], False
    for line in conf.read_text().splitlines():
        if line == _BEGIN:
            skipping = True
        elif line == _END:
            skipping = False
        elif not skipping:
            lines.append(line)
    conf.write_text("\n".join(lines) + "\n")


def _query(sockets: Path, sql: str) -> list[str] | None:
    proc = subprocess.run(
        [
            str(pg_bindir() / "psql"),
            "-X",
            "-A",
            "-t",
            "-q",
            "-h",
            str(sockets),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ],
        input=sql,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PGCONNECT_TIMEOUT": "2"},
        **server_run_kwargs(),
    )
    return proc.stdout.strip().split("|") if proc.returncode == 0 else None


def _replay(data: Path, sockets: Path, log: Path) -> str | None:
    """Run the server until recovery pauses at the target; resume, wait for promotion, stop.

    Returns the last replayed commit time (None when no transaction was replayed).
    """
    with log.open("ab") as out:
        server = subprocess.Popen(
            [
                str(pg_bindir() / "postgres"),
                "-D",
                str(data),
                "-k",
                str(sockets),
                "-c",
                "listen_addresses=",
                "-c",
                "archive_mode=off",
                "-c",
                "hot_standby=on",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=data,
            **server_run_kwargs(),
        )
    achieved: str | None = None
    paused = False
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    try:
        while True:
            if server.poll() is not None:
                text = log.read_text(errors="replace")
                why = server_log_reason(text) or " / ".join(text.strip().splitlines()[-3:])
                raise LabError(f"recovery stopped (exit {server.returncode}): {why}")
            if time.monotonic() > deadline:
                raise LabError(f"recovery did not finish within {RECOVERY_TIMEOUT:.0f}s")
            row = _query(
                sockets,
                "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() "
                "THEN pg_get_wal_replay_pause_state() ELSE 'promoted' END, "
                f"coalesce({_TS % 'pg_last_xact_replay_timestamp()'}, '')",
            )
            if row is None or len(row) != 3:
                time.sleep(0.1)
                continue
            in_recovery, state, last = row
            if in_recovery == "f":
                break
            if state == "paused" and not paused:
                achieved = last or None
                paused = True
                _query(sockets, "SELECT pg_wal_replay_resume()")
            time.sleep(0.05)
        _query(sockets, "CHECKPOINT")
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    if server.returncode != 0:
        raise LabError(f"the recovered server did not stop cleanly (exit {server.returncode})")
    return achieved


def restore(store: BackupStore, home: Path, target_time: float, name: str) -> dict[str, Any]:
    """Restore ``store`` to ``target_time`` into ``home/data`` (the target's stopped data folder).

    A failure is recorded in the store for the operator (see the module's docstring) and raised.
    """
    done = store.restore_result(name)
    if done is not None:
        return done
    skipped: list[dict[str, str]] = []
    try:
        result = _restore(store, home, target_time, name, skipped)
    except (LabError, OSError) as exc:
        failure = {"name": name, "reason": str(exc), "at": format_ts(time.time()), "skippedBackups": skipped}
        try:
            store.restore_failure_file(name).parent.mkdir(parents=True, exist_ok=True)
            write_json(store.restore_failure_file(name), failure)
        except OSError as again:
            print(f"executor: cannot record the failure in the store: {again}", flush=True)
        raise
    store.restore_failure_file(name).unlink(missing_ok=True)
    return result


def _restore(
    store: BackupStore, home: Path, target_time: float, name: str, skipped: list[dict[str, str]]
) -> dict[str, Any]:
    started = time.time()
    full = _intact_full(store, target_time, skipped)
    work = home / "data.restoring"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(store.full_dir(full["id"]), work, ignore=shutil.ignore_patterns(META, "backup_manifest"))
    (work / "recovery.signal").write_text("")
    with (work / "postgresql.auto.conf").open("a") as conf:
        conf.write("\n" + _settings(store, target_time))
    for leftover in ("postmaster.pid", "postmaster.opts"):
        (work / leftover).unlink(missing_ok=True)
    work.chmod(0o700)
    _chown_tree(work)
    digest = hashlib.sha256(str(work).encode()).hexdigest()[:12]
    sockets = Path("/tmp") / f"lab-restore-{digest}"  # noqa: S108 - socket paths must be short
    sockets.mkdir(exist_ok=True)
    _chown_tree(sockets)
    log = home / f"restore-{name}.log"
    log.unlink(missing_ok=True)
    try:
        achieved = _replay(work, sockets, log)
    except LabError as exc:
        damage = damaged_wal(store, full, target_time)
        raise LabError("; ".join([f"restoring full backup {full['id']}: {exc}", *damage])) from None
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    _strip_settings(work / "postgresql.auto.conf")
    (work / "recovery.signal").unlink(missing_ok=True)
    old = home / "data"
    if old.exists():
        shutil.rmtree(old)
    work.rename(old)
    result: dict[str, Any] = {
        "name": name,
        "backupId": full["id"],
        "skippedBackups": skipped,
        "targetTime": format_ts(target_time),
        "achievedRestorePoint": achieved or full["end"],
        "replayedTransactions": achieved is not None,
        "start": format_ts(started),
        "end": format_ts(time.time()),
    }
    store.restore_file(name).parent.mkdir(parents=True, exist_ok=True)
    write_json(store.restore_file(name), result)
    return result
