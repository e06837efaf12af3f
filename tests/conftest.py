"""Fixtures that start real things: PostgreSQL servers on free ports, run folders.

Servers live under the lab directory (PostgreSQL runs as the ``postgres`` user and
must reach its data directory) in a fresh folder per fixture, removed afterwards.

Labs and control planes the tests start run under the ``fast`` timing profile
(:mod:`lab.timing`) unless a test names another: many faults must fit in a few minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.engine import Engine, Instance
from lab.paths import lab_dir
from lab.timing import ENV as TIMING_ENV
from lab.timing import FAST

os.environ[TIMING_ENV] = FAST.name


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
