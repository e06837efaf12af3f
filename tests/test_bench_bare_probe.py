"""The bare probe: plain threads and pyodbc writing the harness's INSERT, journaled like the harness."""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyodbc
import pytest

from lab.engine import Engine, free_port
from lab.paths import project_root
from loadgen.dialects import dialect
from loadgen.journal import journal_files, journal_run_ids, read_journal
from loadgen.tenants import Tenant, load_tenants
from tests.benchmarks.bare_probe import assign, main, parse_args
from tests.conftest import write_tenants


def _probe(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.bare_probe", *argv],
        cwd=project_root(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _args(tenants: Path, journal: Path, run_id: str, clients: int = 2, seconds: float = 2) -> list[str]:
    return [
        "--tenants-file",
        str(tenants),
        "--clients",
        str(clients),
        "--seconds",
        str(seconds),
        "--run-id",
        run_id,
        "--journal-dir",
        str(journal),
    ]


# -- no server --------------------------------------------------------------------------------------


def test_writers_go_round_the_tenants() -> None:
    tenants = [Tenant(name, "postgresql", "127.0.0.1", 5432, "d", "u") for name in ("a", "b", "c")]
    assert [t.name for t in assign(5, tenants)] == ["a", "b", "c", "a", "b"]
    assert [t.name for t in assign(1, tenants)] == ["a"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"--clients": "0"}, "argument --clients: must be at least 1"),
        ({"--clients": "two"}, "argument --clients: wants a whole number"),
        ({"--seconds": "0"}, "argument --seconds: must be more than 0"),
        ({"--seconds": "nan"}, "argument --seconds: must be more than 0"),
        ({"--run-id": "x" * 65}, "argument --run-id: must be 1 to 64 characters"),
    ],
)
def test_bad_arguments_are_one_line(
    change: dict[str, str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _args(tmp_path / "t.json", tmp_path / "j", "r")
    for option, value in change.items():
        argv[argv.index(option) + 1] = value
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    assert words in capsys.readouterr().err


def test_a_missing_tenants_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_args(tmp_path / "missing.json", tmp_path / "j", "r")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bare_probe: tenants file") and "not found" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "j").exists()


def test_a_server_that_does_not_answer_is_one_line_per_writer_and_exit_1(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("not-the-password")
    entry = {"name": "gone", "server": "127.0.0.1", "port": free_port(), "database": "d", "user": "u"}
    tenants = tmp_path / "tenants.json"
    tenants.write_text(json.dumps({"tenants": [{**entry, "password_file": str(secret)}]}))
    done = _probe(*_args(tenants, tmp_path / "journal", "gone-1"), timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2  # one line per writer
    assert all(line.startswith("bare_probe: writer ") for line in lines)
    assert all("could not connect to gone" in line and "Connection refused" in line for line in lines)
    assert "not-the-password" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    writes, _ = read_journal(tmp_path / "journal")
    assert writes == []


# -- a real server ------------------------------------------------------------------------------------


def _rows(tenant: Tenant, run_id: str) -> dict[tuple[int, int], float]:
    conn = pyodbc.connect(tenant.connection_string(), autocommit=True, timeout=10)
    try:
        rows = conn.execute(dialect(tenant.dialect).read_back, run_id, tenant.name).fetchall()
    finally:
        conn.close()
    return {(int(r[0]), int(r[1])): float(r[2]) for r in rows}


@pytest.mark.integration
def test_bare_probe_journals_every_ack_in_order_and_the_rows_match(engine: Engine, tmp_path: Path) -> None:
    tenants_file = write_tenants(tmp_path / "tenants.json", engine.create_many(1))
    (tenant,) = load_tenants(tenants_file)
    journal = tmp_path / "journal"
    began = time.time()
    done = _probe(*_args(tenants_file, journal, "bare-it"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == ""

    assert list(journal_run_ids(journal)) == ["bare-it"]
    assert len(journal_files(journal)) == 1
    writes, clocks = read_journal(journal)
    assert {c.tenant for c in clocks} == {tenant.name} and len(clocks) == 2
    assert {w.outcome for w in writes} == {"ok"}
    assert {w.tenant for w in writes} == {tenant.name}
    by_writer: dict[int, list[int]] = collections.defaultdict(list)
    for w in writes:
        by_writer[w.writer].append(w.seq)
        assert w.due is None and w.error is None and w.server_ts is not None
        assert began <= w.start <= w.end and w.latency > 0
    assert sorted(by_writer) == [0, 1]
    for seqs in by_writer.values():
        assert sorted(seqs) == list(range(1, len(seqs) + 1))
        assert len(seqs) >= 50  # a local server answers hundreds of inserts a second
    span = max(w.end for w in writes) - min(w.start for w in writes)
    assert 1.8 <= span <= 4.0
    assert f"{len(writes)} acks of {len(writes)} attempts" in done.stdout

    rows = _rows(tenant, "bare-it")
    assert set(rows) == {w.key for w in writes}
    assert all(rows[w.key] == pytest.approx(w.server_ts, abs=1e-5) for w in writes)


@pytest.mark.integration
def test_bare_probe_stops_on_sigterm_and_ends_on_a_rejected_write(engine: Engine, tmp_path: Path) -> None:
    tenants_file = write_tenants(tmp_path / "tenants.json", engine.create_many(1))
    journal = tmp_path / "first"
    argv = [
        sys.executable,
        "-m",
        "tests.benchmarks.bare_probe",
        *_args(tenants_file, journal, "bare-twice", 1, 60),
    ]
    proc = subprocess.Popen(
        argv, cwd=project_root(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(read_journal(journal)[0]) < 20:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    first, _ = read_journal(journal)
    assert {w.outcome for w in first} == {"ok"} and len(first) >= 20
    assert f"{len(first)} acks" in out

    # The same run id again: its first insert collides with a row of the first run.
    again = _probe(*_args(tenants_file, tmp_path / "second", "bare-twice", 1, 5))
    assert again.returncode == 1
    (record,) = read_journal(tmp_path / "second")[0]
    assert (record.seq, record.outcome, record.error) == (1, "fail", "IntegrityError:23505")
    assert again.stderr.strip() == "bare_probe: writer 0 seq 1 ended fail: IntegrityError:23505"
