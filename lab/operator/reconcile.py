"""The lab operator's reconcile pass: MSSQLInstance -> Secret, Service, StatefulSet, status.

:meth:`Reconciler.reconcile_all` lists the instances (every namespace) and, only if
there are any, the operator's pods, Secrets, Services and StatefulSets (by label),
then for each instance:

1. the port: ``spec.port`` if set, else the one recorded in the annotation
   ``mssql.example.com/port`` (kept for the life of the instance, across pod restarts),
   else the lowest free loopback port of the lab's block not claimed by another
   instance, recorded in the annotation (a patch carrying the resourceVersion, so two
   operators cannot both pick). The lab's id and block come from the ConfigMap
   ``kube-system/lab-identity`` (:mod:`lab.operator.lab_identity`); without it (a real
   cluster) the block is :data:`PORT_RANGE`, and when it cannot be read no instance is
   reconciled (``ReconcileError`` naming the fix). A recorded port outside the lab's
   block (the lab came back with another block) is replaced by one inside it;
2. the objects of :mod:`lab.operator.objects`, created when missing and the Service
   and StatefulSet updated (PUT) when what the operator wants changed;
3. the status, patched when anything but the heartbeat changed, and at least every
   :data:`HEARTBEAT` seconds: ``phase`` (Pending: no scheduled pod yet; Provisioning:
   scheduled, never Ready; Ready: pod Ready; Degraded: was Ready, is not), a ``Ready``
   condition that follows the pod's, ``endpoint`` ``127.0.0.1:<port>``, ``port``,
   ``database``, ``credentialsSecret``, ``observedGeneration``, ``lastReconcileTime``
   and ``observedCanary`` (the echo of ``spec.canary``). An instance marked
   ``mssql.example.com/restore-failed`` (a restore into it failed, see
   :mod:`lab.operator.restores`) is ``RestoreFailed``: ``Ready=False`` with reason
   ``RestoreFailed`` and a ``RestoreFailed`` condition carrying the restore's reason.

4. the claim ``<name>-backups`` (the instance's backup store), created when missing.

In a lab the StatefulSet's container also gets ``LAB_ID`` and ``LAB_INSTANCE``
(:func:`lab.operator.lab_identity.with_identity`), which the engine records in the tenant
database for the harness's identity check.

After the instances, :class:`lab.operator.protection.DataProtection` reconciles
backups, backup policies and restores. Every object reconciled (and every failure) is
counted, and instance readiness reported, in :class:`lab.operator.metrics.OperatorMetrics`.

An API error on one instance becomes ``Ready=False`` with reason ``ReconcileError``
and its message (for instance an RBAC denial) and does not stop the others.

Events on the MSSQLInstance (component :data:`COMPONENT`): ``Created`` "Created <Kind>
<name>" and ``Updated`` "Updated <Kind> <name>" for the objects it manages; on a phase
change ``Ready`` (Normal), ``Degraded`` and ``RestoreFailed`` (Warnings) with the
condition's message; a Warning ``ReconcileError`` with the error.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from common.times import format_time, parse_time
from lab.events import record
from lab.kubeclient import ApiError, KubeClient
from lab.operator.lab_identity import IdentityReader, LabIdentity, with_identity
from lab.operator.metrics import OperatorMetrics
from lab.operator.objects import (
    GROUP,
    INSTANCE_LABEL,
    INSTANCES,
    MANAGED_BY,
    PORT_ANNOTATION,
    RESTORE_FAILED_ANNOTATION,
    RESTORE_FAILED_REASON_ANNOTATION,
    SPEC_HASH_ANNOTATION,
    VERSION,
    backups_claim,
    database_of,
    desired_backups_claim,
    desired_secret,
    desired_service,
    desired_statefulset,
    new_password,
    secret_name,
)
from lab.operator.protection import DataProtection
from lab.ports import format_range

__all__ = ["COMPONENT", "ENDPOINT_HOST", "HEARTBEAT", "PORT_RANGE", "Reconciler", "allocate_port"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str]

HEARTBEAT = 2.0
COMPONENT = "mssql-operator"
_PHASE_EVENTS = {"Ready": "Normal", "Degraded": "Warning", "RestoreFailed": "Warning"}
PORT_RANGE = (20000, 32000)
ENDPOINT_HOST = os.environ.get("MSSQL_ENDPOINT_HOST", "127.0.0.1")
_MANAGED = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def allocate_port(taken: set[int], low: int = PORT_RANGE[0], high: int = PORT_RANGE[1]) -> int:
    """The lowest port in [low, high) that no instance claims and nothing listens on."""
    for port in range(low, high):
        if port not in taken and _bindable(port):
            return port
    raise ApiError(0, "NoPort", f"no free port in {low}-{high - 1} for a new instance")


def _about(instance: Obj) -> Obj:
    """The instance with its kind and apiVersion (list items may lack them), for Events."""
    return {**instance, "apiVersion": f"{GROUP}/{VERSION}", "kind": "MSSQLInstance"}


def _key(obj: Obj) -> Key:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def _claimed_port(instance: Obj) -> int | None:
    value = (instance.get("spec") or {}).get("port")
    if value is None:
        value = (instance["metadata"].get("annotations") or {}).get(PORT_ANNOTATION)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _ready(pod: Obj | None) -> bool:
    if pod is None:
        return False
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


class Reconciler:
    """One operator's view of the cluster; :meth:`reconcile_all` is one idempotent pass."""

    def __init__(
        self,
        client: KubeClient,
        clock: Callable[[], float] = time.time,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        self.client = client
        self.clock = clock
        self.passes = 0
        self.metrics = metrics or OperatorMetrics()
        self.protection = DataProtection(client, ENDPOINT_HOST, clock, metrics=self.metrics)
        self._readiness: dict[Key, bool] = {}
        self.identity = IdentityReader(client)
        self._lab: LabIdentity | None = None  # this pass's identity
        self._lab_problem: ApiError | None = None  # why this pass has none although it needs one

    # -- the pass --------------------------------------------------------------------------

    def reconcile_all(self) -> None:
        instances = self.client.list(INSTANCES)
        self.passes += 1
        self._readiness = {}
        if not instances:
            self.metrics.instances({})
            self.protection.reconcile_all([], {})
            return
        try:
            self._lab, self._lab_problem = self.identity.read(), None
        except ApiError as exc:
            if exc.code == 0:
                raise
            log.warning("%s", exc)
            self._lab, self._lab_problem = None, exc
        pods = {_key(p): p for p in self.client.list("pods", labels="app=mssql")}
        secrets = {_key(s) for s in self.client.list("secrets", labels=_MANAGED)}
        claims = {_key(c) for c in self.client.list("persistentvolumeclaims", labels=_MANAGED)}
        services = {_key(s): s for s in self.client.list("services", labels=_MANAGED)}
        sets = {_key(s): s for s in self.client.list("statefulsets", labels=_MANAGED)}
        taken = {p for p in (_claimed_port(i) for i in instances) if p is not None}
        for instance in instances:
            if instance["metadata"].get("deletionTimestamp") is not None:
                continue
            try:
                self.reconcile(instance, pods, secrets, services, sets, taken)
                if (_key(instance)[0], backups_claim(_key(instance)[1])) not in claims:
                    self._create(
                        "persistentvolumeclaims", desired_backups_claim(instance), _key(instance)[0], instance
                    )
            except ApiError as exc:
                self.metrics.reconciled("MSSQLInstance", failed=True)
                self._readiness[_key(instance)] = False
                if exc.code == 0:
                    raise
                log.warning("%s/%s: %s", *_key(instance), exc)
                self._report_error(instance, exc)
            else:
                self.metrics.reconciled("MSSQLInstance")
        self.metrics.instances(self._readiness)
        self.protection.reconcile_all(instances, pods)

    def reconcile(
        self,
        instance: Obj,
        pods: dict[Key, Obj],
        secrets: set[Key],
        services: dict[Key, Obj],
        sets: dict[Key, Obj],
        taken: set[int],
    ) -> None:
        ns, name = _key(instance)
        if self._lab_problem is not None:
            raise self._lab_problem  # fail closed: no port or engine without the lab's identity
        port = self._port(instance, taken)
        if (ns, secret_name(name)) not in secrets:
            self._create("secrets", desired_secret(instance, new_password()), ns, instance)
            secrets.add((ns, secret_name(name)))
        self._apply("services", desired_service(instance, port), services.get((ns, name)), instance)
        statefulset = desired_statefulset(instance, port)
        if self._lab is not None:
            with_identity(statefulset, self._lab.lab_id, f"{ns}/{name}")
        self._apply("statefulsets", statefulset, sets.get((ns, name)), instance)
        pod = pods.get((ns, f"{name}-0"))
        if pod is not None and (pod["metadata"].get("labels") or {}).get(INSTANCE_LABEL) != name:
            pod = None
        self._status(instance, port, pod)

    # -- steps -----------------------------------------------------------------------------

    def _port(self, instance: Obj, taken: set[int]) -> int:
        ns, name = _key(instance)
        annotations = instance["metadata"].get("annotations") or {}
        low, high = self._lab.ports if self._lab is not None else PORT_RANGE
        explicit = (instance.get("spec") or {}).get("port") is not None
        port = _claimed_port(instance)
        if port is not None and not explicit and not low <= port < high:
            log.info(
                "%s/%s: port %d is outside this lab's engine ports %s: moving it",
                ns,
                name,
                port,
                format_range((low, high)),
            )
            port = None
        elif port is not None and annotations.get(PORT_ANNOTATION) == str(port):
            return port
        if port is None:
            port = allocate_port(taken, low, high)
        patch = {
            "metadata": {
                "resourceVersion": instance["metadata"]["resourceVersion"],
                "annotations": {PORT_ANNOTATION: str(port)},
            }
        }
        updated = self.client.patch(INSTANCES, name, patch, ns)
        instance["metadata"] = updated["metadata"]
        taken.add(port)
        log.info("%s/%s: port %d", ns, name, port)
        return port

    def _create(self, kind: str, body: Obj, namespace: str, owner: Obj | None = None) -> None:
        try:
            self.client.create(kind, body, namespace)
        except ApiError as exc:
            if exc.code != 409:
                raise
            return
        if owner is not None:
            message = f"Created {body['kind']} {body['metadata']['name']}"
            record(self.client, _about(owner), "Created", message, component=COMPONENT)
        log.info(
            "%s/%s: created %s %s",
            namespace,
            body["metadata"]["labels"][INSTANCE_LABEL],
            body["kind"],
            body["metadata"]["name"],
        )

    def _apply(self, kind: str, desired: Obj, current: Obj | None, owner: Obj | None = None) -> None:
        md = desired["metadata"]
        if current is None:
            self._create(kind, desired, md["namespace"], owner)
            return
        want = md["annotations"][SPEC_HASH_ANNOTATION]
        if (current["metadata"].get("annotations") or {}).get(SPEC_HASH_ANNOTATION) == want:
            return
        body = {**desired, "metadata": {**current["metadata"], **md}}
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        spec = dict(current.get("spec") or {})
        if kind == "statefulsets":  # selector, serviceName and claim templates are immutable
            spec.update({k: desired["spec"][k] for k in ("replicas", "template")})
        else:
            for carried in ("clusterIP", "clusterIPs"):
                if carried in spec:
                    desired["spec"][carried] = spec[carried]
            spec = desired["spec"]
        body["spec"] = spec
        body.pop("status", None)
        self.client.replace(kind, body, md["namespace"])
        log.info("%s/%s: updated %s", md["namespace"], md["labels"][INSTANCE_LABEL], desired["kind"])
        if owner is not None:
            message = f"Updated {desired['kind']} {md['name']}"
            record(self.client, _about(owner), "Updated", message, component=COMPONENT)

    def _status(self, instance: Obj, port: int, pod: Obj | None) -> None:
        name = instance["metadata"]["name"]
        now = self.clock()
        old = instance.get("status") or {}
        ready = _ready(pod)
        scheduled = pod is not None and bool((pod.get("spec") or {}).get("nodeName"))
        annotations = instance["metadata"].get("annotations") or {}
        failed_restore = annotations.get(RESTORE_FAILED_ANNOTATION)
        self._readiness[_key(instance)] = ready and not failed_restore
        if failed_restore:
            why = annotations.get(RESTORE_FAILED_REASON_ANNOTATION) or "no reason recorded"
            message = (
                f"restore {failed_restore} into this instance failed: {why}; kept stopped for inspection "
                "(restore into it again, delete it, or remove the annotation "
                f"{RESTORE_FAILED_ANNOTATION} to start it on its previous data)"
            )
            extra = {"type": "RestoreFailed", "status": "True", "reason": "RestoreFailed", "message": message}
            self._write_status(instance, "RestoreFailed", "False", "RestoreFailed", message, now, port, extra)
            return
        if ready:
            phase, reason, message = "Ready", "PodReady", f"pod {name}-0 is ready"
        elif old.get("phase") in ("Ready", "Degraded"):
            phase, reason, message = "Degraded", "PodNotReady", f"pod {name}-0 is not ready"
        elif scheduled:
            phase, reason, message = "Provisioning", "PodNotReady", f"pod {name}-0 is starting"
        else:
            phase, reason, message = "Pending", "PodNotScheduled", f"pod {name}-0 is not scheduled yet"
        self._write_status(instance, phase, "True" if ready else "False", reason, message, now, port)

    def _write_status(
        self,
        instance: Obj,
        phase: str,
        ready: str,
        reason: str,
        message: str,
        now: float,
        port: int | None,
        extra: Obj | None = None,
    ) -> None:
        ns, name = _key(instance)
        md, spec = instance["metadata"], instance.get("spec") or {}
        old = instance.get("status") or {}
        before = {c.get("type"): c for c in old.get("conditions") or [] if isinstance(c, dict)}
        conditions = []
        for wanted in [{"type": "Ready", "status": ready, "reason": reason, "message": message}, extra]:
            if wanted is None:
                continue
            previous: Obj = before.get(wanted["type"]) or {}
            since = previous.get("lastTransitionTime") if previous.get("status") == wanted["status"] else None
            conditions.append(
                {
                    **wanted,
                    "lastTransitionTime": since or format_time(now),
                    "observedGeneration": md.get("generation", 1),
                }
            )
        status: Obj = {
            "phase": phase,
            "conditions": conditions,
            "observedGeneration": md.get("generation", 1),
            "credentialsSecret": secret_name(name),
            "database": database_of(instance),
            "observedCanary": spec.get("canary"),
        }
        if port is not None:
            status.update({"endpoint": f"{ENDPOINT_HOST}:{port}", "port": port})
        last = parse_time(old.get("lastReconcileTime"))
        same = all(old.get(k) == v for k, v in status.items())
        if same and last is not None and now - last < HEARTBEAT:
            return
        status["lastReconcileTime"] = format_time(now)
        self.client.patch(INSTANCES, name, {"status": status}, ns, sub="status")
        if old.get("phase") != phase:
            log.info("%s/%s: %s -> %s (%s)", ns, name, old.get("phase") or "-", phase, message)
            etype = _PHASE_EVENTS.get(phase)
            if etype is not None:
                record(self.client, _about(instance), phase, message, type=etype, component=COMPONENT)

    def _report_error(self, instance: Obj, exc: ApiError) -> None:
        old = (instance.get("status") or {}).get("phase")
        phase = "Degraded" if old in ("Ready", "Degraded") else "Pending"
        port = _claimed_port(instance)
        record(self.client, _about(instance), "ReconcileError", str(exc), type="Warning", component=COMPONENT)
        try:
            self._write_status(instance, phase, "False", "ReconcileError", str(exc), self.clock(), port)
        except ApiError as again:
            log.warning("%s/%s: cannot report the error either: %s", *_key(instance), again)
