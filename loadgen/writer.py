"""One writer: its own OS thread writes numbered rows into one tenant and journals each attempt.

Each attempt has a fresh sequence number and ends in exactly one journal line. Outcomes
follow Jepsen's rules:

- ``ok``: the server returned the row's server timestamp;
- ``fail``: the write cannot have happened (no connection; the server rejected it
  with an error the tenant's dialect lists as definite, such as a constraint or
  syntax error: see :mod:`loadgen.dialects`; or the server on the tenant's port is not
  its lab's, ``WrongServer``, the first such error kept in :attr:`TenantWriter.wrong_server`
  with its fix: nothing is written there, and the writer keeps trying as through any
  outage);
- ``info``: it may or may not have happened (timeout, connection lost mid-call, or
  any error after which the server may have committed it).

**Threads.** The loop (pacing, the ODBC call, the journal line) runs in an OS thread of
its own, a *lane* (:mod:`loadgen.native`), so a write costs no hand-off to an event loop
and a blocking call holds up nobody else. A call that overruns its deadline cannot be
interrupted (ODBC has no safe way to do that from another thread), so it is *abandoned*:
the process's :class:`~loadgen.deadlines.Deadlines` thread journals the attempt
(``info``/``WriteTimeout``, or ``fail``/``ConnectTimeout`` for a connect), retires the
lane and starts a new one, which connects afresh. When the abandoned call returns, its
thread hands a working connection back (the writer uses it at once instead of waiting out
the backoff: the moment a frozen server resumes) or closes it. At most ``max_abandoned``
calls hang at once; beyond that no new lane starts until one returns, and that thread
takes the writer over.

**Pacing** is an open model: with ``interval`` > 0 attempts are due at fixed times, each
journals when it was due, and a writer that fell behind catches up back to back, so its
latency counts from the schedule (no coordinated omission). After a failure the next
attempt waits a short, jittered backoff (at most ``backoff_cap``, 0.1 s), and the
schedule restarts when it ends: the outage itself is measured as RTO, not as latency.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pyodbc

from loadgen import native
from loadgen.deadlines import DEADLINES, Deadlines
from loadgen.dialects import dialect
from loadgen.errors import LoadgenError
from loadgen.identity import WrongServer
from loadgen.journal import JournalWriter, Outcome, Write
from loadgen.session import Session, classify, close_quietly, connect
from loadgen.tenants import Tenant, redact

__all__ = ["TenantWriter", "classify"]


def _close_aside(session: Session | None) -> None:
    """Close ``session`` in a thread of its own: a close can block (a peer gone half-dead)."""
    if session is not None:
        native.start_thread(lambda: close_quietly(session))


class _Call:
    """The attempt a lane is making: abandoned ("claimed") by whoever journals it first."""

    __slots__ = ("began", "claimed", "connecting", "deadline", "due", "seq", "start")

    def __init__(self, seq: int, due: float | None, connecting: bool, timeout: float) -> None:
        self.seq = seq
        self.due = due
        self.connecting = connecting
        self.start = time.time()
        self.began = time.perf_counter()
        self.deadline = time.monotonic() + timeout
        self.claimed = False


class _Lane:
    """One OS thread's turn at running the writer, with the connection it uses."""

    __slots__ = ("call", "exited", "handed_back", "retired", "session")

    def __init__(self, session: Session | None) -> None:
        self.session = session
        self.handed_back = session is not None  # brought back by an abandoned call: use at once
        self.call: _Call | None = None
        self.retired = False  # its call was abandoned: a new lane (or none) runs the writer
        self.exited = False


class TenantWriter:
    """Writes numbered rows into one tenant from an OS thread, journaling every attempt.

    ``writer`` must be unique within a run across all load processes; together with
    ``seq`` it identifies a row. ``interval`` is the paced time between attempts (0: as
    fast as the server answers); ``attempts`` stops the writer after that many (None: until
    :meth:`stop`). Every journaled record is also passed to ``on_record``, from the lane's
    or the deadline thread: it must be thread-safe and quick (``deque.append``).
    """

    def __init__(
        self,
        tenant: Tenant,
        writer: int,
        run_id: str,
        journal: JournalWriter,
        *,
        interval: float = 0.0,
        attempts: int | None = None,
        write_timeout: float = 0.5,
        connect_timeout: float = 0.5,
        backoff_cap: float = 0.1,
        max_abandoned: int = 3,
        rng: random.Random | None = None,
        on_record: Callable[[Write], None] | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        self.tenant = tenant
        self.writer = writer
        self.run_id = run_id
        self.journal = journal
        self.interval = interval
        self.attempts = attempts
        self.write_timeout = write_timeout
        self.connect_timeout = connect_timeout
        self.backoff_cap = backoff_cap
        self.max_abandoned = max_abandoned
        self.rng = rng or random.Random()
        self.on_record = on_record
        self._deadlines = deadlines or DEADLINES
        self._sql = dialect(tenant.dialect)
        self._conn_str = tenant.connection_string()
        self._lock = native.allocate_lock()
        self._wakeup = native.Wakeup()
        self._lane: _Lane | None = None
        self._spare: Session | None = None  # a connection an abandoned call brought back
        self._started = False
        self._stopping = False
        self._table_ready = False
        self._next = 0.0  # time.monotonic() when the next paced attempt is due
        self._retry_at = 0.0  # time.monotonic() before which no attempt follows a failure
        self.seq = 0
        self.failures = 0
        self.abandoned = 0
        #: An unexpected exception that ended the writer's thread (the Locust user reports it).
        self.error: BaseException | None = None
        #: The first refusal of a server that is not the tenant's lab's (its message names the fix).
        self.wrong_server: WrongServer | None = None

    # -- control (any thread) -----------------------------------------------------------

    def start(self) -> None:
        """Start writing in a new OS thread."""
        with self._lock:
            if self._started:
                raise LoadgenError(f"writer {self.writer} was already started")
            self._started = True
            lane = self._lane = _Lane(None)
            self._next = time.monotonic()
        self._deadlines.add(self)
        native.start_thread(lambda: self._run(lane))

    def running(self) -> bool:
        """True while a lane is writing (False once stopped, done, blocked or crashed)."""
        lane = self._lane
        return lane is not None and not lane.exited

    def blocked(self) -> bool:
        """True while ``max_abandoned`` calls hang and no lane may start."""
        return self._started and not self._stopping and self._lane is None

    def join(self, timeout: float, sleep: Callable[[float], object] = native.sleep) -> bool:
        """Wait up to ``timeout`` s for the writer to finish its ``attempts``; True if it did."""
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() >= deadline:
                return False
            sleep(0.005)
        return True

    def stop(self, grace: float, sleep: Callable[[float], object] = native.sleep) -> bool:
        """Stop writing; a call still running after ``grace`` s is journaled ``info``/``Interrupted``.

        ``sleep`` is how the caller waits (``gevent.sleep`` from a greenlet). True if the
        writer stopped without abandoning a call.
        """
        with self._lock:
            self._stopping = True
        self._wakeup.wake()
        self.join(grace, sleep)
        with self._lock:
            lane, call, record = self._lane, None, None
            if lane is not None and not lane.exited and lane.call is not None and not lane.call.claimed:
                call = self._claim(lane)
                record = self._record(call, "info", None, "Interrupted")  # journaled before stop returns
            spare, self._spare = self._spare, None
        self._announce(record)
        _close_aside(spare)  # never a blocking close on the caller's (the event loop's) thread
        self._deadlines.remove(self)
        return call is None

    def check_deadline(self, now: float) -> None:
        """Abandon the lane's call if it overran (the deadline thread calls this)."""
        lane = self._lane
        call = lane.call if lane is not None else None
        if call is None or call.claimed or now < call.deadline:
            return
        with self._lock:
            if lane is None or lane is not self._lane or lane.call is not call or call.claimed:
                return
            if now < call.deadline:  # a connect succeeded meanwhile: the insert has its own deadline
                return
            self._claim(lane)
            fresh = None
            if not self._stopping and self.abandoned < self.max_abandoned:
                fresh = self._lane = _Lane(None)
            # Journaled under the lock: whoever sees the lane gone (stop, join) sees the line too.
            if call.connecting:
                record = self._record(call, "fail", None, "ConnectTimeout")
            else:
                record = self._record(call, "info", None, "WriteTimeout")
        self._announce(record)
        if fresh is not None:
            try:
                native.start_thread(lambda: self._run(fresh))
            except BaseException as exc:  # no thread: the writer is dead, and says so
                self.error = exc
                with self._lock:
                    fresh.exited = True

    def _claim(self, lane: _Lane) -> _Call:
        """Abandon ``lane``'s call (lock held): its thread no longer runs the writer."""
        call = lane.call
        assert call is not None
        call.claimed = True
        lane.retired = True
        lane.call = None
        self.abandoned += 1
        self._lane = None
        return call

    # -- the lane's thread ---------------------------------------------------------------

    def _run(self, lane: _Lane) -> None:
        current: _Lane | None = lane
        try:
            while current is not None:
                current = self._step(current)
        except BaseException as exc:  # reported through .error; the thread just ends
            self.error = exc
            assert current is not None
            with self._lock:
                record = None
                if current.call is not None and not current.call.claimed:
                    call = self._claim(current)
                    self.abandoned -= 1  # nothing hangs: the call ended in the exception
                    record = self._record(call, "info", None, type(exc).__name__)
            self._announce(record)
            self._exit(current)

    def _step(self, lane: _Lane) -> _Lane | None:
        """Wait for the next attempt and make it; the lane this thread goes on with, or None."""
        due = self._wait_turn(lane)
        if due is None:
            self._exit(lane)
            return None
        return self._attempt(lane, due if self.interval > 0 else None)

    def _exit(self, lane: _Lane) -> None:
        """The thread leaves the writer: close the lane's connection (unless it was handed on)."""
        with self._lock:
            session, lane.session = lane.session, None
            lane.exited = True
        close_quietly(session)

    def _wait_turn(self, lane: _Lane) -> float | None:
        """Sleep until the next attempt is due; its due time (epoch s), or None to stop."""
        adopted, lane.handed_back = lane.handed_back, False
        while True:
            with self._lock:
                done = self.attempts is not None and self.seq >= self.attempts
                if self._stopping or lane.retired or done:
                    return None
                if lane.session is None and self._spare is not None:
                    lane.session, self._spare = self._spare, None
                    self._journal_clock(lane.session)
                    adopted = True
                failures, retry_at = self.failures, self._retry_at
            now = time.monotonic()
            if failures and adopted:
                self._next = now  # a connection that came back: the server answers again
            elif failures:
                if now < retry_at:
                    self._wakeup.wait(retry_at - now)  # a handed-back connection wakes it early
                    continue
                self._next = retry_at
            elif self.interval > 0 and now < self._next:
                self._wakeup.wait(self._next - now)
                continue
            return time.time() - (time.monotonic() - self._next)

    def _attempt(self, lane: _Lane, due: float | None) -> _Lane | None:
        with self._lock:
            stopping = self._stopping or lane.retired
            if not stopping:
                self.seq += 1
                connecting = lane.session is None
                call = lane.call = _Call(
                    self.seq, due, connecting, self.connect_timeout if connecting else self.write_timeout
                )
        if stopping:
            if not lane.retired:
                self._exit(lane)
            return None
        if connecting:
            try:
                session: Session | None = connect(
                    self.tenant, self._sql, self._conn_str, self.connect_timeout, not self._table_ready
                )
                error = None
            except pyodbc.Error as exc:
                session, error = None, classify(exc, self._sql)[1]
            except WrongServer as exc:
                session, error = None, "WrongServer"
                if self.wrong_server is None:
                    self.wrong_server = exc
            with self._lock:
                handed = self._returned(session) if call.claimed else None
                if handed is None and session is None:
                    lane.call = None
                elif handed is None and session is not None:
                    self._table_ready = True
                    lane.session = session
                    call.connecting = False
                    call.deadline = time.monotonic() + self.write_timeout
                    self._journal_clock(session)
            if handed is not None:
                return self._hand_on(*handed)
            if session is None:
                self._finish(call, "fail", None, error)
                return lane
        return self._insert(lane, call)

    def _insert(self, lane: _Lane, call: _Call) -> _Lane | None:
        session = lane.session
        assert session is not None
        outcome: Outcome = "ok"
        server_ts = error = None
        broken = False
        try:
            params = (self.run_id, self.tenant.name, self.writer, call.seq)
            row = session.cursor.execute(self._sql.insert, params).fetchone()
            if row is None:
                outcome, error, broken = "info", "NoRowReturned", True
            else:
                server_ts = float(row[0])
        except pyodbc.Error as exc:
            definite, error = classify(exc, self._sql)
            outcome, broken = ("fail" if definite else "info"), not definite
        with self._lock:
            if call.claimed:
                lane.session = None
                handed = self._returned(None if broken else session)
            else:
                handed = None
                lane.call = None
                if broken:
                    lane.session = None
        if handed is not None:
            if broken:
                _close_aside(session)
            return self._hand_on(*handed)
        self._finish(call, outcome, server_ts, error)
        if broken:
            _close_aside(session)  # a close can hang too (a half-dead peer): not on the lane
        return lane

    def _returned(self, session: Session | None) -> tuple[_Lane | None, Session | None]:
        """An abandoned call came back (lock held), with a working connection or None.

        The thread takes the writer over if no lane runs it (too many calls hung), or hands
        the connection to the running lane if that lane has none. Returns the lane this
        thread goes on with (or None) and a connection left over to close outside the lock.
        """
        self.abandoned = max(0, self.abandoned - 1)
        if not self._stopping and self._lane is None:
            self._lane = _Lane(session)
            if session is not None:
                self._journal_clock(session)
            return self._lane, None
        if session is not None and not self._stopping and self._spare is None:
            lane = self._lane
            if lane is not None and lane.session is None:
                self._spare = session
                self._wakeup.wake()
                return None, None
        return None, session

    @staticmethod
    def _hand_on(lane: _Lane | None, leftover: Session | None) -> _Lane | None:
        close_quietly(leftover)
        return lane

    def _journal_clock(self, session: Session) -> None:
        if not session.clock_journaled:
            session.clock_journaled = True
            self.journal.clock(session.clock)

    def _finish(self, call: _Call, outcome: Outcome, server_ts: float | None, error: str | None) -> Write:
        """Journal the lane's own attempt, count it, and pass it on."""
        with self._lock:
            record = self._record(call, outcome, server_ts, error)
        self._announce(record)
        return record

    def _announce(self, record: Write | None) -> None:
        if record is not None and self.on_record is not None:
            self.on_record(record)

    def _record(self, call: _Call, outcome: Outcome, server_ts: float | None, error: str | None) -> Write:
        """Journal one attempt and count it (lock held: the journal's lock nests inside it)."""
        latency = time.perf_counter() - call.began
        record = Write(
            tenant=self.tenant.name,
            writer=self.writer,
            seq=call.seq,
            start=call.start,
            end=call.start + latency,
            latency=latency,
            outcome=outcome,
            server_ts=server_ts,
            error=error,
            due=call.due,
        )
        self.journal.write(record)
        if outcome == "ok":
            self.failures = 0
            if self.interval > 0:
                self._next += self.interval
        else:
            self.failures += 1
            ceiling = min(self.backoff_cap, 0.025 * 2 ** min(self.failures, 10))
            self._retry_at = time.monotonic() + self._jitter(ceiling)
        return record

    def _jitter(self, ceiling: float) -> float:
        """Half of ``ceiling`` plus a uniformly random part of the other half ("equal jitter").

        Writers that failed together (one per tenant, all hit by the same node failure)
        then do not retry in the same instant.
        """
        return ceiling / 2 + self.rng.uniform(0.0, ceiling / 2)

    def __repr__(self) -> str:
        return redact(f"TenantWriter({self.tenant.describe()}, writer={self.writer}, seq={self.seq})")
