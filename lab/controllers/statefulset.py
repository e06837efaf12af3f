"""StatefulSets: stable pod names ``<set>-<ordinal>``, one PVC per ordinal and template.

For each ordinal below ``spec.replicas`` the controller makes sure the claims
``<template>-<set>-<ordinal>`` exist (created before the pod; a claim is never
deleted here), then the pod ``<set>-<ordinal>`` (hostname = pod name, subdomain =
``serviceName``, each claim template mounted as a ``persistentVolumeClaim`` volume,
labels ``statefulset.kubernetes.io/pod-name``, ``apps.kubernetes.io/pod-index`` and
``controller-revision-hash``). A deleted pod is recreated under the same name once
the old one is really gone; a finished (Failed/Succeeded) pod is deleted to be
recreated. ``OrderedReady`` (the default) creates ordinals one at a time, each after
the previous is Running and Ready, and removes surplus ordinals highest first;
``Parallel`` does all at once. ``RollingUpdate`` replaces pods whose revision is
stale, highest ordinal first, one at a time, only while the others are Ready
(``partition`` honoured); ``OnDelete`` waits for someone to delete them.

Claims are not owned by the set unless ``persistentVolumeClaimRetentionPolicy.
whenDeleted`` is ``Delete`` (Kubernetes' default is ``Retain``); then they carry a
controller ownerReference to the set and are collected with it. Either way the data
folder stays on disk. Status: ``replicas``, ``readyReplicas``, ``currentReplicas``,
``updatedReplicas``, ``availableReplicas``, ``currentRevision``, ``updateRevision``,
``observedGeneration``. Each template is recorded as a ControllerRevision named as its
revision (:mod:`lab.controllers.revisions`) before pods are made from it.

Events on the set, in the StatefulSet controller's words (component
``statefulset-controller``): ``SuccessfulCreate`` "create Claim <claim> Pod <pod> in
StatefulSet <set> success" and "create Pod <pod> in StatefulSet <set> successful",
``SuccessfulDelete`` "delete Pod <pod> in StatefulSet <set> successful", and Warnings
``FailedCreate`` "create Pod <pod> in StatefulSet <set> failed error: <why>".
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable

from lab.controllers.loop import (
    Obj,
    controller_ref,
    is_pod_ready,
    is_terminating,
    new_pod,
    one_object,
    owned_by,
    pod_available,
    template_hash,
)
from lab.controllers.revisions import RevisionHistory
from lab.events import record
from lab.kubeclient import ApiError, KubeClient

__all__ = ["StatefulSetController", "claim_name"]

log = logging.getLogger(__name__)

REVISION_LABEL = "controller-revision-hash"
COMPONENT = "statefulset-controller"


def claim_name(template: str, set_name: str, ordinal: int) -> str:
    return f"{template}-{set_name}-{ordinal}"


def _ordinal(set_name: str, pod: Obj) -> int | None:
    name = pod["metadata"]["name"]
    prefix, _, tail = name.rpartition("-")
    if prefix != set_name or not tail.isdigit():
        return None
    return int(tail)


def _running_ready(pod: Obj) -> bool:
    return pod.get("status", {}).get("phase") == "Running" and is_pod_ready(pod) and not is_terminating(pod)


class StatefulSetController:
    name = "statefulset"
    interval = 1.0
    watches: tuple[str, ...] = ("pods", "statefulsets", "persistentvolumeclaims")

    def __init__(self, client: KubeClient, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock
        self.history = RevisionHistory(client)

    def reconcile_once(self) -> None:
        sets = self.client.list("statefulsets")
        if not sets:
            return
        self.history.refresh()
        pods = owned_by(self.client.list("pods"))
        claims = {
            (c["metadata"]["namespace"], c["metadata"]["name"])
            for c in self.client.list("persistentvolumeclaims")
        }
        for sts in sets:
            if is_terminating(sts):
                continue
            with one_object(self.name, sts, self.client):
                self._sync(sts, pods.get(sts["metadata"]["uid"], []), claims)

    def _sync(self, sts: Obj, pods: list[Obj], claims: set[tuple[str, str]]) -> None:
        md, spec = sts["metadata"], sts.get("spec", {})
        name = md["name"]
        replicas = int(spec.get("replicas", 1))
        revision = f"{name}-{template_hash(spec.get('template') or {})}"
        self.history.sync(sts, revision, pods)
        parallel = spec.get("podManagementPolicy") == "Parallel"
        by_ordinal: dict[int, Obj] = {}
        for owned in pods:
            index = _ordinal(name, owned)
            if index is not None:
                by_ordinal[index] = owned
        for ordinal in range(replicas):
            pod = by_ordinal.get(ordinal)
            if pod is None:
                if not self._create(sts, ordinal, revision, claims):
                    break
                if not parallel:
                    break
                continue
            if not is_terminating(pod) and pod.get("status", {}).get("phase") in ("Failed", "Succeeded"):
                self._delete_pod(sts, pod)
                if not parallel:
                    break
                continue
            if not parallel and not _running_ready(pod):
                break
        condemned = sorted((o for o in by_ordinal if o >= replicas), reverse=True)
        for ordinal in condemned:
            pod = by_ordinal[ordinal]
            if not is_terminating(pod):
                self._delete_pod(sts, pod)
            if not parallel:
                break
        self._roll(sts, by_ordinal, replicas, revision)
        self._status(sts, by_ordinal, replicas, revision)

    def _create(self, sts: Obj, ordinal: int, revision: str, claims: set[tuple[str, str]]) -> bool:
        md, spec = sts["metadata"], sts.get("spec", {})
        ns, name = md["namespace"], md["name"]
        owned_claims = (spec.get("persistentVolumeClaimRetentionPolicy") or {}).get("whenDeleted") == "Delete"
        selector_labels = (spec.get("selector") or {}).get("matchLabels") or {}
        volumes = []
        for tpl in spec.get("volumeClaimTemplates") or []:
            tname = tpl["metadata"]["name"]
            cname = claim_name(tname, name, ordinal)
            volumes.append({"name": tname, "persistentVolumeClaim": {"claimName": cname}})
            if (ns, cname) in claims:
                continue
            claim: Obj = {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {
                    "name": cname,
                    "namespace": ns,
                    "labels": {**selector_labels, **(tpl["metadata"].get("labels") or {})},
                },
                "spec": copy.deepcopy(tpl.get("spec") or {}),
            }
            if tpl["metadata"].get("annotations"):
                claim["metadata"]["annotations"] = dict(tpl["metadata"]["annotations"])
            if owned_claims:
                claim["metadata"]["ownerReferences"] = [controller_ref(sts)]
            try:
                self.client.create("persistentvolumeclaims", claim, ns)
            except ApiError as exc:
                if exc.code == 409:
                    continue
                record(
                    self.client,
                    sts,
                    "FailedCreate",
                    f"create Claim {cname} for Pod {name}-{ordinal} in StatefulSet {name} "
                    f"failed error: {exc}",
                    type="Warning",
                    component=COMPONENT,
                )
                if exc.code in (403, 404):
                    return False
                raise
            claims.add((ns, cname))
            record(
                self.client,
                sts,
                "SuccessfulCreate",
                f"create Claim {cname} Pod {name}-{ordinal} in StatefulSet {name} success",
                component=COMPONENT,
            )
        pod_name = f"{name}-{ordinal}"
        pod = new_pod(
            spec.get("template") or {},
            sts,
            name=pod_name,
            labels={
                "statefulset.kubernetes.io/pod-name": pod_name,
                "apps.kubernetes.io/pod-index": str(ordinal),
                REVISION_LABEL: revision,
            },
        )
        pod_spec = pod["spec"]
        pod_spec["hostname"] = pod_name
        if spec.get("serviceName"):
            pod_spec["subdomain"] = spec["serviceName"]
        names = {v["name"] for v in volumes}
        pod_spec["volumes"] = [
            v for v in pod_spec.get("volumes") or [] if v.get("name") not in names
        ] + volumes
        try:
            self.client.create("pods", pod, ns)
        except ApiError as exc:
            if exc.code != 409:  # 409: the old pod is still there, not a failure
                record(
                    self.client,
                    sts,
                    "FailedCreate",
                    f"create Pod {pod_name} in StatefulSet {name} failed error: {exc}",
                    type="Warning",
                    component=COMPONENT,
                )
            if exc.code in (403, 404, 409):  # namespace going away, or the old pod is still there
                return False
            raise
        log.info("statefulset %s/%s: created pod %s", ns, name, pod_name)
        record(
            self.client,
            sts,
            "SuccessfulCreate",
            f"create Pod {pod_name} in StatefulSet {name} successful",
            component=COMPONENT,
        )
        return True

    def _delete_pod(self, sts: Obj, pod: Obj) -> None:
        name, set_name = pod["metadata"]["name"], sts["metadata"]["name"]
        if self.client.delete("pods", name, sts["metadata"]["namespace"]) is not None:
            record(
                self.client,
                sts,
                "SuccessfulDelete",
                f"delete Pod {name} in StatefulSet {set_name} successful",
                component=COMPONENT,
            )

    def _roll(self, sts: Obj, by_ordinal: dict[int, Obj], replicas: int, revision: str) -> None:
        strategy = sts.get("spec", {}).get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        live = {o: p for o, p in by_ordinal.items() if o < replicas}
        if any(is_terminating(p) for p in live.values()) or len(live) < replicas:
            return
        stale = [
            o
            for o, p in live.items()
            if o >= partition and (p["metadata"].get("labels") or {}).get(REVISION_LABEL) != revision
        ]
        if not stale:
            return
        target = max(stale)
        if all(_running_ready(p) for o, p in live.items() if o != target):
            self._delete_pod(sts, live[target])
            log.info(
                "statefulset %s/%s: replacing %s (stale revision)",
                sts["metadata"]["namespace"],
                sts["metadata"]["name"],
                live[target]["metadata"]["name"],
            )

    def _status(self, sts: Obj, by_ordinal: dict[int, Obj], replicas: int, revision: str) -> None:
        md, spec = sts["metadata"], sts.get("spec", {})
        current = sts.get("status") or {}
        now = self.clock()
        pods = [p for p in by_ordinal.values() if not is_terminating(p)]
        updated = [p for p in pods if (p["metadata"].get("labels") or {}).get(REVISION_LABEL) == revision]
        ready = sum(1 for p in pods if is_pod_ready(p))
        current_revision = current.get("currentRevision") or revision
        if len(updated) == replicas == len(pods) and all(is_pod_ready(p) for p in updated):
            current_revision = revision
        at_current = [
            p for p in pods if (p["metadata"].get("labels") or {}).get(REVISION_LABEL) == current_revision
        ]
        status = {
            "observedGeneration": md.get("generation", 1),
            "replicas": len(pods),
            "readyReplicas": ready,
            "currentReplicas": len(at_current),
            "updatedReplicas": len(updated),
            "availableReplicas": sum(
                1 for p in pods if pod_available(p, int(spec.get("minReadySeconds") or 0), now)
            ),
            "currentRevision": current_revision,
            "updateRevision": revision,
            "collisionCount": 0,
        }
        if all(current.get(k) == v for k, v in status.items()):
            return
        try:
            self.client.patch("statefulsets", md["name"], {"status": status}, md["namespace"], sub="status")
        except ApiError as exc:
            if exc.code != 404:
                raise
