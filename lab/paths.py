"""Where the lab keeps its state, and where PostgreSQL's programs are.

The lab directory defaults to ``.lab/`` at the project root. PostgreSQL runs as the
``postgres`` user, so every folder above its data directory must be traversable by
that user; a clone under ``/root`` is not. In that case the state lives under
``/var/tmp/mssql-harness-<hash>`` and ``.lab`` becomes a symlink to it, so every
path the user sees stays ``.lab/...``.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
from pathlib import Path

from lab.errors import LabError

__all__ = ["lab_dir", "pg_bindir", "project_root", "reachable_by", "server_user"]

PG_USER = "postgres"


def project_root() -> Path:
    """The checkout this package runs from (the folder holding ``setup.cfg``)."""
    here = Path(__file__).resolve().parent.parent
    return here


def server_user() -> str | None:
    """The user database servers run as: ``postgres`` when we are root, else ourselves (None)."""
    return PG_USER if os.geteuid() == 0 else None


def reachable_by(path: Path, user: str) -> bool:
    """True if ``user`` can traverse every folder from ``/`` down to ``path``."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return False
    current = Path("/")
    for part in path.resolve().parts[1:]:
        current = current / part
        if not current.exists():
            break
        st = current.stat()
        if st.st_uid == entry.pw_uid:
            ok = bool(st.st_mode & 0o100)
        elif st.st_gid == entry.pw_gid:
            ok = bool(st.st_mode & 0o010)
        else:
            ok = bool(st.st_mode & 0o001)
        if current.is_dir() and not ok:
            return False
    return True


def lab_dir(root: Path | None = None) -> Path:
    """The lab state directory, created if needed; ``$HARNESS_LAB_DIR`` overrides it."""
    override = os.environ.get("HARNESS_LAB_DIR")
    if override:
        path = Path(override).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path
    base = (root or project_root()) / ".lab"
    user = server_user()
    if base.is_symlink() or base.exists() or user is None or reachable_by(base.parent, user):
        base.mkdir(parents=True, exist_ok=True)
        return base.resolve()
    digest = hashlib.sha256(str(base).encode()).hexdigest()[:10]
    target = Path("/var/tmp") / f"mssql-harness-{digest}"  # noqa: S108 - fixed name by design, see module doc
    target.mkdir(mode=0o755, parents=True, exist_ok=True)
    base.symlink_to(target, target_is_directory=True)
    return target


def pg_bindir() -> Path:
    """The folder with ``postgres`` and ``initdb`` (newest installed major version).

    ``$HARNESS_PG_BINDIR`` overrides the search (and must hold ``postgres``).
    """
    override = os.environ.get("HARNESS_PG_BINDIR")
    if override:
        if (Path(override) / "postgres").exists():
            return Path(override)
        raise LabError(
            f"HARNESS_PG_BINDIR={override} holds no `postgres` program: "
            "point it at PostgreSQL's bin folder or unset it"
        )
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("postgres")
    if found:
        return Path(found).resolve().parent
    raise LabError(
        "PostgreSQL server not found (no /usr/lib/postgresql/*/bin/postgres): "
        "run `make setup` as root, or `apt-get install postgresql`"
    )
