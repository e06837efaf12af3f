"""Request authorization: the lab's deny list, then ``system:masters``, then RBAC.

:class:`Authorizer` decides every request from its :class:`Attributes` (who, verb,
group, resource, subresource, namespace, name; or a non-resource ``path``), in order:

1. The policy file (optional, YAML or JSON, re-read when it changes so tests may rewrite
   it while the server runs) can only take permissions away::

       deny:
         - {verb: create, resource: pods/eviction}
         - {verb: delete, resource: pods, namespace: prod, name: db-0}
         - {verb: get, path: /version}          # a non-resource request
         - {user: "system:serviceaccount:*", verb: delete, resource: pods}
         - {groups: system:nodes, verb: delete, resource: pods}
       default: allow                           # or deny: then only what ``allow`` names
       allow: []                                # passes on to the next step

   A rule field that is missing or ``"*"`` matches anything; a field may be a string or
   a list; ``user`` and ``groups`` name the request's user and one of its groups
   (a trailing ``*`` matches a prefix). ``resource`` is ``pods`` (the resource itself,
   not its subresources), ``pods/eviction``, ``pods/*`` or ``*``; ``group`` is ``""`` for
   the core group; ``path`` is a glob (``/version``, ``/apis/*``). Rules with ``path``
   match non-resource requests only, the others
   resource requests only; ``default: deny`` restricts resource requests. A request the
   file denies is refused with the rule's index as the reason (and ``denied: true`` in
   access reviews). An unreadable file denies everything until it is fixed.
2. Users in ``system:masters`` are allowed (Kubernetes' privileged-group authorizer).
3. RBAC (:mod:`lab.api.rbac`): Roles, ClusterRoles and their bindings from the store.

:meth:`Authorizer.check` raises 403 with kube-apiserver's wording:
``pods "db-0" is forbidden: User "u" cannot delete resource "pods" in API group "" in
the namespace "tenants"`` (``: <reason>`` appended when there is one: the deny list's
rule, or RBAC's resolution errors such as a binding to a missing role).
Writes of RBAC objects are checked for privilege escalation in :mod:`lab.api.rbac_writes`.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lab.api.identity import MASTERS, UserInfo
from lab.api.rbac import Grant, RbacEvaluator
from lab.api.status import ApiError

if TYPE_CHECKING:
    from lab.api.state import State

__all__ = ["Attributes", "Authorizer", "Decision", "Policy"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attributes:
    """What a request asks: ``user`` may ``verb`` the resource (or the non-resource ``path``)."""

    user: UserInfo
    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""

    @property
    def resource_request(self) -> bool:
        return not self.path

    def denial(self, reason: str = "") -> ApiError:
        """The 403 kube-apiserver answers when this request is not allowed."""
        user = json.dumps(self.user.name, ensure_ascii=False)
        if not self.resource_request:
            message = f"User {user} cannot {self.verb} path {json.dumps(self.path, ensure_ascii=False)}"
        else:
            resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
            where = (
                f" in the namespace {json.dumps(self.namespace, ensure_ascii=False)}"
                if self.namespace
                else " at the cluster scope"
            )
            message = (
                f"User {user} cannot {self.verb} resource {json.dumps(resource, ensure_ascii=False)} "
                f"in API group {json.dumps(self.group, ensure_ascii=False)}{where}"
            )
        if reason:
            message = f"{message}: {reason}"
        qualified = f"{self.resource}.{self.group}" if self.group else self.resource
        details: dict[str, Any] = {}
        if not qualified:
            text = f"forbidden: {message}"
        elif self.name:
            text = f"{qualified} {json.dumps(self.name, ensure_ascii=False)} is forbidden: {message}"
        else:
            text = f"{qualified} is forbidden: {message}"
        for key, value in (("name", self.name), ("group", self.group), ("kind", self.resource)):
            if value:
                details[key] = value
        return ApiError(403, text, "Forbidden", details or None)


@dataclass(frozen=True)
class Decision:
    """An authorizer's answer: ``denied`` when the deny list refused (not merely no grant)."""

    allowed: bool
    reason: str = ""
    denied: bool = False


def _matches(rule_value: Any, actual: str, prefix: bool = False) -> bool:
    if rule_value is None or rule_value == "*":
        return True
    values = rule_value if isinstance(rule_value, list) else [rule_value]
    for value in values:
        if value in ("*", actual):
            return True
        if prefix and isinstance(value, str) and value.endswith("*") and actual.startswith(value[:-1]):
            return True
    return False


def _resource_matches(rule_value: Any, attrs: Attributes) -> bool:
    if rule_value is None:
        return True
    values = rule_value if isinstance(rule_value, list) else [rule_value]
    for value in values:
        if not isinstance(value, str):
            continue
        resource, _, sub = value.partition("/")
        if resource not in ("*", attrs.resource):
            continue
        if (not sub and not attrs.subresource) or sub in ("*", attrs.subresource) or value == "*":
            return True
    return False


def _path_matches(rule_value: Any, path: str) -> bool:
    values = rule_value if isinstance(rule_value, list) else [rule_value]
    return any(isinstance(v, str) and fnmatch.fnmatchcase(path, v) for v in values)


def _rule_matches(rule: dict[str, Any], attrs: Attributes) -> bool:
    user = attrs.user
    if not _matches(rule.get("user"), user.name, prefix=True):
        return False
    if "path" in rule:
        return (
            not attrs.resource_request
            and _path_matches(rule["path"], attrs.path)
            and _matches(rule.get("verb"), attrs.verb)
        )
    if not attrs.resource_request:
        return False
    resource = rule.get("resource")
    if rule.get("subresource") is not None and isinstance(resource, str):
        resource = f"{resource}/{rule['subresource']}"
    return (
        _matches(rule.get("verb"), attrs.verb)
        and _matches(rule.get("group"), attrs.group)
        and _resource_matches(resource, attrs)
        and _matches(rule.get("namespace"), attrs.namespace)
        and _matches(rule.get("name"), attrs.name)
    )


def _user_rule_matches(rule: dict[str, Any], attrs: Attributes) -> bool:
    groups = rule.get("groups")
    if groups is not None and not any(_matches(groups, g, prefix=True) for g in attrs.user.groups):
        return False
    return _rule_matches(rule, attrs)


class Policy:
    """The policy file: a deny list (and an optional ``default: deny`` with ``allow``)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._stamp: tuple[float, int] | None = None
        self._doc: dict[str, Any] = {}
        self._load()

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            stat = self.path.stat()
        except OSError:
            self._doc, self._stamp = {}, None
            return
        stamp = (stat.st_mtime, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            text = self.path.read_text()
            doc = json.loads(text) if self.path.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            log.error(
                "policy file %s is unreadable (%s); denying everything until it is fixed", self.path, exc
            )
            doc = {"default": "deny", "deny": [{}]}
        self._doc = doc if isinstance(doc, dict) else {}
        self._stamp = stamp

    def restricts(self) -> bool:
        """Whether the file denies anything (so a list of granted rules may overstate)."""
        self._load()
        return bool(self._doc.get("deny")) or self._doc.get("default") == "deny"

    def refusal(self, attrs: Attributes) -> str:
        """Why the file refuses ``attrs`` ("" when it does not)."""
        self._load()
        if not self._doc:
            return ""
        for index, rule in enumerate(self._doc.get("deny") or []):
            if isinstance(rule, dict) and _user_rule_matches(rule, attrs):
                return f"denied by lab policy rule deny[{index}]"
        if self._doc.get("default") == "deny" and attrs.resource_request:
            for rule in self._doc.get("allow") or []:
                if isinstance(rule, dict) and _user_rule_matches(rule, attrs):
                    return ""
            return "denied by lab policy default"
        return ""


class Authorizer:
    """The server's authorizer: the policy file's deny list, ``system:masters``, then RBAC."""

    def __init__(self, state: State, policy_file: Path | None) -> None:
        self.state = state
        self.policy = Policy(policy_file)
        self.rbac = RbacEvaluator(state.store)

    def decision(self, attrs: Attributes) -> Decision:
        """The full answer for ``attrs`` (see :class:`Decision`)."""
        refused = self.policy.refusal(attrs)
        if refused:
            return Decision(False, refused, denied=True)
        if MASTERS in attrs.user.groups:
            return Decision(True)
        allowed, reason = self.rbac.authorize(attrs)
        return Decision(allowed, reason)

    def decide(self, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason) for a request with ``attrs``."""
        answer = self.decision(attrs)
        return answer.allowed, answer.reason

    def check(self, attrs: Attributes) -> None:
        """Raise 403 Forbidden (kube-apiserver's message) unless ``attrs`` is allowed."""
        answer = self.decision(attrs)
        if not answer.allowed:
            raise attrs.denial(answer.reason)

    def allows(self, attrs: Attributes) -> bool:
        return self.decision(attrs).allowed

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[list[Grant], list[str]]:
        """The RBAC rules ``user`` holds in ``namespace`` and the resolution errors (see
        :meth:`lab.api.rbac.RbacEvaluator.rules_for`)."""
        return self.rbac.rules_for(user, namespace)
