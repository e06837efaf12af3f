"""The lab's controllers: scheduler, node lifecycle, workloads, PVC binding, endpoints, service accounts.

They are ordinary API clients (:class:`~lab.kubeclient.KubeClient` over HTTP), run by
:class:`ControllerManager` in threads of the control-plane process
(``python -m lab.controlplane``). Each controller is level-triggered: one
``reconcile_once`` pass lists what it needs and repairs every difference; a pass
runs every ``interval`` seconds (0.5 s for the scheduler and node lifecycle, 1 s
for the others) and within milliseconds of a watch event on a kind it cares about.
Every object a controller creates carries a controller ownerReference, except
StatefulSet claims under the default ``Retain`` policy, PersistentVolumes and
Endpoints (as in Kubernetes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from lab.controllers.cronjob import CronJobController
from lab.controllers.deployment import DeploymentController
from lab.controllers.endpoints import EndpointsController
from lab.controllers.job import JobController
from lab.controllers.loop import Controller, Loop, Watcher
from lab.controllers.nodelifecycle import NodeLifecycleController
from lab.controllers.podgc import PodGCController
from lab.controllers.pvc import PvcBindingController
from lab.controllers.replicaset import ReplicaSetController
from lab.controllers.scheduler import SchedulerController
from lab.controllers.serviceaccounts import ServiceAccountsController
from lab.controllers.statefulset import StatefulSetController
from lab.controllers.taints import TaintEvictionController
from lab.errors import LabError
from lab.kubeclient import KubeClient, user_agent

__all__ = ["CONTROLLERS", "ControllerManager"]

log = logging.getLogger(__name__)
_AGENT = user_agent("lab-controller-manager")  # the field manager of what the controllers write

CONTROLLERS: dict[str, Callable[..., Controller]] = {
    "scheduler": SchedulerController,
    "nodelifecycle": NodeLifecycleController,
    "taint-eviction": TaintEvictionController,
    "podgc": PodGCController,
    "pvc": PvcBindingController,
    "replicaset": ReplicaSetController,
    "deployment": DeploymentController,
    "statefulset": StatefulSetController,
    "job": JobController,
    "cronjob": CronJobController,
    "endpoints": EndpointsController,
    "serviceaccount": ServiceAccountsController,
}


class ControllerManager:
    """Start every controller (minus ``disable``) against ``server``; :meth:`stop` ends them all."""

    def __init__(
        self,
        server: str,
        disable: Iterable[str] = (),
        token: str = "",
        options: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        ca_pem: bytes | None = None,
        tokens: Mapping[str, str] | None = None,
    ) -> None:
        """``options``: keyword arguments per controller name (e.g. the node lifecycle's ``timeout``).

        ``token`` is the controllers' credential (``system:kube-controller-manager`` in the lab),
        ``tokens`` a different one per controller name (the scheduler's own identity), ``ca_pem``
        the CA an ``https://`` server is trusted by.
        """
        unknown = sorted(set(disable) - set(CONTROLLERS))
        if unknown:
            raise LabError(
                f"unknown controller(s) {', '.join(unknown)}: choose from {', '.join(CONTROLLERS)}"
            )
        self.server = server
        self.token = token
        self.stop_event = threading.Event()
        self.ca_pem = ca_pem

        def client(name: str | None = None) -> KubeClient:
            credential = (tokens or {}).get(name or "", token)
            return KubeClient(server, credential, user_agent=_AGENT, ca_pem=ca_pem)

        self.controllers: dict[str, Controller] = {
            name: factory(client(name), **dict((options or {}).get(name, {})))
            for name, factory in CONTROLLERS.items()
            if name not in disable
        }
        self.loops: dict[str, Loop] = {
            name: Loop(name, c.reconcile_once, c.interval, self.stop_event)
            for name, c in self.controllers.items()
        }
        interested: dict[str, list[Loop]] = {}
        for name, c in self.controllers.items():
            for kind in c.watches:
                interested.setdefault(kind, []).append(self.loops[name])
        self.watchers = [
            Watcher(client(), kind, loops, self.stop_event) for kind, loops in interested.items()
        ]

    def start(self) -> None:
        for watcher in self.watchers:
            watcher.start()
        for loop in self.loops.values():
            loop.start()
        log.info("controllers running: %s", ", ".join(self.loops))

    def signal_stop(self) -> None:
        """Ask every loop and watch to end (they finish their current request first)."""
        self.stop_event.set()
        for loop in self.loops.values():
            loop.wake()

    def join(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        for loop in self.loops.values():
            loop.join(max(0.0, deadline - time.monotonic()))
        for watcher in self.watchers:
            watcher.join(max(0.0, deadline - time.monotonic()))

    def stop(self, timeout: float = 5.0) -> None:
        self.signal_stop()
        self.join(timeout)
