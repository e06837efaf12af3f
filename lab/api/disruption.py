"""PodDisruptionBudgets and the eviction subresource.

A pod is *healthy* when its ``Ready`` condition is True and it is not being deleted.
For a PDB in the pod's namespace whose selector matches it:
``expectedPods`` is the number of matching pods for an integer ``minAvailable``, else
the summed ``spec.replicas`` of their controllers (a ReplicaSet owned by a Deployment
counts the Deployment); ``desiredHealthy`` is ``minAvailable`` (percentages round up)
or ``expectedPods - maxUnavailable``; ``disruptionsAllowed = currentHealthy - desiredHealthy``
(never below 0). Eviction computes these afresh, so two evictions in a row cannot both
spend the last allowed disruption. Pods that are Pending, finished or already
terminating are evicted without a budget check; an unhealthy pod only while the budget
is met. A refusal is 429 TooManyRequests, worded like the real server.
"""

from __future__ import annotations

import math
import re
from typing import Any

from lab.api.deletion import DeleteOptions, delete, parse_options
from lab.api.fields import as_dict, as_int, as_list, as_str, dig, meta, now_rfc3339
from lab.api.resources import ResourceType
from lab.api.selectors import match_selector_object
from lab.api.state import State
from lab.api.status import ApiError, bad_request, not_found, success

__all__ = ["PDB_KEY", "evict", "pdb_status", "pod_healthy"]

PDB_KEY = "poddisruptionbudgets.policy"
_SCALABLE = ("replicasets.apps", "statefulsets.apps", "deployments.apps")


def pod_healthy(pod: dict[str, Any]) -> bool:
    if meta(pod).get("deletionTimestamp") is not None:
        return False
    return any(
        isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in as_list(dig(pod, "status", "conditions"))
    )


def _scaled(value: Any, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        try:
            percent = min(max(float(value[:-1]), 0.0), 100.0)
            return math.ceil(total * percent / 100)
        except (ValueError, OverflowError):
            return 0
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value):
        return int(value)
    return as_int(value)


def _controller_replicas(state: State, pods: list[dict[str, Any]]) -> int:
    seen: set[str] = set()
    total = 0
    for pod in pods:
        owner = next(
            (r for r in as_list(meta(pod).get("ownerReferences")) if dig(r, "controller") is True), None
        )
        located = state.store.locate(as_str(dig(owner, "uid"))) if owner else None
        if located is None:
            total += 1
            continue
        key, ns, name = located
        obj = state.store.peek(key, ns, name)
        parent = next(
            (r for r in as_list(dig(obj, "metadata", "ownerReferences")) if dig(r, "controller") is True),
            None,
        )
        parent_at = state.store.locate(as_str(dig(parent, "uid"))) if parent else None
        if parent_at is not None and parent_at[0] == "deployments.apps":
            key, ns, name = parent_at
            obj = state.store.peek(key, ns, name)
        uid = as_str(dig(obj, "metadata", "uid"))
        if key in _SCALABLE and uid not in seen:
            seen.add(uid)
            total += as_int(dig(obj, "spec", "replicas"), 1)
        elif key not in _SCALABLE:
            total += 1
    return total


def pdb_status(state: State, pdb: dict[str, Any]) -> dict[str, Any]:
    """The status the disruption controller would write for ``pdb`` now."""
    md, spec = meta(pdb), as_dict(pdb.get("spec"))
    pods = [
        p
        for p in state.store.scan("pods", as_str(md.get("namespace")))
        if match_selector_object(spec.get("selector"), meta(p).get("labels"))
    ]
    healthy = sum(1 for p in pods if pod_healthy(p))
    if spec.get("maxUnavailable") is not None:
        expected = _controller_replicas(state, pods)
        desired = max(0, expected - _scaled(spec["maxUnavailable"], expected))
    elif spec.get("minAvailable") is not None:
        min_available = spec["minAvailable"]
        expected = len(pods) if not isinstance(min_available, str) else _controller_replicas(state, pods)
        desired = _scaled(min_available, expected)
    else:
        expected, desired = len(pods), 0
    allowed = max(0, healthy - desired)
    old = as_dict(pdb.get("status"))
    status_word = "True" if allowed > 0 else "False"
    previous = next(
        (c for c in as_list(old.get("conditions")) if dig(c, "type") == "DisruptionAllowed"), None
    )
    since = as_str(dig(previous, "lastTransitionTime")) if dig(previous, "status") == status_word else ""
    condition = {
        "type": "DisruptionAllowed",
        "status": status_word,
        "reason": "SufficientPods" if allowed > 0 else "InsufficientPods",
        "message": "",
        "lastTransitionTime": since or now_rfc3339(),
        "observedGeneration": md.get("generation", 1),
    }
    return {
        "observedGeneration": md.get("generation", 1),
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": [condition],
    }


def _refuse(message: str, causes: list[dict[str, str]]) -> ApiError:
    return ApiError(
        429, message, "TooManyRequests", {"causes": causes, "retryAfterSeconds": 0} if causes else None
    )


def evict(state: State, pods: ResourceType, namespace: str, name: str, body: Any) -> dict[str, Any]:
    """Handle POST ``pods/{name}/eviction``; returns the 201 Status on success."""
    opts = DeleteOptions()
    if body is not None:
        if not isinstance(body, dict):
            raise bad_request("the Eviction body must be a JSON object")
        if body.get("kind") not in (None, "Eviction"):
            raise bad_request(f"expected an Eviction, got kind {body.get('kind')!r}")
        body_name = dig(body, "metadata", "name")
        if body_name not in (None, "", name):
            raise bad_request(f"name in URL does not match name in Eviction object ({body_name} != {name})")
        opts = parse_options({}, body.get("deleteOptions"))
    pod = state.store.peek(pods.key, namespace, name)
    if pod is None:
        raise not_found(pods.plural, name)
    terminal = dig(pod, "status", "phase") in ("Succeeded", "Failed", "Pending")
    if meta(pod).get("deletionTimestamp") is None and not terminal:
        budgets = [
            b
            for b in state.store.scan(PDB_KEY, namespace)
            if match_selector_object(dig(b, "spec", "selector"), meta(pod).get("labels"))
        ]
        if len(budgets) > 1:
            raise _refuse(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource "
                "does not support.",
                [],
            )
        for budget in budgets:
            status = pdb_status(state, budget)
            always = dig(budget, "spec", "unhealthyPodEvictionPolicy") == "AlwaysAllow"
            if not pod_healthy(pod) and (always or status["currentHealthy"] >= status["desiredHealthy"]):
                continue
            if status["disruptionsAllowed"] <= 0:
                pdb = as_str(dig(budget, "metadata", "name"))
                needs, has = status["desiredHealthy"], status["currentHealthy"]
                cause = f"The disruption budget {pdb} needs {needs} healthy pods and has {has} currently"
                raise _refuse(
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                    [{"reason": "DisruptionBudget", "message": cause}],
                )
    if not opts.dry_run:
        delete(state, pods, namespace, name, opts)
    return success(201)
