"""Tenants: which databases the load writes to, and how to reach them through ODBC.

A tenants file is JSON: ``{"tenants": [{...}, ...]}`` with, per tenant, ``name``,
``dialect`` (``postgresql`` or ``mssql``), ``server``, ``port``, ``database``, ``user``
and the password by reference only: ``password_file`` (a path) or ``password_env``
(an environment variable). ``driver`` names an installed ODBC driver or a path to its
``.so``; it defaults per dialect. Passwords never appear in the file, in errors or in
logs: :func:`redact` strips them from any text before it is shown. ``lab_id`` (a lab's
tenants only) is the lab the server must belong to: every new connection checks it
(:mod:`loadgen.identity`).
"""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.mounts import mapped, mounts_from
from loadgen.dialects import dialect
from loadgen.errors import LoadgenError

__all__ = ["Tenant", "load_tenants", "redact", "resolve_driver"]

_DEFAULT_DRIVER = {"postgresql": "PostgreSQL Unicode", "mssql": "ODBC Driver 18 for SQL Server"}
_FREETDS = (
    "FreeTDS",
    "/usr/lib/x86_64-linux-gnu/odbc/libtdsodbc.so",
    "/usr/lib/aarch64-linux-gnu/odbc/libtdsodbc.so",
)
_PWD = re.compile(r"(?i)(pwd|password)\s*=\s*(\{[^}]*\}|[^;]*)")


@dataclass(frozen=True)
class Tenant:
    """One tenant database. ``password`` is read from its file or variable when needed."""

    name: str
    dialect: str
    server: str
    port: int
    database: str
    user: str
    driver: str = ""
    password_file: str | None = None
    password_env: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    lab_id: str | None = None

    def password(self) -> str:
        """The secret, read now; LoadgenError saying where it was looked for otherwise."""
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise LoadgenError(
                    f"tenant {self.name}: environment variable {self.password_env} is not set: export it"
                )
            return value
        if self.password_file:
            path = self.password_file
            mounts = mounts_from()
            if mounts:  # in a lab pod, run by the kubelet's user: only what the pod mounts
                found = mapped(path, mounts)
                if found is None:
                    raise LoadgenError(
                        f"tenant {self.name}: password_file {path} is not under one of the pod's volume "
                        "mounts: mount the Secret that holds it"
                    )
                path = found
            try:
                return Path(path).read_text().strip()
            except OSError as exc:
                raise LoadgenError(
                    f"tenant {self.name}: cannot read password_file {self.password_file} "
                    f"({exc.strerror}): fix the path or its permissions"
                ) from None
        return ""

    def connection_string(self) -> str:
        """The ODBC connection string, password included: never log it, use :func:`redact`."""
        driver = resolve_driver(self.dialect, self.driver)
        parts = {"Driver": "{" + driver + "}"}
        if self.dialect == "mssql":
            parts["Server"] = f"tcp:{self.server},{self.port}"
            parts["Encrypt"] = "yes"
            parts["TrustServerCertificate"] = "yes"
        else:
            parts["Server"] = self.server
            parts["Port"] = str(self.port)
        parts["Database"] = self.database
        parts["Uid"] = self.user
        parts["Pwd"] = "{" + self.password().replace("}", "}}") + "}"
        parts.update(self.options)
        return ";".join(f"{k}={v}" for k, v in parts.items()) + ";"

    def describe(self) -> str:
        """``name (dialect://user@server:port/database)``, safe to print."""
        return f"{self.name} ({self.dialect}://{self.user}@{self.server}:{self.port}/{self.database})"


def redact(text: str) -> str:
    """``text`` with every ``Pwd=...`` / ``Password=...`` value replaced by ``***``."""
    return _PWD.sub(lambda m: f"{m.group(1)}=***", text)


def resolve_driver(dialect_name: str, requested: str = "") -> str:
    """An ODBC driver name or ``.so`` path that unixODBC can load for this dialect.

    A requested name must be registered (``odbcinst -q -d``) or be an existing path.
    For ``mssql`` with no request: the registered Driver 18, then the ``.so`` shipped in
    the ``mssql-python-odbc`` wheel, then FreeTDS.
    """
    import pyodbc

    installed = list(pyodbc.drivers())
    wanted = requested or _DEFAULT_DRIVER[dialect(dialect_name).name]
    if wanted in installed or (wanted.startswith("/") and Path(wanted).exists()):
        return wanted
    if dialect_name == "mssql" and not requested:
        shipped = _wheel_msodbc()
        if shipped:
            return shipped
        for candidate in _FREETDS:
            if candidate in installed or Path(candidate).exists():
                return candidate
    fix = {
        "postgresql": "apt-get install odbc-postgresql (or run `make setup`)",
        "mssql": "pip install mssql-python-odbc, or apt-get install tdsodbc",
    }[dialect_name]
    raise LoadgenError(
        f"ODBC driver {wanted!r} is not installed (installed: {', '.join(installed) or 'none'}): {fix}"
    )


def _wheel_msodbc() -> str | None:
    try:
        import mssql_python_odbc
    except ImportError:
        return None
    base = Path(mssql_python_odbc.__file__).parent
    found = sorted(glob.glob(str(base / "libs/linux/debian_ubuntu/*/lib/libmsodbcsql-18*.so*")))
    return found[-1] if found else None


_REQUIRED = ("name", "server", "port", "database", "user")


def _tenant(entry: Any, where: str) -> Tenant:
    if not isinstance(entry, dict):
        raise LoadgenError(f"{where}: each tenant must be an object with {', '.join(_REQUIRED)}")
    missing = [k for k in _REQUIRED if k not in entry]
    if missing:
        raise LoadgenError(f"{where}: tenant entry lacks {', '.join(missing)}: add them")
    if "password" in entry:
        raise LoadgenError(
            f"{where}: tenant {entry['name']} has a literal password: use password_file or password_env"
        )
    try:
        port = int(entry["port"])
    except (TypeError, ValueError):
        raise LoadgenError(f"{where}: tenant {entry['name']}: port must be a number") from None
    if not 0 < port < 65536:
        raise LoadgenError(f"{where}: tenant {entry['name']}: port {port} is out of range 1-65535")
    lab_id = entry.get("lab_id")
    if lab_id is not None and (not isinstance(lab_id, str) or not lab_id.strip()):
        raise LoadgenError(
            f"{where}: tenant {entry['name']}: lab_id must be the lab's id (a non-empty string): "
            "fix it, or remove it for a server outside a lab"
        )
    name = dialect(str(entry.get("dialect", "postgresql"))).name
    return Tenant(
        name=str(entry["name"]),
        dialect=name,
        server=str(entry["server"]),
        port=port,
        database=str(entry["database"]),
        user=str(entry["user"]),
        driver=str(entry.get("driver", "")),
        password_file=entry.get("password_file"),
        password_env=entry.get("password_env"),
        options={str(k): str(v) for k, v in (entry.get("options") or {}).items()},
        lab_id=lab_id,
    )


def load_tenants(path: str | Path) -> list[Tenant]:
    """Read and check a tenants file; LoadgenError with the fix on anything wrong."""
    where = str(path)
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise LoadgenError(
            f"tenants file {where} not found: pass the path the lab or your var file wrote"
        ) from None
    except json.JSONDecodeError as exc:
        raise LoadgenError(f"tenants file {where} is not valid JSON (line {exc.lineno}): fix it") from None
    entries = raw.get("tenants") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or not entries:
        raise LoadgenError(f'tenants file {where} must hold {{"tenants": [...]}} with at least one tenant')
    tenants = [_tenant(entry, where) for entry in entries]
    names = [t.name for t in tenants]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise LoadgenError(f"tenants file {where}: duplicate tenant names {duplicated}: make them unique")
    return tenants
