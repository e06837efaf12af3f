"""Cluster load in Locust: workers that ship their journal, a master that collects it.

Used by :mod:`loadgen.locustfile` when the master runs with ``--load-workers K`` (the
workers learn K, the tenant count and the pacing from the master's spawn message):

- **Worker** (:class:`ClusterWorker`): its j-th user (0-based, counted in this process)
  becomes writer ``w + K*j`` where ``w`` is the worker index the master gave it, writing
  tenant ``writer mod N`` (:func:`loadgen.shipping.writer_number`); users beyond its share
  stay idle. A greenlet ships the spool every 0.2 s (:class:`~loadgen.shipping.Shipper`),
  resends what the master did not acknowledge within 2 s, and once Locust has stopped the
  users (``test_stop`` fires after every user's ``on_stop``) ships the rest and sends the
  final message until the master acknowledges it (at most 20 s). A worker whose tenants
  file does not match the master's tenant count, or whose index is not below K, writes
  nothing and ships nothing: the master reports it incomplete, never complete.
- **Master** (:class:`ClusterMaster`): a :class:`~loadgen.collector.Collector` under
  ``<run-dir>/journal/``, the message handlers (``concurrent=True``), and the HTTP routes
  under ``/harness/`` on Locust's web UI: ``GET status``, ``GET journal/<name>?offset=N``,
  ``POST stop``, ``POST quit``.
- **Dead-man switch** (``orphan_after`` s, 0 = off): the harness polls ``GET
  /harness/status`` every 0.3 s for as long as it runs the load. When no poll has come for
  ``orphan_after`` s (counted from the last poll, or from the master's start if none came
  yet), the harness is gone: the master logs one line and quits (Locust sends ``quit`` to
  the workers, which exit), so the load never writes to the tenants unattended. It exits
  with code 1 (its pod ends Failed); a process Locust does not end within ``EXIT_GRACE``
  (3 s) after any quit (its ``--autostart`` still waiting for workers that never came) is
  ended, with code 1 when orphaned and 0 after the harness's own quit.

Messages: worker->master ``harness_batch`` and ``harness_final``; master->worker
``harness_ack`` ``{"batch": n}`` and ``harness_final_ack`` ``{}``.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
from flask import Response, abort, jsonify, request

from loadgen.collector import Collector
from loadgen.shipping import (
    Shipper,
    ShippingError,
    assignment,
    sharing,
    user_count,
    writer_number,
)

__all__ = ["ClusterMaster", "ClusterWorker", "Seat"]

SHIP_INTERVAL = 0.2  # seconds between polls of the spool
RESEND_AFTER = 2.0  # seconds without an acknowledgement before a batch is sent again
FINAL_WAIT = 20.0  # seconds a stopping worker keeps trying to get its final acknowledged
MAX_READ = 8 * 1024 * 1024  # bytes per journal read through the master's route
ORPHAN_CHECK = 0.5  # seconds between the dead-man switch's looks at the last poll
ORPHAN_EXIT_CODE = 1  # an orphaned master did not end cleanly: its pod ends Failed
EXIT_GRACE = 3.0  # seconds a quitting master may take before it is ended without Locust's help

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Seat:
    """What one worker user writes: its writer number, tenant index and pacing share."""

    writer: int
    tenant: int
    sharing: int


class ClusterWorker:
    """A worker process's side: which writer each user gets, and the journal shipping."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.index: int | None = None  # pinned at the first user: a later re-ack cannot move it
        self.counter = itertools.count()
        self.shipper: Shipper | None = None
        self.writers: list[int] = []
        self.tenant_names: list[str] = []
        self.refused: str | None = None
        self._final_acked = False
        self._finishing: gevent.Greenlet | None = None
        self._loop: gevent.Greenlet | None = None
        runner.register_message("harness_ack", self._on_ack, concurrent=True)
        runner.register_message("harness_final_ack", self._on_final_ack, concurrent=True)

    def seat(self, workers: int, tenant_count: int, tenants: list[str]) -> Seat | None:
        """The next user's seat, or None when it must stay idle (the reason is logged once)."""
        if self.index is None:
            self.index = int(getattr(self.runner, "worker_index", -1))
        local = next(self.counter)
        problem = None
        if tenant_count != len(tenants):
            problem = (
                f"the master expects {tenant_count} tenants but this worker's tenants file lists "
                f"{len(tenants)}: give master and workers the same run's tenants"
            )
        elif not 0 <= self.index < workers:
            problem = (
                f"worker index {self.index} is not below --load-workers {workers}: this worker stays idle"
            )
        if problem is not None:
            if self.refused is None:
                self.refused = problem
                _log.error("cluster load: %s", problem)
            return None
        writer = writer_number(self.index, local, tenant_count, workers)
        if writer is None:
            return None  # a re-dispatched user beyond this worker's share
        tenant = writer % tenant_count
        self.writers.append(writer)
        if tenants[tenant] not in self.tenant_names:
            self.tenant_names.append(tenants[tenant])
        return Seat(writer, tenant, sharing(tenant, tenant_count, user_count(tenant_count, workers)))

    def ship(self, spool: Path) -> None:
        """Start shipping ``spool`` (once)."""
        if self.shipper is None and self.refused is None:
            self.shipper = Shipper(spool)
            self._loop = gevent.spawn(self._run)

    def _send(self, kind: str, data: dict[str, Any]) -> bool:
        try:
            self.runner.send_message(kind, data)
        except Exception as exc:  # the master may be away: the next round retries
            _log.warning("cluster load: sending %s to the master failed: %s", kind, exc)
            return False
        return True

    def _tick(self) -> None:
        shipper = self.shipper
        assert shipper is not None and self.index is not None
        worker = self.runner.client_id
        for batch in shipper.due(resend_after=RESEND_AFTER):
            self._send("harness_batch", batch.message(worker, self.index))
        for _ in range(20):  # a backlog goes out in several batches per round
            fresh = shipper.poll()
            if fresh is None:
                break
            self._send("harness_batch", fresh.message(worker, self.index))

    def _run(self) -> None:
        while self._finishing is None:
            self._tick()
            gevent.sleep(SHIP_INTERVAL)

    def _on_ack(self, environment: Any, msg: Any, **_kwargs: Any) -> None:
        if self.shipper is not None and isinstance(msg.data, dict) and isinstance(msg.data.get("batch"), int):
            self.shipper.ack(msg.data["batch"])

    def _on_final_ack(self, environment: Any, msg: Any, **_kwargs: Any) -> None:
        self._final_acked = True

    def finish(self) -> None:
        """After the users stopped: ship the rest, then send the final until acknowledged."""
        if self.shipper is not None and self._finishing is None:
            self._finishing = gevent.spawn(self._finish)

    def _finish(self) -> None:
        shipper = self.shipper
        assert shipper is not None and self.index is not None
        deadline = time.monotonic() + FINAL_WAIT
        last_final = -RESEND_AFTER
        # Until the final and every batch are acknowledged: batches resent meanwhile (_tick).
        while not (self._final_acked and not shipper.unacked) and time.monotonic() < deadline:
            self._tick()
            final = shipper.final(self.runner.client_id, self.index, self.writers, self.tenant_names)
            if final is not None and time.monotonic() - last_final >= RESEND_AFTER:
                last_final = time.monotonic() if self._send("harness_final", final) else last_final
            gevent.sleep(SHIP_INTERVAL)
        if not self._final_acked:
            _log.error(
                "cluster load: the master did not acknowledge this worker's final message within %.0f s "
                "(%d batches unacknowledged): the run will count this worker incomplete",
                FINAL_WAIT,
                len(shipper.unacked),
            )


class ClusterMaster:
    """The master's side: collect batches and finals, answer the harness's HTTP routes."""

    def __init__(
        self, environment: Any, folder: Path, workers: int, tenant_count: int, orphan_after: float = 0.0
    ) -> None:
        self.environment = environment
        self.runner = environment.runner
        self.collector = Collector(folder)
        self.collector.recover()
        self.workers = workers
        self.expected = assignment(tenant_count, workers)
        self.master = uuid.uuid4().hex
        self.started_at = time.time()
        self.orphan_after = orphan_after
        #: Monotonic time of the last ``GET /harness/status`` (the start until the first one).
        self.polled_at = time.monotonic()
        self.orphaned = False
        self._quitting = False
        self.runner.register_message("harness_batch", self._on_batch, concurrent=True)
        self.runner.register_message("harness_final", self._on_final, concurrent=True)
        if orphan_after > 0:
            gevent.spawn(self._dead_man)

    def _checked(self, msg: Any) -> dict[str, Any] | None:
        data = msg.data
        if not isinstance(data, dict) or data.get("worker") != msg.node_id:
            _log.error(
                "cluster load: refused a %s message: its worker id does not match its sender", msg.type
            )
            return None
        return data

    def _on_batch(self, environment: Any, msg: Any, **_kwargs: Any) -> None:
        data = self._checked(msg)
        if data is None:
            return
        try:
            self.collector.receive(data)
        except (ShippingError, OSError) as exc:
            _log.error("cluster load: batch refused, not acknowledged: %s", exc)
            return
        self.runner.send_message("harness_ack", {"batch": data["batch"]}, client_id=msg.node_id)

    def _on_final(self, environment: Any, msg: Any, **_kwargs: Any) -> None:
        data = self._checked(msg)
        if data is None:
            return
        try:
            self.collector.final(data)
        except (ShippingError, OSError) as exc:
            _log.error("cluster load: final message refused, not acknowledged: %s", exc)
            return
        self.runner.send_message("harness_final_ack", {}, client_id=msg.node_id)

    def status(self) -> dict[str, Any]:
        """The body of ``GET /harness/status``."""
        collection = self.collector.status(self.expected)
        return {
            "master": self.master,
            "started_at": self.started_at,
            "state": self.runner.state,
            "expected_workers": self.workers,
            "connected": self.runner.worker_count,
            # Workers whose heartbeats stopped (Locust's "missing"): no final will come from them.
            "missing": len(self.runner.clients.missing),
            "files": self.collector.files(),
            "collection": collection,
            "complete": collection["complete"],
        }

    def install_routes(self, app: Any) -> None:
        """Add the ``/harness/`` routes to Locust's Flask app."""
        app.add_url_rule("/harness/status", "harness_status", self._status)
        app.add_url_rule("/harness/journal/<name>", "harness_journal", self._journal)
        app.add_url_rule("/harness/stop", "harness_stop", self._stop, methods=["POST"])
        app.add_url_rule("/harness/quit", "harness_quit", self._quit, methods=["POST"])

    def _status(self) -> Response:
        self.polled_at = time.monotonic()
        return jsonify(self.status())

    def silent_for(self, now: float | None = None) -> float:
        """Seconds since the last ``GET /harness/status`` (since the start when none came yet)."""
        return (time.monotonic() if now is None else now) - self.polled_at

    def _dead_man(self) -> None:
        """Quit once the harness has not polled for ``orphan_after`` s (it was killed or cut off)."""
        check = min(ORPHAN_CHECK, self.orphan_after / 4)
        while not self._quitting:
            gevent.sleep(check)
            if self._quitting or self.silent_for() < self.orphan_after:
                continue
            self.orphaned = True
            if getattr(self.environment, "process_exit_code", None) is None:
                self.environment.process_exit_code = ORPHAN_EXIT_CODE
            _log.error(
                "cluster load: the harness stopped polling /harness/status for %.0f s: quitting, "
                "so the load does not run unattended",
                self.silent_for(),
            )
            self._shutdown()
            return

    def _shutdown(self) -> None:
        """Quit Locust (the workers get ``quit`` and exit) and stop the web UI, so the process ends.

        Locust's ``--autostart`` waits for ``--expect-workers`` in a loop that no quit ends:
        a process still there after :data:`EXIT_GRACE` s is ended here.
        """
        self._quitting = True
        gevent.spawn_later(EXIT_GRACE, self._exit_now)
        self.runner.quit()
        web_ui = getattr(self.environment, "web_ui", None)
        if web_ui is not None:
            web_ui.stop()

    def _exit_now(self) -> None:
        code = getattr(self.environment, "process_exit_code", None)
        if code is None:  # an orphan did not end cleanly; a quit the harness asked for did
            code = ORPHAN_EXIT_CODE if self.orphaned else 0
        _log.error(
            "cluster load: still running %.0f s after quitting (Locust waits for workers that never "
            "came): exiting with code %d",
            EXIT_GRACE,
            code,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(code)

    def _journal(self, name: str) -> Response:
        path = self.collector.path(name)
        if path is None:
            abort(404)
        try:
            offset = int(request.args.get("offset", "0"))
        except ValueError:
            offset = -1
        if not 0 <= offset < 2**62:  # a file offset, not a number seek() cannot take
            abort(400)
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(MAX_READ)
        return Response(data, mimetype="application/octet-stream")

    def _stop(self) -> tuple[Response, int]:
        gevent.spawn(self.runner.stop)  # blocks until the workers stopped their users
        return jsonify({"stopping": True}), 202

    def _quit(self) -> tuple[Response, int]:
        def later() -> None:
            gevent.sleep(0.2)  # let this answer go out first
            self._shutdown()

        self._quitting = True  # the dead-man switch has nothing left to do
        gevent.spawn(later)
        return jsonify({"quitting": True}), 202
