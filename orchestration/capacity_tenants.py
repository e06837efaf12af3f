"""The sweep's own tenants: MSSQLInstances it creates, scales, and always deletes again.

On the embedded lab the template is built in (the lab operator's instance, as
``python -m lab up`` makes them); on a cluster the user gives one (``--template FILE``,
YAML or JSON, one ``MSSQLInstance``). Every instance the sweep creates is named
``cap-<sweep>-<i>``, labelled ``mssql-chaos-harness/capacity-sweep: <sweep>``, and written to
the sweep's ledger (``created.jsonl``) *before* it is created, so a sweep killed at any
point can be cleaned up from its folder (``python -m orchestration capacity --cleanup
DIR``). Instances the user already had are never changed or deleted: deletion goes by
the ledger and checks the label first.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from common.crd import CrdCoordinates
from loadgen.discovery import lookup
from orchestration.errors import OrchestrationError
from probes.errors import ProbeError
from probes.k8s import kube
from probes.k8s.crs import CustomResources

__all__ = [
    "LEDGER_NAME",
    "SWEEP_LABEL",
    "NotReady",
    "SweepTenants",
    "lab_template",
    "ledger_entries",
    "load_template",
]

SWEEP_LABEL = "mssql-chaos-harness/capacity-sweep"
LEDGER_NAME = "created.jsonl"

Say = Callable[[str], None]


class NotReady(OrchestrationError):
    """The target could not make this many instances Ready in time: a failing step, not a broken sweep."""


def lab_template(coords: CrdCoordinates) -> dict[str, Any]:
    """The embedded lab's MSSQLInstance, as ``python -m lab up`` creates its tenants."""
    return {
        "apiVersion": f"{coords.group}/{coords.version}",
        "kind": "MSSQLInstance",
        "metadata": {},
        "spec": {"version": "15", "storage": {"size": "1Gi"}, "database": "harness"},
    }


def load_template(path: Path, coords: CrdCoordinates) -> dict[str, Any]:
    """Read a user's instance template; OrchestrationError when it is not one MSSQLInstance."""
    try:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text(encoding="utf-8")) if d is not None]
    except OSError as exc:
        raise OrchestrationError(
            f"template {path}: cannot read it ({exc.strerror}): pass an existing file"
        ) from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise OrchestrationError(f"template {path}: not YAML or JSON{at}: fix the file") from None
    want = f"{coords.group}/{coords.version}"
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise OrchestrationError(f"template {path}: must hold exactly one object, an MSSQLInstance ({want})")
    doc = docs[0]
    if doc.get("kind") != "MSSQLInstance" or doc.get("apiVersion") != want:
        raise OrchestrationError(
            f"template {path}: is {doc.get('apiVersion')} {doc.get('kind')}, not an MSSQLInstance ({want}): "
            "pass a template of the operator's instance kind"
        )
    if not isinstance(doc.get("spec"), dict):
        raise OrchestrationError(
            f"template {path}: has no spec: copy one of your MSSQLInstances' spec into it"
        )
    return doc


class SweepTenants:
    """Creates, waits for and deletes the sweep's instances in one namespace."""

    def __init__(
        self,
        instances: CustomResources,
        coords: CrdCoordinates,
        namespace: str,
        sweep_id: str,
        template: Mapping[str, Any],
        folder: Path,
        *,
        ready_timeout: float = 180.0,
        claim_selector: str = "",
        say: Say = print,
    ) -> None:
        self.instances, self.coords, self.namespace = instances, coords, namespace
        self.sweep_id, self.template, self.ledger = sweep_id, dict(template), Path(folder) / LEDGER_NAME
        self.ready_timeout, self.say = ready_timeout, say
        self.claim_selector = (
            claim_selector  # e.g. "mssql.example.com/instance={tenant}": the instance's claims
        )
        self.live: list[str] = []

    def name(self, index: int) -> str:
        return f"cap-{self.sweep_id}-{index}"[:63]

    def _body(self, name: str) -> dict[str, Any]:
        body = copy.deepcopy(self.template)
        meta = body.setdefault("metadata", {})
        for key in ("resourceVersion", "uid", "creationTimestamp", "generateName", "managedFields"):
            meta.pop(key, None)
        body.pop("status", None)
        meta["name"], meta["namespace"] = name, self.namespace
        meta["labels"] = {**(meta.get("labels") or {}), SWEEP_LABEL: self.sweep_id}
        return body

    def _record(self, name: str) -> None:
        with self.ledger.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"namespace": self.namespace, "name": name}) + "\n")

    def scale_to(self, count: int) -> list[str]:
        """Exactly ``count`` sweep instances, all Ready; returns their names."""
        while len(self.live) > count:
            self._delete(self.live.pop())
        while len(self.live) < count:
            name = self.name(len(self.live))
            self._record(name)
            try:
                self.instances.create(self.namespace, self._body(name))
            except ProbeError as exc:
                raise OrchestrationError(str(exc)) from None
            self.live.append(name)
        self._wait_ready(list(self.live))
        return list(self.live)

    def _wait_ready(self, names: list[str]) -> None:
        deadline = time.monotonic() + self.ready_timeout
        waiting = names
        while True:
            waiting = [n for n in waiting if not self._ready(n)]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise NotReady(
                    f"{len(waiting)} of {len(names)} instance(s) not Ready after {self.ready_timeout:.0f} s "
                    f"({', '.join(waiting[:3])}{', ...' if len(waiting) > 3 else ''}): the target could not "
                    "schedule or start this many"
                )
            time.sleep(0.5)

    def _ready(self, name: str) -> bool:
        try:
            obj = self.instances.get(self.namespace, name)
        except ProbeError as exc:
            raise OrchestrationError(str(exc)) from None
        return obj is not None and str(lookup(obj, self.coords.ready_path)) == "True"

    def _delete(self, name: str) -> None:
        obj = self.instances.get(self.namespace, name)
        labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
        if obj is not None and labels.get(SWEEP_LABEL) == self.sweep_id:
            self.instances.delete(self.namespace, name)

    def delete_all(self, wait: float = 60.0) -> list[str]:
        """Delete every instance in the ledger that still carries this sweep's label, then its claims.

        Each instance is deleted in the namespace the ledger recorded for it. The claims
        made for it (selected by ``claim_selector``: a StatefulSet's claims carry its pod
        labels) outlive it in Kubernetes, so they are deleted once the instance is gone,
        for every instance of the ledger (a cleanup after a killed sweep frees them too).
        """
        deleted: list[tuple[str, str]] = []
        entries = ledger_entries(self.ledger)
        for namespace, name in entries:
            try:
                obj = self.instances.get(namespace, name)
                labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
                if obj is not None and labels.get(SWEEP_LABEL) == self.sweep_id:
                    self.instances.delete(namespace, name)
                    deleted.append((namespace, name))
            except ProbeError as exc:
                self.say(f"capacity: could not delete {namespace}/{name}: {exc}")
        self.live = []
        deadline = time.monotonic() + wait
        pending = list(deleted)
        while pending and time.monotonic() < deadline:
            pending = [(ns, n) for ns, n in pending if self.instances.get(ns, n) is not None]
            if pending:
                time.sleep(0.5)
        for (
            namespace,
            name,
        ) in entries:  # claims of every ledger instance that is gone, also from earlier tries
            if (namespace, name) not in pending and self._gone(namespace, name):
                # Its StatefulSet re-creates a missing claim for as long as it still runs pods
                # (the garbage collector deletes it after the instance): wait for them first.
                self._wait_for_no_pods(namespace, name, deadline)
                self._delete_claims(namespace, name)
        return [name for _, name in deleted]

    def _wait_for_no_pods(self, namespace: str, name: str, deadline: float) -> None:
        if not self.claim_selector:
            return
        selector = self.claim_selector.replace("{tenant}", name)
        while time.monotonic() < deadline:
            try:
                pods = kube.core(None).list_namespaced_pod(namespace, label_selector=selector).items
            except Exception:
                return  # the claims are tried anyway; a failure there is said
            if not pods:
                return
            time.sleep(0.5)

    def _gone(self, namespace: str, name: str) -> bool:
        try:
            return self.instances.get(namespace, name) is None
        except ProbeError:
            return False

    def _delete_claims(self, namespace: str, name: str) -> None:
        if not self.claim_selector:
            return
        selector = self.claim_selector.replace("{tenant}", name)
        try:
            api = kube.core(None)
            for claim in api.list_namespaced_persistent_volume_claim(
                namespace, label_selector=selector
            ).items:
                # The deleted object is not read back: servers answer with the claim or a Status.
                api.delete_namespaced_persistent_volume_claim(
                    claim.metadata.name, namespace, _preload_content=False
                )
        except Exception as exc:  # the claims are storage left behind, not a failed sweep: say so
            self.say(f"capacity: could not delete the claims of {namespace}/{name} ({selector}): {exc}")


def ledger_entries(ledger: Path) -> list[tuple[str, str]]:
    """``(namespace, name)`` of every instance a sweep's ledger lists, once each, in order."""
    if not ledger.exists():
        return []
    entries: list[tuple[str, str]] = []
    for line in ledger.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("name"):
            pair = (str(entry.get("namespace")), str(entry["name"]))
            if pair not in entries:
                entries.append(pair)
    return entries
