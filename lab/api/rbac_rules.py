"""RBAC rules as Kubernetes reads them: matching one request, covering other rules, aggregation.

:class:`Rule` is a PolicyRule; :func:`rule_allows` is ``RuleAllows`` of kube-apiserver's
RBAC authorizer (``rule.go`` and the ``rbacv1helpers`` matchers): ``verbs``, ``apiGroups``
and ``resources`` match by ``*`` or exactly (``resource/subresource``, or ``*/subresource``
for any resource's subresource; ``pods`` alone never covers ``pods/log``), a rule with
``resourceNames`` only a request naming one of them, ``nonResourceURLs`` exactly, by
``*`` or by a prefix ending in ``*``. :func:`covers` and :func:`compact_rules` are
``validation.Covers`` and ``CompactRules``, which escalation checks use;
:func:`cluster_role_rules` resolves a ClusterRole's ``aggregationRule``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lab.api.fields import as_dict, as_list, as_str, meta
from lab.api.selectors import match_selector_object
from lab.api.store import Store

if TYPE_CHECKING:
    from lab.api.authz import Attributes

__all__ = [
    "CLUSTER_ROLES",
    "CLUSTER_ROLE_BINDINGS",
    "FULL_AUTHORITY",
    "RBAC_GROUP",
    "RBAC_KEYS",
    "ROLES",
    "ROLE_BINDINGS",
    "Rule",
    "cluster_role_rules",
    "compact_rules",
    "covers",
    "rule_allows",
    "rules_of",
    "url_matches",
]

RBAC_GROUP = "rbac.authorization.k8s.io"
ROLES = f"roles.{RBAC_GROUP}"
CLUSTER_ROLES = f"clusterroles.{RBAC_GROUP}"
ROLE_BINDINGS = f"rolebindings.{RBAC_GROUP}"
CLUSTER_ROLE_BINDINGS = f"clusterrolebindings.{RBAC_GROUP}"
RBAC_KEYS = frozenset((ROLES, CLUSTER_ROLES, ROLE_BINDINGS, CLUSTER_ROLE_BINDINGS))


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in as_list(value) if isinstance(v, str))


@dataclass(frozen=True)
class Rule:
    """One PolicyRule: verbs, apiGroups, resources, resourceNames, nonResourceURLs."""

    verbs: tuple[str, ...] = ()
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: Any) -> Rule:
        """A rule from its JSON form (entries that are not strings are ignored)."""
        body = as_dict(raw)
        return cls(
            _strings(body.get("verbs")),
            _strings(body.get("apiGroups")),
            _strings(body.get("resources")),
            _strings(body.get("resourceNames")),
            _strings(body.get("nonResourceURLs")),
        )

    def as_dict(self) -> dict[str, Any]:
        """The JSON form, empty fields left out (as Kubernetes serialises a PolicyRule)."""
        pairs = (
            ("verbs", self.verbs),
            ("apiGroups", self.api_groups),
            ("resources", self.resources),
            ("resourceNames", self.resource_names),
            ("nonResourceURLs", self.non_resource_urls),
        )
        return {key: list(values) for key, values in pairs if values or key == "verbs"}

    def compact(self) -> str:
        """Kubernetes' ``CompactString``: ``{APIGroups:[""], Resources:["pods"], Verbs:["get"]}``."""
        parts = [
            f"{label}:[{' '.join(json.dumps(v) for v in values)}]"
            for label, values in (
                ("APIGroups", self.api_groups),
                ("Resources", self.resources),
                ("NonResourceURLs", self.non_resource_urls),
                ("ResourceNames", self.resource_names),
                ("Verbs", self.verbs),
            )
            if values
        ]
        return "{" + ", ".join(parts) + "}"


FULL_AUTHORITY = (
    Rule(verbs=("*",), api_groups=("*",), resources=("*",)),
    Rule(verbs=("*",), non_resource_urls=("*",)),
)


def rules_of(obj: dict[str, Any] | None) -> list[Rule]:
    """The ``rules`` of a Role or ClusterRole object."""
    return [Rule.parse(raw) for raw in as_list((obj or {}).get("rules"))]


def url_matches(rule_url: str, path: str) -> bool:
    return rule_url in ("*", path) or (rule_url.endswith("*") and path.startswith(rule_url.rstrip("*")))


def rule_allows(rule: Rule, attrs: Attributes) -> bool:
    """Kubernetes' ``RuleAllows``: whether one rule allows the request ``attrs``."""
    if "*" not in rule.verbs and attrs.verb not in rule.verbs:
        return False
    if not attrs.resource_request:
        return any(url_matches(url, attrs.path) for url in rule.non_resource_urls)
    if "*" not in rule.api_groups and attrs.group not in rule.api_groups:
        return False
    sub = attrs.subresource
    combined = f"{attrs.resource}/{sub}" if sub else attrs.resource
    if not any(r in ("*", combined) or (sub and r == f"*/{sub}") for r in rule.resources):
        return False
    return not rule.resource_names or attrs.name in rule.resource_names


# -- escalation: does one set of rules cover another (validation.Covers) ---------------------


def _breakdown(rule: Rule) -> list[Rule]:
    out: list[Rule] = []
    for group in rule.api_groups:
        for resource in rule.resources:
            for verb in rule.verbs:
                if rule.resource_names:
                    out.extend(Rule((verb,), (group,), (resource,), (name,)) for name in rule.resource_names)
                else:
                    out.append(Rule((verb,), (group,), (resource,)))
    for url in rule.non_resource_urls:
        out.extend(Rule((verb,), non_resource_urls=(url,)) for verb in rule.verbs)
    return out


def _resources_cover(owner: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    if "*" in owner:
        return True
    for path in wanted:
        if path in owner:
            continue
        if "/" not in path or "*/" + path.split("/", 1)[1] not in owner:
            return False
    return True


def _rule_covers(owner: Rule, sub: Rule) -> bool:
    if not ("*" in owner.verbs or set(sub.verbs) <= set(owner.verbs)):
        return False
    if not ("*" in owner.api_groups or set(sub.api_groups) <= set(owner.api_groups)):
        return False
    if not _resources_cover(owner.resources, sub.resources):
        return False
    if not all(any(url_matches(o, path) for o in owner.non_resource_urls) for path in sub.non_resource_urls):
        return False
    if not sub.resource_names:
        return not owner.resource_names
    return not owner.resource_names or set(sub.resource_names) <= set(owner.resource_names)


def covers(owner: Iterable[Rule], wanted: Iterable[Rule]) -> list[Rule]:
    """The parts of ``wanted`` that ``owner`` does not cover (Kubernetes' ``Covers``); [] if all."""
    owned = list(owner)
    missing = []
    for rule in wanted:
        for sub in _breakdown(rule):
            if not any(_rule_covers(o, sub) for o in owned):
                missing.append(sub)
    return missing


def compact_rules(rules: Iterable[Rule]) -> list[Rule]:
    """Kubernetes' ``CompactRules``: single group/resource rules that differ only by verb, merged."""
    merged: dict[tuple[str, str], int] = {}
    out: list[Rule] = []
    for rule in rules:
        simple = (
            len(rule.api_groups) == 1
            and len(rule.resources) == 1
            and not rule.resource_names
            and not rule.non_resource_urls
        )
        if simple:
            key = (rule.api_groups[0], rule.resources[0])
            if key in merged:
                prev = out[merged[key]]
                verbs = prev.verbs + tuple(v for v in rule.verbs if v not in prev.verbs)
                out[merged[key]] = Rule(verbs, prev.api_groups, prev.resources)
                continue
            merged[key] = len(out)
        out.append(rule)
    return out


def cluster_role_rules(
    store: Store,
    name: str,
    cache: dict[str, tuple[list[Rule], str]] | None = None,
    seen: frozenset[str] = frozenset(),
) -> tuple[list[Rule], str]:
    """(rules, error) of the ClusterRole ``name``; error when it is missing.

    A role with an ``aggregationRule`` holds the rules of every ClusterRole its selectors
    select (their own aggregated rules included), as the clusterrole-aggregation
    controller writes them; its own ``rules`` are that controller's output and not read.
    """
    if cache is not None and name in cache:
        return cache[name]
    role = store.peek(CLUSTER_ROLES, "", name)
    if role is None:
        return [], f'clusterrole.{RBAC_GROUP} "{name}" not found'
    selectors = as_list(as_dict(role.get("aggregationRule")).get("clusterRoleSelectors"))
    if not selectors:
        result: tuple[list[Rule], str] = (rules_of(role), "")
    else:
        inner = seen | {name}
        rules: list[Rule] = []
        for other in store.scan(CLUSTER_ROLES):
            other_name = as_str(meta(other).get("name"))
            if other_name in inner:
                continue
            if any(match_selector_object(s, meta(other).get("labels")) for s in selectors):
                rules.extend(
                    r for r in cluster_role_rules(store, other_name, cache, inner)[0] if r not in rules
                )
        result = (rules, "")
    # inside a chain of aggregations the cycle guard may cut an answer short: cache only whole ones
    if cache is not None and (not seen or not selectors):
        cache[name] = result
    return result
