"""Memory and open connections per pod: the embedded lab's process trees, or metrics.k8s.io and SQL.

A source's :meth:`PodSource.read` takes the pods to measure (:class:`PodRef`, found by
:func:`probes.soak_checks.pod_states`) and returns a :class:`PodUsage` per pod plus one
line per measurement it could not take this time (``errors``). It never raises for a
failed measurement: the number is None and the line says why and how to fix it.

**Lab** (:class:`LabPods`): a lab pod is the process trees of its containers. Each
kubelet records every running container (``<node state>/containers/<uid>_<container>.json``,
:mod:`lab.kubelet.runtime`: namespace, pod, uid and the pids with their creation times),
and the planted memory leak (:mod:`lab.kubelet.memory_leak`) is recorded the same way.
A recorded pid counts only while the process of that pid was created at the recorded
time (as :mod:`probes.node_sources` checks it), so a recycled pid is never measured; the
nodes are those of the lab's ``cluster.json`` (the lab whose kubeconfig ``$KUBECONFIG``
names, else ``$HARNESS_LAB_DIR`` or ``.lab``).

- Memory = Σ PSS over the pod's processes and their descendants (a page shared by n
  processes counts 1/n in each, so PostgreSQL's shared buffers count once); a process
  whose PSS cannot be read counts its RSS, and the usage says ``pss+rss``.
- Connections = the TCP sockets with a peer (ESTABLISHED, and also CLOSE_WAIT and the
  other connected states: a leaked connection often sits in CLOSE_WAIT) held by those
  processes, each socket once even when several processes share it. PostgreSQL holds
  one per client session in its backend, the operator its connections to the API server
  and the instances; listening sockets and Unix sockets are not counted.

**Cluster** (:class:`probes.pod_sources_cluster.ClusterPods`): metrics-server's working
set per pod for memory; the MSSQL pods' connections are their servers' sessions counted
through SQL; the operator's cannot be counted there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil

from lab.cluster import Layout
from lab.cluster_layout import load_config
from lab.kubelet.runtime import load_records, process_table
from probes.errors import ProbeError
from probes.k8s.target import CLUSTER, LAB

__all__ = [
    "MSSQL",
    "OPERATOR",
    "LabPods",
    "Members",
    "PodReadings",
    "PodRef",
    "PodSource",
    "PodUsage",
    "lab_layout",
    "lab_pod_members",
    "pod_source",
]

OPERATOR = "operator"
MSSQL = "mssql"
#: How far a live process's creation time may be from the recorded one (clock ticks, rounding).
_CREATED_SLACK = 0.05

Members = Mapping[str, Sequence[tuple[int, float]]]
"""Per pod uid, the recorded ``(pid, creation time)`` of its processes."""


@dataclass(frozen=True)
class PodRef:
    """One pod to measure: where it is, what it is, and (an MSSQL pod) whose it is."""

    namespace: str
    name: str
    uid: str
    role: str
    tenant: str | None = None

    @property
    def key(self) -> str:
        """``<namespace>/<name>``, the pod's key in a check line."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class PodUsage:
    """One pod at one moment; None: not measured (the reading's ``errors`` says why)."""

    memory_bytes: int | None = None
    connections: int | None = None
    memory: str | None = None
    processes: int | None = None


@dataclass
class PodReadings:
    """A :class:`PodUsage` per pod key, one line per measurement not taken this time (``errors``),
    and one per measurement this target cannot take at all (``limits``: not a failure)."""

    usage: dict[str, PodUsage] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    limits: list[str] = field(default_factory=list)


class PodSource(Protocol):
    """What :func:`probes.soak_checks.pod_states` reads from."""

    kind: str

    def read(self, pods: Sequence[PodRef]) -> PodReadings: ...


# -- the embedded lab ---------------------------------------------------------------------------


def lab_layout() -> Layout:
    """The lab the harness talks to: the one whose kubeconfig ``$KUBECONFIG`` names (a lab keeps
    it at the top of its folder), else the default lab folder (``$HARNESS_LAB_DIR`` or ``.lab``)."""
    kubeconfig = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if kubeconfig:
        named = Layout(Path(kubeconfig).parent)
        if named.config.is_file():
            return named
    return Layout.default()


def lab_pod_members(layout: Layout | None = None) -> dict[str, list[tuple[int, float]]]:
    """Per pod uid, every ``(pid, created)`` the lab's kubelets recorded for it (all nodes).

    ``layout`` defaults to :func:`lab_layout`. ProbeError when no lab was ever brought up
    there (no nodes in ``cluster.json``).
    """
    layout = layout or lab_layout()
    nodes = load_config(layout).get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise ProbeError(
            f"no embedded lab at {layout.root} (no nodes in {layout.config.name}): start it with "
            "`python -m lab up` (or set HARNESS_LAB_DIR to its folder), or measure a cluster instead"
        )
    found: dict[str, list[tuple[int, float]]] = {}
    for node in nodes:
        for record in load_records(layout.node_state(str(node)) / "containers"):
            uid = record.get("uid")
            for member in record.get("members") or []:
                with contextlib.suppress(ValueError, TypeError, IndexError):
                    found.setdefault(str(uid), []).append((int(member[0]), float(member[1])))
    return found


def _tree(roots: Iterable[int], children: Mapping[int, list[int]], alive: Mapping[int, float]) -> list[int]:
    seen: dict[int, None] = {}
    stack = [pid for pid in roots if pid in alive]
    while stack:
        pid = stack.pop()
        if pid not in seen:
            seen[pid] = None
            stack.extend(c for c in children.get(pid, ()) if c in alive)
    return list(seen)


def _connected(conn: Any) -> bool:
    return bool(conn.raddr) and conn.status != psutil.CONN_LISTEN


class LabPods:
    """The embedded lab's pods as process trees (see the module doc).

    ``members`` returns the recorded pids per pod uid; the default reads the records of
    the lab in ``layout`` (:func:`lab_pod_members`).
    """

    kind = LAB

    def __init__(self, members: Callable[[], Members] | None = None, layout: Layout | None = None) -> None:
        self._members: Callable[[], Members] = members or (lambda: lab_pod_members(layout))

    def read(self, pods: Sequence[PodRef]) -> PodReadings:
        out = PodReadings()
        try:
            members = self._members()
        except ProbeError as exc:
            out.usage = {p.key: PodUsage() for p in pods}
            out.errors.append(f"pod memory and connections: {exc}")
            return out
        alive, children = process_table()
        for pod in pods:
            roots = [
                pid
                for pid, created in members.get(pod.uid, ())
                if abs(alive.get(pid, -1.0) - created) <= _CREATED_SLACK
            ]
            tree = _tree(roots, children, alive)
            if not tree:
                out.usage[pod.key] = PodUsage(processes=0)
                out.errors.append(
                    f"pod {pod.key}: the lab's kubelets record no running process of it "
                    "(not started yet, restarting, or its node is down)"
                )
                continue
            out.usage[pod.key] = self._measure(pod, tree, out.errors)
        return out

    @staticmethod
    def _measure(pod: PodRef, tree: list[int], errors: list[str]) -> PodUsage:
        memory = 0
        kinds: set[str] = set()
        sockets: set[tuple[Any, Any]] = set()
        denied: int | None = None
        live = 0
        for pid in tree:
            try:
                proc = psutil.Process(pid)
                with proc.oneshot():
                    try:
                        used, kind = int(proc.memory_full_info().pss), "pss"
                    except psutil.AccessDenied:
                        used, kind = int(proc.memory_info().rss), "rss"
                    try:
                        held = {(c.laddr, c.raddr) for c in proc.net_connections(kind="tcp") if _connected(c)}
                    except psutil.AccessDenied:
                        held, denied = set(), pid
            except psutil.Error:
                continue  # exited since the process table was read
            memory += used
            kinds.add(kind)
            sockets |= held
            live += 1
        if denied is not None:
            errors.append(
                f"connections of pod {pod.key}: the sockets of its process {denied} cannot be read "
                "(another user's): run the harness as root or as the pod's user"
            )
        return PodUsage(
            memory_bytes=memory if live else None,
            connections=None if denied is not None or not live else len(sockets),
            memory="+".join(sorted(kinds)) or None,
            processes=live,
        )


def pod_source(kind: str) -> PodSource:
    """The source for a target kind (``lab`` or ``cluster``); ProbeError for any other."""
    if kind == LAB:
        return LabPods()
    if kind == CLUSTER:
        from probes.pod_sources_cluster import ClusterPods

        return ClusterPods()
    raise ProbeError(f"no pod measurements for target kind {kind!r}: only 'lab' and 'cluster' have pods")
