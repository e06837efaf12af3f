"""The lab cluster as processes: bring it up, show it, restart a node, take it down.

Layout under ``lab_dir()/"cluster"`` (see :class:`Layout`): ``api/`` (API server data),
``logs/`` (pod logs), ``volumes/<namespace>/<claim>/`` (PVCs), ``pids/`` (one pidfile
per process: ``controlplane.pid``, ``kubelet-<node>.pid``), ``nodes/<node>/`` (kubelet
state and ``kubelet.log``), ``secrets/`` (tenant password files, mode 0600), and
``cluster.json`` (the API port, node names and capacity knobs, kept so every ``up`` reuses
them and the kubeconfig stays valid). ``lab_dir()/"kubeconfig"`` and ``lab_dir()/"tenants.json"``
are what users and the load generator read.

Every process is started detached (own session) and found again through its
pidfile, checked against its command line so a recycled pid is never signalled.
A node's processes are its kubelet's process tree (the kubelet is a child
subreaper) plus whatever its container records name: :func:`restart_node` freezes
and SIGKILLs all of them, like pulling a machine's power cord.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

from common.crd import CrdCoordinates
from common.times import parse_time
from lab import processes
from lab.api.kubeconfig import write_kubeconfig
from lab.capacity import Knob, NodeKnobs, remove_node_groups, resolve_knobs
from lab.errors import LabError
from lab.kubeclient import ApiError, Kind, KubeClient
from lab.kubelet.probes import sql_ping
from lab.kubelet.runtime import Spawner, kill_leftovers
from lab.operator.reconcile import PORT_RANGE
from lab.paths import lab_dir, pg_bindir, project_root, reachable_by, server_user

__all__ = [
    "INSTANCES",
    "NODE_PREFIX",
    "OPERATOR_MANIFEST",
    "TENANT_NAMESPACE",
    "Layout",
    "down",
    "node_names",
    "restart_node",
    "running",
    "status",
    "up",
]

NODE_PREFIX = "lab-node-"
TENANT_NAMESPACE = "tenants"
OPERATOR_MANIFEST = Path(__file__).resolve().parent / "crds" / "operator.yaml"
INSTANCES = Kind(CrdCoordinates.group, CrdCoordinates.version, CrdCoordinates.plural)  # the defaults
ODBC_DRIVER = "PostgreSQL Unicode"
_KINDS: dict[tuple[str, str], Kind] = {
    ("v1", "Namespace"): Kind("", "v1", "namespaces", namespaced=False),
    ("v1", "ServiceAccount"): Kind("", "v1", "serviceaccounts"),
    ("v1", "Secret"): Kind("", "v1", "secrets"),
    ("v1", "ConfigMap"): Kind("", "v1", "configmaps"),
    ("v1", "Service"): Kind("", "v1", "services"),
    ("apps/v1", "Deployment"): Kind("apps", "v1", "deployments"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): Kind(
        "rbac.authorization.k8s.io", "v1", "clusterroles", namespaced=False
    ),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): Kind(
        "rbac.authorization.k8s.io", "v1", "clusterrolebindings", namespaced=False
    ),
    ("rbac.authorization.k8s.io/v1", "Role"): Kind("rbac.authorization.k8s.io", "v1", "roles"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): Kind("rbac.authorization.k8s.io", "v1", "rolebindings"),
}
Say = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class Layout:
    """Where everything of one lab lives."""

    lab: Path

    @property
    def root(self) -> Path:
        return self.lab / "cluster"

    @property
    def api(self) -> Path:
        return self.root / "api"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def nodes(self) -> Path:
        return self.root / "nodes"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def config(self) -> Path:
        return self.root / "cluster.json"

    @property
    def kubeconfig(self) -> Path:
        return self.lab / "kubeconfig"

    @property
    def policy(self) -> Path:
        """The authorization policy (allow-all at first; edit it to deny, it is re-read on change)."""
        return self.lab / "policy.yaml"

    @property
    def tenants_file(self) -> Path:
        return self.lab / "tenants.json"

    def node_state(self, node: str) -> Path:
        return self.nodes / node

    @classmethod
    def default(cls) -> Layout:
        return cls(lab_dir())


def node_names(count: int) -> list[str]:
    """``lab-node-1`` ... ``lab-node-<count>``."""
    return [f"{NODE_PREFIX}{i}" for i in range(1, count + 1)]


# -- configuration and processes ------------------------------------------------------------------


def _load_config(layout: Layout) -> dict[str, Any]:
    try:
        data = json.loads(layout.config.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_config(layout: Layout, config: dict[str, Any]) -> None:
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.config.write_text(json.dumps(config, indent=2) + "\n")


def _url(config: dict[str, Any]) -> str:
    return f"http://127.0.0.1:{config['port']}"


def _marker(name: str) -> list[str]:
    if name == "controlplane":
        return ["lab.controlplane"]
    return ["lab.kubelet", name.removeprefix("kubelet-")]


def running(layout: Layout, name: str) -> psutil.Process | None:
    """The process of pidfile ``name`` if it is alive and still the lab process it was."""
    try:
        pid = int((layout.pids / f"{name}.pid").read_text().split()[0])
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        cmdline = proc.cmdline()
    except (OSError, ValueError, IndexError, psutil.Error):
        return None
    if all(any(m == word or m in word for word in cmdline) for m in _marker(name)):
        return proc
    return None


def _spawn(layout: Layout, name: str, argv: list[str], log_path: Path, out_path: Path | None = None) -> int:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    layout.pids.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(project_root()), env.get("PYTHONPATH", "")) if p)
    env.pop("KUBECONFIG", None)
    with open(log_path, "ab") as log, open(out_path or os.devnull, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=log,
            env=env,
            cwd=layout.root,
            start_new_session=True,
            close_fds=True,
        )
    (layout.pids / f"{name}.pid").write_text(f"{proc.pid}\n")
    return proc.pid


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(what: str, check: Callable[[], Any], timeout: float, hint: str, period: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise LabError(f"{what} not after {timeout:.0f}s: {hint}")
        time.sleep(period)


def _stop_process(proc: psutil.Process, timeout: float) -> bool:
    """SIGTERM, wait ``timeout``; True if it stopped by itself."""
    with contextlib.suppress(psutil.Error):
        proc.terminate()
    return not processes.wait_gone([proc], timeout)


# -- control plane and kubelets --------------------------------------------------------------------


def _start_control_plane(layout: Layout, port: int, timeout: float) -> None:
    out = layout.root / "controlplane.out"
    out.unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "lab.controlplane",
        "--port",
        str(port),
        "--data",
        str(layout.api),
        "--logs",
        str(layout.logs),
        "--policy",
        str(layout.policy),
    ]
    if not layout.policy.exists():
        layout.policy.write_text(
            "# Lab authorization policy, re-read on change. Example denial:\n"
            "#   deny: [{verb: create, resource: pods/eviction, namespace: tenants}]\n"
            "default: allow\ndeny: []\n"
        )
    pid = _spawn(layout, "controlplane", argv, layout.root / "controlplane.log", out)

    def listening() -> bool:
        with contextlib.suppress(OSError):
            if "listening on" in out.read_text():
                return True
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            lines = (layout.root / "controlplane.log").read_text(errors="replace").strip().splitlines()
            raise LabError(f"the control plane exited: {lines[-1] if lines else 'no output'}")
        return False

    _wait("the control plane listening", listening, timeout, f"see {layout.root / 'controlplane.log'}", 0.05)


def _kubelet_argv(layout: Layout, node: str, url: str) -> list[str]:
    """The kubelet's command line, with the lab's capacity knobs from ``cluster.json``."""
    return [
        sys.executable,
        "-m",
        "lab.kubelet",
        "--node",
        node,
        "--server",
        url,
        "--state",
        str(layout.node_state(node)),
        "--logs",
        str(layout.logs),
        "--volumes",
        str(layout.volumes),
        *NodeKnobs.from_config(_load_config(layout)).kubelet_args(),
    ]


def _start_kubelet(layout: Layout, node: str, url: str) -> int:
    state = layout.node_state(node)
    state.mkdir(parents=True, exist_ok=True)
    return _spawn(layout, f"kubelet-{node}", _kubelet_argv(layout, node, url), state / "kubelet.log")


def _node_ready(client: KubeClient, node: str, since: float | None = None) -> bool:
    """Node Ready; with ``since``, also renewed its Lease after that time (a fresh kubelet)."""
    try:
        obj = client.get_or_none("nodes", node)
        conditions = ((obj or {}).get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            return False
        if since is None:
            return True
        lease = client.get_or_none("leases", node, "kube-node-lease")
    except ApiError:
        return False
    renewed = str(((lease or {}).get("spec") or {}).get("renewTime") or "")
    stamp = parse_time(renewed)
    return stamp is not None and stamp >= since


# -- manifests and tenants -------------------------------------------------------------------------


def apply_manifest(client: KubeClient, path: Path) -> list[str]:
    """Create every object of a multi-document YAML file that does not exist yet; their names."""
    created = []
    for doc in yaml.safe_load_all(path.read_text()):
        if not isinstance(doc, dict):
            continue
        kind = _KINDS.get((str(doc.get("apiVersion")), str(doc.get("kind"))))
        if kind is None:
            raise LabError(f"{path}: the lab cannot apply {doc.get('apiVersion')} {doc.get('kind')}")
        md = doc.get("metadata") or {}
        namespace = md.get("namespace") if kind.namespaced else None
        try:
            client.create(kind, doc, namespace)
            created.append(f"{doc['kind']}/{md.get('name')}")
        except ApiError as exc:
            if exc.code != 409:
                raise
    return created


def _instance_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{INSTANCES.group}/{INSTANCES.version}",
        "kind": "MSSQLInstance",
        "metadata": {"name": name, "namespace": TENANT_NAMESPACE},
        "spec": {"version": "15", "storage": {"size": "1Gi"}, "database": "harness"},
    }


def _instance_ready(obj: dict[str, Any] | None) -> bool:
    status = (obj or {}).get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    return bool(status.get("endpoint")) and (ready or status.get("phase") == "Ready")


def _answers(layout: Layout, client: KubeClient, inst: dict[str, Any]) -> bool:
    """True when the instance's server answers ``SELECT 1`` with its credentials (a status can be stale)."""
    entry = _tenant_entry(layout, client, inst)
    ok, _ = sql_ping(
        Spawner(),
        port=int(entry["port"]),
        user=str(entry["user"]),
        password=Path(entry["password_file"]).read_text(),
        database=str(entry["database"]),
        query="SELECT 1",
        timeout=2.0,
    )
    return ok


def _tenant_entry(layout: Layout, client: KubeClient, inst: dict[str, Any]) -> dict[str, Any]:
    name = inst["metadata"]["name"]
    status = inst.get("status") or {}
    host, _, port = str(status.get("endpoint", "")).rpartition(":")
    secret_name = status.get("credentialsSecret") or f"{name}-credentials"
    secret = client.get("secrets", secret_name, TENANT_NAMESPACE)
    data = secret.get("data") or {}
    user = base64.b64decode(data.get("username", "")).decode() or "harness"
    password = base64.b64decode(data.get("password", "")).decode()
    layout.secrets.mkdir(parents=True, exist_ok=True)
    layout.secrets.chmod(0o700)
    pw_file = layout.secrets / f"{name}.password"
    fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password)
    pw_file.chmod(0o600)
    return {
        "name": name,
        "dialect": "postgresql",
        "driver": ODBC_DRIVER,
        "server": host or "127.0.0.1",
        "port": int(status.get("port") or port),
        "database": status.get("database") or (inst.get("spec") or {}).get("database") or "harness",
        "user": user,
        "password_file": str(pw_file),
    }


# -- the commands ------------------------------------------------------------------------------------


#: Memory one tenant's PostgreSQL server takes once it has written a little (measured: about 40 MiB).
TENANT_MEMORY = 48 * 2**20


def check_capacity(tenants: int, available: int | None = None) -> None:
    """Refuse a tenant count this machine cannot hold: memory (half of what is free) and engine ports."""
    free = psutil.virtual_memory().available if available is None else available
    need = tenants * TENANT_MEMORY
    if need > free // 2:
        most = max(1, (free // 2) // TENANT_MEMORY)
        raise LabError(
            f"{tenants} tenants need about {need / 2**30:.1f} GiB (about {TENANT_MEMORY // 2**20} MiB each) "
            f"and {free / 2**30:.1f} GiB is free: use --tenants {most} or fewer"
        )
    low, high = PORT_RANGE
    if tenants > high - low:
        raise LabError(f"{tenants} tenants need more engine ports than {low}-{high} holds: use fewer")


def up(
    tenants: int = 1,
    nodes: int = 3,
    *,
    port: int | None = None,
    node_cpu: Knob = None,
    commit_cpu_ms: Knob = None,
    layout: Layout | None = None,
    timeout: float = 180.0,
    say: Say = _quiet,
) -> dict[str, Any]:
    """Start (or complete) the lab and wait until ``tenants`` instances are Ready.

    Idempotent: what already runs is reused, what is missing is started or created.
    ``node_cpu`` (cores) and ``commit_cpu_ms`` are the capacity knobs (:mod:`lab.capacity`):
    None keeps what the lab was started with, ``"off"`` turns one off; they are checked
    before anything starts. LabError (one line) when a knob is bad, PostgreSQL is missing,
    the port is taken, or something does not come up in time. Returns what was done:
    url, nodes, tenants, timings, knobs.
    """
    layout = layout or Layout.default()
    config = _load_config(layout)
    stored = NodeKnobs.from_config(config)
    knobs = resolve_knobs(stored, node_cpu, commit_cpu_ms)
    if knobs != stored and any(running(layout, f"kubelet-{n}") for n in config.get("nodes") or []):
        current = " ".join(stored.kubelet_args()) or "no capacity knobs"
        raise LabError(f"the lab runs with {current}: `python -m lab down` first to change the knobs")
    knobs.store(config)
    if tenants < 1 or nodes < 1:
        raise LabError(
            f"need at least 1 node and 1 tenant (got {nodes} nodes, {tenants} tenants): "
            "the load refuses an empty tenants file"
        )
    check_capacity(tenants)
    began = time.monotonic()
    pg_bindir()
    if port is not None and config.get("port") not in (None, port) and running(layout, "controlplane"):
        raise LabError(
            f"the lab already runs on port {config['port']}: `python -m lab down` first to change it"
        )
    config["port"] = port or config.get("port") or _free_port()
    known = list(config.get("nodes") or [])
    config["nodes"] = sorted(set(known) | set(node_names(nodes)), key=lambda n: (len(n), n))
    url = _url(config)
    reused = running(layout, "controlplane") is not None
    for folder in (layout.root, layout.logs, layout.volumes, layout.pids, layout.nodes):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
    user = server_user()
    if user is not None and not reachable_by(layout.volumes, user):
        raise LabError(
            f"the {user} user cannot reach {layout.volumes}, so database pods cannot start: "
            "make every folder above it traversable (chmod o+x) or set HARNESS_LAB_DIR elsewhere"
        )
    if reused:
        say(f"lab already running at {url}: reusing it")
    else:
        if not _port_free(int(config["port"])):
            raise LabError(
                f"port {config['port']} on 127.0.0.1 is in use: stop what uses it or pass --port "
                "with a free port"
            )
        _save_config(layout, config)
        say(f"starting the control plane on {url}")
        _start_control_plane(layout, int(config["port"]), timeout=30)
    _save_config(layout, config)
    write_kubeconfig(layout.kubeconfig, url)
    client = KubeClient(url)
    started_nodes = []
    kubelets_started_at = time.time()
    for node in config["nodes"]:
        if running(layout, f"kubelet-{node}") is None:
            kill_leftovers(layout.node_state(node) / "containers")
            _start_kubelet(layout, node, url)
            started_nodes.append(node)
    if started_nodes:
        say(f"starting kubelets: {', '.join(started_nodes)}")
    for node in config["nodes"]:
        _wait(
            f"node {node} Ready",
            functools.partial(
                _node_ready, client, node, kubelets_started_at if node in started_nodes else None
            ),
            30,
            f"see {layout.node_state(node) / 'kubelet.log'}",
        )
    cp_ready = time.monotonic() - began
    apply_manifest(client, OPERATOR_MANIFEST)
    names = [f"tenant-{i}" for i in range(tenants)]
    if names:
        with contextlib.suppress(ApiError):
            client.create(
                "namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": TENANT_NAMESPACE}},
            )
        for name in names:
            if client.get_or_none(INSTANCES, name, TENANT_NAMESPACE) is None:
                client.create(INSTANCES, _instance_body(name), TENANT_NAMESPACE)
        say(f"waiting for {len(names)} MSSQLInstance(s) in namespace {TENANT_NAMESPACE} to be Ready")

    def all_ready() -> list[dict[str, Any]] | None:
        found = []
        for name in names:
            try:
                obj = client.get_or_none(INSTANCES, name, TENANT_NAMESPACE)
                if not _instance_ready(obj):
                    return None
                assert obj is not None
                if not _answers(layout, client, obj):
                    return None
            except ApiError:
                return None
            found.append(obj)
        return found

    ready: list[dict[str, Any]] = (
        _wait(
            "MSSQLInstances Ready",
            all_ready,
            timeout,
            "see `kubectl -n mssql-operator logs deploy/mssql-operator` "
            f"and `kubectl -n {TENANT_NAMESPACE} get pods` (KUBECONFIG={layout.kubeconfig})",
            0.25,
        )
        if names
        else []
    )
    entries = [_tenant_entry(layout, client, inst) for inst in ready]
    layout.tenants_file.write_text(json.dumps({"tenants": entries}, indent=2) + "\n")
    return {
        "url": url,
        "reused": reused,
        "nodes": config["nodes"],
        "tenants": entries,
        "kubeconfig": str(layout.kubeconfig),
        "tenants_file": str(layout.tenants_file),
        "nodes_ready_after": round(cp_ready, 3),
        "ready_after": round(time.monotonic() - began, 3),
        "node_cpu": knobs.node_cpu,
        "commit_cpu_ms": knobs.commit_cpu_ms,
    }


def status(layout: Layout | None = None) -> dict[str, Any]:
    """Processes (pid, alive), nodes (Ready, cordoned), instances (phase, endpoint), capacity knobs."""
    layout = layout or Layout.default()
    config = _load_config(layout)
    knobs = NodeKnobs.from_config(config)
    names = ["controlplane", *(f"kubelet-{n}" for n in config.get("nodes") or [])]
    procs = []
    for name in names:
        proc = running(layout, name)
        procs.append({"name": name, "pid": proc.pid if proc else None, "alive": proc is not None})
    result: dict[str, Any] = {
        "lab_dir": str(layout.lab),
        "url": _url(config) if config.get("port") else None,
        "processes": procs,
        "nodes": [],
        "instances": [],
        "api": "down",
        "node_cpu": knobs.node_cpu,
        "commit_cpu_ms": knobs.commit_cpu_ms,
        "knobs": knobs.describe(),
    }
    if not config.get("port") or not procs[0]["alive"]:
        return result
    client = KubeClient(_url(config), timeout=3)
    try:
        for node in client.list("nodes"):
            conditions = (node.get("status") or {}).get("conditions") or []
            ready = next((c.get("status") for c in conditions if c.get("type") == "Ready"), "Unknown")
            result["nodes"].append(
                {
                    "name": node["metadata"]["name"],
                    "ready": ready,
                    "unschedulable": bool((node.get("spec") or {}).get("unschedulable")),
                }
            )
        with contextlib.suppress(ApiError):
            for inst in client.list(INSTANCES):
                st = inst.get("status") or {}
                result["instances"].append(
                    {
                        "name": inst["metadata"]["name"],
                        "namespace": inst["metadata"]["namespace"],
                        "phase": st.get("phase", ""),
                        "ready": _instance_ready(inst),
                        "endpoint": st.get("endpoint", ""),
                    }
                )
        result["api"] = "up"
    except ApiError as exc:
        result["api"] = f"unreachable ({exc})"
    return result


def _lab_processes(layout: Layout) -> list[psutil.Process]:
    """Every process whose command line names this lab's folder (kubelets, control plane, servers)."""
    root = str(layout.root)
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(root in word for word in proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            continue
    return found


@dataclass(frozen=True)
class _Killed:
    """What :func:`_kill_node` did: how many processes it killed, and when.

    ``signalled_at`` is the wall-clock time (UTC epoch seconds) read just before the
    first signal reached the node, after its processes were found, so a fault can be
    timed from the moment the node really went down rather than from when someone
    decided to take it down; ``done_after`` is how long from then until every process
    of the node was gone: the injection happened somewhere in that window. Both are
    None when nothing of the node was running.
    """

    count: int
    signalled_at: float | None
    done_after: float | None


def _kill_node(layout: Layout, node: str) -> _Killed:
    """SIGKILL the node's kubelet tree and every recorded container process."""
    kubelet = running(layout, f"kubelet-{node}")
    count = 0
    signalled_at = None
    if kubelet is not None:
        with contextlib.suppress(psutil.Error):
            count = 1 + len(kubelet.children(recursive=True))
        # Freeze the kubelet (the root of the node's tree) first, as kill_trees would
        # once it has walked the tree: the clock is read right before that signal.
        signalled_at = time.time()
        with contextlib.suppress(psutil.Error):
            kubelet.send_signal(signal.SIGSTOP)
        survivors = processes.kill_trees([kubelet])
        if survivors:
            raise LabError(f"processes {[p.pid for p in survivors]} of {node} survived SIGKILL")
    # Container processes that escaped the kubelet's tree; when the kubelet was not
    # running these are all there is, and the clock is read before they are looked up.
    before_leftovers = time.time()
    leftovers = kill_leftovers(layout.node_state(node) / "containers")
    if leftovers and signalled_at is None:
        signalled_at = before_leftovers
    count += leftovers
    (layout.pids / f"kubelet-{node}.pid").unlink(missing_ok=True)
    done_after = None if signalled_at is None else round(time.time() - signalled_at, 6)
    return _Killed(count, signalled_at, done_after)


def down(wipe: bool = False, layout: Layout | None = None, say: Say = _quiet) -> dict[str, Any]:
    """Stop the kubelets (their pods first) and the control plane; verify nothing is left.

    The nodes' CPU cgroups are removed. Data stays unless ``wipe`` (the capacity knobs are
    data: the next ``up`` keeps them). LabError if a lab process survives.
    """
    layout = layout or Layout.default()
    config = _load_config(layout)
    nodes = list(config.get("nodes") or [])
    stopped = []
    kubelets = [(n, p) for n in nodes if (p := running(layout, f"kubelet-{n}")) is not None]
    for _, proc in kubelets:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    for node, proc in kubelets:
        if processes.wait_gone([proc], 25):
            say(f"kubelet of {node} did not stop in 25s: killing it")
        _kill_node(layout, node)
        stopped.append(f"kubelet-{node}")
    for node in nodes:
        kill_leftovers(layout.node_state(node) / "containers")
        (layout.pids / f"kubelet-{node}.pid").unlink(missing_ok=True)
    control = running(layout, "controlplane")
    if control is not None:
        if not _stop_process(control, 15):
            say("the control plane did not stop in 15s: killing it")
            processes.kill_trees([control])
        stopped.append("controlplane")
    (layout.pids / "controlplane.pid").unlink(missing_ok=True)
    left = _lab_processes(layout)
    if left:
        say(f"killing leftover lab processes {[p.pid for p in left]}")
        survivors = processes.kill_trees(left)
        if survivors:
            raise LabError(f"lab processes {[p.pid for p in survivors]} survived SIGKILL: stop them by hand")
    groups = remove_node_groups(layout.root, nodes)
    if wipe:
        shutil.rmtree(layout.root, ignore_errors=True)
        layout.kubeconfig.unlink(missing_ok=True)
        layout.tenants_file.unlink(missing_ok=True)
        layout.policy.unlink(missing_ok=True)
    return {
        "stopped": stopped,
        "leftovers_killed": [p.pid for p in left],
        "wiped": wipe,
        "cgroups_removed": groups,
    }


def restart_node(
    node: str, down_seconds: float, *, layout: Layout | None = None, wait: bool = True, timeout: float = 30.0
) -> dict[str, Any]:
    """Crash ``node`` (SIGKILL its kubelet and every pod process), wait, start its kubelet again.

    Returns when the kubelet is back (and, with ``wait``, its Node Ready): killed count,
    ``killed_at`` (UTC epoch seconds, before the node's processes were looked up),
    ``signalled_at`` (just before the first signal reached them: the moment the node
    went down, None if nothing of it was running), ``kill_seconds`` (from then until
    all of them were gone) and how long the node took to be Ready.
    """
    layout = layout or Layout.default()
    config = _load_config(layout)
    if node not in (config.get("nodes") or []):
        known = ", ".join(config.get("nodes") or []) or "none (run `python -m lab up`)"
        raise LabError(f"no lab node named {node!r}: known nodes are {known}")
    if running(layout, "controlplane") is None:
        raise LabError("the lab is not running: `python -m lab up` first")
    killed_at = time.time()
    killed = _kill_node(layout, node)
    time.sleep(max(0.0, down_seconds))
    began, started_at = time.monotonic(), time.time()
    pid = _start_kubelet(layout, node, _url(config))
    ready_after = None
    if wait:
        client = KubeClient(_url(config))
        _wait(
            f"node {node} Ready again",
            lambda: _node_ready(client, node, started_at),
            timeout,
            f"see {layout.node_state(node) / 'kubelet.log'}",
            0.05,
        )
        ready_after = round(time.monotonic() - began, 3)
    return {
        "node": node,
        "killed": killed.count,
        "killed_at": killed_at,
        "signalled_at": killed.signalled_at,
        "kill_seconds": killed.done_after,
        "down_seconds": down_seconds,
        "kubelet_pid": pid,
        "ready_after": ready_after,
    }
