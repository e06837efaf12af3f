"""Local PostgreSQL servers: the lab's stand-in for SQL Server instances.

An :class:`Engine` owns N instances under one folder, each a real PostgreSQL server
on its own free loopback port with password authentication, a ``harness`` database
and role, and default durability (``fsync`` and ``synchronous_commit`` on), so a
SIGKILL loses nothing that was acknowledged. ``track_commit_timestamp`` is on, so each
row's commit time can be read back (``pg_xact_commit_timestamp(xmin)``): a
point-in-time restore is then checked against when each transaction committed, not
against a window around when its row was stamped.

Faults are real signals to the real process tree:

- :meth:`Engine.stop` is a graceful (fast) shutdown: SIGINT, then SIGKILL after a grace period;
- :meth:`Engine.kill` SIGKILLs the postmaster and every backend at once;
- :meth:`Engine.freeze` / :meth:`Engine.thaw` SIGSTOP / SIGCONT the whole tree:
  clients see a server that accepts TCP but never answers.

The process that starts servers is their supervisor: it becomes a child subreaper
and reaps adopted backends at once, so a restart never meets a stale ``postmaster.pid``.

**Lab identity.** A lab's tenant database holds the lab's id in the table
``harness_identity(lab_id text, instance text)``, so the harness can tell its lab's
server from another lab's on the same port: :func:`identity_sql` is the psql script
that makes it once (at the first start with an id) and never changes the row again;
the engine image runs it with ``LAB_ID`` and ``LAB_INSTANCE`` from the pod, and
:meth:`Engine.record_identity` runs it for a local instance. The harness reads it back
with ``SELECT lab_id FROM harness_identity`` on each new connection.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from lab import processes
from lab.errors import LabError
from lab.paths import lab_dir, pg_bindir, server_user

__all__ = [
    "COMMIT_TIMESTAMPS",
    "IDENTITY_TABLE",
    "Engine",
    "Instance",
    "free_port",
    "identity_sql",
    "init_data_dir",
    "keep_commit_timestamps",
    "server_run_kwargs",
]

DATABASE = "harness"
ROLE = "harness"
ODBC_DRIVER = "PostgreSQL Unicode"
#: The ``postgresql.conf`` line that keeps each transaction's commit time.
COMMIT_TIMESTAMPS = "track_commit_timestamp = on"
#: The table of a tenant database that names the lab it belongs to.
IDENTITY_TABLE = "harness_identity"


@dataclass(frozen=True)
class Instance:
    """One PostgreSQL server: where it lives and how to reach it."""

    name: str
    port: int
    home: Path

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    @property
    def password_file(self) -> Path:
        return self.home / "password"

    def tenant(self, lab_id: str | None = None) -> dict[str, object]:
        """The tenant entry the load generator reads (no secret inside, only its file).

        ``lab_id``: the lab the harness expects the server to belong to (see
        :meth:`Engine.record_identity`); left out when None.
        """
        entry: dict[str, object] = {
            "name": self.name,
            "dialect": "postgresql",
            "driver": ODBC_DRIVER,
            "server": "127.0.0.1",
            "port": self.port,
            "database": DATABASE,
            "user": ROLE,
            "password_file": str(self.password_file),
        }
        if lab_id is not None:
            entry["lab_id"] = lab_id
        return entry


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() not in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_run_kwargs() -> dict[str, Any]:
    """``subprocess`` keyword arguments that run a program as the database server's user.

    Empty when we are not root (servers then run as ourselves).
    """
    user = server_user()
    if user is None:
        return {}
    return {"user": user, "group": user, "extra_groups": []}


def _psql_literal(value: str) -> str:
    """A psql meta-command argument in single quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def identity_sql(lab_id: str, instance: str, user: str) -> str:
    """The psql script (fed on stdin, connected to the tenant database as a superuser) that
    records the lab's identity: ``harness_identity(lab_id text, instance text)`` made if
    missing, the row ``(lab_id, instance)`` inserted only while the table is empty (the
    first start with an id; a restore brings its source's row, a later start changes
    nothing), ``SELECT`` on it granted to ``user`` (the tenant's role, who must not
    write it). It prints the lab ids the table holds, one per line: anything but
    ``lab_id`` alone means the harness will refuse this server.
    """
    return "\n".join(
        [
            "\\set ON_ERROR_STOP 1",
            f"\\set lab_id {_psql_literal(lab_id)}",
            f"\\set lab_instance {_psql_literal(instance)}",
            f"\\set lab_user {_psql_literal(user)}",
            f"CREATE TABLE IF NOT EXISTS {IDENTITY_TABLE} (lab_id text NOT NULL, instance text NOT NULL);",
            f"INSERT INTO {IDENTITY_TABLE} (lab_id, instance) SELECT :'lab_id', :'lab_instance' "
            f"WHERE NOT EXISTS (SELECT 1 FROM {IDENTITY_TABLE});",
            f"REVOKE ALL ON {IDENTITY_TABLE} FROM PUBLIC;",
            f"SELECT format('GRANT SELECT ON {IDENTITY_TABLE} TO %I', :'lab_user') \\gexec",
            f"SELECT DISTINCT lab_id FROM {IDENTITY_TABLE} ORDER BY 1;",
            "",
        ]
    )


def keep_commit_timestamps(data: Path) -> bool:
    """Make ``data``'s ``postgresql.conf`` turn ``track_commit_timestamp`` on; True if it had to.

    Data directories made before the setting existed get it at their next start. It is
    written into the file, not given on the command line, because a full backup copies
    the file: the server that replays a restore reads it there, and one that ends
    recovery with the setting off throws the replayed commit times away. The last line
    naming a setting wins, so an earlier ``off`` is overridden by appending
    (``ALTER SYSTEM``, in ``postgresql.auto.conf``, still overrides the file).
    """
    conf = data / "postgresql.conf"
    if not conf.is_file():
        return False  # not a data directory: the server refuses it with its own message
    last = None
    for line in conf.read_text().splitlines():
        name, _, value = line.split("#", 1)[0].partition("=")
        if name.strip() == "track_commit_timestamp":
            last = value.strip().strip("'").lower()
    if last in ("on", "true", "yes", "1"):
        return False
    with conf.open("a") as out:
        out.write(f"\n{COMMIT_TIMESTAMPS}\n")
    return True


def init_data_dir(
    data: Path,
    *,
    port: int | None = None,
    socket_dir: Path | None = None,
    password_file: Path | None = None,
    max_connections: int = 60,
) -> None:
    """Run ``initdb`` for a new data directory ``data`` as the server's user.

    ``data`` must not exist or be empty, and its parent must be writable by (and
    reachable for) that user. Authentication is ``trust`` on the Unix socket and
    SCRAM over TCP; ``password_file`` sets the ``postgres`` superuser's password.
    The lab's settings are appended to ``postgresql.conf``: loopback only, full
    durability (``fsync``, ``synchronous_commit``), commit times kept, small memory; ``port`` and
    ``socket_dir`` are written only when given (a server started with ``-p`` / ``-k``
    does not need them). LabError with initdb's last line when it fails.
    """
    argv = [
        str(pg_bindir() / "initdb"),
        "-D",
        str(data),
        "-U",
        "postgres",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "-E",
        "UTF8",
        "--locale=C.UTF-8",
        "--no-instructions",
    ]
    if password_file is not None:
        argv.append(f"--pwfile={password_file}")
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **server_run_kwargs())
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(f"initdb for {data} failed: {detail[-1] if detail else proc.returncode}")
    lines = ["", "# written by the lab engine"]
    if port is not None:
        lines.append(f"port = {port}")
    if socket_dir is not None:
        lines.append(f"unix_socket_directories = '{socket_dir}'")
    lines += [
        "listen_addresses = '127.0.0.1'",
        f"max_connections = {max_connections}",
        "shared_buffers = 32MB",
        "fsync = on",
        "synchronous_commit = on",
        COMMIT_TIMESTAMPS,
        "log_min_messages = warning",
        "log_line_prefix = '%m [%p] '",
    ]
    with (data / "postgresql.conf").open("a") as conf:
        conf.write("\n".join(lines) + "\n")


class Engine:
    """Create, start, stop, kill, freeze and thaw local PostgreSQL instances.

    ``root`` is the folder for all instances (default ``.lab/engine``). Servers started
    by this object are its children; call :meth:`close` (or use it as a context
    manager) to stop them all. Instances created by another process can be inspected
    and signalled through their ``postmaster.pid``.
    """

    def __init__(self, root: Path | None = None, *, start_timeout: float = 30.0) -> None:
        self.root = (root or lab_dir() / "engine").resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.start_timeout = start_timeout
        self._bindir = pg_bindir()
        self._user = server_user()
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._frozen: dict[str, list[psutil.Process]] = {}
        self._lock = threading.Lock()
        self._subreaper = processes.become_subreaper()
        self._stop_reaper = threading.Event()
        self._reaper: threading.Thread | None = None
        if self._subreaper:
            self._reaper = threading.Thread(target=self._reap_loop, name="engine-reaper", daemon=True)
            self._reaper.start()

    # -- lifecycle of the object -------------------------------------------------

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every server this object started (fast shutdown, then SIGKILL)."""
        for name in list(self._children):
            try:
                self.stop(name)
            except LabError:
                self.kill(name)
        self._stop_reaper.set()
        if self._reaper is not None:
            self._reaper.join(timeout=2)

    def _reap_loop(self) -> None:
        while not self._stop_reaper.wait(0.1):
            processes.reap_adopted()

    # -- instances ----------------------------------------------------------------

    def instance(self, name: str) -> Instance:
        """The instance called ``name``; LabError if it was never created."""
        meta = self.root / name / "instance.json"
        if not meta.exists():
            raise LabError(f"no lab instance named {name!r} under {self.root}: create it first")
        data = json.loads(meta.read_text())
        return Instance(name=data["name"], port=int(data["port"]), home=self.root / name)

    def instances(self) -> list[Instance]:
        """Every instance created under this root, sorted by name."""
        return [self.instance(p.parent.name) for p in sorted(self.root.glob("*/instance.json"))]

    def create(self, name: str, port: int | None = None) -> Instance:
        """Initialise a new server's data directory (idempotent: an existing one is returned)."""
        home = self.root / name
        if (home / "instance.json").exists():
            return self.instance(name)
        if home.exists():
            shutil.rmtree(home)
        home.mkdir(parents=True)
        inst = Instance(name=name, port=port or free_port(), home=home)
        inst.socket_dir.mkdir()
        password = secrets.token_urlsafe(18)
        pwfile = home / "initdb.pw"
        pwfile.write_text(password + "\n")
        self._own(home, pwfile, inst.socket_dir)
        self._run(
            [
                str(self._bindir / "initdb"),
                "-D",
                str(inst.data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ],
            what=f"initdb for {name}",
        )
        pwfile.unlink()
        with (inst.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# written by the lab engine\n"
                f"port = {inst.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{inst.socket_dir}'\n"
                "max_connections = 60\n"
                "shared_buffers = 32MB\n"
                "fsync = on\n"
                "synchronous_commit = on\n"
                f"{COMMIT_TIMESTAMPS}\n"
                "log_min_messages = warning\n"
                "log_line_prefix = '%m [%p] '\n"
            )
        inst.password_file.write_text(password)
        inst.password_file.chmod(0o600)
        (home / "instance.json").write_text(json.dumps({"name": name, "port": inst.port}))
        self.start(name)
        self._psql(inst, f"CREATE ROLE {ROLE} LOGIN PASSWORD '{password}'")
        self._psql(inst, f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
        return inst

    def record_identity(self, name: str, lab_id: str) -> list[str]:
        """Record ``lab_id`` in instance ``name``'s database (:func:`identity_sql`); the ids it holds."""
        inst = self.instance(name)
        script = identity_sql(lab_id, name, ROLE)
        proc = subprocess.run(
            [
                str(self._bindir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-h",
                str(inst.socket_dir),
                "-p",
                str(inst.port),
                "-U",
                "postgres",
                "-d",
                DATABASE,
            ],
            input=script,
            capture_output=True,
            text=True,
            check=False,
            **server_run_kwargs(),
        )
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise LabError(
                f"recording the lab identity in {name} failed: {detail[-1] if detail else proc.returncode}"
            )
        return [line for line in proc.stdout.splitlines() if line.strip()]

    def create_many(self, count: int, prefix: str = "tenant-") -> list[Instance]:
        """Create and start ``count`` instances named ``<prefix>0`` ... ``<prefix>N-1``."""
        if count < 1:
            raise LabError(f"tenant count must be at least 1, got {count}")
        return [self.create(f"{prefix}{i}") for i in range(count)]

    def destroy(self, name: str) -> None:
        """Kill the server if running and delete its folder."""
        if self.pid(name) is not None:
            self.kill(name)
        shutil.rmtree(self.root / name, ignore_errors=True)

    # -- state ----------------------------------------------------------------------

    def pid(self, name: str) -> int | None:
        """The postmaster's pid if it is running (zombies do not count)."""
        child = self._children.get(name)
        if child is not None and child.poll() is None:
            return child.pid
        pidfile = self.instance(name).data / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE and "postgres" in proc.name():
                return pid
        except (OSError, ValueError, psutil.Error):
            pass
        return None

    def status(self, name: str) -> str:
        """``running``, ``frozen``, ``starting`` or ``stopped``."""
        if name in self._frozen:
            return "frozen"
        if self.pid(name) is None:
            return "stopped"
        return "running" if self._ready(self.instance(name)) else "starting"

    def _ready(self, inst: Instance) -> bool:
        try:
            lines = (inst.data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        if len(lines) < 8 or lines[7].strip() != "ready":
            return False
        try:
            with socket.create_connection(("127.0.0.1", inst.port), timeout=0.5):
                return True
        except OSError:
            return False

    # -- start and stop -------------------------------------------------------------

    def start(self, name: str, wait: bool = True) -> int:
        """Start the server (no-op if running); waits until it accepts connections."""
        inst = self.instance(name)
        with self._lock:
            running = self.pid(name)
            if running is not None:
                return running
            keep_commit_timestamps(inst.data)
            log = inst.log_file.open("ab")
            try:
                child = subprocess.Popen(
                    [str(self._bindir / "postgres"), "-D", str(inst.data)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    user=self._user,
                    group=self._user,
                    extra_groups=[] if self._user else None,
                    start_new_session=True,
                    cwd=inst.home,
                )
            finally:
                log.close()
            self._children[name] = child
        if wait:
            self.wait_ready(name)
        return child.pid

    def wait_ready(self, name: str, timeout: float | None = None) -> float:
        """Block until the server accepts connections; returns the seconds waited."""
        inst = self.instance(name)
        began = time.monotonic()
        deadline = began + (timeout or self.start_timeout)
        while time.monotonic() < deadline:
            child = self._children.get(name)
            if child is not None and child.poll() is not None:
                raise LabError(
                    f"PostgreSQL for {name} exited with code {child.returncode} during start: "
                    f"see {inst.log_file}"
                )
            if self._ready(inst):
                return time.monotonic() - began
            time.sleep(0.01)
        raise LabError(
            f"PostgreSQL for {name} not ready after {timeout or self.start_timeout:.0f}s: see {inst.log_file}"
        )

    def stop(self, name: str, grace: float = 10.0) -> None:
        """Graceful (fast) shutdown: SIGINT, wait ``grace`` seconds, then SIGKILL the tree."""
        self.thaw(name)
        pid = self.pid(name)
        if pid is None:
            self._forget(name)
            return
        tree = processes.process_tree(pid)
        os.kill(pid, signal.SIGINT)
        if processes.wait_gone(tree[:1], grace):
            processes.kill_tree(pid)
        processes.wait_gone(tree, 5.0)
        self._forget(name)

    def kill(self, name: str) -> float:
        """SIGKILL the postmaster and every backend at once; returns when all are gone.

        Returns the monotonic time at which the signal was sent.
        """
        self._frozen.pop(name, None)
        pid = self.pid(name)
        sent = time.monotonic()
        if pid is not None:
            survivors = processes.kill_tree(pid)
            if survivors:
                raise LabError(f"processes {[p.pid for p in survivors]} of {name} survived SIGKILL")
        self._forget(name)
        return sent

    def restart(self, name: str, *, hard: bool = False) -> float:
        """Stop (or kill, if ``hard``) and start again; returns seconds until ready again."""
        began = time.monotonic()
        if hard:
            self.kill(name)
        else:
            self.stop(name)
        self.start(name)
        return time.monotonic() - began

    def _forget(self, name: str) -> None:
        child = self._children.pop(name, None)
        if child is not None:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if self._subreaper:
            processes.reap_adopted()

    # -- freeze -----------------------------------------------------------------------

    def freeze(self, name: str) -> None:
        """SIGSTOP the postmaster and every backend: connections hang, nothing fails fast."""
        pid = self.pid(name)
        if pid is None:
            raise LabError(f"cannot freeze {name}: it is not running")
        stopped = processes.signal_tree(pid, signal.SIGSTOP)
        self._frozen[name] = stopped
        # Signals are delivered asynchronously: return only once every process is really stopped.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and any(_running(p) for p in stopped):
            time.sleep(0.002)

    def thaw(self, name: str) -> None:
        """SIGCONT everything :meth:`freeze` stopped (no-op if not frozen)."""
        for proc in self._frozen.pop(name, []):
            try:
                proc.send_signal(signal.SIGCONT)
            except psutil.NoSuchProcess:
                continue

    @contextmanager
    def frozen(self, name: str) -> Iterator[None]:
        """Freeze for the duration of a ``with`` block, thawing even on error."""
        self.freeze(name)
        try:
            yield
        finally:
            self.thaw(name)

    # -- helpers ---------------------------------------------------------------------

    def _own(self, *paths: Path) -> None:
        if self._user is None:
            return
        for path in paths:
            shutil.chown(path, self._user, self._user)
        paths[0].chmod(0o700)

    def _run(self, argv: list[str], what: str) -> None:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            user=self._user,
            group=self._user,
            extra_groups=[] if self._user else None,
            check=False,
        )
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise LabError(f"{what} failed: {detail[-1] if detail else proc.returncode}")

    def _psql(self, inst: Instance, sql: str) -> None:
        self._run(
            [
                str(self._bindir / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(inst.socket_dir),
                "-p",
                str(inst.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ],
            what=f"setup SQL on {inst.name}",
        )

    def describe(self) -> list[dict[str, object]]:
        """One row per instance: name, port, status, pid (for ``status`` commands)."""
        return [
            {
                **asdict(inst),
                "home": str(inst.home),
                "status": self.status(inst.name),
                "pid": self.pid(inst.name),
            }
            for inst in self.instances()
        ]
