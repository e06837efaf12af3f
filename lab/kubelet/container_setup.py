"""Everything a container needs before it starts: folders, user, environment, program.

:meth:`PodSetup.prepare` resolves, for one container of the pod, its mounted folders
(:func:`lab.kubelet.podspec.resolve_mounts`), its user (:func:`lab.kubelet.run_as.run_as_for`)
and working folder (the ``workingDir`` under a mount, else the folder its user owns,
:func:`lab.kubelet.run_as.home_for`), its environment (the kubelet's pass-through
variables, an unprivileged container's reduced to an image's, the service links of the
namespace's Services (:mod:`lab.kubelet.service_env`, listed when the container starts),
the in-cluster and ``LAB_*`` variables, the pod's service-account token folder, then
``envFrom`` and ``env``) and its
program (:func:`lab.kubelet.images.launch_for`; engine containers get their port and the
node's commit-cost knob).

It raises :class:`~lab.kubelet.podspec.ConfigError` when the container cannot start yet
(the reason goes into its waiting state), :class:`~lab.kubeclient.ApiError` when the API
server could not answer, OSError when a folder could not be made; the pod worker retries.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.kubelet import commit_cost, images, podspec, service_env
from lab.kubelet.config import KubeletConfig
from lab.kubelet.images import Launch
from lab.kubelet.run_as import RunAs, home_for, run_as_for, unprivileged_env
from lab.kubelet.sa_token import ENV as TOKEN_ENV
from lab.kubelet.sa_token import PodToken

__all__ = ["PodSetup", "Prepared"]

Obj = dict[str, Any]


@dataclass(frozen=True)
class Prepared:
    """One container, ready to start."""

    launch: Launch
    env: dict[str, str]
    cwd: Path
    run_as: RunAs
    engine_port: int | None


@dataclass
class PodSetup:
    """How the containers of one pod are prepared (see the module doc)."""

    cfg: KubeletConfig
    #: The kubelet's :attr:`~lab.kubelet.config.KubeletConfig.runtime_dir`.
    runtime_dir: Path
    #: The kubelet may start processes as other users (it is root).
    can_switch: bool
    #: The pod's own folder (``<runtime>/pods/<uid>``).
    pod_dir: Path
    lookup: podspec.Lookup
    token: PodToken | None = None
    #: The Services of a namespace (None: listed through ``lookup`` with an empty name).
    services: service_env.ServiceLister | None = None

    def prepare(self, pod: Obj, container: Obj) -> Prepared:
        """The container's program, environment, folder and user; raises as the module doc says."""
        run_as = run_as_for(pod, container, images.is_host_command(container), self.can_switch)
        owner = (run_as.uid, run_as.gid) if run_as.switch else (os.geteuid(), os.getegid())
        volumes = self.cfg.volumes
        mounts = podspec.resolve_mounts(pod, container, self.runtime_dir, volumes, self.lookup, owner)
        home = home_for(self.pod_dir, run_as)
        base = self.base_env(pod, mounts, run_as, home)
        env = podspec.resolve_env(pod, container, self.lookup, base)
        launch = images.launch_for(container, env, own_interpreter=run_as.as_kubelet)
        engine_port = images.engine_port(container) if launch.is_engine else None
        if engine_port is not None:
            env["LAB_ENGINE_PORT"] = str(engine_port)
        if launch.is_engine:
            env.pop(commit_cost.ENV, None)  # the node's knob, never the pod's
            if self.cfg.commit_cpu_ms is not None:
                env[commit_cost.ENV] = f"{self.cfg.commit_cpu_ms:g}"
        workdir = str(container.get("workingDir") or "")
        cwd = podspec.host_path_for(workdir, mounts) if workdir else None
        return Prepared(launch, env, cwd or home, run_as, engine_port)

    def base_env(self, pod: Obj, mounts: dict[str, Path], run_as: RunAs, home: Path) -> dict[str, str]:
        """What every container of the pod starts with (before its ``envFrom`` and ``env``)."""
        md = pod.get("metadata") or {}
        host, port = self.cfg.api_host_port()
        env = podspec.pass_through_env()
        if not run_as.as_kubelet:
            env = unprivileged_env(env, str(home))
        env.update(service_env.pod_service_env(pod, self.services or self._listed_services))
        env.update(
            {
                "HOSTNAME": str(md.get("name", "")),
                "KUBERNETES_SERVICE_HOST": host,
                "KUBERNETES_SERVICE_PORT": str(port),
                "KUBERNETES_PORT": f"tcp://{host}:{port}",
                "LAB_MOUNTS": podspec.mounts_env(mounts),
                "LAB_NODE_NAME": self.cfg.node,
                "LAB_POD_NAME": str(md.get("name", "")),
                "LAB_POD_NAMESPACE": str(md.get("namespace", "default")),
                "LAB_POD_UID": str(md.get("uid", "")),
                "LAB_SCRATCH": str(home),
            }
        )
        folder = self.token.folder_for(run_as) if self.token is not None else None
        if folder is not None:
            env[TOKEN_ENV] = str(folder)
        return env

    def _listed_services(self, namespace: str) -> list[Obj]:
        """The namespace's Services through ``lookup`` (an empty name: the collection's list)."""
        listed = self.lookup("services", namespace, "")
        items = (listed or {}).get("items")
        return [s for s in items if isinstance(s, dict)] if isinstance(items, list) else []
