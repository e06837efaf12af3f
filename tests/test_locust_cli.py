"""The real ``locust`` CLI with the harness's locustfile, headless, for a few seconds."""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

import pytest

from lab.engine import Engine
from loadgen.journal import read_journal
from loadgen.runner import LOCUSTFILE
from tests.conftest import write_tenants

pytestmark = pytest.mark.integration


def _locust(
    tmp_path: Path, tenants: Path, *extra: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "--tenants-file",
        str(tenants),
        "--run-dir",
        str(tmp_path / "run"),
        "--run-id",
        "cli-test",
        *extra,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def test_headless_run_produces_a_journal(engine: Engine, tmp_path: Path) -> None:
    tenants = write_tenants(tmp_path / "tenants.json", engine.create_many(2))
    done = _locust(tmp_path, tenants, "-u", "2", "-r", "2", "-t", "4s")
    assert done.returncode == 0, done.stderr[-2000:]
    writes, clocks = read_journal(tmp_path / "run" / "journal")
    per_tenant = collections.Counter(w.tenant for w in writes if w.outcome == "ok")
    assert set(per_tenant) == {"tenant-0", "tenant-1"}
    for count in per_tenant.values():
        assert 60 <= count <= 90  # 20/s for ~4 s
    assert {c.tenant for c in clocks} == {"tenant-0", "tenant-1"}
    assert all(abs(c.skew) < 0.5 for c in clocks)
    assert all(w.server_ts is not None for w in writes if w.outcome == "ok")
    urls = list((tmp_path / "run" / "metrics").glob("*.url"))
    assert len(urls) == 1


def test_tenant_assignment_holds_with_processes(engine: Engine, tmp_path: Path) -> None:
    tenants = write_tenants(tmp_path / "tenants.json", engine.create_many(2))
    done = _locust(tmp_path, tenants, "-u", "4", "-r", "4", "-t", "5s", "--processes", "2", timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    writes, _ = read_journal(tmp_path / "run" / "journal")
    writers = {(w.writer, w.tenant) for w in writes}
    assert sorted(writers) == [(0, "tenant-0"), (1, "tenant-1"), (2, "tenant-0"), (3, "tenant-1")]
    assert len(list((tmp_path / "run" / "journal").glob("*.jsonl"))) == 2  # one file per worker process


def test_bad_tenants_file_is_one_line(tmp_path: Path) -> None:
    done = _locust(tmp_path, tmp_path / "missing.json", "-u", "1", "-t", "1s")
    assert done.returncode != 0
    assert "tenants file" in done.stderr and "not found" in done.stderr
    assert "Traceback" not in done.stderr
