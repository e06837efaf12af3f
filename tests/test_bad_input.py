"""Bad input: one line naming the problem and the fix, non-zero exit, no traceback, no secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.engine import Engine, free_port
from tests.conftest import write_tenants

SECRET = "s3cr3t-Do-Not-Print"


def _run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def _one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert SECRET not in done.stderr + done.stdout
    for needle in needles:
        assert needle in lines[0], lines[0]


def _tenant(tmp_path: Path, **overrides: object) -> Path:
    pw = tmp_path / "pw"
    pw.write_text(SECRET)
    entry = {
        "name": "t",
        "dialect": "postgresql",
        "server": "127.0.0.1",
        "port": free_port(),
        "database": "harness",
        "user": "harness",
        "password_file": str(pw),
        **overrides,
    }
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps({"tenants": [entry]}))
    return path


def test_unreachable_server(tmp_path: Path) -> None:
    done = _run("-m", "loadgen", "check", "--tenants-file", str(_tenant(tmp_path)))
    _one_line_error(done, "tenant t", "is the server running")


def test_unknown_odbc_driver(tmp_path: Path) -> None:
    done = _run("-m", "loadgen", "check", "--tenants-file", str(_tenant(tmp_path, driver="No Such Driver")))
    _one_line_error(done, "ODBC driver 'No Such Driver' is not installed", "PostgreSQL Unicode")


@pytest.mark.integration
def test_bad_credentials(engine: Engine, tmp_path: Path) -> None:
    inst = engine.create("t0")
    path = _tenant(tmp_path, port=inst.port)
    done = _run("-m", "loadgen", "check", "--tenants-file", str(path))
    _one_line_error(done, "password authentication failed", "check user and password_file")


@pytest.mark.integration
def test_good_tenants_pass_the_check(engine: Engine, tmp_path: Path) -> None:
    path = write_tenants(tmp_path / "tenants.json", engine.create_many(2))
    done = _run("-m", "loadgen", "check", "--tenants-file", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("ok  ") == 2


def test_literal_password_is_refused(tmp_path: Path) -> None:
    done = _run("-m", "loadgen", "check", "--tenants-file", str(_tenant(tmp_path, password=SECRET)))
    _one_line_error(done, "literal password", "password_file or password_env")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--tenants", "0"], "--tenants must be at least 1"),
        (["--tenants", "-3"], "--tenants must be at least 1"),
        (["--rate", "0"], "--rate must be positive"),
        (["--rate", "-5"], "--rate must be positive"),
        (["--kill-tenant", "7"], "--kill-tenant 7 is not one of 0..2"),
    ],
)
def test_bad_plan_is_refused_before_anything_starts(tmp_path: Path, args: list[str], needle: str) -> None:
    done = _run("-m", "probes", "local-run", "--runs", str(tmp_path / "runs"), *args)
    _one_line_error(done, needle)
    assert not (tmp_path / "runs").exists()


def test_missing_postgresql(tmp_path: Path) -> None:
    done = _run(
        "-m",
        "probes",
        "local-run",
        "--runs",
        str(tmp_path / "runs"),
        env={"HARNESS_PG_BINDIR": str(tmp_path)},
    )
    _one_line_error(done, "holds no `postgres` program")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--duration", "0"], "--duration must be positive"),
        (["--duration", "5", "--rate", "-1"], "--rate must be 0"),
    ],
)
def test_loadgen_run_refuses_bad_numbers(tmp_path: Path, args: list[str], needle: str) -> None:
    done = _run("-m", "loadgen", "run", "--tenants-file", str(_tenant(tmp_path)), *args)
    _one_line_error(done, needle)
