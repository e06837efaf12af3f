"""The lab's timing profiles: how fast its control plane and kubelets give up on things.

Kubernetes waits before it declares a node lost and before it moves pods away from one,
and a crashing container is restarted ever more slowly. Those waits are part of every
recovery time a cluster shows, so the lab runs with Kubernetes' defaults unless told
otherwise:

========================  =============================  =========================  ======
what                      Kubernetes flag or constant    ``kubernetes`` (default)   ``fast``
========================  =============================  =========================  ======
node NotReady             node-monitor-grace-period      40 s without a heartbeat   4 s
node health checked       node-monitor-period            every 5 s                  0.5 s
pods leave a lost node    default-not-ready/unreachable  300 s after the NoExecute  10 s
                          -toleration-seconds            taint
pod GC (force-deletes     gcCheckPeriod, quarantineTime  every 20 s; a deleted      1 s, 5 s
pods no kubelet confirms)                                node's pods after 40 s
CrashLoopBackOff          kubelet back-off               10 s doubling to 300 s     1 s to 10 s
========================  =============================  =========================  ======

``fast`` is for tests that need many faults in little time: every wait is shorter, so
recovery times measured under it flatter the operator, and every run records which
profile its lab ran under (the ConfigMap :data:`CONFIGMAP` in ``kube-system``, which
the harness reads into ``run.json``). ``python -m lab up --timing fast`` picks it;
``HARNESS_LAB_TIMING`` sets the default for ``lab up`` (the test suite sets ``fast``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from lab.errors import LabError

__all__ = [
    "CONFIGMAP",
    "DEFAULT",
    "ENV",
    "FAST",
    "KUBERNETES",
    "PROFILES",
    "Timing",
    "configmap",
    "profile",
    "requested",
]

#: The environment variable that picks ``lab up``'s profile when ``--timing`` is not given.
ENV = "HARNESS_LAB_TIMING"
#: The ConfigMap (in ``kube-system``) where a running lab says which profile it runs under.
CONFIGMAP = "lab-timing"


@dataclass(frozen=True)
class Timing:
    """One profile's waits, in seconds."""

    name: str
    node_monitor_grace: float
    default_toleration_seconds: int
    backoff_base: float
    backoff_max: float
    node_monitor_period: float
    podgc_period: float
    podgc_quarantine: float

    def describe(self) -> str:
        """One line for ``lab status``, reports and the demo."""
        return (
            f"{self.name} (node NotReady after {self.node_monitor_grace:g} s without a heartbeat, "
            f"pods evicted from it {self.default_toleration_seconds} s later, "
            f"pod GC every {self.podgc_period:g} s, CrashLoopBackOff {self.backoff_base:g} s to "
            f"{self.backoff_max:g} s)"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


KUBERNETES = Timing("kubernetes", 40.0, 300, 10.0, 300.0, 5.0, 20.0, 40.0)
FAST = Timing("fast", 4.0, 10, 1.0, 10.0, 0.5, 1.0, 5.0)
PROFILES = {t.name: t for t in (KUBERNETES, FAST)}
DEFAULT = KUBERNETES.name


def profile(name: str) -> Timing:
    """The profile called ``name``; LabError naming the choices otherwise."""
    found = PROFILES.get(str(name).strip().lower())
    if found is None:
        raise LabError(f"unknown lab timing profile {name!r}: use {' or '.join(PROFILES)}")
    return found


def requested(flag: str | None, kept: str | None) -> Timing:
    """``lab up``'s profile: the flag, else ``$HARNESS_LAB_TIMING``, else the kept one, else the default."""
    for value in (flag, os.environ.get(ENV) or None, kept):
        if value:
            return profile(value)
    return PROFILES[DEFAULT]


def configmap(timing: Timing) -> dict[str, Any]:
    """The ConfigMap that tells clients (the harness's ``run.json``) the lab's profile."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP, "namespace": "kube-system"},
        "data": {
            "profile": timing.name,
            "nodeMonitorGracePeriodSeconds": f"{timing.node_monitor_grace:g}",
            "defaultTolerationSeconds": str(timing.default_toleration_seconds),
            "crashLoopBackOffBaseSeconds": f"{timing.backoff_base:g}",
            "crashLoopBackOffMaxSeconds": f"{timing.backoff_max:g}",
            "nodeMonitorPeriodSeconds": f"{timing.node_monitor_period:g}",
            "podGCPeriodSeconds": f"{timing.podgc_period:g}",
            "podGCQuarantineSeconds": f"{timing.podgc_quarantine:g}",
            "description": timing.describe(),
        },
    }
