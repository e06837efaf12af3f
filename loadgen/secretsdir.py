"""The private folder that holds tenants' passwords while a run uses them.

Passwords read from Kubernetes Secrets are written one file per tenant (mode 0600) into a
folder of their own (mode 0700) outside the run folder, so that journals, logs and
reports can refer to them by path only. The folder must not outlive the run: the
control removes it on every path it sees, and since a SIGKILLed ``chaos run`` sees none,
each folder names its owner's pid and the next run removes folders whose owner is gone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["OWNER_FILE", "PREFIX", "make_secrets_dir", "sweep_stale_secrets"]

PREFIX = "harness-secrets-"
OWNER_FILE = ".owner-pid"


def make_secrets_dir(parent: Path | None = None) -> Path:
    """A new private folder (0700) that records this process as its owner."""
    folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
    folder.chmod(0o700)
    (folder / OWNER_FILE).write_text(str(os.getpid()))
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_secrets(parent: Path | None = None) -> list[Path]:
    """Remove secrets folders whose owner process is gone; returns what was removed.

    A folder without an owner file (an older version's) counts as stale too: nothing
    running can still need it once its run is over, and a password must not stay behind.
    """
    removed = []
    for folder in Path(parent or tempfile.gettempdir()).glob(f"{PREFIX}*"):
        if not folder.is_dir() or folder.is_symlink():
            continue
        try:
            owner = int((folder / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            owner = None
        if owner is not None and owner != os.getpid() and _alive(owner):
            continue
        if owner == os.getpid():
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed
