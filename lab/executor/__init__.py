"""``python -m lab.executor``: the program of the ``mssql-lab/executor`` image (job pods).

Commands (the container's ``args``):

* ``sleep N`` - wait N seconds (a float), then exit 0; SIGTERM ends the wait with 143;
* ``exit N`` - exit with status N (0-255) at once;
* ``backup-full --id ID [--store DIR] [--fail REASON]`` / ``backup-log --id ID [--store DIR]
  [--fail REASON]`` - take a backup of the instance named by ``LAB_DB_HOST``/
  ``LAB_DB_PORT``/``LAB_DB_USER``/``PGPASSWORD`` into the store (default: the volume
  mounted at ``/var/opt/mssql/backup``), see :mod:`lab.executor.backup`. ``--fail`` is
  the lab's fail-job knob (:mod:`lab.operator.jobs`): the backup is not attempted, the
  reason is written to the log as ``executor: failing on purpose: <reason>`` and the
  exit status is 1;
* ``restore --name NAME --target-time T [--store DIR] [--home DIR]`` - point-in-time
  restore of the store (default: the volume at ``/backup/source``) into the stopped
  target's folder (default: the volume at ``/var/opt/mssql``), see
  :mod:`lab.executor.restore`;
* ``verify INSTANCE BACKUP_ID [-n NAMESPACE] [--store DIR]`` - recompute a backup's
  checksum; the store defaults to the lab's volume ``<lab>/cluster/volumes/<ns>/
  <instance>-backups`` (namespace default ``tenants``). Exit 0 when it matches, 1 when
  not (one line saying why), so the harness can call it after a run.

Job commands print ``executor: result <json>`` (the backup's or restore's metadata)
as their last line and exit 0; a failure is one line ``executor: <reason>`` on stderr
and exit status 1 (the Job controller retries the pod). An unknown command or a bad
number is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from lab.errors import LabError
from lab.executor.jobs import USAGE, simple

__all__ = ["RESTORE_SOURCE_MOUNT", "STORE_MOUNT", "TARGET_MOUNT", "main", "store_path"]

STORE_MOUNT = "/var/opt/mssql/backup"
TARGET_MOUNT = "/var/opt/mssql"
RESTORE_SOURCE_MOUNT = "/backup/source"


def _mounted(path: str) -> Path | None:
    mounts = json.loads(os.environ.get("LAB_MOUNTS") or "{}")
    return Path(mounts[path]) if path in mounts else None


def store_path(instance: str, namespace: str) -> Path:
    """Where the lab keeps ``instance``'s backup volume."""
    from lab.paths import lab_dir

    return lab_dir() / "cluster" / "volumes" / namespace / f"{instance}-backups"


def _folder(given: str | None, mount: str, what: str) -> Path:
    folder = Path(given) if given else _mounted(mount)
    if folder is None:
        raise LabError(f"no {what}: mount a volume at {mount} or pass it")
    return folder


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab.executor", add_help=False)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("backup-full", "backup-log"):
        p = sub.add_parser(name)
        p.add_argument("--id", required=True)
        p.add_argument("--store")
        p.add_argument("--fail", default=None)
    p = sub.add_parser("restore")
    p.add_argument("--name", required=True)
    p.add_argument("--target-time", required=True)
    p.add_argument("--store")
    p.add_argument("--home")
    p = sub.add_parser("verify")
    p.add_argument("instance")
    p.add_argument("backup_id")
    p.add_argument("-n", "--namespace", default="tenants")
    p.add_argument("--store")
    return parser


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "fail", None) is not None:
        print(f"executor: failing on purpose: {args.fail}", file=sys.stderr, flush=True)
        return 1
    from lab.executor.backup import Connection, full_backup, log_backup
    from lab.executor.restore import restore
    from lab.executor.store import BackupStore, parse_ts, verify

    if args.command == "verify":
        store = BackupStore(Path(args.store) if args.store else store_path(args.instance, args.namespace))
        ok, message = verify(store, args.backup_id)
        print(f"executor: {message}", flush=True, file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    if args.command == "restore":
        store = BackupStore(_folder(args.store, RESTORE_SOURCE_MOUNT, "source store"))
        home = _folder(args.home, TARGET_MOUNT, "target folder")
        print(f"executor: restoring {store.root} to {args.target_time} into {home}", flush=True)
        result = restore(store, home, parse_ts(args.target_time), args.name)
    else:
        store = BackupStore(_folder(args.store, STORE_MOUNT, "backup store"))
        conn = Connection(dict(os.environ))
        print(f"executor: {args.command} {args.id} of {conn.host}:{conn.port} into {store.root}", flush=True)
        take = full_backup if args.command == "backup-full" else log_backup
        result = take(store, args.id, conn)
    print(f"executor: result {json.dumps(result, sort_keys=True)}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("backup-full", "backup-log", "restore", "verify"):
        return simple(args)
    try:
        parsed = _parser().parse_args(args)
    except SystemExit as exc:
        if exc.code == 0:
            return 0  # --help: argparse printed it
        print(f"executor: cannot run {' '.join(args)!r}: {USAGE}", file=sys.stderr, flush=True)
        return 2
    try:
        return _run(parsed)
    except (LabError, OSError) as exc:
        print(f"executor: {exc}", file=sys.stderr, flush=True)
        return 1
