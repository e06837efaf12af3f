"""Privilege-escalation prevention for writes of RBAC objects, as kube-apiserver's RBAC storage.

A user may create or change a Role or ClusterRole only with rules they already hold
(in the request's namespace; cluster-wide for a ClusterRole), unless they may
``escalate`` it; a ClusterRole's ``aggregationRule`` needs full authority (``*`` on
everything). A user may create or change a RoleBinding or ClusterRoleBinding only to a
role whose rules they already hold, unless they may ``bind`` that role (verb ``bind``
on ``roles``/``clusterroles`` named by the ``roleRef``). ``system:masters`` passes, and
so does an update that changes nothing but the fields the garbage collector writes
(ownerReferences, finalizers). Refusals are 403 in kube-apiserver's words::

    clusterroles.rbac.authorization.k8s.io "x" is forbidden: user "bob" (groups=["system:authenticated"])
    is attempting to grant RBAC permissions not currently held:
    {APIGroups:[""], Resources:["pods"], Verbs:["delete"]}

The handler (:mod:`lab.api.handlers`) computes the object the write would store (a dry
run of the same request) and calls :func:`confirm_rbac_write` before the real write.
"""

from __future__ import annotations

import json
from typing import Any

from lab.api.authz import Attributes, Authorizer
from lab.api.fields import as_dict, as_str, meta
from lab.api.identity import MASTERS, UserInfo
from lab.api.rbac_rules import (
    CLUSTER_ROLES,
    FULL_AUTHORITY,
    RBAC_GROUP,
    RBAC_KEYS,
    ROLES,
    Rule,
    compact_rules,
    covers,
    rules_of,
)
from lab.api.resources import ResourceType
from lab.api.status import ApiError, not_found

__all__ = ["confirm_rbac_write", "is_rbac_write"]

_GC_FIELDS = (
    "ownerReferences",
    "finalizers",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "resourceVersion",
    "generation",
    "selfLink",
)


def is_rbac_write(rt: ResourceType, method: str, subresource: str | None) -> bool:
    """Whether a request writes a Role, ClusterRole or binding (and so must be checked)."""
    return rt.key in RBAC_KEYS and subresource is None and method in ("POST", "PUT", "PATCH")


def _forbidden(rt: ResourceType, name: str, message: str) -> ApiError:
    qualified = f"{rt.plural}.{rt.group}"
    subject = f"{qualified} {json.dumps(name)}" if name else qualified
    details: dict[str, Any] = {"group": rt.group, "kind": rt.plural}
    if name:
        details["name"] = name
    return ApiError(403, f"{subject} is forbidden: {message}", "Forbidden", details)


def _only_gc_fields(new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    if old is None:
        return False

    def stripped(obj: dict[str, Any]) -> dict[str, Any]:
        md = {k: v for k, v in meta(obj).items() if k not in _GC_FIELDS}
        return {**obj, "metadata": md}

    return stripped(new) == stripped(old)


def _escalation(authorizer: Authorizer, user: UserInfo, namespace: str, wanted: list[Rule]) -> str:
    """Why granting ``wanted`` would escalate ``user``'s privileges ("" when it would not)."""
    grants, errors = authorizer.rules_for(user, namespace)
    missing = covers((g.rule for g in grants), wanted)
    if not missing:
        return ""
    shown = sorted({rule.compact() for rule in compact_rules(missing)})
    groups = "[" + " ".join(json.dumps(g) for g in user.groups) + "]"
    message = (
        f"user {json.dumps(user.name)} (groups={groups}) is attempting to grant RBAC permissions "
        "not currently held:\n" + "\n".join(shown)
    )
    if errors:
        message += f"; resolution errors: [{' '.join(errors)}]"
    return message


def _has_aggregation(obj: dict[str, Any] | None) -> bool:
    return obj is not None and isinstance(obj.get("aggregationRule"), dict)


def confirm_rbac_write(
    authorizer: Authorizer,
    user: UserInfo,
    rt: ResourceType,
    namespace: str,
    url_name: str,
    new: Any,
    old: dict[str, Any] | None,
) -> None:
    """Raise 403 when ``user`` writing ``new`` (replacing ``old``, None on create) to ``rt``
    would grant permissions they do not hold; 404 when a binding's role is missing and the
    user may not ``bind`` it. ``url_name`` is the name on the URL ("" for a create)."""
    if MASTERS in user.groups or not isinstance(new, dict) or rt.key not in RBAC_KEYS:
        return
    if _only_gc_fields(new, old):
        return
    name = as_str(meta(new).get("name"))
    if rt.key in (ROLES, CLUSTER_ROLES):
        escalate = Attributes(user, "escalate", RBAC_GROUP, rt.plural, "", namespace, url_name)
        if authorizer.allows(escalate):
            return
        problem = _escalation(authorizer, user, namespace, rules_of(new))
        if problem:
            raise _forbidden(rt, name, problem)
        aggregated = rt.key == CLUSTER_ROLES and (_has_aggregation(new) or _has_aggregation(old))
        if aggregated and _escalation(authorizer, user, namespace, list(FULL_AUTHORITY)):
            raise _forbidden(rt, name, "must have cluster-admin privileges to use the aggregationRule")
        return
    ref = as_dict(new.get("roleRef"))
    ref_kind, ref_name = as_str(ref.get("kind")), as_str(ref.get("name"))
    role_resource = "roles" if ref_kind == "Role" else "clusterroles"
    if authorizer.allows(Attributes(user, "bind", RBAC_GROUP, role_resource, "", namespace, ref_name)):
        return
    rules, error = authorizer.rbac.role_ref_rules(ref, namespace)
    if error:
        if ref_kind in ("Role", "ClusterRole"):
            raise not_found(role_resource, ref_name, RBAC_GROUP)
        raise _forbidden(rt, name, error)
    problem = _escalation(authorizer, user, namespace, rules)
    if problem:
        raise _forbidden(rt, name, problem)
