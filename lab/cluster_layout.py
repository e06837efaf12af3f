"""Where one lab lives on disk, and how its processes are started and found again.

Layout under ``lab_dir()/"cluster"`` (see :class:`Layout`): ``api/`` (API server data),
``logs/`` (pod logs), ``volumes/<namespace>/<claim>/`` (PVCs), ``pids/`` (one pidfile
per process: ``controlplane.pid``, ``kubelet-<node>.pid``), ``nodes/<node>/`` (kubelet
state and ``kubelet.log``), ``secrets/`` (tenant password files, mode 0600), and
``cluster.json`` (the API port, the kube-state-metrics stand-in's port, node names,
capacity knobs and monitoring ports, kept so every ``up`` reuses them and the kubeconfig
stays valid). ``lab_dir()/"kubeconfig"`` and ``lab_dir()/"tenants.json"`` are what users
and the load generator read; ``lab_dir()/"monitoring"`` holds Prometheus and Alertmanager
(:mod:`lab.monitoring.stack`).

Every process is started detached (own session, :func:`spawn`) and found again through
its pidfile (:func:`running`), checked against its command line so a recycled pid is
never signalled. Every process started so gets ``HARNESS_PROMETHEUS_SD_DIR`` (the lab's
``monitoring/targets``), which kubelets pass on to pods: the lab operator announces its
metrics endpoint there. Also here: ``cluster.json`` (:func:`load_config`, :func:`save_config`),
loopback ports, and the one polling loop every wait of the lab uses (:func:`wait_until`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from lab import processes
from lab.errors import LabError
from lab.paths import lab_dir, project_root

__all__ = [
    "NODE_PREFIX",
    "Layout",
    "api_url",
    "load_config",
    "node_names",
    "port_free",
    "running",
    "save_config",
    "spawn",
    "stop_process",
    "wait_until",
]

NODE_PREFIX = "lab-node-"


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
    def pki(self) -> Path:
        """The CA, the API server's certificate, the service-account key and ``tokens.csv`` (0700)."""
        return self.root / "pki"

    @property
    def monitoring(self) -> Path:
        """Prometheus and Alertmanager: configs, data, logs, ``targets/``, ``endpoints.json``."""
        return self.lab / "monitoring"

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

    def node_kubeconfig(self, node: str) -> Path:
        """The kubelet's own credentials (``system:node:<node>``), mode 0600."""
        return self.node_state(node) / "kubeconfig"

    @classmethod
    def default(cls) -> Layout:
        return cls(lab_dir())


def node_names(count: int) -> list[str]:
    """``lab-node-1`` ... ``lab-node-<count>``."""
    return [f"{NODE_PREFIX}{i}" for i in range(1, count + 1)]


# -- configuration and processes ------------------------------------------------------------------


def load_config(layout: Layout) -> dict[str, Any]:
    """``cluster.json`` as a dict; empty when it is missing or unreadable."""
    try:
        data = json.loads(layout.config.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save_config(layout: Layout, config: dict[str, Any]) -> None:
    """Write ``cluster.json`` (creating the lab's folder)."""
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.config.write_text(json.dumps(config, indent=2) + "\n")


def api_url(config: dict[str, Any]) -> str:
    """The API server's URL for the port in ``cluster.json``."""
    return f"https://127.0.0.1:{config['port']}"


def _marker(layout: Layout, name: str) -> list[str]:
    if name == "controlplane":
        return ["lab.controlplane"]
    if name in ("prometheus", "alertmanager"):
        return [f"--config.file={layout.monitoring / name}.yml"]
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
    if all(any(m == word or m in word for word in cmdline) for m in _marker(layout, name)):
        return proc
    return None


def spawn(layout: Layout, name: str, argv: list[str], log_path: Path, out_path: Path | None = None) -> int:
    """Start ``argv`` detached (own session, stderr to ``log_path``), record its pidfile ``name``; its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    layout.pids.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(project_root()), env.get("PYTHONPATH", "")) if p)
    env.pop("KUBECONFIG", None)
    env["HARNESS_PROMETHEUS_SD_DIR"] = str(layout.monitoring / "targets")
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


def port_free(port: int) -> bool:
    """True if ``port`` on 127.0.0.1 can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until(what: str, check: Callable[[], Any], timeout: float, hint: str, period: float = 0.1) -> Any:
    """Poll ``check`` until it is truthy and return that; LabError naming ``hint`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise LabError(f"{what} not after {timeout:.0f}s: {hint}")
        time.sleep(period)


def stop_process(proc: psutil.Process, timeout: float) -> bool:
    """SIGTERM, wait ``timeout``; True if it stopped by itself."""
    with contextlib.suppress(psutil.Error):
        proc.terminate()
    return not processes.wait_gone([proc], timeout)
