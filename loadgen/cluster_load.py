"""The load as pods: a Locust master and K workers in the cluster, mirrored into the run folder.

:class:`ClusterLoadRun` has :class:`loadgen.runner.LoadRun`'s interface, so the control and
the probes use either. ``start`` picks the ports (on the embedded lab, which publishes its
port block in ``kube-system/lab-identity``: two free loopback ports from the top of that
block, where its operator, which allocates from the bottom, is least likely to go; on a
cluster 5557 and 8089), creates the master Job, then the tenants Secret and the Service,
each owned by the master Job (an ``ownerReferences`` entry with the uid its create
returned), waits until the master answers ``/harness/status`` through the API server's
service proxy, creates one Job per worker (owned by the master Job too, after the Service,
whose link variables they need) and waits until all K workers are connected (bounded; else
one line naming what is missing, and everything created is deleted).

A harness killed mid-run cannot delete anything, so the load ends by itself: the master
runs with ``--orphan-after`` (:data:`~loadgen.cluster_manifests.ORPHAN_AFTER` s, at least
``ready_timeout``) and quits once nobody polled it for that long, its workers exit with
it, both Job kinds carry ``ttlSecondsAfterFinished``, and once the master Job is deleted the
garbage collector deletes what it owns (the Secret holds every tenant's password).

Then a thread mirrors the master's journal files into ``<run-dir>/journal/`` every 0.3 s
(:class:`loadgen.cluster_mirror.JournalMirror`: append-only, complete lines), so every
probe reads the run as it reads a local one. The master is *lost* when the proxy has
failed for more than 5 s, when its pod is gone or ended, or when its id (a uuid per
master process) changes: :attr:`died_at` is set and :meth:`problem` says which, in one
line. A lost master is never forgiven: the run is NO-GO. That thread, the API transport,
the status requests and the lost-master rules moved to :mod:`loadgen.cluster_watch`
(:class:`~loadgen.cluster_watch.MasterWatch`, mixed in here); this module keeps the
interface, start, stop and the collection view.

``stop`` asks the master to stop (workers stop their users, flush and send their final
messages), waits (bounded) for the final of every worker that was connected, mirrors the
rest, keeps the master's completeness report (``life()["collection"]``, tenants as
names), asks it to quit, deletes the master's and the workers' Jobs, the Service and the
Secret, and waits until their pods are gone.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadgen import runner
from loadgen.cluster_api import Transport
from loadgen.cluster_manifests import (
    ORPHAN_AFTER,
    load_id,
    object_name,
    owned_by,
    owner_reference,
    render_all,
    selector,
)
from loadgen.cluster_mirror import JournalMirror, collection_view
from loadgen.cluster_objects import LoadObjectsApi, pick_ports, status_message
from loadgen.cluster_watch import MasterWatch
from loadgen.errors import LoadgenError
from loadgen.shipping import user_count
from loadgen.tenants import load_tenants

__all__ = ["ClusterLoadRun"]


@dataclass
class ClusterLoadRun(MasterWatch):
    """A Locust master and ``workers`` worker pods in ``namespace`` writing to ``tenants_file``'s tenants."""

    tenants_file: Path
    run_dir: Path
    run_id: str
    workers: int
    namespace: str
    image: str
    rate: float = 20.0
    kubeconfig: str | None = None
    write_timeout: float = 0.5
    connect_timeout: float = 0.5
    ready_timeout: float = 60.0
    stop_timeout: float = 30.0
    delete_timeout: float = 60.0
    interval: float = 0.3
    lost_after: float = 5.0
    transport: Transport | None = None
    processes: int = 0
    cpu_seconds: float | None = None
    started_at: float | None = None
    stop_requested_at: float | None = None
    ended_at: float | None = None
    died_at: float | None = None
    ports: tuple[int, int] | None = None
    problems: list[str] = field(default_factory=list)
    _tenants: list[str] = field(default_factory=list)
    _objects: LoadObjectsApi | None = None
    _last: dict[str, Any] | None = None
    _master: str | None = None
    _lost: str | None = None
    _code: int | None = None
    _collection: dict[str, Any] | None = None
    _failing_since: float | None = None
    _short_noted: bool = False
    _halt: threading.Event = field(default_factory=threading.Event)
    _done: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self._tenants = [t.name for t in load_tenants(self.tenants_file)]
        self.ident = load_id(self.run_id)
        self.service = object_name(self.ident)
        self.mirror = JournalMirror(self.run_dir / "journal")

    # -- what LoadRun has ------------------------------------------------------------------------

    @property
    def users(self) -> int:
        return user_count(len(self._tenants), max(1, self.workers))

    @property
    def pid(self) -> int | None:
        return None  # the load runs in pods

    def running(self) -> bool:
        return self.started_at is not None and self.ended_at is None and self.died_at is None

    def returncode(self) -> int | None:
        return self._code

    def problem(self) -> str | None:
        """Why the load cannot be trusted (its master lost, its journals incomplete), else None."""
        if self._lost is not None:
            return f"the cluster load's master was lost: {self._lost}"
        collection = self._collection
        if self.ended_at is not None and collection is not None and not collection["complete"]:
            bad = [w for w in collection["workers"] if not w["complete"]]
            named = "; ".join(f"worker {w['index']} ({w['worker'] or 'unknown'}): {w['reason']}" for w in bad)
            return f"the cluster load's journals are incomplete: {named or 'not every worker reported'}"
        return None

    def life(self) -> dict[str, Any]:
        """What ``run.json`` records: LoadRun's fields, and the workers, namespace and collection."""
        return {
            "mode": "cluster",
            "pid": None,
            "write_rate": self.rate,
            "users": self.users,
            "processes": self.processes,
            "workers": self.workers,
            "namespace": self.namespace,
            "image": self.image,
            "load_id": self.ident,
            "ports": {"master": self.ports[0], "web": self.ports[1]} if self.ports else None,
            "started_at": self.started_at,
            "stop_requested_at": self.stop_requested_at,
            "ended_at": self.ended_at,
            "exit_code": self.returncode(),
            "died_at": self.died_at,
            "cpu_seconds": self.cpu_seconds,
            "collection": self.collection(),
            "problems": list(self.problems),
        }

    def collection(self) -> dict[str, Any] | None:
        """The completeness of the workers' journals: final after stop, else as last seen (None: never)."""
        if self._collection is not None:
            return self._collection
        if self._last is None:
            return None
        return self._view(self._last, final=False)

    # -- start -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Create the pods and wait until every worker is connected; returns with the load running."""
        if self.workers < 1:
            raise LoadgenError(f"load_workers must be at least 1, got {self.workers}")
        if self.rate < 0:
            raise LoadgenError(f"write rate must be 0 or more, got {self.rate:g}")
        (self.run_dir / "journal").mkdir(parents=True, exist_ok=True)
        bind_host, self.ports = pick_ports(self._t(), self.tenants_file)
        objects = render_all(
            run_id=self.run_id,
            namespace=self.namespace,
            image=self.image,
            tenants_file=self.tenants_file,
            workers=self.workers,
            master_port=self.ports[0],
            web_port=self.ports[1],
            write_rate=self.rate,
            write_timeout=self.write_timeout,
            connect_timeout=self.connect_timeout,
            bind_host=bind_host,
            orphan_after=self.orphan_after(),
        )
        try:
            # The master first: the rest names it as owner, so a master Job deleted by its TTL
            # (it quit when the harness stopped polling) takes everything with it.
            owner = owner_reference(self.objects.create(objects.master))
            for obj in (objects.secret, objects.service):
                self.objects.create(owned_by(obj, owner))
            self._wait_master()
            for job in objects.workers:
                self.objects.create(owned_by(job, owner))
                with contextlib.suppress(LoadgenError):
                    self._status()  # a poll: the master's dead-man switch must not fire meanwhile
            self.started_at = time.time()
            self._wait_workers()
        except BaseException:
            self.problems.extend(self.objects.delete_all(self.delete_timeout))
            self.started_at = None
            raise
        runner.register_active(self)  # probes ask active_load() whether it lives
        self._thread = threading.Thread(target=self._watch, name=f"load-mirror-{self.ident}", daemon=True)
        self._thread.start()

    def orphan_after(self) -> int:
        """The master's ``--orphan-after``: never shorter than the wait for its first answer."""
        return max(ORPHAN_AFTER, math.ceil(self.ready_timeout))

    def _wait_master(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            try:
                self._master = str(self._status()["master"])
                return
            except (LoadgenError, KeyError) as exc:
                last = str(exc)
            if self.objects.phases("master") & {"Failed", "Succeeded"}:
                story = self.objects.story("master")
                raise LoadgenError(f"the load master ended before it answered: {story}")
            time.sleep(0.5)
        raise LoadgenError(
            f"the load master did not answer /harness/status through the API server's service proxy "
            f"within {self.ready_timeout:g} s ({last}); {self.objects.story('master')}"
        )

    def _wait_workers(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        connected = 0
        while time.monotonic() < deadline:
            doc = self._status()
            if str(doc.get("master")) != self._master:
                raise LoadgenError("the load master restarted while the workers were connecting")
            connected = int(doc.get("connected") or 0)
            if connected >= self.workers:
                self._last = doc
                return
            if "Failed" in self.objects.phases("worker"):
                story = self.objects.story("worker")
                raise LoadgenError(f"a load worker failed before the load started: {story}")
            time.sleep(0.5)
        pods = self.objects.pods("worker")
        running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        if connected == 0 and pods and len(running) == len(pods):
            raise LoadgenError(
                f"no load worker reached the master (Service {self.service}, port "
                f"{self.ports[0] if self.ports else '?'}) "
                f"within {self.ready_timeout:g} s although {len(running)} worker pod(s) run: the master is "
                "unreachable from the workers (NetworkPolicy? Service endpoints?); "
                f"{self.objects.story('worker')}"
            )
        raise LoadgenError(
            f"only {connected} of {self.workers} load workers connected to the master within "
            f"{self.ready_timeout:g} s; {self.objects.story('worker')}"
        )

    # -- stop ------------------------------------------------------------------------------------

    def stop(self, grace: float = 15.0) -> int | None:
        """Stop the users, collect every final, mirror the rest, delete everything; the master's exit code.

        Whatever fails on the way (a full disk while mirroring, an API error), what was
        created is deleted: the Secret holds every tenant's password.
        """
        if self.started_at is None and (self._objects is None or not self._objects.created):
            return None  # nothing was created (the client itself may not even be buildable)
        if self.stop_requested_at is None:
            self.stop_requested_at = time.time()
        try:
            if self._lost is None:
                alive = int((self._last or {}).get("connected") or self.workers)
                self._post("stop")
                self._wait_finals(alive)
            self._halt.set()
            if self._thread is not None:
                self._thread.join(30.0)
            if self._lost is None:
                with contextlib.suppress(LoadgenError):
                    self.mirror_once()
            self._collection = self._view(self._last, final=True)
            if self._lost is None:
                self._post("quit")
                self._code = self.objects.exit_code(grace)
        finally:
            self._halt.set()
            self.problems.extend(self.objects.delete_all(self.delete_timeout))
            self.ended_at = time.time()
            self._done.set()
            runner.unregister_active(self)
        return self._code

    def _post(self, what: str) -> None:
        try:
            status, body = self._proxy("POST", what)
        except LoadgenError as exc:
            self.problems.append(f"POST /harness/{what} failed: {exc}")
            return
        if status not in (200, 202, 204):
            self.problems.append(f"POST /harness/{what} answered {status}: {status_message(body)}")

    def _wait_finals(self, alive: int) -> None:
        """Wait (bounded) until every worker alive at the stop has its whole journal at the master."""
        deadline = time.monotonic() + self.stop_timeout
        whole = 0
        while time.monotonic() < deadline and self._lost is None:
            doc = self._last or {}
            view = self._view(doc, final=False)
            whole = sum(1 for w in view["workers"] if w["complete"])
            # A worker that died just before the stop still counted as connected: once the
            # master sees it missing, nothing more is awaited from it.
            if doc.get("complete") is True or whole >= alive - int(doc.get("missing") or 0):
                return
            time.sleep(self.interval)
        if self._lost is None:
            self.problems.append(
                f"only {whole} of the {alive} load workers connected at the stop shipped their whole "
                f"journal within {self.stop_timeout:g} s of the stop"
            )

    def _view(self, doc: dict[str, Any] | None, final: bool) -> dict[str, Any]:
        view = collection_view((doc or {}).get("collection"), self.workers, self._tenants)
        if final:
            short = self.mirror.shortfall((doc or {}).get("files") or {})
            if short or self.mirror.refused or self._lost is not None or doc is None:
                view["complete"] = False
            if short:
                self.problems.append(f"the local journal copy lacks bytes the master held: {short}")
            if self.mirror.refused:
                self.problems.append(
                    f"the master listed files that are not journal names: {sorted(self.mirror.refused)}"
                )
        return view

    # -- waiting ---------------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> int:
        """Wait until the load ends (it has no duration: only a stop or a lost master end it)."""
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(f"cluster load {self.ident}", timeout or 0.0)
        return self._code if self._code is not None else -1

    def wait_acks(self, tenants: list[str], stability: float = 0.0, timeout: float = 30.0) -> None:
        """Block until every tenant has acknowledged writes steadily for ``stability`` s (in the mirror)."""

        def gone() -> str | None:
            if self.running():
                return None
            return f"the cluster load stopped early: {self.problem() or 'it is not running'}"

        where = f"see kubectl logs -n {self.namespace} -l {selector(self.ident)}"
        runner.wait_steady_acks(self.run_dir / "journal", tenants, self.rate, stability, timeout, gone, where)
