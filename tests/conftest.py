"""Fixtures that start real things: PostgreSQL servers on free ports, run folders.

Servers live under the lab directory (PostgreSQL runs as the ``postgres`` user and
must reach its data directory) in a fresh folder per fixture, removed afterwards.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.engine import Engine, Instance
from lab.paths import lab_dir


@pytest.fixture
def engine_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="test-", dir=lab_dir()))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def engine(engine_root: Path) -> Iterator[Engine]:
    with Engine(engine_root / "engine") as eng:
        yield eng


def write_tenants(path: Path, instances: list[Instance]) -> Path:
    """A tenants file for ``instances`` (password by file reference only)."""
    path.write_text(json.dumps({"tenants": [i.tenant() for i in instances]}))
    return path
