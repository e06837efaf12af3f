"""PVC binding: every claim of a known StorageClass becomes Bound at once, to a PersistentVolume.

The lab's storage is a folder per claim (``volumes/<namespace>/<claim>/``, made by the
kubelet that mounts it), so provisioning is bookkeeping, as a dynamic provisioner's
would be: a Pending claim gets a PersistentVolume ``pvc-<claim uid>`` (``claimRef`` to
the claim, the requested size as ``capacity``, the claim's access modes and volume
mode, ``storageClassName``, ``persistentVolumeReclaimPolicy`` from the StorageClass
(``Retain`` for the lab's ``lab-local``), ``hostPath`` the claim's folder,
``pv.kubernetes.io/provisioned-by`` the class's provisioner), then ``spec.volumeName``,
the binder's annotations and ``status`` ``phase: Bound`` with its access modes and
capacity; the volume's own phase becomes ``Bound``. Every node's kubelet mounts the
same folder, so the volume has no ``nodeAffinity``. A claim that was bound before
volumes were made gets its volume on the next pass.

A claim without ``storageClassName`` gets the default class (the one annotated
``storageclass.kubernetes.io/is-default-class: "true"``, what the admission plugin does
on a real cluster); a claim naming an unknown class stays Pending. When a bound claim
is gone (no claim with the ``claimRef`` uid), its volume becomes ``Released`` under
``Retain`` (the folder stays) and is deleted under ``Delete`` (the folder still stays:
the lab never removes data).

The folder is ``<volumes_dir>/<namespace>/<claim>``; without ``volumes_dir`` (the
control plane passes it as the ``pvc`` controller's option) the path is written
relative to the lab's cluster folder, ``volumes/<namespace>/<claim>``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from lab.controllers.loop import Obj, format_time, is_terminating, one_object
from lab.kubeclient import ApiError, Kind, KubeClient

__all__ = ["DEFAULT_CLASS_ANNOTATION", "PERSISTENT_VOLUMES", "PROVISIONED_BY", "PvcBindingController"]

log = logging.getLogger(__name__)

DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
PERSISTENT_VOLUMES = Kind("", "v1", "persistentvolumes", namespaced=False)


class PvcBindingController:
    name = "pvc"
    interval = 1.0
    watches: tuple[str, ...] = ("persistentvolumeclaims",)

    def __init__(
        self,
        client: KubeClient,
        clock: Callable[[], float] = time.time,
        volumes_dir: Path | str | None = None,
    ) -> None:
        self.client = client
        self.clock = clock
        self.volumes_dir = Path(volumes_dir) if volumes_dir is not None else None

    def reconcile_once(self) -> None:
        claims = [c for c in self.client.list("persistentvolumeclaims") if not is_terminating(c)]
        volumes = {v["metadata"]["name"]: v for v in self.client.list(PERSISTENT_VOLUMES)}
        pending = [c for c in claims if c.get("status", {}).get("phase", "Pending") == "Pending"]
        bound = [
            c
            for c in claims
            if c.get("status", {}).get("phase") == "Bound"
            and c.get("spec", {}).get("volumeName") not in volumes
        ]
        if pending or bound:
            classes = {c["metadata"]["name"]: c for c in self.client.list("storageclasses")}
            default = next(
                (
                    name
                    for name, sc in sorted(classes.items())
                    if (sc["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
                ),
                None,
            )
            for claim in pending + bound:
                with one_object(self.name, claim):
                    self._bind(claim, classes, default, volumes)
        live = {c["metadata"]["uid"] for c in self.client.list("persistentvolumeclaims")}
        for volume in volumes.values():
            with one_object(self.name, volume):
                self._release(volume, live)

    # -- binding ------------------------------------------------------------------------

    def _folder(self, namespace: str, claim: str) -> str:
        if self.volumes_dir is None:
            return f"volumes/{namespace}/{claim}"
        return str(self.volumes_dir / namespace / claim)

    def _bind(
        self, claim: Obj, classes: dict[str, Obj], default: str | None, volumes: dict[str, Obj]
    ) -> None:
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
        modes = spec.get("accessModes") or ["ReadWriteOnce"]
        if volume not in volumes:
            pv = self._create_volume(claim, volume, sc_name, sc, size, modes)
            if pv is None:
                return
            volumes[volume] = pv
        try:
            if claim.get("status", {}).get("phase") != "Bound":
                self._bind_claim(claim, sc_name, sc, volume, size, modes)
        except ApiError as exc:
            if exc.code not in (404, 409):
                raise
            return
        self._volume_phase(volumes[volume], "Bound")
        log.info("bound claim %s/%s to %s (%s, %s)", ns, name, volume, sc_name, size)

    def _create_volume(
        self, claim: Obj, volume: str, sc_name: str, sc: Obj, size: str, modes: list[str]
    ) -> Obj | None:
        md, spec = claim["metadata"], claim.get("spec", {})
        body: Obj = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": volume, "annotations": {PROVISIONED_BY: sc.get("provisioner", "")}},
            "spec": {
                "accessModes": list(modes),
                "capacity": {"storage": size},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": md["namespace"],
                    "name": md["name"],
                    "uid": md["uid"],
                    "resourceVersion": md.get("resourceVersion", ""),
                },
                "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete",
                "storageClassName": sc_name,
                "volumeMode": spec.get("volumeMode") or "Filesystem",
                "hostPath": {"path": self._folder(md["namespace"], md["name"]), "type": "DirectoryOrCreate"},
            },
        }
        try:
            created: Obj = self.client.create(PERSISTENT_VOLUMES, body)
        except ApiError as exc:
            if exc.code != 409:
                raise
            found = self.client.get_or_none(PERSISTENT_VOLUMES, volume)
            if found is None or (found.get("spec", {}).get("claimRef") or {}).get("uid") != md["uid"]:
                log.info(
                    "claim %s/%s: volume %s exists for another claim", md["namespace"], md["name"], volume
                )
                return None
            return found
        return created

    def _bind_claim(
        self, claim: Obj, sc_name: str, sc: Obj, volume: str, size: str, modes: list[str]
    ) -> None:
        md = claim["metadata"]
        ns, name = md["namespace"], md["name"]
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
            {"status": {"phase": "Bound", "accessModes": list(modes), "capacity": {"storage": size}}},
            ns,
            sub="status",
        )

    # -- volumes whose claim is gone ---------------------------------------------------------

    def _volume_phase(self, volume: Obj, phase: str) -> None:
        if (volume.get("status") or {}).get("phase") == phase:
            return
        status = {"phase": phase, "lastPhaseTransitionTime": format_time(self.clock())}
        try:
            self.client.patch(
                PERSISTENT_VOLUMES, volume["metadata"]["name"], {"status": status}, sub="status"
            )
        except ApiError as exc:
            if exc.code != 404:
                raise
        volume["status"] = status

    def _release(self, volume: Obj, live: set[str]) -> None:
        ref = volume.get("spec", {}).get("claimRef") or {}
        if not ref.get("uid") or ref["uid"] in live or is_terminating(volume):
            return
        if (volume.get("status") or {}).get("phase") not in ("Bound", "Pending"):
            return
        name = volume["metadata"]["name"]
        if volume.get("spec", {}).get("persistentVolumeReclaimPolicy") == "Delete":
            self.client.delete(PERSISTENT_VOLUMES, name)
            log.info("deleted volume %s (claim %s/%s gone)", name, ref.get("namespace"), ref.get("name"))
            return
        self._volume_phase(volume, "Released")
        log.info("volume %s released (claim %s/%s gone)", name, ref.get("namespace"), ref.get("name"))
