"""The writer's retry timing and its use of abandoned calls that return late, without a server.

A fake offload stands in for the worker threads: a call either runs at once or "hangs"
(CallTimeout, its cleanup kept so the test can play the moment it finally returns).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pyodbc
import pytest

from loadgen.journal import ClockSample, JournalWriter, Write, read_journal
from loadgen.offload import CallTimeout
from loadgen.tenants import Tenant
from loadgen.writer import TenantWriter, _Session


class _Cursor:
    def __init__(self) -> None:
        self.inserts = 0

    def execute(self, sql: str, params: Any) -> _Cursor:
        self.inserts += 1
        return self

    def fetchone(self) -> tuple[float]:
        return (1234.5,)

    def close(self) -> None:
        pass


class _Conn:
    def __init__(self) -> None:
        self.cur = _Cursor()
        self.closed = False

    def cursor(self) -> _Cursor:
        return self.cur

    def close(self) -> None:
        self.closed = True


def _session() -> _Session:
    return _Session(_Conn(), ClockSample(tenant="t", at=1.0, skew=0.0, rtt=0.001))


class _Offload:
    """``hang`` True: every call times out and its cleanup is kept; else calls run inline."""

    def __init__(self) -> None:
        self.hang = True
        self.cleanups: list[Any] = []
        self.calls = 0

    def run(self, fn: Any, timeout: float, cleanup: Any = None) -> Any:
        self.calls += 1
        if self.hang:
            self.cleanups.append(cleanup)
            raise CallTimeout("no answer")
        return fn()


class _Refused:
    """Every connection is refused at once, as by a killed server."""

    def run(self, fn: Any, timeout: float, cleanup: Any = None) -> Any:
        raise pyodbc.OperationalError("08001", "connection refused")


def _tenant() -> Tenant:
    return Tenant(
        name="t",
        dialect="postgresql",
        server="127.0.0.1",
        port=1,
        database="d",
        user="u",
        driver="PostgreSQL Unicode",
        password_env="HOME",
    )


def _writer(tmp_path: Path, offload: Any, seed: int = 1, **kw: Any) -> TenantWriter:
    journal = JournalWriter(tmp_path / "journal", "r1")
    return TenantWriter(_tenant(), 0, "r1", journal, offload, rng=random.Random(seed), **kw)


def _fail_until_due(writer: TenantWriter, attempts: int) -> list[float]:
    """Make ``attempts`` failing attempts, each as soon as it is due; the waits asked for."""
    waits = []
    for _ in range(attempts):
        record = writer.write_once()
        assert record is not None and record.outcome == "fail"
        wait = writer.backoff()
        waits.append(wait)
        assert writer.write_once() is None, "an attempt before the backoff is over must not be made"
        time.sleep(wait + 0.001)
    return waits


def _next_attempt(writer: TenantWriter) -> Write:
    """Poll as the Locust user does until the writer makes an attempt."""
    deadline = time.monotonic() + 1.0
    while (record := writer.write_once()) is None:
        assert time.monotonic() < deadline, "no attempt within 1 s"
        wait = writer.backoff()
        assert wait <= 0.1
        time.sleep(wait)
    return record


def test_backoff_after_failures_is_short_jittered_and_seeded(tmp_path: Path) -> None:
    waits = _fail_until_due(_writer(tmp_path, _Refused(), seed=7), 8)
    assert 0.02 <= waits[0] <= 0.05  # first retry: half of 50 ms plus up to the other half
    assert all(0.045 <= w <= 0.1 for w in waits[1:]), waits  # then capped at 100 ms
    again = _fail_until_due(_writer(tmp_path / "b", _Refused(), seed=7), 8)
    other = _fail_until_due(_writer(tmp_path / "c", _Refused(), seed=8), 8)
    # The same seed retries on the same schedule; another writer does not retry in step.
    assert max(abs(a - b) for a, b in zip(waits, again, strict=True)) < 0.01
    assert max(abs(a - b) for a, b in zip(waits, other, strict=True)) > 0.01


def test_healthy_writer_does_not_wait(tmp_path: Path) -> None:
    offload = _Offload()
    offload.hang = False
    writer = _writer(tmp_path, offload)
    writer._conn = _session()
    record = writer.write_once()
    assert record is not None and record.outcome == "ok"
    assert writer.backoff() == 0.0


def test_blocked_writer_polls_then_uses_a_connection_that_returned_late(tmp_path: Path) -> None:
    offload = _Offload()
    writer = _writer(tmp_path, offload)
    for _ in range(3):  # a frozen server: three connects abandoned in turn
        record = _next_attempt(writer)
        assert record.error == "ConnectTimeout"
    assert writer.blocked() and writer.write_once() is None
    assert all(0.01 <= writer.backoff() <= 0.02 for _ in range(20))  # short polls, jittered

    # The server resumes: the first abandoned connect returns with a working session,
    # the second with an error. The next attempt inserts at once on the returned one.
    late = _session()
    offload.cleanups[0](late)
    offload.cleanups[1](None)
    assert writer.backoff() == 0.0
    offload.hang = False
    calls = offload.calls
    record = writer.write_once()
    assert record is not None and record.outcome == "ok", record
    assert offload.calls == calls + 1, "no new connection was opened"
    assert late.cursor.inserts == 1 and writer.abandoned == 1
    writes, clocks = read_journal(tmp_path / "journal")
    assert [w.outcome for w in writes] == ["fail", "fail", "fail", "ok"]
    assert len(clocks) == 1  # the returned connection's clock sample is journaled once


def test_a_hung_insert_that_returns_hands_its_connection_back(tmp_path: Path) -> None:
    offload = _Offload()
    writer = _writer(tmp_path, offload)
    session = writer._conn = _session()
    record = writer.write_once()
    assert record is not None and (record.outcome, record.error) == ("info", "WriteTimeout")
    assert writer._conn is None and writer.abandoned == 1
    offload.cleanups[0]((1234.5,))  # the insert finished after all: its connection works
    offload.hang = False
    record = writer.write_once()
    assert record is not None and record.outcome == "ok"
    assert writer._conn is session and writer.abandoned == 0 and not session.conn.closed


def test_a_late_connection_is_closed_when_one_is_already_open(tmp_path: Path) -> None:
    offload = _Offload()
    writer = _writer(tmp_path, offload)
    writer.write_once()  # connect abandoned
    offload.hang = False
    current = writer._conn = _session()
    late = _session()
    offload.cleanups[0](late)
    record = writer.write_once()
    assert record is not None and record.outcome == "ok"
    assert writer._conn is current and late.conn.closed and writer.abandoned == 0


def test_a_failed_late_call_closes_its_connection_in_the_worker(tmp_path: Path) -> None:
    offload = _Offload()
    writer = _writer(tmp_path, offload)
    session = writer._conn = _session()
    writer.write_once()  # insert abandoned
    offload.cleanups[0](None)  # it ended in an error: the connection is not trusted
    assert session.conn.closed
    assert not writer.blocked() and writer.abandoned == 0


@pytest.mark.parametrize(("given", "login"), [(0.5, 1), (1.0, 1), (1.2, 2), (2.5, 3)])
def test_login_timeout_is_rounded_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: float, login: int
) -> None:
    seen: list[int] = []

    def connect(conn_str: str, autocommit: bool, timeout: int) -> Any:
        seen.append(timeout)
        raise pyodbc.OperationalError("08001", "refused")

    monkeypatch.setattr(pyodbc, "connect", connect)
    offload = _Offload()
    offload.hang = False
    writer = _writer(tmp_path, offload, connect_timeout=given)
    record = writer.write_once()
    assert record is not None and record.outcome == "fail"
    assert seen == [login]
