"""Where a kubelet keeps things and how it behaves; the CLI flags map one to one.

The folders follow the cluster layout of ``python -m lab up``: a kubelet whose
state folder is ``<cluster>/nodes/<node>`` writes pod logs to ``<cluster>/logs`` and
finds PVC folders under ``<cluster>/volumes``; with any other state folder both
default to sub-folders of the state folder. Every folder above a volume must be
traversable by the ``postgres`` user (see :mod:`lab.paths`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from lab.cgroups import group_name

__all__ = ["KubeletConfig", "node_labels"]


def node_labels(node: str) -> dict[str, str]:
    """The labels every lab node carries (the scheduler and nodeSelectors use them)."""
    return {
        "kubernetes.io/hostname": node,
        "lab.mssql.io/node": node,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
    }


@dataclass
class KubeletConfig:
    """Everything :class:`lab.kubelet.Kubelet` needs."""

    node: str
    server: str
    state_dir: Path
    logs_dir: Path | None = None
    volumes_dir: Path | None = None
    token: str = ""
    heartbeat: float = 1.0
    tick: float = 0.1
    resync: float = 10.0
    backoff_base: float = 1.0
    backoff_max: float = 10.0
    stop_grace_cap: float = 10.0
    labels: dict[str, str] = field(default_factory=dict)
    #: CPU quota of the whole node in cores (a cgroup every container joins); None: unlimited.
    node_cpu: float | None = None
    #: Server CPU every committed insert costs in the node's engine containers; None: nothing.
    commit_cpu_ms: float | None = None

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).resolve()
        cluster = self.cluster_dir if self.cluster_dir != self.state_dir else None
        if self.logs_dir is None:
            self.logs_dir = (cluster / "logs") if cluster else self.state_dir / "logs"
        if self.volumes_dir is None:
            self.volumes_dir = (cluster / "volumes") if cluster else self.state_dir / "volumes"
        self.logs_dir = Path(self.logs_dir).resolve()
        self.volumes_dir = Path(self.volumes_dir).resolve()
        self.server = self.server.rstrip("/")
        self.labels = {**node_labels(self.node), **self.labels}

    @property
    def cluster_dir(self) -> Path:
        """The lab folder of this node (``<cluster>`` of ``<cluster>/nodes/<node>``), else its state."""
        return self.state_dir.parent.parent if self.state_dir.parent.name == "nodes" else self.state_dir

    @property
    def cpu_group(self) -> str:
        """The node's CPU cgroup (:func:`lab.cgroups.group_name`), used when ``node_cpu`` is set."""
        return group_name(self.cluster_dir, self.node)

    @property
    def logs(self) -> Path:
        assert self.logs_dir is not None
        return self.logs_dir

    @property
    def volumes(self) -> Path:
        assert self.volumes_dir is not None
        return self.volumes_dir

    @property
    def containers_dir(self) -> Path:
        """Records of running containers (pids), for killing leftovers after a crash."""
        return self.state_dir / "containers"

    @property
    def pods_dir(self) -> Path:
        """Per-pod scratch: working directories, secret and configMap volumes."""
        return self.state_dir / "pods"

    @property
    def emptydir_dir(self) -> Path:
        return self.state_dir / "emptydir"

    def api_host_port(self) -> tuple[str, int]:
        """The API server's host and port, for the in-cluster ``KUBERNETES_SERVICE_*`` variables."""
        parts = urlsplit(self.server)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return parts.hostname or "127.0.0.1", port
