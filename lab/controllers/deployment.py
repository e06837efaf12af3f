"""Deployments: one ReplicaSet per pod template, rolled like the real controller.

The current ReplicaSet is ``<deployment>-<hash>`` where the hash is taken over the pod
template (also the ``pod-template-hash`` label on the set, its selector and its pods).
A template change (``kubectl rollout restart`` sets an annotation) makes a new set:

* ``RollingUpdate``: the new set grows while the total stays within
  ``replicas + maxSurge``; old sets shrink while the available pods stay at least
  ``replicas - maxUnavailable`` (unavailable old pods may always go). Percentages
  round surge up and unavailability down, as in Kubernetes (25 %/25 % of 1 replica
  is surge 1, unavailable 0).
* ``Recreate``: old sets go to 0 first; the new set grows once their pods are gone.

A step is taken only when every set's ``observedGeneration`` is current, so counts
are never stale. Old sets beyond ``revisionHistoryLimit`` are deleted once empty.
Revisions are kept in ``deployment.kubernetes.io/revision`` annotations (``kubectl
rollout undo`` puts an old template back: its set is reused, renumbered, its earlier
numbers in ``deployment.kubernetes.io/revision-history``), and the
status carries what ``kubectl rollout status`` reads: ``observedGeneration``,
``replicas``, ``updatedReplicas``, ``readyReplicas``, ``availableReplicas``,
``unavailableReplicas`` and the ``Available``/``Progressing`` conditions
(``NewReplicaSetAvailable`` when the rollout is complete).

Every change of a set's size is a Normal Event ``ScalingReplicaSet`` on the Deployment
(component ``deployment-controller``): "Scaled up replica set <set> from 0 to 3",
"Scaled down replica set <set> from 3 to 2", as Kubernetes 1.32 words it.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from lab.controllers.loop import (
    Obj,
    controller_ref,
    delete_with_propagation,
    format_time,
    is_terminating,
    one_object,
    owned_by,
    template_hash,
)
from lab.events import record
from lab.kubeclient import ApiError, KubeClient

__all__ = ["DeploymentController", "resolve_rolling"]

log = logging.getLogger(__name__)

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
HASH_LABEL = "pod-template-hash"
COMPONENT = "deployment-controller"


def _scaled(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        try:
            fraction = float(value[:-1]) / 100.0
        except ValueError:
            return 0
        exact = fraction * total
        return math.ceil(exact) if round_up else math.floor(exact)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def resolve_rolling(strategy: Obj, replicas: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as pod counts for ``replicas``; never both 0."""
    rolling = strategy.get("rollingUpdate") or {}
    surge = _scaled(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = _scaled(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _revision(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _spec_replicas(rs: Obj) -> int:
    return int(rs.get("spec", {}).get("replicas", 0))


def _status_int(rs: Obj, field: str) -> int:
    return int((rs.get("status") or {}).get(field) or 0)


class DeploymentController:
    name = "deployment"
    interval = 1.0
    watches: tuple[str, ...] = ("deployments", "replicasets")

    def __init__(self, client: KubeClient, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock
        self._current: Obj | None = None

    def reconcile_once(self) -> None:
        deployments = self.client.list("deployments")
        if not deployments:
            return
        sets = owned_by(self.client.list("replicasets"))
        for dep in deployments:
            if is_terminating(dep):
                continue
            owned = [rs for rs in sets.get(dep["metadata"]["uid"], []) if not is_terminating(rs)]
            with one_object(self.name, dep, self.client):
                self._sync(dep, owned)

    # -- one deployment ------------------------------------------------------------------

    def _sync(self, dep: Obj, sets: list[Obj]) -> None:
        self._current = dep
        spec = dep.get("spec", {})
        replicas = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        digest = template_hash(template)
        new = next(
            (rs for rs in sets if (rs["metadata"].get("labels") or {}).get(HASH_LABEL) == digest), None
        )
        olds = [rs for rs in sets if rs is not new]
        synced = all(
            int((rs.get("status") or {}).get("observedGeneration") or 0)
            >= int(rs["metadata"].get("generation", 1))
            for rs in sets
        )
        strategy = spec.get("strategy") or {}
        recreate = strategy.get("type") == "Recreate"
        if not spec.get("paused") and synced:
            if new is None:
                if recreate:
                    initial = (
                        0 if any(_spec_replicas(o) or _status_int(o, "replicas") for o in olds) else replicas
                    )
                else:
                    surge, _ = resolve_rolling(strategy, replicas)
                    initial = max(0, min(replicas, replicas + surge - sum(_spec_replicas(o) for o in olds)))
                new = self._create_set(dep, template, digest, olds, initial)
            if new is not None:
                self._ensure_revision(new, olds)
                if recreate:
                    self._recreate(new, olds, replicas)
                else:
                    self._roll(new, olds, replicas, strategy)
            self._cleanup(dep, olds)
        self._status(dep, new, [s for s in [new, *olds] if s is not None], replicas, strategy)

    def _create_set(self, dep: Obj, template: Obj, digest: str, olds: list[Obj], replicas: int) -> Obj | None:
        md, spec = dep["metadata"], dep.get("spec", {})
        tpl = copy.deepcopy(template)
        tpl.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = digest
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = digest
        revision = max([_revision(o) for o in olds] + [0]) + 1
        body: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{md['name']}-{digest}",
                "namespace": md["namespace"],
                "labels": dict(tpl["metadata"]["labels"]),
                "annotations": {
                    REVISION: str(revision),
                    "deployment.kubernetes.io/desired-replicas": str(spec.get("replicas", 1)),
                },
                "ownerReferences": [controller_ref(dep)],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                "selector": selector,
                "template": tpl,
            },
        }
        try:
            created: Obj = self.client.create("replicasets", body, md["namespace"])
        except ApiError as exc:
            if exc.code in (403, 404, 409):
                log.info(
                    "deployment %s/%s cannot create its ReplicaSet: %s", md["namespace"], md["name"], exc
                )
                return None
            raise
        if replicas > 0:
            self._scaled(body["metadata"]["name"], 0, replicas)
        log.info(
            "deployment %s/%s: new ReplicaSet %s (revision %d)",
            md["namespace"],
            md["name"],
            body["metadata"]["name"],
            revision,
        )
        return created

    def _ensure_revision(self, new: Obj, olds: list[Obj]) -> None:
        top = max([_revision(o) for o in olds] + [0])
        if _revision(new) > top:
            return
        value = str(top + 1)
        annotations = {REVISION: value}
        previous = (new["metadata"].get("annotations") or {}).get(REVISION)
        if previous:  # a set taken back (rollout undo) keeps its earlier numbers, as Kubernetes does
            history = (new["metadata"].get("annotations") or {}).get(REVISION_HISTORY)
            annotations[REVISION_HISTORY] = f"{history},{previous}" if history else previous
        self.client.patch(
            "replicasets",
            new["metadata"]["name"],
            {"metadata": {"annotations": annotations}},
            new["metadata"]["namespace"],
        )
        new["metadata"].setdefault("annotations", {}).update(annotations)

    def _scale(self, rs: Obj, replicas: int) -> None:
        before = _spec_replicas(rs)
        if before == replicas:
            return
        self.client.patch(
            "replicasets",
            rs["metadata"]["name"],
            {"spec": {"replicas": replicas}},
            rs["metadata"]["namespace"],
        )
        rs.setdefault("spec", {})["replicas"] = replicas
        self._scaled(rs["metadata"]["name"], before, replicas)

    def _scaled(self, set_name: str, before: int, after: int) -> None:
        """The ScalingReplicaSet Event on the Deployment being synced."""
        if self._current is None:
            return
        way = "up" if after > before else "down"
        record(
            self.client,
            self._current,
            "ScalingReplicaSet",
            f"Scaled {way} replica set {set_name} from {before} to {after}",
            component=COMPONENT,
        )

    def _recreate(self, new: Obj, olds: list[Obj], replicas: int) -> None:
        for old in olds:
            self._scale(old, 0)
        if all(_status_int(o, "replicas") == 0 for o in olds):
            self._scale(new, replicas)

    def _roll(self, new: Obj, olds: list[Obj], replicas: int, strategy: Obj) -> None:
        surge, unavailable = resolve_rolling(strategy, replicas)
        total = _spec_replicas(new) + sum(_spec_replicas(o) for o in olds)
        if _spec_replicas(new) > replicas:
            self._scale(new, replicas)
        elif _spec_replicas(new) < replicas:
            room = min(replicas + surge - total, replicas - _spec_replicas(new))
            if room > 0:
                self._scale(new, _spec_replicas(new) + room)
        available = sum(_status_int(rs, "availableReplicas") for rs in [new, *olds])
        budget = max(0, available - (replicas - unavailable))
        for old in sorted(olds, key=_revision):
            size = _spec_replicas(old)
            if size == 0:
                continue
            unhealthy = max(0, size - _status_int(old, "availableReplicas"))
            cut = min(size, unhealthy + budget)
            budget -= max(0, cut - unhealthy)
            if cut:
                self._scale(old, size - cut)

    def _cleanup(self, dep: Obj, olds: list[Obj]) -> None:
        limit = int(dep.get("spec", {}).get("revisionHistoryLimit", 10))
        empty = [o for o in olds if _spec_replicas(o) == 0 and _status_int(o, "replicas") == 0]
        empty.sort(key=_revision)
        for old in empty[: max(0, len(empty) - limit)]:
            delete_with_propagation(
                self.client, "replicasets", old["metadata"]["name"], old["metadata"]["namespace"]
            )

    # -- status ----------------------------------------------------------------------------

    def _status(self, dep: Obj, new: Obj | None, sets: list[Obj], replicas: int, strategy: Obj) -> None:
        md = dep["metadata"]
        current = dep.get("status") or {}
        total_spec = sum(_spec_replicas(rs) for rs in sets)
        available = sum(_status_int(rs, "availableReplicas") for rs in sets)
        status: Obj = {
            "observedGeneration": md.get("generation", 1),
            "replicas": sum(_status_int(rs, "replicas") for rs in sets),
            "updatedReplicas": _status_int(new, "replicas") if new is not None else 0,
            "readyReplicas": sum(_status_int(rs, "readyReplicas") for rs in sets),
            "availableReplicas": available,
            "unavailableReplicas": max(0, total_spec - available),
        }
        _, unavailable = resolve_rolling(strategy, replicas)
        if strategy.get("type") == "Recreate":
            unavailable = replicas
        complete = (
            new is not None
            and status["updatedReplicas"] == replicas
            and status["replicas"] == replicas
            and available >= replicas
        )
        wanted = {
            "Available": (
                ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
                if available >= replicas - unavailable
                else ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
            ),
            "Progressing": (
                (
                    "True",
                    "NewReplicaSetAvailable",
                    f'ReplicaSet "{new["metadata"]["name"]}" has successfully progressed.',
                )
                if complete and new is not None
                else (
                    "True",
                    "ReplicaSetUpdated",
                    f'ReplicaSet "{new["metadata"]["name"] if new else md["name"]}" is progressing.',
                )
            ),
        }
        stamp = format_time(self.clock())
        old_conditions = {c.get("type"): c for c in current.get("conditions") or [] if isinstance(c, dict)}
        conditions = []
        for ctype, (value, reason, message) in wanted.items():
            old = old_conditions.get(ctype) or {}
            same = (
                old.get("status") == value and old.get("reason") == reason and old.get("message") == message
            )
            conditions.append(
                {
                    "type": ctype,
                    "status": value,
                    "reason": reason,
                    "message": message,
                    "lastUpdateTime": old.get("lastUpdateTime", stamp) if same else stamp,
                    "lastTransitionTime": (
                        old.get("lastTransitionTime", stamp) if old.get("status") == value else stamp
                    ),
                }
            )
        status["conditions"] = conditions
        if new is not None and (md.get("annotations") or {}).get(REVISION) != str(_revision(new)):
            self.client.patch(
                "deployments",
                md["name"],
                {"metadata": {"annotations": {REVISION: str(_revision(new))}}},
                md["namespace"],
            )
        if all(current.get(k, 0 if k != "conditions" else None) == v for k, v in status.items()):
            return
        try:
            self.client.patch("deployments", md["name"], {"status": status}, md["namespace"], sub="status")
        except ApiError as exc:
            if exc.code != 404:
                raise
