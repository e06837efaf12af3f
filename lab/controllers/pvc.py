"""PVC binding: every claim of a known StorageClass becomes Bound at once.

The lab's storage is a folder per claim (``volumes/<namespace>/<claim>/``, made by the
kubelet that mounts it), so there is nothing to provision and no PersistentVolume
object: a Pending claim gets ``spec.volumeName`` ``pvc-<uid>``, the binder's
annotations, and ``status`` ``phase: Bound`` with its access modes and capacity (the
requested size). A claim without ``storageClassName`` gets the default class (the one
annotated ``storageclass.kubernetes.io/is-default-class: "true"``, what the admission
plugin does on a real cluster); a claim naming an unknown class stays Pending.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from lab.controllers.loop import Obj, is_terminating
from lab.kubeclient import ApiError, KubeClient

__all__ = ["DEFAULT_CLASS_ANNOTATION", "PvcBindingController"]

log = logging.getLogger(__name__)

DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


class PvcBindingController:
    name = "pvc"
    interval = 1.0
    watches: tuple[str, ...] = ("persistentvolumeclaims",)

    def __init__(self, client: KubeClient, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock

    def reconcile_once(self) -> None:
        pending = [
            c
            for c in self.client.list("persistentvolumeclaims")
            if c.get("status", {}).get("phase", "Pending") == "Pending" and not is_terminating(c)
        ]
        if not pending:
            return
        classes = {c["metadata"]["name"]: c for c in self.client.list("storageclasses")}
        default = next(
            (
                name
                for name, sc in sorted(classes.items())
                if (sc["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
            ),
            None,
        )
        for claim in pending:
            try:
                self._bind(claim, classes, default)
            except ApiError as exc:
                if exc.code not in (404, 409):
                    raise

    def _bind(self, claim: Obj, classes: dict[str, Obj], default: str | None) -> None:
        md, spec = claim["metadata"], claim.get("spec", {})
        ns, name = md["namespace"], md["name"]
        sc_name = spec.get("storageClassName")
        if sc_name is None:
            if default is None:
                return
            sc_name = default
        sc = classes.get(sc_name)
        if sc is None:
            return
        volume = spec.get("volumeName") or f"pvc-{md['uid']}"
        size = spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")
        self.client.patch(
            "persistentvolumeclaims",
            name,
            {
                "metadata": {
                    "resourceVersion": md["resourceVersion"],
                    "annotations": {
                        "pv.kubernetes.io/bind-completed": "yes",
                        "pv.kubernetes.io/bound-by-controller": "yes",
                        "volume.kubernetes.io/storage-provisioner": sc.get("provisioner", ""),
                        "volume.beta.kubernetes.io/storage-provisioner": sc.get("provisioner", ""),
                    },
                },
                "spec": {"storageClassName": sc_name, "volumeName": volume},
            },
            ns,
        )
        self.client.patch(
            "persistentvolumeclaims",
            name,
            {
                "status": {
                    "phase": "Bound",
                    "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                    "capacity": {"storage": size},
                }
            },
            ns,
            sub="status",
        )
        log.info("bound claim %s/%s (%s, %s)", ns, name, sc_name, size)
