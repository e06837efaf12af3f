"""Where node CPU and memory come from: the embedded lab's process trees or metrics.k8s.io.

A source's :meth:`NodeSource.read` returns one :class:`NodeReading` per node, raises
:class:`SourceUnavailable` when the source can never measure (the run gets one line
saying why and how to fix it, and no numbers), and any other exception for a sample
that failed this time only.

**Lab** (:class:`LabNodes`): a lab node is its kubelet process and the process tree
below it (the kubelet is a child subreaper, so the pods' PostgreSQL servers and their
backends stay below it), plus any container process its records
(``<node state>/containers/*.json``) name that escaped the tree. The kubelet is found
through ``Layout.pids / kubelet-<node>.pid``, checked against its command line
(``lab.kubelet`` and the node's name) as ``lab.cluster`` does, so a recycled pid is
never measured; the nodes are those of ``cluster.json``.

- CPU = the tree's CPU time (user + system) since the previous sample ÷ the monotonic
  time between the samples. A process seen at both samples counts its own time's
  growth; one that appeared since the previous sample (created inside the interval,
  judged on the boot-time clock the kernel stamps processes with) counts all of it. A
  process that exited counts with the times it had at the previous sample, and what it
  used after that is recovered from its parent: when a parent in the tree reaps a
  child, the kernel adds the child's whole CPU time (its own and its reaped
  descendants') to the parent's ``children_user`` / ``children_system``. So the growth
  of those times over the tree, minus what the exited processes had already been
  counted for (never below 0), is the CPU of processes that exited in the interval,
  including ones that started and exited between two samples. Zombies stay in the tree
  until reaped (their times are final). Residual error, always an undercount: a
  process reaped outside the tree (a root, such as the kubelet itself when the node is
  restarted, or one whose parent ignores SIGCHLD and lets the kernel reap it) loses
  the CPU it used since its last sample; a process already running that joins the
  tree (a re-parented orphan) counts from its first sample on; and CPU times advance
  in 10 ms clock ticks, so each sample of each process is within one tick.
- Memory = Σ of PSS (proportional set size: a page shared by n processes counts 1/n
  in each, so PostgreSQL's shared buffers count once for the node rather than once per
  backend, as a sum of RSS would). A process whose PSS cannot be read (another user's,
  without privileges) counts its RSS, and the reading says ``pss+rss``.

**Cluster** (:class:`ClusterNodes`): ``GET /apis/metrics.k8s.io/v1beta1/nodes`` through
the Kubernetes client built from the kubeconfig (:func:`probes.k8s.kube.api_client`):
metrics-server's CPU rate and working-set memory per node. Not served (404) or not
allowed (401/403): unavailable, with the fix.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psutil

from lab.cluster import Layout, running
from lab.kubelet.runtime import load_records
from probes.errors import ProbeError
from probes.k8s.target import CLUSTER, LAB

__all__ = [
    "ClusterNodes",
    "LabDiscovery",
    "LabNodes",
    "NodeReading",
    "NodeSource",
    "SourceUnavailable",
    "lab_node_roots",
    "node_source",
]

_CREATED_SLACK = 0.02  # seconds: process start times are kept in clock ticks (10 ms)
METRICS_SERVER_FIX = (
    "install metrics-server (https://github.com/kubernetes-sigs/metrics-server; "
    "`kubectl top nodes` must answer) and run again"
)

LabDiscovery = Callable[[], Mapping[str, Sequence[int]]]
"""Per lab node, the pids its process trees start from (empty: the node is down)."""


class SourceUnavailable(ProbeError):
    """The source can never measure on this target; the message says why and how to fix it."""


@dataclass(frozen=True)
class NodeReading:
    """One node at one moment. ``cpu_cores`` None: no rate yet (first sample) or node down."""

    cpu_cores: float | None
    memory_bytes: int | None
    interval_seconds: float | None = None
    processes: int | None = None
    memory: str | None = None
    note: str | None = None


class NodeSource(Protocol):
    """What :class:`probes.resources.NodeSampler` reads from."""

    kind: str

    def read(self) -> dict[str, NodeReading]: ...


# -- the embedded lab ---------------------------------------------------------------------------


def _lab_nodes(layout: Layout) -> list[str]:
    try:
        config = json.loads(layout.config.read_text())
    except (OSError, ValueError):
        return []
    nodes = config.get("nodes") if isinstance(config, dict) else None
    return [str(n) for n in nodes] if isinstance(nodes, list) else []


def _kubelet_pid(layout: Layout, node: str) -> int | None:
    """The node's kubelet pid when its pidfile names a live ``lab.kubelet`` process of that node."""
    proc = running(layout, f"kubelet-{node}")
    return None if proc is None else proc.pid


def lab_node_roots(layout: Layout | None = None) -> dict[str, list[int]]:
    """Per node of the lab in ``layout``: its kubelet pid and recorded container pids still alive.

    SourceUnavailable when no lab was ever brought up there (no ``cluster.json`` nodes).
    """
    layout = layout or Layout.default()
    nodes = _lab_nodes(layout)
    if not nodes:
        raise SourceUnavailable(
            f"no embedded lab at {layout.root} (no nodes in {layout.config.name}): "
            "start it with `python -m lab up`, or sample a cluster instead"
        )
    roots: dict[str, list[int]] = {}
    for node in nodes:
        pids: list[int] = []
        kubelet = _kubelet_pid(layout, node)
        if kubelet is not None:
            pids.append(kubelet)
        for record in load_records(layout.node_state(node) / "containers"):
            for pid, created in record.get("members", []):
                with contextlib.suppress(psutil.Error, ValueError, TypeError):
                    if abs(psutil.Process(int(pid)).create_time() - float(created)) <= 0.05:
                        pids.append(int(pid))
        roots[node] = list(dict.fromkeys(pids))
    return roots


@dataclass(frozen=True)
class _Table:
    """Every process (zombies included: their times are final but not yet their parent's)."""

    created: dict[int, float]
    parent: dict[int, int]
    children: dict[int, list[int]]
    zombies: set[int]

    @classmethod
    def now(cls) -> _Table:
        created: dict[int, float] = {}
        parent: dict[int, int] = {}
        children: dict[int, list[int]] = {}
        zombies: set[int] = set()
        for proc in psutil.process_iter(["ppid", "create_time", "status"]):
            info = proc.info
            if info.get("create_time") is None:
                continue
            created[proc.pid] = float(info["create_time"])
            parent[proc.pid] = int(info.get("ppid") or 0)
            children.setdefault(parent[proc.pid], []).append(proc.pid)
            if info.get("status") == psutil.STATUS_ZOMBIE:
                zombies.add(proc.pid)
        return cls(created, parent, children, zombies)

    def tree(self, roots: Iterable[int]) -> list[int]:
        seen: dict[int, None] = {}
        stack = [pid for pid in roots if pid in self.created]
        while stack:
            pid = stack.pop()
            if pid not in seen:
                seen[pid] = None
                stack.extend(c for c in self.children.get(pid, ()) if c in self.created)
        return list(seen)


def _boot_clock() -> float:
    """Seconds since boot on the clock the kernel stamps process start times with."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@dataclass(frozen=True)
class _Seen:
    """One process at one sample: its own CPU seconds, its reaped children's, and whether
    its parent is in the node's tree (then that parent reaps it and inherits its times)."""

    own: float
    reaped: float
    inner: bool


@dataclass
class _NodeState:
    mono: float
    boot: float
    procs: dict[tuple[int, float], _Seen]


class LabNodes:
    """The embedded lab's nodes as process trees (see the module doc).

    ``discover`` returns each node's root pids; the default finds them in ``layout``
    (:func:`lab_node_roots`). Not thread-safe: one reader.
    """

    kind = LAB

    def __init__(self, discover: LabDiscovery | None = None, layout: Layout | None = None) -> None:
        self._discover: LabDiscovery = discover or (lambda: lab_node_roots(layout))
        self._state: dict[str, _NodeState] = {}
        self._boot_time = psutil.boot_time()

    def read(self) -> dict[str, NodeReading]:
        roots = self._discover()
        table = _Table.now()
        out: dict[str, NodeReading] = {}
        for node, pids in roots.items():
            tree = table.tree(pids)
            if not tree:
                out[node] = NodeReading(None, None, processes=0, note="no process of the node is running")
                continue
            out[node] = self._measure(node, tree, table)
        return out

    def _measure(self, node: str, tree: list[int], table: _Table) -> NodeReading:
        mono, boot = time.monotonic(), _boot_clock()
        members = set(tree)
        procs: dict[tuple[int, float], _Seen] = {}
        memory = 0
        kinds: set[str] = set()
        for pid in tree:
            try:
                proc = psutil.Process(pid)
                with proc.oneshot():
                    cpu = proc.cpu_times()
                    if pid not in table.zombies:
                        try:
                            memory += int(proc.memory_full_info().pss)
                            kinds.add("pss")
                        except psutil.AccessDenied:
                            memory += int(proc.memory_info().rss)
                            kinds.add("rss")
            except psutil.Error:
                continue  # reaped since the process table was read
            seen = _Seen(
                cpu.user + cpu.system, cpu.children_user + cpu.children_system, table.parent[pid] in members
            )
            procs[(pid, table.created[pid])] = seen
        previous = self._state.get(node)
        self._state[node] = _NodeState(mono, boot, procs)
        kind = "+".join(sorted(kinds)) or None
        # Zombies still hold a pid but no memory or CPU of their own; one reaped between the
        # table and its reading is in neither set.
        live = sum(1 for pid, _ in procs if pid not in table.zombies)
        if previous is None or mono <= previous.mono:
            return NodeReading(None, memory, processes=live, memory=kind)
        own = reaped = 0.0
        for key, now in procs.items():
            before = previous.procs.get(key)
            if before is not None:
                own += max(0.0, now.own - before.own)
                reaped += max(0.0, now.reaped - before.reaped)
            elif key[1] - self._boot_time >= previous.boot - _CREATED_SLACK:
                own += now.own  # created since the previous sample
                reaped += now.reaped
        # A process gone since the previous sample was reaped by its parent in the tree, whose
        # reaped-children times grew by its whole life: count only what it had not counted yet.
        counted = sum(b.own + b.reaped for key, b in previous.procs.items() if key not in procs and b.inner)
        interval = mono - previous.mono
        return NodeReading((own + max(0.0, reaped - counted)) / interval, memory, interval, live, kind)


# -- a real cluster -----------------------------------------------------------------------------


def _quantity(value: Any) -> float | None:
    from kubernetes.utils import parse_quantity

    try:
        return float(parse_quantity(value))
    except (ValueError, TypeError, ArithmeticError):
        return None


class ClusterNodes:
    """Node usage from metrics-server (``metrics.k8s.io/v1beta1``), see the module doc.

    ``api_client`` defaults to the kubeconfig's (:func:`probes.k8s.kube.api_client`).
    """

    kind = CLUSTER

    def __init__(self, api_client: Any | None = None, secrets: Mapping[str, Any] | None = None) -> None:
        self._client = api_client
        self._secrets = secrets

    def _api(self) -> Any:
        from kubernetes import client

        if self._client is None:
            from probes.k8s import kube

            try:
                self._client = kube.api_client(self._secrets)
            except ProbeError as exc:
                raise SourceUnavailable(f"node metrics: {exc}") from None
        return client.CustomObjectsApi(self._client)

    def read(self) -> dict[str, NodeReading]:
        from kubernetes.client.exceptions import ApiException

        api = self._api()
        try:
            doc = api.list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes")
        except ApiException as exc:
            if exc.status == 404:
                raise SourceUnavailable(
                    "node metrics: the cluster does not serve metrics.k8s.io/v1beta1 "
                    f"(404: no metrics-server); {METRICS_SERVER_FIX}"
                ) from None
            if exc.status in (401, 403):
                raise SourceUnavailable(
                    f"node metrics: reading metrics.k8s.io nodes was refused ({exc.status}); grant the "
                    "harness's user get and list on nodes in the metrics.k8s.io API group (a ClusterRole) "
                    "and run again"
                ) from None
            raise ProbeError(f"node metrics: the API answered {exc.status} {exc.reason}") from None
        out: dict[str, NodeReading] = {}
        for item in (doc or {}).get("items") or []:
            name = ((item or {}).get("metadata") or {}).get("name")
            usage = (item or {}).get("usage") or {}
            if not name:
                continue
            memory = _quantity(usage.get("memory"))
            out[str(name)] = NodeReading(
                cpu_cores=_quantity(usage.get("cpu")),
                memory_bytes=None if memory is None else int(memory),
                memory="working_set",
            )
        return out


def node_source(kind: str | NodeSource) -> NodeSource:
    """The source for a target kind (``lab`` or ``cluster``, as ``run.json``'s ``target.kind``).

    Any other kind (``local``: no Kubernetes) is a source that is always unavailable.
    """
    if not isinstance(kind, str):
        return kind
    if kind == LAB:
        return LabNodes()
    if kind == CLUSTER:
        return ClusterNodes()
    return _NoNodes(kind)


class _NoNodes:
    def __init__(self, kind: str) -> None:
        self.kind = kind

    def read(self) -> dict[str, NodeReading]:
        raise SourceUnavailable(
            f"no node metrics for target kind {self.kind!r}: only 'lab' and 'cluster' have nodes to sample"
        )
