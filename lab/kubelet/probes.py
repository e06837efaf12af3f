"""Container probes: readiness, liveness and startup, run the way the real kubelet does.

Handlers: ``exec`` (a host command with the container's environment, working
folder and user, as it runs inside the container; exit 0 is success),
``tcpSocket`` (a connect to 127.0.0.1), ``httpGet`` (a status from 200 to 399). For
the engine image an exec probe that calls ``sqlcmd`` (directly or inside ``sh -c``)
is a real SQL ping instead: the ``-Q`` query runs through ``psql`` against the pod's
port with ``-U``/``-P``/``-d`` when given (user ``sa`` means ``$LAB_DB_USER``), else
``$LAB_DB_USER``, ``$MSSQL_SA_PASSWORD`` and ``$LAB_DB_NAME`` (default ``harness``).

Timing follows the probe's ``initialDelaySeconds``, ``periodSeconds`` (10),
``timeoutSeconds`` (1), ``successThreshold`` (1) and ``failureThreshold`` (3); the
first run is due when the initial delay is over.
"""

from __future__ import annotations

import http.client
import os
import re
import shlex
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.kubelet.images import host_argv
from lab.kubelet.podspec import resolve_port
from lab.kubelet.run_as import RunAs
from lab.kubelet.runtime import Spawner
from lab.paths import pg_bindir

__all__ = ["ProbeContext", "ProbeState", "run_probe", "sql_ping", "sqlcmd_args"]

Obj = dict[str, Any]


@dataclass
class ProbeContext:
    """What a probe needs to know about its container."""

    container: Obj
    env: dict[str, str]
    cwd: Path
    engine_port: int | None = None
    #: The container's user (None: the kubelet's own).
    run_as: RunAs | None = None


@dataclass
class ProbeState:
    """One probe of one running container: its schedule and its consecutive results."""

    kind: str
    spec: Obj
    started: float
    successes: int = 0
    failures: int = 0
    result: bool | None = None
    last_message: str = ""
    next_due: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.next_due = self.started + self.initial_delay

    @property
    def initial_delay(self) -> float:
        return float(self.spec.get("initialDelaySeconds") or 0)

    @property
    def period(self) -> float:
        return float(self.spec.get("periodSeconds") or 10)

    @property
    def timeout(self) -> float:
        return float(self.spec.get("timeoutSeconds") or 1)

    @property
    def success_threshold(self) -> int:
        return int(self.spec.get("successThreshold") or 1)

    @property
    def failure_threshold(self) -> int:
        return int(self.spec.get("failureThreshold") or 3)

    def due(self, now: float) -> bool:
        return now >= self.next_due

    def record(self, ok: bool, message: str, now: float) -> bool | None:
        """Count one result; returns the probe's verdict when it changes, else None."""
        self.next_due = now + self.period
        self.last_message = message
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.result is not True and self.successes >= self.success_threshold:
                self.result = True
                return True
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.result is not False and self.failures >= self.failure_threshold:
                self.result = False
                return False
        return None


def _expand_shell_vars(text: str, env: dict[str, str]) -> str:
    return re.sub(
        r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)",
        lambda m: env.get(m.group(1) or m.group(2), ""),
        text,
    )


def sqlcmd_args(command: list[str], env: dict[str, str]) -> list[str] | None:
    """The ``sqlcmd`` argument list inside an exec probe command, or None if it calls no sqlcmd."""
    argv = command
    if len(argv) >= 3 and argv[0].rsplit("/", 1)[-1] in ("sh", "bash", "dash") and argv[1] == "-c":
        try:
            argv = shlex.split(_expand_shell_vars(argv[2], env))
        except ValueError:
            return None
    for i, word in enumerate(argv):
        if word.rsplit("/", 1)[-1] == "sqlcmd":
            return argv[i + 1 :]
    return None


def _flags(args: list[str]) -> dict[str, str]:
    flags: dict[str, str] = {}
    i = 0
    while i < len(args):
        word = args[i]
        if word.startswith("-") and len(word) == 2 and i + 1 < len(args) and word[1] in "SUPdQql":
            flags[word[1]] = args[i + 1]
            i += 2
            continue
        i += 1
    return flags


def _quote(value: str) -> str:
    """A libpq connection-string value in single quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sql_ping(
    spawner: Spawner, *, port: int, user: str, password: str, database: str, query: str, timeout: float
) -> tuple[bool, str]:
    """Run ``query`` through psql over TCP with password authentication; ``(ok, message)``."""
    conninfo = (
        f"host=127.0.0.1 port={port} dbname={_quote(database)} user={_quote(user)} "
        f"connect_timeout={max(1, int(timeout))} sslmode=disable application_name=lab-probe"
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGPASSWORD": password, "LANG": "C.UTF-8"}
    try:
        psql = str(pg_bindir() / "psql")
    except Exception:
        psql = "psql"
    code, out = spawner.run(
        [psql, "-X", "-q", "-t", "-A", "-w", "-d", conninfo, "-c", query], timeout, env=env
    )
    if code is None:
        return False, f"sql ping timed out after {timeout:g}s"
    text = out.decode(errors="replace").strip()
    return code == 0, text.splitlines()[-1] if text else f"psql exit {code}"


def _engine_probe(spawner: Spawner, args: list[str], ctx: ProbeContext, timeout: float) -> tuple[bool, str]:
    flags = _flags(args)
    env = ctx.env
    user = flags.get("U") or env.get("LAB_DB_USER") or "harness"
    if user == "sa":
        user = env.get("LAB_DB_USER") or "harness"
    password = flags.get("P") or env.get("MSSQL_SA_PASSWORD", "")
    database = flags.get("d") or env.get("LAB_DB_NAME") or "harness"
    query = flags.get("Q") or flags.get("q") or "SELECT 1"
    port = ctx.engine_port
    server = flags.get("S", "")
    match = re.search(r"[,:](\d+)$", server)
    if match:
        port = int(match.group(1))
    if port is None:
        return False, "the engine container has no port"
    return sql_ping(
        spawner, port=port, user=user, password=password, database=database, query=query, timeout=timeout
    )


def _tcp(port: int, timeout: float) -> tuple[bool, str]:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True, ""
    except OSError as exc:
        return False, f"dial tcp 127.0.0.1:{port}: {exc.strerror or exc}"


def _http(spec: Obj, port: int, timeout: float) -> tuple[bool, str]:
    path = str(spec.get("path") or "/")
    headers = {str(h.get("name")): str(h.get("value")) for h in spec.get("httpHeaders") or []}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        status = conn.getresponse().status
    except OSError as exc:
        return False, f"Get http://127.0.0.1:{port}{path}: {exc}"
    finally:
        conn.close()
    return 200 <= status < 400, f"HTTP probe failed with statuscode: {status}" if status >= 400 else ""


def run_probe(spawner: Spawner, spec: Obj, ctx: ProbeContext) -> tuple[bool, str]:
    """Run one probe once; ``(success, message)``."""
    timeout = float(spec.get("timeoutSeconds") or 1)
    if "exec" in spec:
        command = [str(c) for c in (spec["exec"] or {}).get("command") or []]
        if not command:
            return False, "exec probe without a command"
        if ctx.engine_port is not None:
            args = sqlcmd_args(command, ctx.env)
            if args is not None:
                return _engine_probe(spawner, args, ctx, timeout)
        began = time.monotonic()
        own = ctx.run_as is None or ctx.run_as.as_kubelet
        user = ctx.run_as.popen_kwargs() if ctx.run_as is not None else {}
        try:
            code, out = spawner.run(host_argv(command, own), timeout, env=ctx.env, cwd=ctx.cwd, **user)
        except OSError as exc:
            return False, f"exec probe failed to start: {exc.strerror or exc}"
        if code is None:
            return False, f"command timed out after {time.monotonic() - began:.1f}s"
        text = out.decode(errors="replace").strip()
        return code == 0, text[-500:]
    if "tcpSocket" in spec:
        port = resolve_port((spec["tcpSocket"] or {}).get("port"), ctx.container)
        if port is None:
            return False, "tcpSocket probe port does not resolve"
        return _tcp(port, timeout)
    if "httpGet" in spec:
        port = resolve_port((spec["httpGet"] or {}).get("port"), ctx.container)
        if port is None:
            return False, "httpGet probe port does not resolve"
        return _http(spec["httpGet"], port, timeout)
    return False, "unsupported probe handler (exec, tcpSocket and httpGet are)"
