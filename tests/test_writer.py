"""The writer's threads, deadlines, retry timing and hand-back of late connections, without a server.

A stand-in server (:class:`_Server`) replaces :func:`loadgen.session.connect`: a connect
or an insert answers at once, is refused, or hangs until the test releases it, as a
frozen (SIGSTOPped) server's would. Every test checks the journal's invariant too: each
attempt is journaled exactly once, with sequence numbers 1..n.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyodbc
import pytest

import loadgen.writer as writer_module
from loadgen.deadlines import Deadlines
from loadgen.journal import ClockSample, JournalWriter, Write, read_journal
from loadgen.session import Session, connect
from loadgen.tenants import Tenant
from loadgen.writer import TenantWriter


class _Server:
    """Connects and inserts answer (``ok``), are refused (``refuse``) or hang until released.

    ``hang_inserts``/``hang_connects``: how many of the next calls hang (the rest answer).
    """

    def __init__(self) -> None:
        self.connect_mode = "ok"
        self.insert_error: Exception | None = None
        self.hang_inserts = 0
        self.hang_connects = 0
        self.insert_delay = 0.0
        self.close_hangs = False
        self.released = threading.Event()
        self.sessions: list[Session] = []
        self.connects = 0
        self._lock = threading.Lock()

    def release(self) -> None:
        self.released.set()

    def _hang(self, kind: str) -> bool:
        with self._lock:
            left = getattr(self, kind)
            if left > 0:
                setattr(self, kind, left - 1)
            return left > 0

    def connect(self, tenant: Tenant, sql: Any, conn_str: str, timeout: float, create_table: bool) -> Session:
        with self._lock:
            self.connects += 1
        if self._hang("hang_connects"):
            self.released.wait()
        if self.connect_mode == "refuse":
            raise pyodbc.OperationalError("08001", "connection refused")
        session = Session(_Conn(self), ClockSample(tenant=tenant.name, at=time.time(), skew=0.0, rtt=0.001))
        with self._lock:
            self.sessions.append(session)
        return session


class _Cursor:
    def __init__(self, server: _Server) -> None:
        self.server = server
        self.inserts = 0
        self._row: tuple[float] | None = None

    def execute(self, sql: str, params: Any) -> _Cursor:
        self.inserts += 1
        if self.server._hang("hang_inserts"):
            self.server.released.wait()
        if self.server.insert_delay:
            time.sleep(self.server.insert_delay)
        if self.server.insert_error is not None:
            raise self.server.insert_error
        self._row = (time.time(),)
        return self

    def fetchone(self) -> tuple[float] | None:
        return self._row

    def close(self) -> None:
        pass


class _Conn:
    def __init__(self, server: _Server) -> None:
        self.cur = _Cursor(server)
        self.closed = False

    def cursor(self) -> _Cursor:
        return self.cur

    def close(self) -> None:
        if self.cur.server.close_hangs:
            self.cur.server.released.wait()
        self.closed = True


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


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    fake = _Server()
    monkeypatch.setattr(writer_module, "connect", fake.connect)
    yield fake
    fake.release()  # let every hung call return, so no thread outlives the test for long


class _Rig:
    """Writers made for one test, all stopped at its end."""

    def __init__(self, tmp_path: Path) -> None:
        self.folder = tmp_path / "journal"
        self.journal = JournalWriter(self.folder, "r1")
        self.deadlines = Deadlines(poll=0.005)
        self.writers: list[TenantWriter] = []

    def writer(self, seed: int = 1, **kw: Any) -> TenantWriter:
        kw.setdefault("write_timeout", 0.1)
        kw.setdefault("connect_timeout", 0.1)
        made = TenantWriter(
            _tenant(), 0, "r1", self.journal, rng=random.Random(seed), deadlines=self.deadlines, **kw
        )
        self.writers.append(made)
        return made

    def fresh(self) -> None:
        """A new journal folder, for the next writer of the test."""
        self.folder = self.folder.with_name(f"{self.folder.name}+")
        self.journal = JournalWriter(self.folder, "r1")

    def writes(self) -> list[Write]:
        writes, _ = read_journal(self.folder)
        assert sorted(w.seq for w in writes) == list(range(1, len(writes) + 1)), "each attempt once"
        return sorted(writes, key=lambda w: w.seq)

    def wait_for(self, what: Any, timeout: float = 3.0) -> list[Write]:
        deadline = time.monotonic() + timeout
        while not what(writes := self.writes()):
            assert time.monotonic() < deadline, f"not within {timeout} s: {writes}"
            time.sleep(0.005)
        return writes


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[_Rig]:
    made = _Rig(tmp_path)
    yield made
    for writer in made.writers:
        writer.stop(0.5)


def _gaps(writes: list[Write]) -> list[float]:
    return [b.start - a.start for a, b in itertools.pairwise(writes)]


def test_backoff_after_failures_is_short_jittered_and_seeded(server: _Server, rig: _Rig) -> None:
    server.connect_mode = "refuse"
    runs = []
    for seed in (7, 7, 8):
        writer = rig.writer(seed, attempts=8)
        writer.start()
        assert writer.join(5.0)
        mine = rig.writes()
        writer.stop(0.1)
        assert [w.error for w in mine] == ["OperationalError:08001"] * 8
        runs.append(_gaps(mine))
        rig.fresh()
    waits = runs[0]
    assert 0.025 <= waits[0] <= 0.05 + 0.02  # first retry: half of 50 ms plus up to the other half
    assert all(0.05 <= w <= 0.1 + 0.02 for w in waits[1:]), waits  # then capped at 100 ms
    # The same seed retries on the same schedule; another writer does not retry in step.
    assert max(abs(a - b) for a, b in zip(waits, runs[1], strict=True)) < 0.01
    assert max(abs(a - b) for a, b in zip(waits, runs[2], strict=True)) > 0.01


def test_a_paced_writer_keeps_its_schedule(server: _Server, rig: _Rig) -> None:
    writer = rig.writer(interval=0.02, attempts=25)
    writer.start()
    assert writer.join(5.0)
    writes = rig.writes()
    assert [w.outcome for w in writes] == ["ok"] * 25
    dues = [w.due for w in writes]
    assert all(d is not None for d in dues)
    steps = [b - a for a, b in itertools.pairwise(dues)]  # type: ignore[operator]
    assert all(abs(step - 0.02) < 1e-6 for step in steps), steps  # fixed times, not "after the last"
    lateness = sorted(w.start - w.due for w in writes)  # type: ignore[operator]
    assert lateness[0] >= -0.001 and lateness[len(lateness) // 2] < 0.005, lateness
    assert len(server.sessions) == 1 and server.sessions[0].cursor.inserts == 25


def test_an_unpaced_writer_does_not_wait(server: _Server, rig: _Rig) -> None:
    writer = rig.writer(attempts=500)
    began = time.monotonic()
    writer.start()
    assert writer.join(5.0)
    assert time.monotonic() - began < 2.0
    writes = rig.writes()
    assert len(writes) == 500 and all(w.outcome == "ok" and w.due is None for w in writes)
    assert not writer.running() and server.sessions[0].conn.closed  # closed when the writer ended


def test_a_hung_insert_is_abandoned_and_a_new_connection_takes_over(server: _Server, rig: _Rig) -> None:
    server.hang_inserts = 1
    writer = rig.writer(interval=0.01)
    writer.start()
    writes = rig.wait_for(lambda ws: sum(w.outcome == "ok" for w in ws) >= 5)
    first = writes[0]
    assert (first.outcome, first.error) == ("info", "WriteTimeout")
    assert 0.1 <= first.latency < 0.1 + 0.1, first  # the deadline, seen within a poll or two
    assert writer.abandoned == 1 and len(server.sessions) == 2
    hung = server.sessions[0]
    server.release()  # the insert returns after all; the new connection is already in use
    deadline = time.monotonic() + 2
    while writer.abandoned and time.monotonic() < deadline:
        time.sleep(0.005)
    assert writer.abandoned == 0 and hung.conn.closed and not server.sessions[1].conn.closed


def test_too_many_hung_calls_block_until_one_returns_and_takes_over(server: _Server, rig: _Rig) -> None:
    server.hang_connects = 3  # a frozen server: three connects abandoned in turn
    writer = rig.writer(interval=0.01)
    writer.start()
    writes = rig.wait_for(lambda ws: len(ws) >= 3)
    assert [w.error for w in writes] == ["ConnectTimeout"] * 3
    time.sleep(0.3)
    assert len(rig.writes()) == 3 and writer.blocked() and writer.abandoned == 3
    released = time.time()
    server.release()  # the server resumes: all three connects return with working connections
    writes = rig.wait_for(lambda ws: any(w.outcome == "ok" for w in ws))
    ok = next(w for w in writes if w.outcome == "ok")
    assert ok.start - released < 0.05, "the connection that came back is used at once"
    assert server.connects == 3, "no new connection was opened"
    time.sleep(0.05)
    assert writer.abandoned == 0 and not writer.blocked()
    assert sum(not s.conn.closed for s in server.sessions) == 1  # the other two were closed
    _, clocks = read_journal(rig.folder)
    assert len(clocks) == 1  # only the connection in use had its clock journaled


def test_a_connection_that_returns_late_is_handed_to_a_lane_without_one(server: _Server, rig: _Rig) -> None:
    server.hang_inserts = 1
    writer = rig.writer(interval=0.01)
    writer.start()
    rig.wait_for(lambda ws: len(ws) >= 1)
    server.connect_mode = "refuse"  # the new lane cannot connect
    rig.wait_for(lambda ws: sum(w.error == "OperationalError:08001" for w in ws) >= 3)
    late = server.sessions[0]
    server.release()  # the hung insert succeeds after all: its connection works
    writes = rig.wait_for(lambda ws: any(w.outcome == "ok" for w in ws))
    assert late.cursor.inserts >= 2 and len(server.sessions) == 1, "the late connection was used"
    assert writes[0].error == "WriteTimeout" and writer.abandoned == 0


def test_a_broken_connection_is_dropped_and_a_definite_error_keeps_it(server: _Server, rig: _Rig) -> None:
    server.insert_error = pyodbc.OperationalError("08S01", "connection lost")
    writer = rig.writer(interval=0.01)
    writer.start()
    rig.wait_for(lambda ws: len(ws) >= 2)
    writer.stop(0.5)
    writes = rig.writes()
    assert {(w.outcome, w.error) for w in writes} == {("info", "OperationalError:08S01")}
    assert len(server.sessions) == len(writes) and all(s.conn.closed for s in server.sessions)

    server.insert_error = pyodbc.IntegrityError("23505", "duplicate key")
    rig.fresh()
    before = len(server.sessions)
    writer = rig.writer(interval=0.01)
    writer.start()
    rig.wait_for(lambda ws: len(ws) >= 3)
    writes = rig.writes()
    assert {(w.outcome, w.error) for w in writes} == {("fail", "IntegrityError:23505")}
    assert len(server.sessions) == before + 1, "a definite error does not cost the connection"


def test_a_close_that_hangs_does_not_silence_the_writer(server: _Server, rig: _Rig) -> None:
    """A broken connection whose close blocks (a half-dead peer) is closed aside: the
    attempt is journaled at once and the next ones follow on new connections."""
    server.insert_error = pyodbc.OperationalError("08S01", "connection lost")
    server.close_hangs = True
    writer = rig.writer(interval=0.01)
    writer.start()
    writes = rig.wait_for(lambda ws: len(ws) >= 3, timeout=2.0)
    assert all(w.latency < 0.05 for w in writes), [w.latency for w in writes]
    assert not any(s.conn.closed for s in server.sessions)  # every close still hangs
    server.close_hangs = False
    server.release()


def test_stop_gives_a_call_its_grace_then_journals_it_as_interrupted(server: _Server, rig: _Rig) -> None:
    server.insert_delay = 0.05
    writer = rig.writer(write_timeout=5.0)
    writer.start()
    rig.wait_for(lambda ws: len(ws) >= 1)
    assert writer.stop(1.0), "a call that ends within the grace keeps its outcome"
    assert all(w.outcome == "ok" for w in rig.writes())

    server.insert_delay = 0.0
    server.hang_inserts = 1
    rig.fresh()
    writer = rig.writer(write_timeout=5.0)
    writer.start()
    time.sleep(0.1)
    assert not writer.stop(0.1)
    last = rig.writes()[-1]
    assert (last.outcome, last.error) == ("info", "Interrupted")  # it may have reached the server
    server.release()
    time.sleep(0.05)
    assert server.sessions[-1].conn.closed and len(rig.writes()) == last.seq, "nothing journaled twice"


def test_an_unexpected_error_ends_the_writer_and_is_reported(server: _Server, rig: _Rig) -> None:
    server.insert_error = ValueError("a bug")  # type: ignore[assignment]
    writer = rig.writer(interval=0.01)
    writer.start()
    writes = rig.wait_for(lambda ws: len(ws) >= 1)
    deadline = time.monotonic() + 2
    while writer.running() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert isinstance(writer.error, ValueError) and not writer.running()
    assert [(w.outcome, w.error) for w in writes] == [("info", "ValueError")]
    assert server.sessions[0].conn.closed


def test_a_writer_starts_once(server: _Server, rig: _Rig) -> None:
    writer = rig.writer(attempts=1)
    writer.start()
    with pytest.raises(Exception, match="already started"):
        writer.start()


@pytest.mark.parametrize(("given", "login"), [(0.5, 1), (1.0, 1), (1.2, 2), (2.5, 3)])
def test_login_timeout_is_rounded_up(monkeypatch: pytest.MonkeyPatch, given: float, login: int) -> None:
    seen: list[int] = []

    def refuse(conn_str: str, autocommit: bool, timeout: int) -> Any:
        seen.append(timeout)
        raise pyodbc.OperationalError("08001", "refused")

    monkeypatch.setattr(pyodbc, "connect", refuse)
    from loadgen.dialects import dialect

    with pytest.raises(pyodbc.OperationalError):
        connect(_tenant(), dialect("postgresql"), "DSN=x", given, True)
    assert seen == [login]
