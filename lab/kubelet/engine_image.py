"""The ``mssql-lab/engine`` image: a real PostgreSQL server standing in for SQL Server.

Run by the kubelet as the container's main process (``python -m lab.kubelet.engine_image``)
with the pod's environment:

* ``LAB_ENGINE_PORT`` (set by the kubelet from the container port named ``mssql``,
  else the first one): the server listens on ``127.0.0.1:<port>`` with password (SCRAM)
  authentication;
* ``LAB_MOUNTS``: the folder mounted at ``/var/opt/mssql`` holds the server; its data
  directory is ``<folder>/data`` (as SQL Server keeps ``/var/opt/mssql/data``),
  initialised on first start. Without that mount the pod's scratch folder is used (data
  then lives as long as the pod, like a container's own filesystem);
* ``LAB_MOUNTS`` with a folder at ``/var/opt/mssql/backup`` (the ``<instance>-backups``
  claim): WAL archiving on (``wal_level=replica``, ``archive_mode=on``, every completed
  segment copied to ``<folder>/wal/``, ``archive_timeout=0``); ``full/`` and ``log/``
  are made there for the executor. Without that mount the server does not archive.
  Durability stays the default (``fsync``, ``synchronous_commit``);
* ``track_commit_timestamp`` is on in every data directory's ``postgresql.conf``
  (added at start when missing, :func:`lab.engine.keep_commit_timestamps`): each
  transaction's commit time is kept and replayed into a point-in-time restore, whose
  rows are then judged by when they committed. It goes into the file, not the command
  line, so full backups carry it to the server that replays them;
* ``MSSQL_SA_PASSWORD`` (required), ``LAB_DB_USER`` (default ``harness``) and
  ``LAB_DB_NAME`` (default ``harness``): at every start the role is created (or its
  password set) and the database created owned by it, idempotently. The role also
  gets ``REPLICATION`` (``pg_basebackup`` needs it) and ``EXECUTE`` on
  ``pg_switch_wal()`` in database ``postgres`` (a log backup closes the current
  segment); it is not a superuser.
* ``LAB_COMMIT_CPU_MS`` (set by the kubelet only when the node has ``--commit-cpu-ms``):
  every INSERT into a table of the tenant database costs that much server CPU, by a
  trigger calibrated on this server at every start (:mod:`lab.kubelet.commit_cost`, a
  test instrument for a computable capacity, not a model of SQL Server). Without it,
  any earlier install is removed.
* ``LAB_ID`` and ``LAB_INSTANCE`` (set by the lab operator from ``kube-system/lab-identity``):
  the lab's id is written into the tenant database at its first start
  (``harness_identity``, :func:`lab.engine.identity_sql`); the harness refuses a server
  holding another lab's id, so a port taken over by another lab is never written to.

PostgreSQL runs as the ``postgres`` user when we are root, dies with this process
(``PR_SET_PDEATHSIG``), and the lock files a killed server left (``postmaster.pid``, the socket's
``.lock``) are removed when their process is gone or a zombie. SIGTERM and SIGINT become a fast shutdown
(SIGINT to the postmaster); the exit status is the server's. The password is never
written to the log or to any command line.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import psutil

from lab.engine import identity_sql, init_data_dir, keep_commit_timestamps, server_run_kwargs
from lab.errors import LabError
from lab.kubelet import commit_cost
from lab.paths import pg_bindir, server_user

__all__ = ["archive_settings", "lock_is_stale", "main", "setup_sql"]

MOUNT_PATH = "/var/opt/mssql"
BACKUP_PATH = "/var/opt/mssql/backup"
_PR_SET_PDEATHSIG = 1
_SOCKET_PATH_MAX = 100


def _say(message: str) -> None:
    print(f"engine: {message}", flush=True)


def _psql_literal(value: str) -> str:
    """A psql meta-command argument in single quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def setup_sql(user: str, password: str, database: str) -> str:
    """The idempotent setup script for psql (fed on stdin, never on a command line)."""
    return "\n".join(
        [
            "\\set ON_ERROR_STOP 1",
            f"\\set lab_user {_psql_literal(user)}",
            f"\\set lab_password {_psql_literal(password)}",
            f"\\set lab_db {_psql_literal(database)}",
            "SELECT format('CREATE ROLE %I LOGIN', :'lab_user') "
            "WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'lab_user') \\gexec",
            "SELECT format('ALTER ROLE %I LOGIN REPLICATION PASSWORD %L', "
            ":'lab_user', :'lab_password') \\gexec",
            "SELECT format('GRANT EXECUTE ON FUNCTION pg_switch_wal() TO %I', :'lab_user') \\gexec",
            "SELECT format('CREATE DATABASE %I OWNER %I', :'lab_db', :'lab_user') "
            "WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'lab_db') \\gexec",
            "",
        ]
    )


def archive_settings(store: Path) -> list[str]:
    """``postgres -c`` arguments that archive every WAL segment into ``<store>/wal``.

    The copy goes through a temporary name and a rename, so a segment in ``wal/`` is
    always complete.
    """
    wal = store / "wal"
    command = f"cp %p {wal}/%f.part && mv -f {wal}/%f.part {wal}/%f"
    return [
        "-c",
        "wal_level=replica",
        "-c",
        "archive_mode=on",
        "-c",
        "archive_timeout=0",
        "-c",
        f"archive_command={command}",
    ]


def _prepare_store(store: Path) -> None:
    _own(store, 0o755)
    for sub in ("wal", "full", "log", "restores"):
        (store / sub).mkdir(exist_ok=True)
        _own(store / sub, 0o755)


def _own(path: Path, mode: int) -> None:
    """Give ``path`` to the server's user with ``mode``; a symbolic link is refused, never
    followed: a claim folder is reachable by other local users, and this runs as root."""
    if path.is_symlink():
        raise LabError(
            f"{path} is a symbolic link: remove it (the engine does not change what a link points to)"
        )
    user = server_user()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
    path.chmod(mode)


def _prepare(home: Path) -> tuple[Path, Path]:
    """The data directory (initialised if new) and the socket folder under ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    if home.is_symlink():
        raise LabError(
            f"{home} is a symbolic link: remove it (the engine does not change what a link points to)"
        )
    home.chmod(0o755)
    data = home / "data"
    if not (data / "PG_VERSION").exists():
        fresh = home / "data.initdb"
        if fresh.exists():
            shutil.rmtree(fresh)
        if data.exists() and any(data.iterdir()):
            raise LabError(f"{data} is not empty but holds no PostgreSQL data directory: empty it or fix it")
        shutil.rmtree(data, ignore_errors=True)
        fresh.mkdir()
        _own(fresh, 0o700)
        _say(f"initialising a new data directory in {data}")
        init_data_dir(fresh)
        fresh.rename(data)
    _own(data, 0o700)
    sockets = home / "run"
    if len(str(sockets)) > _SOCKET_PATH_MAX - 20:
        digest = hashlib.sha256(str(home).encode()).hexdigest()[:12]
        sockets = Path("/tmp") / f"lab-engine-{digest}"  # noqa: S108 - socket paths must be short
    sockets.mkdir(exist_ok=True)
    _own(sockets, 0o700)
    return data, sockets


def lock_is_stale(lockfile: Path, data: Path) -> bool:
    """True unless the lock file names a live PostgreSQL process working in ``data``.

    A killed server's pid may be a zombie not reaped yet, gone, or reused by another
    process (even another server's): none of them holds this data directory.
    """
    try:
        pid = int(lockfile.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or "postgres" not in proc.name():
            return True
        return Path(proc.cwd()).resolve() != data.resolve()
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def _clear_stale_locks(data: Path, sockets: Path) -> None:
    """Remove the lock files a killed server left (see :func:`lock_is_stale`)."""
    locks = [data / "postmaster.pid", *sockets.glob(".s.PGSQL.*.lock")]
    for lock in locks:
        if lock.exists() and lock_is_stale(lock, data):
            _say(f"removing the stale lock {lock.name} of a server that is gone")
            lock.unlink(missing_ok=True)
            if lock.suffix == ".lock":
                lock.with_suffix("").unlink(missing_ok=True)


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _ready(data: Path, port: int) -> bool:
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except OSError:
        return False
    if len(lines) < 8 or lines[7].strip() != "ready":
        return False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _psql(sockets: Path, port: int, database: str, script: str, what: str) -> str:
    """Run ``script`` through psql as the superuser on ``database``; its output, LabError naming ``what``."""
    proc = subprocess.run(
        [
            str(pg_bindir() / "psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-h",
            str(sockets),
            "-p",
            str(port),
            "-U",
            "postgres",
            "-d",
            database,
        ],
        input=script,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
        **server_run_kwargs(),
    )
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        errors = [line for line in lines if line.startswith(("ERROR", "FATAL", "psql:"))]
        detail = (errors or lines or [str(proc.returncode)])[-1]
        raise LabError(f"{what} failed: {detail}")
    return proc.stdout


def _setup(sockets: Path, port: int, user: str, password: str, database: str) -> None:
    _psql(
        sockets,
        port,
        "postgres",
        setup_sql(user, password, database),
        f"setting up role {user} and database {database}",
    )


def _commit_cost(sockets: Path, port: int, database: str, cost_ms: float | None) -> None:
    """Install the commit CPU cost into ``database`` (calibrated now), or remove it when None."""
    if cost_ms is None:
        _psql(sockets, port, database, commit_cost.uninstall_sql(), "removing the commit CPU cost")
        return
    began = time.monotonic()
    iterations, per_iteration = commit_cost.calibrate(
        lambda script: _psql(sockets, port, "postgres", script, "calibrating the commit CPU cost"), cost_ms
    )
    _psql(sockets, port, database, commit_cost.install_sql(iterations), "installing the commit CPU cost")
    _say(
        f"every INSERT into {database} costs {cost_ms:g} ms of server CPU: {iterations} loop iterations "
        f"of {per_iteration * 1e9:.2f} ns CPU each (calibrated in {time.monotonic() - began:.1f}s)"
    )


def _record_identity(sockets: Path, port: int, database: str, user: str) -> None:
    """Write the lab's id into the database at its first start (``LAB_ID``, set by the lab operator)."""
    lab_id = os.environ.get("LAB_ID")
    if not lab_id:
        return
    instance = os.environ.get("LAB_INSTANCE") or database
    script = identity_sql(lab_id, instance, user)
    held = _psql(sockets, port, database, script, "recording the lab identity").split()
    if held != [lab_id]:
        _say(
            f"harness_identity holds lab {', '.join(held) or 'none'}, this pod is lab {lab_id}: "
            "the harness will refuse this server"
        )


def main() -> int:
    env = os.environ
    password = env.get("MSSQL_SA_PASSWORD", "")
    if not password:
        print(
            "engine: MSSQL_SA_PASSWORD is not set: give the container the password variable",
            file=sys.stderr,
            flush=True,
        )
        return 1
    user = env.get("LAB_DB_USER") or "harness"
    database = env.get("LAB_DB_NAME") or "harness"
    try:
        cost_ms = commit_cost.commit_cpu_ms(env)
    except LabError as exc:
        print(f"engine: {exc}", file=sys.stderr, flush=True)
        return 1
    try:
        port = int(env.get("LAB_ENGINE_PORT", ""))
    except ValueError:
        print("engine: LAB_ENGINE_PORT is not set: the container needs a port named mssql", file=sys.stderr)
        return 1
    mounts = json.loads(env.get("LAB_MOUNTS") or "{}")
    home = Path(mounts[MOUNT_PATH]) if MOUNT_PATH in mounts else Path(env.get("LAB_SCRATCH", ".")) / "mssql"
    if MOUNT_PATH not in mounts:
        _say(f"no volume mounted at {MOUNT_PATH}: data lives in {home} and goes with the pod")
    store = Path(mounts[BACKUP_PATH]) if BACKUP_PATH in mounts else None
    postmaster: subprocess.Popen[bytes] | None = None
    stopping = False

    def _forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if postmaster is not None and postmaster.poll() is None:
            postmaster.send_signal(signal.SIGQUIT if signum == signal.SIGQUIT else signal.SIGINT)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, _forward)
    try:
        data, sockets = _prepare(home)
        _clear_stale_locks(data, sockets)
        if keep_commit_timestamps(data):
            _say("track_commit_timestamp turned on in postgresql.conf")
        archiving: list[str] = []
        if store is not None:
            _prepare_store(store)
            archiving = archive_settings(store)
            _say(f"archiving WAL into {store / 'wal'}")
        postmaster = subprocess.Popen(
            [
                str(pg_bindir() / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(sockets),
                "-c",
                "listen_addresses=127.0.0.1",
                *archiving,
            ],
            stdin=subprocess.DEVNULL,
            cwd=data,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - single-threaded
            **server_run_kwargs(),
        )
        while not _ready(data, port):
            if postmaster.poll() is not None:
                _say(f"PostgreSQL exited with code {postmaster.returncode} during start")
                return postmaster.returncode if postmaster.returncode > 0 else 1
            if stopping:
                break
            time.sleep(0.02)
        if not stopping:
            _setup(sockets, port, user, password, database)
            _record_identity(sockets, port, database, user)
            _commit_cost(sockets, port, database, cost_ms)
            _say(f"ready on 127.0.0.1:{port}, database {database}, user {user}")
    except LabError as exc:
        print(f"engine: {exc}", file=sys.stderr, flush=True)
        if postmaster is not None and postmaster.poll() is None:
            postmaster.send_signal(signal.SIGINT)
            postmaster.wait()
        return 1
    code = postmaster.wait()
    _say(f"PostgreSQL stopped (exit {code})")
    if sockets.parent == Path("/tmp"):  # noqa: S108 - the short-path fallback of _prepare
        with contextlib.suppress(OSError):
            sockets.rmdir()  # empty after a clean stop; a killed server's lock keeps it for the next start
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
