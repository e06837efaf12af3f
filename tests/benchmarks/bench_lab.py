"""The lab's control plane: ``lab up`` wall time, list latency, watch event latency.

Run from the project root::

    .venv/bin/python -m tests.benchmarks.bench_lab [--tenants 10] [--nodes 3] [--repeat 2]
        [--pods 200] [--requests 200] [--quiet-wait 120] [--parts up,list,watch] [--out FILE]

Three measurements, one after the other, everything under one temporary folder in
``/var/tmp`` (mode 0755, so the ``postgres`` user reaches the tenants' data). The
project's own ``.lab/`` is never used: every ``python -m lab`` runs with
``HARNESS_LAB_DIR`` pointing into that folder and a free port picked here.

1. **lab up**: ``python -m lab up --tenants N --nodes 3 --port P`` as a subprocess, from
   an empty lab folder until it exits (every MSSQLInstance Ready and answering
   ``SELECT 1``), then ``python -m lab down --wipe``; ``--repeat`` times. Reported: the
   wall time, a timeline (the moments the CLI prints its progress lines, and when each
   pod first appeared and first was Ready on a watch opened as soon as the API answers),
   the CPU the lab's processes used while coming up, by component, and ``down``'s wall
   time. A lab is started only while every port on which another running lab's
   PostgreSQL was seen listening is listening again (see :class:`_Quiet`).
2. **list latency**: one API server alone (durable state; ``--transport tls``, the default,
   serves it as the lab does: TLS, a bearer token, an RBAC decision per request, see
   :mod:`tests.benchmarks.bench_lab_access`; ``--transport plain`` without them),
   ``--pods`` pods in namespace ``x`` with labels and a kubelet-like status; then from
   one ``requests.Session`` ``--requests`` timed
   ``GET /api/v1/namespaces/x/pods`` as JSON, as many with the Table ``Accept`` header
   kubectl sends, and both again with a ``labelSelector`` matching 10 pods. The peer is
   a trivial aiohttp server in its own process answering every request with the bytes
   the lab served for it (pre-serialised, over the same TLS when the lab's is): the floor
   of the HTTP stack on this machine.
   Lab and peer requests alternate one by one, so both see the same background.
3. **watch event latency**: a watch open on the pods of namespace ``w`` (read in its own
   thread); ``--pods`` pods created, then each patched (merge patch of a label), one at
   a time, each write waiting for its own event (matched by resourceVersion) before the
   next. Reported from the write's response to the event's arrival, and from the write
   being sent to the event's arrival. The server publishes an event before it has
   synced its write-ahead log and answered, so the first can be negative.

Latencies are ``time.perf_counter`` around the client call (the whole body read, JSON
not parsed); p50/p99 are nearest-rank. Each timed block also records the CPU each
server process used per request. CPU used by other work on the machine during each
measurement (kernel threads left out) is reported as *other cores*; ``--quiet-wait``
first waits (up to that many seconds) for the machine to be idle, so another lab's
chaos runs disturb as little as possible.

Everything started here is stopped by pid (the lab by ``lab down``, after which no
process naming the folder may remain) and the folder removed on exit. Results and their
analysis live in ``docs/BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil
import requests

from lab.api.process import ApiServerProcess, spawn_listening
from lab.errors import LabError
from lab.paths import project_root
from tests.benchmarks.bench_lab_access import TRANSPORTS, peer_tls, start_server

__all__ = [
    "GOAL_LIST_P99_MS",
    "GOAL_UP_SECONDS",
    "TABLE_ACCEPT",
    "BenchError",
    "LabUpRun",
    "Latency",
    "ListResult",
    "WatchResult",
    "format_report",
    "latency",
    "main",
    "measure_lab_up",
    "measure_lists",
    "measure_watch",
    "percentile",
    "serve_peer",
]

GOAL_UP_SECONDS = 20.0
GOAL_LIST_P99_MS = 20.0
TABLE_ACCEPT = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
    "application/json"
)
"""What ``kubectl get`` sends (kubectl 1.2x)."""
_LIST_NS = "x"
_WATCH_NS = "w"
_GROUPS = 20  # pods carry label group=g<i % 20>: a selector on one group matches pods / 20
_QUIET = 0.4  # cores of other work below which the machine counts as idle (other idle labs use ~0.3)
_DISTURBED = 0.5  # cores of other work during a measurement above which the report warns
_PHASES = (
    ("CLI running (Python start-up done)", "starting the control plane"),
    ("control plane listening, kubelets started", "starting kubelets"),
    ("nodes Ready, operator applied, instances created", "waiting for"),
)
_COMPONENTS = (
    ("control plane", "lab.controlplane"),
    ("kubelets", "lab.kubelet --node"),
    ("operator", "lab.operator"),
    ("engine (initdb, psql setup)", "lab.kubelet.engine_image"),
    ("postgres", "postgres"),
)


class BenchError(Exception):
    """The benchmark could not measure something; the message says what and where to look."""


# -- statistics (pure) ----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of ``values``; NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class Latency:
    """A sample of durations in milliseconds."""

    count: int
    p50: float
    p99: float
    mean: float
    min: float
    max: float


def latency(seconds: list[float]) -> Latency:
    """Summary in ms of durations given in seconds."""
    ms = [s * 1000 for s in seconds]
    return Latency(
        count=len(ms),
        p50=percentile(ms, 50),
        p99=percentile(ms, 99),
        mean=sum(ms) / len(ms) if ms else math.nan,
        min=min(ms) if ms else math.nan,
        max=max(ms) if ms else math.nan,
    )


# -- CPU accounting -------------------------------------------------------------------------------


def _busy_cpu() -> float:
    """Machine-wide CPU seconds of processes (kernel threads and interrupts left out)."""
    times = psutil.cpu_times()
    total = times.user + times.nice + times.system
    for proc in psutil.process_iter(["pid", "ppid"]):
        if proc.info["pid"] == 2 or proc.info["ppid"] == 2:
            with contextlib.suppress(psutil.Error):
                kt = proc.cpu_times()
                total -= kt.user + kt.system
    return float(total)


def _cpu_of(proc: psutil.Process) -> float:
    """CPU seconds of ``proc`` and of the children it has reaped."""
    t = proc.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def _own_processes(markers: tuple[str, ...]) -> list[tuple[psutil.Process, list[str]]]:
    """This process, its descendants, and every process whose command line (or an
    ancestor's) names one of ``markers``; each with its command line."""
    table: dict[int, tuple[int, list[str], psutil.Process]] = {}
    for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
        table[proc.info["pid"]] = (proc.info["ppid"] or 0, proc.info["cmdline"] or [], proc)
    me = os.getpid()
    known: dict[int, bool] = {}

    def mine(pid: int) -> bool:
        chain: list[int] = []
        result = False
        while pid in table and pid not in known and pid > 1:
            chain.append(pid)
            ppid, cmdline, _ = table[pid]
            if pid == me or any(m in word for m in markers for word in cmdline):
                result = True
                break
            pid = ppid
        else:
            result = known.get(pid, False)
        for p in chain:
            known[p] = result
        return result

    return [(table[pid][2], table[pid][1]) for pid in table if mine(pid)]


def _own_cpu(markers: tuple[str, ...]) -> dict[str, float]:
    """CPU seconds of :func:`_own_processes`, by component (see ``_COMPONENTS``) and in total."""
    by: dict[str, float] = {}
    for proc, cmdline in _own_processes(markers):
        try:
            cpu = _cpu_of(proc)
        except psutil.Error:
            continue
        text = " ".join(cmdline)
        name = next((label for label, marker in _COMPONENTS if marker in text), "other")
        if proc.pid == os.getpid():
            name = "this program and lab CLI"
        by[name] = by.get(name, 0.0) + cpu
    by["total"] = sum(by.values())
    return by


class _Window:
    """Wall time, own CPU, other work's CPU and steal between ``start()`` and ``stop()``."""

    def __init__(self, markers: tuple[str, ...]) -> None:
        self.markers = markers
        self.wall = 0.0
        self.own: dict[str, float] = {}
        self.other_cores = 0.0
        self.steal_cores = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._steal0 = float(getattr(psutil.cpu_times(), "steal", 0.0))
        self._busy0 = _busy_cpu()
        self._own0 = _own_cpu(self.markers)

    def stop(self) -> None:
        own1 = _own_cpu(self.markers)
        busy = _busy_cpu() - self._busy0
        steal = float(getattr(psutil.cpu_times(), "steal", 0.0)) - self._steal0
        self.wall = time.monotonic() - self._t0
        self.own = {k: max(0.0, v - self._own0.get(k, 0.0)) for k, v in own1.items()}
        self.other_cores = max(0.0, busy - self.own.get("total", 0.0)) / self.wall
        self.steal_cores = steal / self.wall

    @contextlib.contextmanager
    def measure(self) -> Iterator[_Window]:
        self.start()
        yield self
        self.stop()


def _foreign_pg_ports(mine: str) -> dict[int, str]:
    """Ports of the PostgreSQL servers running now that are not under the folder ``mine``,
    each with its data directory."""
    ports: dict[int, str] = {}
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if not cmdline or Path(cmdline[0]).name != "postgres" or any(mine in w for w in cmdline):
            continue
        with contextlib.suppress(ValueError, IndexError):
            ports[int(cmdline[cmdline.index("-p") + 1])] = cmdline[cmdline.index("-D") + 1]
    return ports


def _lab_alive(data_dir: str) -> bool:
    """True while the lab a tenant data directory belongs to still has its control plane."""
    root, found, _ = data_dir.partition("/cluster/volumes/")
    if not found:
        return Path(data_dir).exists()
    marker = f"{root}/cluster/api"
    for proc in psutil.process_iter(["cmdline"]):
        if any(marker in word for word in proc.info["cmdline"] or []):
            return True
    return False


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class _Quiet:
    """Waits for the machine to be idle enough to measure.

    Idle: other work used under ``_QUIET`` cores for a second. With ``ports``, also
    every port on which another lab's PostgreSQL was seen listening is listening again
    (while that lab's control plane runs): a tenant server of another lab that is down
    (a chaos run restarting it) leaves its port free, and a new lab's operator would
    allocate it.
    """

    def __init__(self, mine: Path, limit: float, say: Callable[[str], None]) -> None:
        self.mine = str(mine)
        self.limit = limit
        self.say = say
        self.seen: dict[int, str] = _foreign_pg_ports(self.mine)

    def _down(self) -> list[int]:
        self.seen.update(_foreign_pg_ports(self.mine))
        return sorted(p for p, data in self.seen.items() if not _listening(p) and _lab_alive(data))

    def wait(self, ports: bool = False) -> None:
        deadline = time.monotonic() + self.limit
        while True:
            self.seen.update(_foreign_pg_ports(self.mine))
            before = _busy_cpu() - _own_cpu(()).get("total", 0.0)
            time.sleep(1.0)
            busy = _busy_cpu() - _own_cpu(()).get("total", 0.0) - before
            down = self._down() if ports else []
            if busy < _QUIET and not down:
                return
            if time.monotonic() >= deadline:
                if down:
                    raise BenchError(
                        f"other labs' servers on ports {down} are down since {self.limit:g}s: not starting "
                        "a lab whose operator could take their ports"
                    )
                self.say(f"machine still busy ({busy:.2f} cores of other work): measuring anyway")
                return


# -- 1. lab up ------------------------------------------------------------------------------------


def _events(resp: requests.Response, clock: Callable[[], float]) -> Iterator[tuple[float, dict[str, Any]]]:
    """The events of a watch response as they arrive, each with ``clock()`` at its arrival.

    Reads HTTP chunks as they come (the server writes one event per chunk), not a
    fixed-size buffer that would hold an event back until more bytes arrive.
    """
    buffer = b""
    for chunk in resp.raw.read_chunked(decode_content=False):
        now = clock()
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield now, json.loads(line)


class _PodTimeline(threading.Thread):
    """Watches every pod of a lab that is coming up: when each was first seen and first Ready.

    Times are seconds after ``began`` (``time.monotonic``). It waits for the API server
    to answer, then keeps one watch open until the server goes away (``lab down``).
    """

    def __init__(self, url: str, began: float) -> None:
        super().__init__(name="pod-timeline", daemon=True)
        self.url = url
        self.began = began
        self.created: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        session = requests.Session()
        with contextlib.suppress(requests.RequestException, ValueError):
            while not self.stopping.is_set():
                try:
                    if session.get(self.url + "/healthz", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                time.sleep(0.05)
            resp = session.get(
                self.url + "/api/v1/pods?watch=true&timeoutSeconds=900", stream=True, timeout=(5, None)
            )
            for now, event in _events(resp, time.monotonic):
                obj = event.get("object") or {}
                md = obj.get("metadata") or {}
                key = f"{md.get('namespace')}/{md.get('name')}"
                self.created.setdefault(key, now - self.began)
                conditions = (obj.get("status") or {}).get("conditions") or []
                if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                    self.ready.setdefault(key, now - self.began)
                if self.stopping.is_set():
                    break

    def milestones(self, tenant_namespace: str, operator_namespace: str) -> dict[str, float]:
        """Seconds from the start to the operator pod Ready and the tenant pods created / Ready."""
        found: dict[str, float] = {}

        def of(times: dict[str, float], namespace: str) -> list[float]:
            return sorted(t for k, t in times.items() if k.startswith(namespace + "/"))

        operator = of(self.ready, operator_namespace)
        created, ready = of(self.created, tenant_namespace), of(self.ready, tenant_namespace)
        if operator:
            found["operator pod Ready"] = operator[-1]
        if created:
            found["first tenant pod created"] = created[0]
            found["last tenant pod created"] = created[-1]
        if ready:
            found["first tenant pod Ready"] = ready[0]
            found["last tenant pod Ready"] = ready[-1]
        return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class LabUpRun:
    """One ``lab up`` from an empty lab folder, then ``lab down --wipe``."""

    round: int
    wall: float
    """Seconds from starting the CLI to its exit with every tenant Ready."""
    reported: float
    """What ``lab up`` itself reports (``ready in``): from its start, Python start-up left out."""
    phases: dict[str, float]
    """Seconds from the start to each progress line, and to the exit."""
    cpu: dict[str, float]
    """CPU seconds the lab's processes used while coming up, by component."""
    other_cores: float
    steal_cores: float
    down: float
    """Seconds ``lab down --wipe`` took."""


def _lab_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lab", *args]


def _lab_env(lab: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HARNESS_LAB_DIR"] = str(lab)
    env.pop("KUBECONFIG", None)
    return env


def _down(lab: Path) -> float:
    began = time.monotonic()
    proc = subprocess.run(
        _lab_cli("down", "--wipe"),
        cwd=project_root(),
        env=_lab_env(lab),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    took = time.monotonic() - began
    if proc.returncode != 0:
        raise BenchError(f"lab down failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
    left = [p for p, _ in _own_processes((str(lab),)) if p.pid != os.getpid()]
    if left:
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.kill()
        raise BenchError(f"processes {[p.pid for p in left]} of the lab were still running after down")
    return took


def measure_lab_up(lab: Path, tenants: int, nodes: int, round_: int, timeout: float = 120.0) -> LabUpRun:
    """Run ``lab up`` in the empty lab folder ``lab``, then ``lab down --wipe`` (also on failure)."""
    port = _free_port()
    argv = _lab_cli("up", "--tenants", str(tenants), "--nodes", str(nodes), "--port", str(port))
    argv += ["--timeout", str(timeout)]
    window = _Window((str(lab),))
    phases: dict[str, float] = {}
    output: list[str] = []
    timeline: _PodTimeline | None = None
    try:
        window.start()
        began = time.monotonic()
        proc = subprocess.Popen(
            argv,
            cwd=project_root(),
            env=_lab_env(lab),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        timeline = _PodTimeline(f"http://127.0.0.1:{port}", began)
        timeline.start()
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                now = time.monotonic() - began
                output.append(line.rstrip())
                for label, prefix in _PHASES:
                    if line.startswith(prefix) and label not in phases:
                        phases[label] = now
        code = proc.wait(timeout + 60)
        wall = time.monotonic() - began
        window.stop()
        if code != 0:
            raise BenchError(f"lab up exited with {code}: {' | '.join(output[-3:])}")
    finally:
        if timeline is not None:
            timeline.stopping.set()
        down = _down(lab)
        if timeline is not None:
            timeline.join(5.0)
    assert timeline is not None
    phases.update(timeline.milestones("tenants", "mssql-operator"))
    phases["lab up exited, all tenants Ready"] = wall
    reported = math.nan
    for line in output:
        if " ready in " in line:
            with contextlib.suppress(ValueError):
                reported = float(line.rsplit(" ready in ", 1)[1].rstrip("s"))
    ordered = dict(sorted(phases.items(), key=lambda kv: kv[1]))
    return LabUpRun(round_, wall, reported, ordered, window.own, window.other_cores, window.steal_cores, down)


# -- 2. list latency ------------------------------------------------------------------------------


def _pod(i: int, namespace: str) -> dict[str, Any]:
    """A pod like a lab tenant's: labels, one container, a volume, a probe."""
    name = f"bench-{i:04d}"
    port = 20000 + i
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app": "bench",
                "group": f"g{i % _GROUPS}",
                "statefulset.kubernetes.io/pod-name": name,
            },
            "annotations": {"mssql.example.com/port": str(port)},
        },
        "spec": {
            "nodeName": f"lab-node-{i % 3 + 1}",
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "containers": [
                {
                    "name": "mssql",
                    "image": "mssql-lab/engine:15",
                    "ports": [{"name": "mssql", "containerPort": port, "protocol": "TCP"}],
                    "env": [
                        {"name": "LAB_DB_NAME", "value": "harness"},
                        {"name": "LAB_DB_USER", "value": "harness"},
                        {
                            "name": "MSSQL_SA_PASSWORD",
                            "valueFrom": {"secretKeyRef": {"name": f"{name}-credentials", "key": "password"}},
                        },
                    ],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                    "readinessProbe": {"exec": {"command": ["sqlcmd", "-Q", "SELECT 1"]}, "periodSeconds": 2},
                    "volumeMounts": [{"name": "data", "mountPath": "/var/opt/mssql"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": f"data-{name}"}}],
        },
    }


def _running_status(i: int) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "status": {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "startTime": now,
            "conditions": [
                {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
            "containerStatuses": [
                {
                    "name": "mssql",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "image": "mssql-lab/engine:15",
                    "imageID": "mssql-lab/engine@sha256:" + f"{i:064x}",
                    "containerID": f"lab://{i:032x}",
                    "state": {"running": {"startedAt": now}},
                }
            ],
        }
    }


class _Api:
    """HTTP calls on one session (the transport's credentials), raising BenchError on an error answer."""

    def __init__(self, url: str, session: requests.Session | None = None) -> None:
        self.url = url
        self.session = session or requests.Session()

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        resp = self.session.request(
            method,
            self.url + path,
            data=json.dumps(body) if body is not None else None,
            headers={"Content-Type": content_type} if body is not None else {},
            timeout=30,
        )
        if resp.status_code >= 400:
            raise BenchError(f"{method} {path}: {resp.status_code} {resp.text[:200]}")
        return resp.json()

    def namespace(self, name: str) -> None:
        self.call(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )


@dataclass(frozen=True)
class ListResult:
    """One kind of list request, timed against the lab and against the peer."""

    name: str
    items: int
    """Pods (or rows) in each answer."""
    body_bytes: int
    lab: Latency
    peer: Latency
    lab_server_cpu_ms: float
    """API server CPU per request."""
    peer_server_cpu_ms: float
    client_cpu_ms: float
    """This program's CPU per request (both servers' requests together)."""
    other_cores: float
    steal_cores: float

    @property
    def ratio_p50(self) -> float:
        return self.lab.p50 / self.peer.p50

    @property
    def ratio_p99(self) -> float:
        return self.lab.p99 / self.peer.p99


def _get(session: requests.Session, url: str, accept: str) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    resp = session.get(url, headers={"Accept": accept}, timeout=30)
    took = time.perf_counter() - t0
    if resp.status_code != 200:
        raise BenchError(f"GET {url}: {resp.status_code} {resp.text[:200]}")
    return took, resp.content


def serve_peer(folder: Path) -> int:
    """Serve the pre-serialised answers in ``folder`` (``<variant>.json``) until SIGTERM.

    A request's variant is ``table`` when its Accept header asks for a Table, else
    ``json``; ``-sel`` is appended when it has a ``labelSelector``. With ``tls.crt`` and
    ``tls.key`` in ``folder`` it serves HTTPS. Prints ``listening on <url>`` first, like the
    lab's servers.
    """
    from aiohttp import web

    bodies = {p.stem: p.read_bytes() for p in folder.glob("*.json")}

    async def handle(request: web.Request) -> web.Response:
        variant = "table" if "as=Table" in request.headers.get("Accept", "") else "json"
        if "labelSelector" in request.query:
            variant += "-sel"
        return web.Response(body=bodies[variant], content_type="application/json")

    async def run() -> int:
        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        context = None
        if (folder / "tls.crt").exists():
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(folder / "tls.crt", folder / "tls.key")
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        scheme = "https" if context is not None else "http"
        print(f"listening on {scheme}://127.0.0.1:{port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()
        return 0

    return asyncio.run(run())


def _start_peer(folder: Path) -> ApiServerProcess:
    argv = [sys.executable, "-m", "tests.benchmarks.bench_lab", "--serve-peer", str(folder)]
    proc, url = spawn_listening(argv, folder / "peer.log", 15.0, "the peer HTTP server")
    return ApiServerProcess(proc, url, folder / "peer.log")


def _fill(api: _Api, namespace: str, pods: int) -> None:
    api.namespace(namespace)
    for i in range(pods):
        api.call("POST", f"/api/v1/namespaces/{namespace}/pods", _pod(i, namespace))
        api.call(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/pods/bench-{i:04d}/status",
            _running_status(i),
            "application/merge-patch+json",
        )


def measure_lists(
    workdir: Path, pods: int, count: int, warmup: int = 20, transport: str = "tls"
) -> list[ListResult]:
    """List latency of a lone API server holding ``pods`` pods, against the peer (see module doc)."""
    data, peer_dir = workdir / "api", workdir / "peer"
    peer_dir.mkdir(parents=True, exist_ok=True)
    access = start_server(data, transport)
    server = access.server
    peer: ApiServerProcess | None = None
    try:
        _fill(_Api(server.url, access.session(admin=True)), _LIST_NS, pods)
        api = _Api(server.url, access.session())
        path = f"/api/v1/namespaces/{_LIST_NS}/pods"
        variants = {
            "json": (path, "application/json"),
            "table": (path, TABLE_ACCEPT),
            "json-sel": (f"{path}?labelSelector=app%3Dbench%2Cgroup%3Dg3", "application/json"),
            "table-sel": (f"{path}?labelSelector=app%3Dbench%2Cgroup%3Dg3", TABLE_ACCEPT),
        }
        sizes: dict[str, tuple[int, int]] = {}
        for variant, (suffix, accept) in variants.items():
            _, body = _get(api.session, server.url + suffix, accept)
            (peer_dir / f"{variant}.json").write_bytes(body)
            doc = json.loads(body)
            sizes[variant] = (len(doc.get("items", doc.get("rows", []))), len(body))
        expected = {"json": pods, "table": pods, "json-sel": pods // _GROUPS, "table-sel": pods // _GROUPS}
        for variant, want in expected.items():
            if sizes[variant][0] != want:
                raise BenchError(f"list {variant} returned {sizes[variant][0]} items, expected {want}")
        peer_tls(access, peer_dir)
        peer = _start_peer(peer_dir)
        peer_session = access.session()
        peer_session.headers.pop("Authorization", None)
        lab_proc, peer_proc = psutil.Process(server.pid), psutil.Process(peer.pid)
        results = []
        for variant, (suffix, accept) in variants.items():
            for _ in range(warmup):
                _get(api.session, server.url + suffix, accept)
                _get(peer_session, peer.url + suffix, accept)
            lab_times: list[float] = []
            peer_times: list[float] = []
            window = _Window((str(data), str(peer_dir)))
            me = psutil.Process()
            with window.measure():
                lab0, peer0, me0 = _cpu_of(lab_proc), _cpu_of(peer_proc), _cpu_of(me)
                for i in range(count):
                    # alternate which goes first so neither always follows the other
                    order = ((api.session, server.url), (peer_session, peer.url))
                    for session, base in order if i % 2 == 0 else order[::-1]:
                        took, _ = _get(session, base + suffix, accept)
                        (lab_times if base == server.url else peer_times).append(took)
                lab_cpu, peer_cpu = _cpu_of(lab_proc) - lab0, _cpu_of(peer_proc) - peer0
                me_cpu = _cpu_of(me) - me0
            results.append(
                ListResult(
                    name=variant,
                    items=sizes[variant][0],
                    body_bytes=sizes[variant][1],
                    lab=latency(lab_times),
                    peer=latency(peer_times),
                    lab_server_cpu_ms=lab_cpu / count * 1000,
                    peer_server_cpu_ms=peer_cpu / count * 1000,
                    client_cpu_ms=me_cpu / (2 * count) * 1000,
                    other_cores=window.other_cores,
                    steal_cores=window.steal_cores,
                )
            )
        return results
    finally:
        if peer is not None:
            peer.stop()
        server.stop()


# -- 3. watch event latency -----------------------------------------------------------------------


@dataclass(frozen=True)
class WatchResult:
    """Event latency of one kind of write."""

    name: str
    from_response: Latency
    """Write's response received -> its event received (negative: the event came first)."""
    from_request: Latency
    """Write sent -> its event received."""
    write: Latency
    """The write's own round trip (the server syncs its log before answering)."""
    server_cpu_ms: float
    """API server CPU per write (the write, its event, the watch)."""
    other_cores: float
    steal_cores: float


class _WatchReader(threading.Thread):
    """Reads one watch stream; records when each resourceVersion's event arrived."""

    def __init__(self, resp: requests.Response) -> None:
        super().__init__(name="watch-reader", daemon=True)
        self.resp = resp
        self.arrived: dict[str, float] = {}
        self.error: BaseException | None = None
        self._cond = threading.Condition()

    def run(self) -> None:
        try:
            for now, event in _events(self.resp, time.perf_counter):
                rv = str(event.get("object", {}).get("metadata", {}).get("resourceVersion", ""))
                with self._cond:
                    self.arrived.setdefault(rv, now)
                    self._cond.notify_all()
        except Exception as exc:  # the stream closing at the end is expected; anything else is kept
            self.error = exc
            with self._cond:
                self._cond.notify_all()

    def wait_for(self, rv: str, timeout: float) -> float:
        with self._cond:
            if not self._cond.wait_for(lambda: rv in self.arrived or self.error is not None, timeout):
                raise BenchError(f"no watch event for resourceVersion {rv} within {timeout:g}s")
            if rv not in self.arrived:
                raise BenchError(f"the watch stream failed: {self.error!r}")
            return self.arrived[rv]


def measure_watch(workdir: Path, writes: int, transport: str = "tls") -> list[WatchResult]:
    """Create, then patch, ``writes`` pods one at a time with a watch open (see module doc)."""
    data = workdir / "api-watch"
    access = start_server(data, transport)
    server = access.server
    try:
        api = _Api(server.url, access.session())
        api.namespace(_WATCH_NS)
        base = f"/api/v1/namespaces/{_WATCH_NS}/pods"
        rv = api.call("GET", base)["metadata"]["resourceVersion"]
        watch_session = access.session()
        resp = watch_session.get(
            f"{server.url}{base}?watch=true&resourceVersion={rv}&timeoutSeconds=600", stream=True, timeout=30
        )
        if resp.status_code != 200:
            raise BenchError(f"watch: {resp.status_code} {resp.text[:200]}")
        reader = _WatchReader(resp)
        reader.start()
        server_proc = psutil.Process(server.pid)
        steps: list[tuple[str, Callable[[int], tuple[str, str, Any, str]]]] = [
            ("create (ADDED)", lambda i: ("POST", base, _pod(i, _WATCH_NS), "application/json")),
            (
                "patch (MODIFIED)",
                lambda i: (
                    "PATCH",
                    f"{base}/bench-{i:04d}",
                    {"metadata": {"labels": {"patched": "yes"}}},
                    "application/merge-patch+json",
                ),
            ),
        ]
        results = []
        for name, make in steps:
            from_response, from_request, write = [], [], []
            window = _Window((str(data),))
            with window.measure():
                cpu0 = _cpu_of(server_proc)
                for i in range(writes):
                    method, path, body, ctype = make(i)
                    t0 = time.perf_counter()
                    answer = api.call(method, path, body, ctype)
                    t1 = time.perf_counter()
                    arrived = reader.wait_for(str(answer["metadata"]["resourceVersion"]), 10.0)
                    from_response.append(arrived - t1)
                    from_request.append(arrived - t0)
                    write.append(t1 - t0)
                cpu = _cpu_of(server_proc) - cpu0
            results.append(
                WatchResult(
                    name=name,
                    from_response=latency(from_response),
                    from_request=latency(from_request),
                    write=latency(write),
                    server_cpu_ms=cpu / writes * 1000,
                    other_cores=window.other_cores,
                    steal_cores=window.steal_cores,
                )
            )
        resp.close()
        return results
    finally:
        server.stop()


# -- report ---------------------------------------------------------------------------------------


def _machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    libs = []
    for package in ("aiohttp", "requests", "urllib3"):
        try:
            libs.append(f"{package} {version(package)}")
        except Exception:  # best effort: a missing version is not an error
            libs.append(f"{package} ?")
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": ", ".join(libs),
    }


def _ms(value: float) -> str:
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def _goal(ok: bool) -> str:
    return "met" if ok else "NOT met"


def format_report(
    ups: list[LabUpRun],
    lists: list[ListResult],
    watches: list[WatchResult],
    machine: dict[str, str],
    tenants: int,
    nodes: int,
) -> str:
    """The whole result as text with markdown tables."""
    out: list[str] = ["", "# Lab control plane benchmark", ""]
    warnings: list[str] = []
    if ups:
        out += [
            f"## 1. `lab up --tenants {tenants} --nodes {nodes}` from an empty lab folder to all Ready",
            "",
            "| round | wall s | lab up's own `ready in` s | lab CPU s (cores) | other / steal cores "
            "| `down --wipe` s |",
            "|--:|--:|--:|--:|--:|--:|",
        ]
        for r in ups:
            cpu = r.cpu.get("total", 0.0)
            out.append(
                f"| {r.round} | **{r.wall:.1f}** | {r.reported:.1f} "
                f"| {cpu:.1f} ({cpu / r.wall:.2f}) | {r.other_cores:.2f} / {r.steal_cores:.2f} "
                f"| {r.down:.1f} |"
            )
            if r.other_cores > _DISTURBED:
                warnings.append(f"lab up round {r.round}: other work used {r.other_cores:.2f} cores")
        moments = list(dict.fromkeys(k for r in ups for k in r.phases))
        out += ["", "Timeline, seconds from starting the CLI:", ""]
        out.append("| moment | " + " | ".join(f"round {r.round}" for r in ups) + " |")
        out.append("|---|" + "--:|" * len(ups))
        for moment in moments:
            out.append(
                f"| {moment} | " + " | ".join(f"{r.phases.get(moment, math.nan):.1f}" for r in ups) + " |"
            )
        names = sorted({k for r in ups for k in r.cpu if k != "total"})
        out += ["", "CPU seconds while coming up, by component:", ""]
        out.append("| component | " + " | ".join(f"round {r.round}" for r in ups) + " |")
        out.append("|---|" + "--:|" * len(ups))
        for name in [*names, "total"]:
            out.append(f"| {name} | " + " | ".join(f"{r.cpu.get(name, 0.0):.1f}" for r in ups) + " |")
        worst = max(r.wall for r in ups)
        out += [
            "",
            f"Goal: within {GOAL_UP_SECONDS:g} s: **{_goal(worst <= GOAL_UP_SECONDS)}** "
            f"(slowest {worst:.1f} s)",
            "",
        ]
    if lists:
        pods = next((lr.items for lr in lists if lr.name == "json"), 0)
        out += [
            f"## 2. List latency, {pods} pods in one namespace, one client, lab vs. peer (same bytes, "
            "pre-serialised, bare aiohttp)",
            "",
            "| request | items | body KiB | lab p50 ms | lab p99 ms | peer p50 ms | peer p99 ms "
            "| ratio p50 | ratio p99 | lab server CPU ms/req | peer CPU ms/req | client CPU ms/req "
            "| other / steal cores |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        labels = {
            "json": "GET pods (JSON)",
            "table": "GET pods (Table, kubectl)",
            "json-sel": "GET pods?labelSelector (JSON)",
            "table-sel": "GET pods?labelSelector (Table)",
        }
        for lr in lists:
            out.append(
                f"| {labels.get(lr.name, lr.name)} | {lr.items} | {lr.body_bytes / 1024:.0f} "
                f"| {_ms(lr.lab.p50)} | **{_ms(lr.lab.p99)}** | {_ms(lr.peer.p50)} | {_ms(lr.peer.p99)} "
                f"| {lr.ratio_p50:.1f} | {lr.ratio_p99:.1f} | {_ms(lr.lab_server_cpu_ms)} "
                f"| {_ms(lr.peer_server_cpu_ms)} | {_ms(lr.client_cpu_ms)} "
                f"| {lr.other_cores:.2f} / {lr.steal_cores:.2f} |"
            )
            if lr.other_cores > _DISTURBED:
                warnings.append(f"list {lr.name}: other work used {lr.other_cores:.2f} cores")
        worst_p99 = max(lr.lab.p99 for lr in lists)
        out += [
            "",
            f"Goal: p99 < {GOAL_LIST_P99_MS:g} ms: **{_goal(worst_p99 < GOAL_LIST_P99_MS)}** "
            f"(worst p99 {worst_p99:.1f} ms)",
            "",
        ]
    if watches:
        out += [
            "## 3. Watch event latency, one write at a time",
            "",
            "| write | n | response -> event p50 ms | p99 ms | sent -> event p50 ms | p99 ms "
            "| write round trip p50 ms | p99 ms | server CPU ms/write | other / steal cores |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for w in watches:
            out.append(
                f"| {w.name} | {w.from_response.count} "
                f"| {_ms(w.from_response.p50)} | {_ms(w.from_response.p99)} "
                f"| {_ms(w.from_request.p50)} | {_ms(w.from_request.p99)} | {_ms(w.write.p50)} "
                f"| {_ms(w.write.p99)} | {_ms(w.server_cpu_ms)} | {w.other_cores:.2f} / {w.steal_cores:.2f} |"
            )
            if w.other_cores > _DISTURBED:
                warnings.append(f"watch {w.name}: other work used {w.other_cores:.2f} cores")
        out.append("")
    out += ["Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()), ""]
    out += [f"WARNING: {w}: that measurement is disturbed" for w in warnings]
    return "\n".join(out)


# -- command line ---------------------------------------------------------------------------------


@dataclass
class _Results:
    ups: list[LabUpRun] = field(default_factory=list)
    lists: list[ListResult] = field(default_factory=list)
    watches: list[WatchResult] = field(default_factory=list)


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


_PARTS = ("up", "list", "watch")


def _parts(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in parts if p not in _PARTS]
    if not parts or unknown:
        raise argparse.ArgumentTypeError(f"--parts takes {', '.join(_PARTS)}; got {text!r}")
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.bench_lab",
        description="The lab control plane: lab up wall time, list latency, watch event latency.",
    )
    parser.add_argument("--tenants", type=int, default=10, help="MSSQLInstances for lab up (default 10)")
    parser.add_argument("--nodes", type=int, default=3, help="nodes for lab up (default 3)")
    parser.add_argument("--repeat", type=int, default=2, help="lab up runs (default 2)")
    parser.add_argument(
        "--pods", type=int, default=200, help="pods for the list and watch runs (default 200)"
    )
    parser.add_argument(
        "--requests", type=int, default=200, help="timed requests per list kind (default 200)"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="seconds to wait for the machine to be idle before each measurement (default 120)",
    )
    parser.add_argument(
        "--parts",
        type=_parts,
        default=list(_PARTS),
        help="what to measure, comma-separated: up, list, watch (default all)",
    )
    parser.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="tls",
        help="list and watch over TLS with a token and RBAC, as the lab serves (default), or plain HTTP",
    )
    parser.add_argument("--out", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--serve-peer", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_peer is not None:
        return serve_peer(args.serve_peer)
    if args.pods < _GROUPS or args.requests < 1 or args.repeat < 0:
        parser.error(f"--pods must be at least {_GROUPS}, --requests at least 1")

    # SIGTERM unwinds like Ctrl-C, so the lab is taken down and the folder removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="bench-lab-", dir="/var/tmp"))
    workdir.chmod(0o755)  # the tenants' PostgreSQL runs as another user and must reach its data
    results = _Results()
    quiet = _Quiet(workdir, args.quiet_wait, _say)
    try:
        if "up" in args.parts:
            lab = workdir / "lab"
            for round_ in range(args.repeat):
                quiet.wait(ports=True)
                _say(f"lab up {args.tenants} tenants, {args.nodes} nodes, round {round_} ...")
                results.ups.append(measure_lab_up(lab, args.tenants, args.nodes, round_))
        if "list" in args.parts:
            quiet.wait()
            _say(f"list latency with {args.pods} pods ...")
            results.lists = measure_lists(workdir, args.pods, args.requests, transport=args.transport)
        if "watch" in args.parts:
            quiet.wait()
            _say(f"watch event latency, {args.pods} creates and {args.pods} patches ...")
            results.watches = measure_watch(workdir, args.pods, transport=args.transport)
        machine = _machine()
    except (BenchError, LabError, requests.RequestException, subprocess.TimeoutExpired) as exc:
        _say(f"failed: {exc}")
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "settings": {k: v for k, v in vars(args).items() if k not in ("out", "serve_peer")},
            "machine": machine,
            "lab_up": [asdict(r) for r in results.ups],
            "lists": [
                {**asdict(r), "ratio_p50": r.ratio_p50, "ratio_p99": r.ratio_p99} for r in results.lists
            ],
            "watch": [asdict(w) for w in results.watches],
        }
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
    if "list" in args.parts or "watch" in args.parts:
        print(f"transport for list and watch: {args.transport}")
    print(format_report(results.ups, results.lists, results.watches, machine, args.tenants, args.nodes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
