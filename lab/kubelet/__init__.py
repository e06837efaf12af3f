"""The lab's kubelet: one process per node that runs the pods bound to it as local process trees.

``python -m lab.kubelet --node NAME --kubeconfig FILE --state DIR`` registers the Node,
heartbeats every second, watches pods with ``spec.nodeName=NAME`` and runs each
container as a process tree in its own session. The kubeconfig is the kubelet's own
credential (``system:node:NAME``) and the CA it trusts (:mod:`lab.kubelet.credentials`);
``--server URL`` instead is for bare test servers. The image name picks the program
(:mod:`lab.kubelet.images`): ``mssql-lab/engine`` is a real PostgreSQL server,
``mssql-lab/operator`` and ``mssql-lab/executor`` are this project's Python entry
points, anything else runs its ``command``/``args`` as host commands, as an unprivileged
user (``nobody`` unless the ``securityContext`` names one, :mod:`lab.kubelet.run_as`).
Each pod gets its service-account token as Kubernetes projects it
(:mod:`lab.kubelet.sa_token`), in the folder ``LAB_SERVICEACCOUNT_DIR`` names.

What the caller must know:

* The kubelet is a child subreaper: every process of every pod stays its
  descendant, so killing the kubelet's tree is a node crash. A kubelet that starts
  first kills whatever its previous incarnation left running (recorded under
  ``<state>/containers/``), then runs its pods again: same volumes, same data.
* Graceful deletion: SIGTERM to each container's main process, wait the pod's
  ``deletionGracePeriodSeconds``, SIGKILL every process of the container, then
  confirm with ``DELETE gracePeriodSeconds=0`` (uid precondition).
* Output goes to ``<logs>/<namespace>_<pod>.log`` (one file per pod; pods with
  several containers, and every init container, get ``<namespace>_<pod>_<container>.log``)
  in CRI's format, one timestamped line at a time (:mod:`lab.kubelet.container_log`),
  which the API server serves as ``pods/log``. A file rotates at 10 MiB; a restart keeps
  the last run's as ``.previous``; a deleted or replaced pod's file moves to
  ``<logs>/previous/``.
* Lab knob, a planted memory leak: a pod annotated
  ``lab.mssql.example.com/memory-leak: "<bytes per second>"`` (e.g. ``"1Mi"``) gets one more
  process in its tree whose resident memory grows at that rate up to 512 MiB, without a
  restart of the pod; a malformed value is a Warning Event and no leak
  (:mod:`lab.kubelet.memory_leak`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.kubelet.config import KubeletConfig
    from lab.kubelet.kubelet import Kubelet

__all__ = ["Kubelet", "KubeletConfig"]


def __getattr__(name: str) -> Any:
    # Lazy, so the engine image's entry point (a module of this package) starts fast.
    if name == "Kubelet":
        from lab.kubelet.kubelet import Kubelet

        return Kubelet
    if name == "KubeletConfig":
        from lab.kubelet.config import KubeletConfig

        return KubeletConfig
    raise AttributeError(name)
