"""ControllerRevisions: a StatefulSet's template history, kept as Kubernetes keeps it.

One ``apps/v1`` ControllerRevision per distinct pod template, named as the revision
the StatefulSet controller labels its pods with (``<set>-<hash>``, also the status'
``currentRevision``/``updateRevision``), controlled by the set, labelled with the
template's labels plus ``controller.kubernetes.io/hash``, ``data`` the strategic
merge patch that restores the template (``{"spec": {"template": {..., "$patch":
"replace"}}}``, what ``kubectl rollout undo statefulset`` applies) and ``revision`` a
number. As in ``getStatefulSetRevisions``: a template not seen before gets the next
number; going back to an earlier template bumps that revision's number to the next
one instead of making a new object. Revisions no pod, ``currentRevision`` or
``updateRevision`` uses are deleted, oldest first, beyond ``revisionHistoryLimit``
(default 10).

:class:`RevisionHistory` lists every ControllerRevision once per pass
(:meth:`RevisionHistory.refresh`), then :meth:`RevisionHistory.sync` per set.
"""

from __future__ import annotations

import copy
import logging

from lab.controllers.loop import Obj, controller_ref, owned_by
from lab.kubeclient import ApiError, Kind, KubeClient

__all__ = ["CONTROLLER_REVISIONS", "HASH_LABEL", "RevisionHistory", "revision_data"]

log = logging.getLogger(__name__)

CONTROLLER_REVISIONS = Kind("apps", "v1", "controllerrevisions")
HASH_LABEL = "controller.kubernetes.io/hash"
POD_REVISION_LABEL = "controller-revision-hash"


def revision_data(template: Obj) -> Obj:
    """The patch that puts ``template`` back into a StatefulSet."""
    return {"spec": {"template": {**copy.deepcopy(template), "$patch": "replace"}}}


def _number(rev: Obj) -> int:
    value = rev.get("revision")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class RevisionHistory:
    """The ControllerRevisions of StatefulSets, read once per pass."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self._owned: dict[str, list[Obj]] = {}

    def refresh(self) -> None:
        self._owned = owned_by(self.client.list(CONTROLLER_REVISIONS))

    def sync(self, sts: Obj, revision: str, pods: list[Obj]) -> None:
        """Make ``revision`` (the set's current template) the newest revision; trim the history."""
        md = sts["metadata"]
        ns = md["namespace"]
        history = sorted(self._owned.get(md["uid"], []), key=_number)
        top = max((_number(r) for r in history), default=0)
        found = next((r for r in history if r["metadata"]["name"] == revision), None)
        if found is None:
            created = self._create(sts, revision, top + 1)
            if created is None:
                return
            history.append(created)
        elif _number(found) != top or sum(1 for r in history if _number(r) == top) > 1:
            bump = {
                "metadata": {"resourceVersion": found["metadata"]["resourceVersion"]},
                "revision": top + 1,
            }
            found = self.client.patch(CONTROLLER_REVISIONS, revision, bump, ns)
            history = [found if r["metadata"]["name"] == revision else r for r in history]
            log.info("statefulset %s/%s: revision %s is now number %d", ns, md["name"], revision, top + 1)
        self._owned[md["uid"]] = history
        self._trim(sts, revision, pods, history)

    def _create(self, sts: Obj, revision: str, number: int) -> Obj | None:
        md = sts["metadata"]
        template = sts.get("spec", {}).get("template") or {}
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        labels[HASH_LABEL] = revision.rpartition("-")[2]
        body: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": revision,
                "namespace": md["namespace"],
                "labels": labels,
                "ownerReferences": [controller_ref(sts)],
            },
            "data": revision_data(template),
            "revision": number,
        }
        try:
            created: Obj = self.client.create(CONTROLLER_REVISIONS, body, md["namespace"])
        except ApiError as exc:
            if exc.code in (403, 404, 409):
                log.info(
                    "statefulset %s/%s: revision %s not recorded: %s",
                    md["namespace"],
                    md["name"],
                    revision,
                    exc,
                )
                return None
            raise
        log.info("statefulset %s/%s: revision %s (%d)", md["namespace"], md["name"], revision, number)
        return created

    def _trim(self, sts: Obj, revision: str, pods: list[Obj], history: list[Obj]) -> None:
        limit = sts.get("spec", {}).get("revisionHistoryLimit")
        limit = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0 else 10
        live = {revision, (sts.get("status") or {}).get("currentRevision")}
        live |= {(p["metadata"].get("labels") or {}).get(POD_REVISION_LABEL) for p in pods}
        old = [r for r in sorted(history, key=_number) if r["metadata"]["name"] not in live]
        for rev in old[: max(0, len(old) - limit)]:
            try:
                self.client.delete(
                    CONTROLLER_REVISIONS, rev["metadata"]["name"], sts["metadata"]["namespace"]
                )
            except ApiError as exc:
                if exc.code != 409:
                    raise
