"""The floor of a Python/pyodbc client: plain OS threads writing the harness's INSERT flat out.

Run from the project root::

    .venv/bin/python -m tests.benchmarks.bare_probe --tenants-file F --clients C --seconds S \\
        --run-id R --journal-dir D

C threads (plain :mod:`threading`: no gevent, no Locust) each open their own connection
(:func:`loadgen.session.connect`, whose :class:`~loadgen.session.Session` reuses one cursor,
as the harness does) to tenant ``i mod N`` of the tenants file. Once all are connected they
start together and, for S seconds, each writes its tenant's dialect's
``INSERT ... RETURNING`` with ``(run_id, tenant, writer, seq)``, ``seq`` counting from 1,
as fast as the server answers, and journals every attempt with
:class:`loadgen.journal.JournalWriter` into ``D`` (the harness's own format, so the
harness's counting applies unchanged). There is no pacing, no deadline, no metrics and no
Locust statistics: what is left is the cost of Python, pyodbc, the driver and the journal.

A call in flight when the time is up is finished and journaled. An error is journaled
(``fail`` when the dialect says the write surely did not happen, else ``info``) and ends
the run at once (every writer finishes its call); the probe then exits 1 naming it.
Exit codes: 0 every writer ran its time without an error, 1 one did not (or could not
connect), 2 bad arguments, 130 interrupted. SIGTERM ends the run early like the end of
its time.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyodbc

from loadgen.dialects import dialect
from loadgen.errors import LoadgenError
from loadgen.journal import JournalWriter, Outcome, Write
from loadgen.session import Session, classify, connect
from loadgen.tenants import Tenant, load_tenants, redact

__all__ = ["BareWriter", "ProbeResult", "assign", "main", "parse_args", "run_probe"]

CONNECT_TIMEOUT = 5.0
"""Seconds a writer waits for its connection."""
START_TIMEOUT = 60.0
"""Seconds the writers wait for each other to connect before the probe gives up."""
JOIN_GRACE = 30.0
"""Seconds after the end a writer may still be in its last call before the probe gives up."""
MAX_RUN_ID = 64  # the table's run_id column is varchar(64)


def assign(clients: int, tenants: Sequence[Tenant]) -> list[Tenant]:
    """The tenant of each writer: writer ``i`` writes to tenant ``i mod len(tenants)``."""
    return [tenants[i % len(tenants)] for i in range(clients)]


class BareWriter:
    """One writer: its own thread, connection and reused cursor, writing until told to stop."""

    def __init__(
        self,
        tenant: Tenant,
        writer: int,
        run_id: str,
        journal: JournalWriter,
        start: threading.Barrier,
        stop: threading.Event,
    ) -> None:
        self.tenant = tenant
        self.writer = writer
        self.run_id = run_id
        self.journal = journal
        self.acks = 0
        self.attempts = 0
        #: What ended the writer early, in words (None: it ran until stopped).
        self.error: str | None = None
        self._start = start
        self._stop = stop
        self._sql = dialect(tenant.dialect)
        self.thread = threading.Thread(target=self._run, name=f"bare-writer-{writer}", daemon=True)

    def _run(self) -> None:
        try:
            session = connect(self.tenant, self._sql, self.tenant.connection_string(), CONNECT_TIMEOUT, True)
        except (pyodbc.Error, LoadgenError) as exc:
            self.error = (
                f"writer {self.writer} could not connect to {self.tenant.describe()}: {_first_line(exc)}: "
                "check that the server is up and the tenants file names it"
            )
            self._start.abort()
            return
        try:
            self.journal.clock(session.clock)
            try:
                self._start.wait(START_TIMEOUT)
            except threading.BrokenBarrierError:
                return  # another writer failed to connect (it says so), or the probe gave up
            self._write(session)
        except Exception as exc:  # ends the run; the probe reports it
            self.error = f"writer {self.writer} stopped: {exc!r}"
            self._stop.set()
        finally:
            session.close()

    def _write(self, session: Session) -> None:
        """Insert and journal, back to back, until ``stop``; the first error ends it."""
        cursor, insert, tenant = session.cursor, self._sql.insert, self.tenant.name
        journal, writer, run_id, stop = self.journal, self.writer, self.run_id, self._stop
        seq = acks = 0
        try:
            while not stop.is_set():
                seq += 1
                start = time.time()
                began = time.perf_counter()
                outcome: Outcome = "ok"
                server_ts = error = None
                try:
                    row = cursor.execute(insert, (run_id, tenant, writer, seq)).fetchone()
                    if row is None:
                        outcome, error = "info", "NoRowReturned"
                    else:
                        server_ts = float(row[0])
                except pyodbc.Error as exc:
                    definite, error = classify(exc, self._sql)
                    outcome = "fail" if definite else "info"
                latency = time.perf_counter() - began
                journal.write(
                    Write(tenant, writer, seq, start, start + latency, latency, outcome, server_ts, error)
                )
                if outcome != "ok":
                    self.error = f"writer {writer} seq {seq} ended {outcome}: {error}"
                    stop.set()  # the run failed: end it now rather than after its time
                    return
                acks += 1
        finally:
            self.attempts, self.acks = seq, acks


def _first_line(exc: BaseException) -> str:
    """The driver's message without pyodbc's tuple around it, first line only."""
    message = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    return (message.strip().splitlines() or [type(exc).__name__])[0]


@dataclass(frozen=True)
class ProbeResult:
    """What the probe did: attempts and acks of all writers, and every writer's error."""

    writers: int
    attempts: int
    acks: int
    seconds: float
    """From the moment every writer was connected to the moment the last one stopped."""
    journal: Path
    errors: list[str]


def run_probe(
    tenants: Sequence[Tenant], clients: int, seconds: float, run_id: str, journal_dir: Path
) -> ProbeResult:
    """Connect ``clients`` writers, let them write for ``seconds``, stop and join them."""
    journal = JournalWriter(journal_dir, run_id)
    start = threading.Barrier(clients + 1)
    stop = threading.Event()
    writers = [
        BareWriter(tenant, i, run_id, journal, start, stop)
        for i, tenant in enumerate(assign(clients, tenants))
    ]
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    began = time.monotonic()
    started = interrupted = False
    try:
        for w in writers:
            w.thread.start()
        try:
            start.wait(START_TIMEOUT)
            began, started = time.monotonic(), True
            stop.wait(seconds)
        except threading.BrokenBarrierError:
            pass  # a writer could not connect (its error says which), or not in time (below)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            stop.set()
            start.abort()  # releases writers still waiting if the probe gave up early
        deadline = time.monotonic() + JOIN_GRACE
        for w in writers:
            w.thread.join(max(0.0, deadline - time.monotonic()))
        ended = time.monotonic()
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop.set()
    if interrupted:
        raise KeyboardInterrupt
    errors = [w.error for w in writers if w.error]
    if not started and not errors:
        errors.append(f"the writers were not all connected within {START_TIMEOUT:.0f} s")
    errors += [
        f"writer {w.writer} was still in a call {JOIN_GRACE:.0f} s after the end: "
        "the server stopped answering"
        for w in writers
        if w.thread.is_alive()
    ]
    if not any(w.thread.is_alive() for w in writers):
        journal.close()
    return ProbeResult(
        writers=clients,
        attempts=sum(w.attempts for w in writers),
        acks=sum(w.acks for w in writers),
        seconds=ended - began,
        journal=journal.path,
        errors=errors,
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _run_id(text: str) -> str:
    if not text or len(text) > MAX_RUN_ID:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_RUN_ID} characters, got {len(text)}")
    return text


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; a bad value exits 2 with one line naming the option and the fix."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.bare_probe",
        description="Plain threads and pyodbc writing the harness's INSERT as fast as they can.",
    )
    parser.add_argument("--tenants-file", type=Path, required=True, help="the harness's tenants file")
    parser.add_argument("--clients", type=_positive_int, required=True, help="writer threads")
    parser.add_argument("--seconds", type=_positive_seconds, required=True, help="how long they write")
    parser.add_argument("--run-id", type=_run_id, required=True, help="run id of the rows and journal")
    parser.add_argument("--journal-dir", type=Path, required=True, help="folder of the journal file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the probe; the exit codes are in the module docstring."""
    args = parse_args(argv)
    try:
        tenants = load_tenants(args.tenants_file)
    except LoadgenError as exc:
        print(f"bare_probe: {redact(str(exc))}", file=sys.stderr)
        return 2
    try:
        result = run_probe(tenants, args.clients, args.seconds, args.run_id, args.journal_dir)
    except KeyboardInterrupt:
        print("bare_probe: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"bare_probe: cannot write the journal in {args.journal_dir}: {exc.strerror}", file=sys.stderr)
        return 1
    rate = result.acks / result.seconds if result.seconds > 0 else 0.0
    print(
        f"bare_probe: {result.writers} writer(s) on {min(len(tenants), result.writers)} tenant(s): "
        f"{result.acks} acks of {result.attempts} attempts in {result.seconds:.2f} s ({rate:.1f} acks/s); "
        f"journal {result.journal}",
        flush=True,
    )
    for error in result.errors:
        print(f"bare_probe: {redact(error)}", file=sys.stderr)
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
