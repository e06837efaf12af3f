"""Where a kubelet keeps things and how it behaves; the CLI flags map one to one.

The folders follow the cluster layout of ``python -m lab up``: a kubelet whose
state folder is ``<cluster>/nodes/<node>`` writes pod logs to ``<cluster>/logs`` and
finds PVC folders under ``<cluster>/volumes``; with any other state folder both
default to sub-folders of the state folder. Every folder above a volume must be
traversable by the ``postgres`` user (see :mod:`lab.paths`).

The API server is reached through ``kubeconfig`` (the lab's kubelets: their own
``system:node:<node>`` token and the CA, :mod:`lab.kubelet.credentials`), else through
``server`` and ``token`` (bare test servers). Pods get service-account tokens
(:mod:`lab.kubelet.sa_token`) when ``service_account_tokens`` says so; by default when the
kubelet has a credential of its own: an anonymous kubelet could not be authorized to
request them on a cluster that authenticates, and a bare test server issues none.

Pods' own folders (working folders, service-account tokens, emptyDir volumes) live under
:attr:`KubeletConfig.runtime_dir`: the state folder when every user may traverse down to it
(pods run as unprivileged users who must reach their folders by absolute path, which a
container runtime would bind-mount instead), else a folder of the kubelet's own under
``/var/tmp`` (named after the state folder, so a restarted kubelet finds its pods' volumes),
as :func:`lab.paths.lab_dir` does for a checkout under ``/root``. Such a folder records its
state folder (:data:`STATE_MARKER`); a kubelet starting removes the ones whose state folder
is gone (:func:`prune_fallbacks`), so tests on private temporary folders leave nothing behind
for long.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from lab.cgroups import group_name
from lab.errors import LabError
from lab.kubelet.credentials import ApiAccess, api_access

__all__ = [
    "FALLBACK_PARENT",
    "STATE_MARKER",
    "KubeletConfig",
    "node_labels",
    "prune_fallbacks",
    "runtime_dir_for",
    "traversable_by_all",
]

#: Where pods' folders go when the state folder is not traversable by every user.
FALLBACK_PARENT = Path("/var/tmp")  # noqa: S108 - fixed by design, see the module doc


def traversable_by_all(path: Path) -> bool:
    """True if any user may traverse every folder from ``/`` down to ``path`` (its ``x`` bits for others)."""
    current = Path("/")
    for part in Path(path).resolve().parts:
        current = current / part
        try:
            mode = current.stat().st_mode
        except OSError:
            return False
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return False
    return True


#: The file in a fallback folder naming the state folder it belongs to.
STATE_MARKER = ".state-dir"


def prune_fallbacks(keep: Path | None = None) -> list[Path]:
    """Remove this user's fallback folders whose state folder is gone (a test's, a removed lab's);
    the folders removed. ``keep`` is never removed. Symlinks and other users' folders are left."""
    removed = []
    for folder in sorted(FALLBACK_PARENT.glob("lab-kubelet-*")):
        try:
            info = folder.lstat()
            if folder == keep or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
                continue
            state = Path((folder / STATE_MARKER).read_text().strip())
        except (OSError, UnicodeDecodeError):
            continue
        if state.is_absolute() and not state.exists():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def runtime_dir_for(state_dir: Path) -> Path:
    """The folder holding ``pods/`` and ``emptydir/`` for a kubelet with ``state_dir`` (module doc)."""
    if traversable_by_all(state_dir):
        return state_dir
    digest = hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:10]
    return FALLBACK_PARENT / f"lab-kubelet-{digest}"


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
    #: The kubelet's kubeconfig; when given, ``server`` and ``token`` come from it.
    kubeconfig: Path | None = None
    #: Project service-account tokens into pods; None: when the kubelet has a credential.
    service_account_tokens: bool | None = None
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
    #: How the API server is reached (from ``kubeconfig``, else ``server`` and ``token``).
    access: ApiAccess = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).resolve()
        cluster = self.cluster_dir if self.cluster_dir != self.state_dir else None
        if self.logs_dir is None:
            self.logs_dir = (cluster / "logs") if cluster else self.state_dir / "logs"
        if self.volumes_dir is None:
            self.volumes_dir = (cluster / "volumes") if cluster else self.state_dir / "volumes"
        self.logs_dir = Path(self.logs_dir).resolve()
        self.volumes_dir = Path(self.volumes_dir).resolve()
        if self.kubeconfig is not None:
            self.kubeconfig = Path(self.kubeconfig).resolve()
            access = api_access(self.kubeconfig)
            if self.server and self.server.rstrip("/") != access.server:
                raise LabError(
                    f"--server {self.server} differs from the kubeconfig's server {access.server}: "
                    "give one of them"
                )
            self.server, self.token = access.server, access.token
            self.access = access
        else:
            if not self.server.startswith(("http://", "https://")):
                raise LabError(
                    f"API server {self.server!r} is not an http(s) URL: give --server or --kubeconfig"
                )
            self.server = self.server.rstrip("/")
            self.access = ApiAccess(self.server, self.token)
        if self.service_account_tokens is None:
            self.service_account_tokens = self.access.has_credentials
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
    def runtime_dir(self) -> Path:
        """The folder holding ``pods/`` (per-pod folders) and ``emptydir/`` (see the module doc)."""
        return runtime_dir_for(self.state_dir)

    def api_host_port(self) -> tuple[str, int]:
        """The API server's host and port, for the in-cluster ``KUBERNETES_SERVICE_*`` variables."""
        parts = urlsplit(self.server)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return parts.hostname or "127.0.0.1", port
