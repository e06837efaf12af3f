"""Lab processes shared by several test modules: kubectl against one API server, and a real
kubelet process on a node of its own.

:class:`Kubectl` runs the real kubectl with a HOME of its own (so discovery is never
cached between tests) against an API server; :class:`KubeletNode` is an API server
process and one kubelet process (``python -m lab.kubelet``) on a fresh folder, and
:func:`kubelet_node` makes one for a fixture and removes it afterwards. The control plane
with a kubelet played by the test is :func:`tests.test_controllers.plane_clients`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import psutil

from lab import processes
from lab.api import ApiServerProcess, start_api_server, write_kubeconfig
from lab.kubeclient import KubeClient
from lab.paths import lab_dir, project_root

__all__ = ["KubeletNode", "Kubectl", "kubelet_node"]

N = TypeVar("N", bound="KubeletNode")


class Kubectl:
    """kubectl against ``server`` with ``home`` as HOME (its kubeconfig written there)."""

    def __init__(self, server: ApiServerProcess, home: Path, timeout: float = 60) -> None:
        self.url = server.url
        self.timeout = timeout
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
        self.env["KUBECONFIG"] = str(write_kubeconfig(home / ".kube" / "config", server.url))

    def __call__(
        self, *args: str, binary: str = "kubectl", stdin: str | None = None, ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``binary args``; with ``ok``, fail the test (naming the command) unless it exits 0."""
        result = subprocess.run(
            [binary, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=self.timeout,
            check=False,
        )
        if ok:
            assert result.returncode == 0, f"{binary} {' '.join(args)}: {result.stderr}"
        return result


class KubeletNode:
    """An API server process and one kubelet process for ``node`` on a fresh folder (restartable:
    a node crash). ``verbose`` passes ``--verbose`` to the kubelet (its log: ``root/kubelet.log``)."""

    def __init__(self, root: Path, node: str, verbose: bool = True) -> None:
        self.root = root
        self.node = node
        self.verbose = verbose
        self.cluster = root / "cluster"
        self.logs = self.cluster / "logs"
        self.volumes = self.cluster / "volumes"
        self.state = self.cluster / "nodes" / node
        self.api: ApiServerProcess = start_api_server(self.cluster / "api", logs_dir=self.logs)
        self.client = KubeClient(self.api.url)
        self.kubeconfig = write_kubeconfig(root / "kubeconfig", self.api.url)
        self.kubelet: subprocess.Popen[bytes] | None = None
        self.start_kubelet()

    def start_kubelet(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "lab.kubelet",
            "--node",
            self.node,
            "--server",
            self.api.url,
            "--state",
            str(self.state),
            "--backoff-base",
            "0.2",
            "--backoff-max",
            "1",
        ]
        if self.verbose:
            argv.append("--verbose")
        env = {**os.environ, "PYTHONPATH": str(project_root())}
        with open(self.root / "kubelet.log", "ab") as log:
            self.kubelet = subprocess.Popen(argv, stderr=log, env=env)

    def crash_kubelet(self, whole_tree: bool) -> None:
        """SIGKILL the kubelet (and, if ``whole_tree``, every process of its pods)."""
        assert self.kubelet is not None
        root = psutil.Process(self.kubelet.pid)
        if whole_tree:
            assert not processes.kill_trees([root])
        else:
            root.kill()
        self.kubelet.wait(5)

    def lab_processes(self) -> list[psutil.Process]:
        """Live processes whose command line names this node's folders (kubelet, servers)."""
        found = []
        for proc in psutil.process_iter(["cmdline", "status"]):
            try:
                if proc.info["status"] != psutil.STATUS_ZOMBIE and any(
                    str(self.cluster / "nodes") in w or str(self.volumes) in w
                    for w in proc.info["cmdline"] or []
                ):
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    def close(self) -> None:
        if self.kubelet is not None and self.kubelet.poll() is None:
            self.kubelet.send_signal(signal.SIGTERM)
            try:
                self.kubelet.wait(30)
            except subprocess.TimeoutExpired:
                processes.kill_trees([psutil.Process(self.kubelet.pid)])
                self.kubelet.wait(5)
        self.api.stop()


@contextmanager
def kubelet_node(prefix: str, make: Callable[[Path], N]) -> Iterator[N]:
    """``make(root)`` on a fresh folder under the lab directory (named ``prefix...``); closed and
    removed when the block ends."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=lab_dir()))
    root.chmod(0o755)
    lab_node = make(root)
    try:
        yield lab_node
    finally:
        lab_node.close()
        shutil.rmtree(root, ignore_errors=True)
