"""Journal shipping for distributed load, the worker's side: its spool to the master, losslessly.

Pure bookkeeping (no gevent, no Locust): the Locust glue in :mod:`loadgen.distributed`
moves the messages; this module decides what to send and which writers and tenants each
worker gets (:func:`user_count`, :func:`writer_number`, :func:`sharing`,
:func:`assignment`). The master's side, which takes the batches in, appends them to disk
once each and judges whether the collection is complete, moved to
:class:`loadgen.collector.Collector` (with the guarantees both sides give together).

**Worker side** (:class:`Shipper`). The worker's :class:`~loadgen.journal.JournalWriter`
writes its spool file as in local mode. The shipper tails it by byte offset, taking only
complete lines, in batches numbered 0, 1, 2, ... with no gaps (the spool's ``meta`` line
is line 0 of batch 0). A batch stays unacknowledged until the master acknowledges it and
is sent again when no acknowledgement came within ``resend_after`` seconds. The final
message (totals of batches and ``write`` records) exists only once the spool has been
read to its end and every batch is acknowledged; it is resent until the master
acknowledges it too.

**Messages.** ``harness_batch`` is :meth:`Batch.message`, ``harness_final`` is
:meth:`Shipper.final`; a ``write`` record is a journal line beginning with
:data:`WRITE_PREFIX`. :class:`ShippingError` is this protocol's one error, on both sides
(bad counts here; on the master a message it cannot take as it is).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadgen.errors import LoadgenError

__all__ = [
    "MAX_LINES",
    "WRITE_PREFIX",
    "Batch",
    "Shipper",
    "ShippingError",
    "assignment",
    "sharing",
    "user_count",
    "writer_number",
]

MAX_LINES = 5000  # journal lines per batch
WRITE_PREFIX = '{"kind":"write"'  # how JournalWriter begins every write line


class ShippingError(LoadgenError):
    """A message that cannot be taken as it is (one line naming the problem)."""


# --- which writers and tenants each worker gets ------------------------------------------


def user_count(n_tenants: int, workers: int) -> int:
    """Users to start: ``K * ceil(N / K)``, a multiple of K so Locust spreads them evenly."""
    if n_tenants < 1 or workers < 1:
        raise ShippingError(f"need at least one tenant and one worker, got {n_tenants} and {workers}")
    return workers * math.ceil(n_tenants / workers)


def writer_number(worker: int, local: int, n_tenants: int, workers: int) -> int | None:
    """The writer of the ``local``-th user (0-based) of worker ``worker``, or None (idle).

    Writer ``worker + K * local``; a user beyond the worker's share (Locust re-dispatching
    a dead worker's users), or on a worker whose index is not below K, stays idle.
    """
    per_worker = user_count(n_tenants, workers) // workers
    if not 0 <= worker < workers or not 0 <= local < per_worker:
        return None
    return worker + workers * local


def sharing(tenant: int, n_tenants: int, users: int) -> int:
    """How many of the writers ``0..users-1`` write tenant ``tenant`` (writer mod N)."""
    return users // n_tenants + (tenant < users % n_tenants)


def assignment(n_tenants: int, workers: int) -> dict[int, list[int]]:
    """Worker index -> the tenant indexes its writers write (sorted; empty when it has none)."""
    per_worker = user_count(n_tenants, workers) // workers
    return {w: sorted({(w + workers * j) % n_tenants for j in range(per_worker)}) for w in range(workers)}


# --- worker side -----------------------------------------------------------------------


@dataclass
class Batch:
    """Complete journal lines (without their newline), numbered; ``sent_at`` is monotonic."""

    number: int
    lines: list[str]
    records: int
    sent_at: float = 0.0

    def message(self, worker: str, index: int) -> dict[str, Any]:
        """The ``harness_batch`` message body."""
        return {
            "worker": worker,
            "index": index,
            "batch": self.number,
            "lines": self.lines,
            "records": self.records,
        }


class Shipper:
    """Tails one spool file into numbered batches and tracks their acknowledgements.

    Whoever receives a batch from :meth:`poll` or :meth:`due` is expected to send it at
    once: both record ``now`` as its sending time.
    """

    def __init__(self, path: str | Path, max_lines: int = MAX_LINES) -> None:
        self.path = Path(path)
        self.max_lines = max_lines
        self.offset = 0
        self.batches = 0  # batches made so far (the next number)
        self.records = 0  # write lines shipped so far
        self.unacked: dict[int, Batch] = {}  # in batch order (insertion order)
        self._pending: list[str] = []  # complete lines read but not yet batched

    def _read(self) -> None:
        if len(self._pending) >= self.max_lines:
            return
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n")
        if end < 0:
            return
        self.offset += end + 1
        self._pending.extend(chunk[:end].decode("utf-8", errors="replace").split("\n"))

    def poll(self, now: float | None = None) -> Batch | None:
        """The next batch of complete new lines (at most ``max_lines``), or None."""
        self._read()
        if not self._pending:
            return None
        lines, self._pending = self._pending[: self.max_lines], self._pending[self.max_lines :]
        records = sum(1 for line in lines if line.startswith(WRITE_PREFIX))
        batch = Batch(self.batches, lines, records, time.monotonic() if now is None else now)
        self.batches += 1
        self.records += records
        self.unacked[batch.number] = batch
        return batch

    def ack(self, number: int) -> bool:
        """Forget batch ``number`` (acknowledged); False if it was not outstanding."""
        return self.unacked.pop(number, None) is not None

    def due(self, now: float | None = None, resend_after: float = 2.0) -> list[Batch]:
        """Unacknowledged batches last sent before ``now - resend_after`` (marked sent now)."""
        now = time.monotonic() if now is None else now
        late = [b for b in self.unacked.values() if b.sent_at <= now - resend_after]
        for batch in late:
            batch.sent_at = now
        return late

    def shipped(self) -> bool:
        """Everything complete in the spool is batched and sent at least once (acknowledged or not)."""
        self._read()
        return not self._pending

    def final(self, worker: str, index: int, writers: list[int], tenants: list[str]) -> dict[str, Any] | None:
        """The ``harness_final`` message body, or None while any line is not yet sent.

        It does not wait for acknowledgements: a Locust worker does not read its messages
        for ``--stop-timeout`` seconds after a stop, so acks arrive late. The final's totals
        let the master see what is still missing; unacknowledged batches are resent until
        acknowledged, and the master is complete only once it holds them all.
        """
        if not self.shipped():
            return None
        return {
            "worker": worker,
            "index": index,
            "batches": self.batches,
            "records": self.records,
            "writers": list(writers),
            "tenants": list(tenants),
        }
