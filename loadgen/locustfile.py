"""Locust N-tenant writer: ``locust -f loadgen/locustfile.py --tenants-file FILE``.

One Locust user per tenant by default (``-u`` = number of tenants). Users claim
writer numbers 0, 1, 2, ... atomically in the run folder, and writer ``i`` writes to
tenant ``i mod N``; so every tenant gets its share of users whatever ``--processes``
splits them into. Each user starts a :class:`~loadgen.writer.TenantWriter`, whose OS
thread writes, paces and journals on its own connection; the user only supervises it.
Locust's statistics and the Prometheus metrics are fed from the journaled records in
batches, every 0.2 s, by one greenlet per process.

Works with the web UI and headless. The journal lands in ``<run-dir>/journal/``, one
file per process; each process serves Prometheus metrics and writes their URL to
``<run-dir>/metrics/``. Options can also come from ``HARNESS_*`` environment variables.

**Cluster load** (``--master --load-workers K --tenant-count N`` on the master; ``--worker``
with ``--tenants-file`` on K workers): writers are not claimed through the run folder but
follow from the worker index, each worker ships its journal to the master, and the master
collects it and serves it to the harness (:mod:`loadgen.distributed`). The master needs no
tenants file, and with ``--orphan-after S`` quits (and so stops the workers) once the
harness has not polled ``/harness/status`` for S seconds. ``--tenants-file`` and
``--run-dir`` are container paths, mapped to host paths on the embedded lab
(:func:`common.mounts.host_path`; unchanged elsewhere), and are taken from this process's
own command line: a worker keeps them when the master's spawn message brings the master's
options.
"""

from __future__ import annotations

import collections
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from locust import User, constant, events, task
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

from common.config import ConfigurationError
from common.mounts import host_path
from loadgen.claims import claim_writer
from loadgen.deadlines import DEADLINES
from loadgen.distributed import ClusterMaster, ClusterWorker
from loadgen.errors import LoadgenError
from loadgen.journal import JournalWriter, Write
from loadgen.metrics import LoadMetrics
from loadgen.runner import default_run_id
from loadgen.shipping import sharing
from loadgen.tenants import Tenant, load_tenants, redact
from loadgen.writer import TenantWriter

__all__ = ["TenantUser"]

_PUMP_INTERVAL = 0.2  # seconds between batches of records fed to Locust's statistics


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    group = parser.add_argument_group("MSSQL harness")
    group.add_argument(
        "--tenants-file", env_var="HARNESS_TENANTS", default="", help="JSON file listing the tenants"
    )
    group.add_argument(
        "--run-id", env_var="HARNESS_RUN_ID", default="", help="run identifier (default: UTC time)"
    )
    group.add_argument(
        "--run-dir", env_var="HARNESS_RUN_DIR", default="", help="run folder (default runs/<run-id>)"
    )
    group.add_argument(
        "--write-rate",
        env_var="HARNESS_WRITE_RATE",
        type=float,
        default=20.0,
        help="writes per second per tenant; 0 = as fast as possible",
    )
    group.add_argument(
        "--write-timeout",
        env_var="HARNESS_WRITE_TIMEOUT",
        type=float,
        default=0.5,
        help="seconds before a write is abandoned as outcome unknown",
    )
    group.add_argument(
        "--connect-timeout",
        env_var="HARNESS_CONNECT_TIMEOUT",
        type=float,
        default=0.5,
        help="seconds before a connection attempt is abandoned",
    )
    group.add_argument(
        "--metrics-port",
        env_var="HARNESS_METRICS_PORT",
        type=int,
        default=0,
        help="Prometheus port of this process (0 = any free port, -1 = off)",
    )
    group.add_argument(
        "--load-workers",
        env_var="HARNESS_LOAD_WORKERS",
        type=int,
        default=0,
        help="cluster load: the number of worker processes (master only; 0 = local load)",
    )
    group.add_argument(
        "--tenant-count",
        env_var="HARNESS_TENANT_COUNT",
        type=int,
        default=0,
        help="cluster load: the number of tenants the workers write (master only)",
    )
    group.add_argument(
        "--journal-segment-seconds",
        env_var="HARNESS_JOURNAL_SEGMENT_SECONDS",
        type=float,
        default=0.0,
        help="start a new journal segment every this many seconds (0 = one file; a soak uses 60)",
    )
    group.add_argument(
        "--exit-with-parent",
        env_var="HARNESS_EXIT_WITH_PARENT",
        action="store_true",
        default=False,
        help="stop the users and quit when the process that started Locust is gone "
        "(a killed harness leaves no load behind)",
    )
    group.add_argument(
        "--orphan-after",
        env_var="HARNESS_ORPHAN_AFTER",
        type=float,
        default=0.0,
        help="cluster load: quit when /harness/status has not been polled for this many seconds "
        "(master only; 0 = never)",
    )


@dataclass(frozen=True)
class _Paths:
    """This process's own ``--tenants-file`` and ``--run-dir``, as host paths."""

    tenants_file: str
    run_dir: str


_paths: _Paths | None = None
_worker: ClusterWorker | None = None
_master: ClusterMaster | None = None


@dataclass
class _Process:
    """What the users of one load process share."""

    tenants: list[Tenant]
    run_id: str
    run_dir: Path
    journal: JournalWriter
    metrics: LoadMetrics
    options: Any
    #: Records journaled by the writers' threads, not yet counted by Locust and Prometheus.
    records: collections.deque[Write] = field(default_factory=collections.deque)


_shared: _Process | None = None


def _process(environment: Any) -> _Process:
    global _shared  # noqa: PLW0603 - one per load process, by design
    if _shared is not None:
        return _shared
    opts = environment.parsed_options
    run_id = opts.run_id or os.environ.get("HARNESS_RUN_ID") or default_run_id()
    opts.run_id = run_id
    paths = _paths or _Paths(opts.tenants_file, opts.run_dir)
    run_dir = Path(paths.run_dir or Path("runs") / run_id)
    # Assign before anything that can yield to another greenlet: users start concurrently.
    shared = _shared = _Process(
        tenants=load_tenants(paths.tenants_file),
        run_id=run_id,
        run_dir=run_dir,
        journal=JournalWriter(
            run_dir / "journal", run_id, segment_seconds=opts.journal_segment_seconds or None
        ),
        metrics=LoadMetrics(),
        options=opts,
    )
    if opts.metrics_port >= 0:
        index = max(0, getattr(environment.runner, "worker_index", 0))
        port = opts.metrics_port + index if opts.metrics_port else 0
        shared.metrics.serve(port, run_dir / "metrics", str(os.getpid()), run_id=run_id)
    gevent.spawn(_pump, shared, environment)
    return shared


def _drain(shared: _Process, environment: Any) -> None:
    """Count every pending record in Locust's statistics and the Prometheus metrics."""
    fire = environment.events.request.fire
    observe = shared.metrics.observe
    records = shared.records
    while records:
        record = records.popleft()
        observe(record.tenant, record.outcome, record.latency, record.end)
        fire(
            request_type="INSERT",
            name=record.tenant,
            response_time=record.latency * 1000.0,
            response_length=0,
            exception=None if record.outcome == "ok" else RuntimeError(f"{record.outcome}: {record.error}"),
            context={"writer": record.writer, "seq": record.seq},
        )


def _pump(shared: _Process, environment: Any) -> None:
    while True:
        gevent.sleep(_PUMP_INTERVAL)
        _drain(shared, environment)


def _cluster_master(opts: Any) -> bool:
    return bool(getattr(opts, "master", False)) and opts.load_workers > 0


@events.init.add_listener
def _check(environment: Any, **_kwargs: Any) -> None:
    global _paths  # noqa: PLW0603 - this process's own paths, kept before a spawn message overwrites them
    opts = environment.parsed_options
    if opts is None:
        return
    try:
        if opts.load_workers < 0 or opts.tenant_count < 0:
            raise LoadgenError("--load-workers and --tenant-count must be 0 or more")
        if opts.orphan_after < 0:
            raise LoadgenError(f"--orphan-after must be 0 (off) or more seconds, got {opts.orphan_after:g}")
        if opts.journal_segment_seconds < 0:
            raise LoadgenError(
                "--journal-segment-seconds must be 0 (one file) or more, "
                f"got {opts.journal_segment_seconds:g}"
            )
        if opts.journal_segment_seconds and opts.load_workers:
            raise LoadgenError(
                "--journal-segment-seconds is for a local load: a cluster load ships one journal per worker"
            )
        _paths = _Paths(
            host_path(opts.tenants_file) if opts.tenants_file else "",
            host_path(opts.run_dir) if opts.run_dir else "",
        )
        if opts.load_workers and getattr(opts, "processes", None):
            raise LoadgenError("--load-workers runs one worker per process or pod: drop --processes")
        if _cluster_master(opts):
            if opts.tenant_count < 1:
                raise LoadgenError(
                    "cluster load: pass --tenant-count N (the number of tenants) to the master"
                )
            if opts.expect_workers != opts.load_workers:
                raise LoadgenError(
                    f"cluster load: --expect-workers {opts.expect_workers} differs from --load-workers "
                    f"{opts.load_workers}: give both the same number"
                )
        elif not opts.tenants_file:
            raise LoadgenError("no tenants: pass --tenants-file FILE (or set HARNESS_TENANTS)")
        if opts.write_rate < 0:
            raise LoadgenError(f"--write-rate must be 0 or more, got {opts.write_rate:g}")
        if opts.write_timeout <= 0 or opts.connect_timeout <= 0:
            raise LoadgenError("--write-timeout and --connect-timeout must be positive")
        if _paths.tenants_file:
            load_tenants(_paths.tenants_file)
    except (LoadgenError, ConfigurationError) as exc:
        sys.stderr.write(f"locustfile: {redact(str(exc))}\n")
        sys.exit(2)
    _install(environment, opts)


def _watch_parent(environment: Any) -> None:
    """Quit (users stopped, their lines journaled) once the process that started Locust is gone.

    Locust runs in its own session, so a SIGKILLed harness would otherwise leave it writing
    for ever; its parent changes (it is re-parented) the moment the harness dies.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            gevent.sleep(1.0)
        sys.stderr.write(f"locustfile: the harness (pid {parent}) is gone: stopping the load\n")
        environment.runner.quit()

    gevent.spawn(watch)


def _install(environment: Any, opts: Any) -> None:
    """Cluster load: the master's collection and routes, or a worker's shipping."""
    global _worker, _master  # noqa: PLW0603 - one per load process
    runner = environment.runner
    if opts.exit_with_parent and not isinstance(runner, WorkerRunner):
        _watch_parent(environment)
    if isinstance(runner, MasterRunner) and _cluster_master(opts):
        run_id = opts.run_id or default_run_id()
        opts.run_id = run_id
        run_dir = Path(_paths.run_dir if _paths and _paths.run_dir else Path("runs") / run_id)
        _master = ClusterMaster(
            environment, run_dir / "journal", opts.load_workers, opts.tenant_count, opts.orphan_after
        )
        if environment.web_ui is not None:
            _master.install_routes(environment.web_ui.app)
    elif isinstance(runner, WorkerRunner):
        _worker = ClusterWorker(runner)


@events.test_stop.add_listener
def _stopped(environment: Any, **_kwargs: Any) -> None:
    # Fired after every user's on_stop: the writers are stopped and their lines journaled.
    if _worker is not None:
        _worker.finish()


class TenantUser(User):
    """Writes unique rows into one tenant at a constant rate, journaling each attempt.

    The writing happens in the writer's own OS thread (see :mod:`loadgen.writer`); the
    user starts it, reports an error that ended it, and stops it when Locust stops.
    """

    wait_time = constant(1.0)
    writer: TenantWriter | None = None

    def on_start(self) -> None:
        shared = _process(self.environment)
        opts = shared.options
        n_tenants = len(shared.tenants)
        workers = int(getattr(opts, "load_workers", 0) or 0)
        if _worker is not None and workers > 0:
            seat = _worker.seat(workers, int(opts.tenant_count or 0), [t.name for t in shared.tenants])
            _worker.ship(shared.journal.path)
            if seat is None:
                return  # idle: beyond this worker's share, or this worker was refused
            index, tenant, share = seat.writer, shared.tenants[seat.tenant], seat.sharing
        else:
            index = claim_writer(shared.run_dir / "claims")
            tenant = shared.tenants[index % n_tenants]
            users = max(1, int(getattr(opts, "num_users", 1) or 1))
            share = sharing(index % n_tenants, n_tenants, users)
        self.writer = TenantWriter(
            tenant,
            index,
            shared.run_id,
            shared.journal,
            interval=max(1, share) / opts.write_rate if opts.write_rate > 0 else 0.0,
            write_timeout=opts.write_timeout,
            connect_timeout=opts.connect_timeout,
            on_record=shared.records.append,
        )
        self.writer.start()

    @task
    def supervise(self) -> None:
        """Report, once, an error that ended the writer's thread (or the deadline thread), then stop.

        The tenant then stops being written: the run's liveness check sees it as a dead load.
        """
        if self.writer is None:
            return  # an idle user of a cluster worker
        error = self.writer.error or DEADLINES.error
        if error is not None:
            logging.getLogger(__name__).error(
                "the writer of %s stopped: %s", self.writer.tenant.name, redact(repr(error))
            )
            raise StopUser()

    def on_stop(self) -> None:
        # A write still running when Locust stops is given its deadline, then journaled as
        # outcome unknown ("Interrupted"): it may have reached the server.
        if self.writer is not None:
            self.writer.stop(self.writer.write_timeout, sleep=gevent.sleep)
        if _shared is not None:
            _drain(_shared, self.environment)
