"""The RBAC authorizer: Roles, ClusterRoles and their bindings, evaluated as Kubernetes does.

Semantics follow kube-apiserver's ``plugin/pkg/auth/authorizer/rbac`` (``rbac.go``,
``rule.go``) and ``pkg/registry/rbac/validation`` (the rule resolver):

* A request is allowed when any rule reachable from a binding whose subjects include
  the user allows it: ClusterRoleBindings first, then the RoleBindings of the request's
  namespace (a RoleBinding may reference a ClusterRole; its grants then hold in that
  namespace only). Subjects are ``User`` (by name), ``Group`` (any of the user's groups)
  and ``ServiceAccount`` (``system:serviceaccount:NS:NAME``; a RoleBinding's subject
  without a namespace means the binding's own, a ClusterRoleBinding's never matches).
* A rule matches on ``verbs`` (``*``), ``apiGroups`` (``*``), ``resources`` (``*``, the
  exact ``resource/subresource``, or ``*/subresource``; ``pods`` alone never covers
  ``pods/log``) and ``resourceNames`` (a rule naming objects never matches a request
  without a name: create, deletecollection, and list or watch unless a
  ``metadata.name`` field selector names one); non-resource requests match
  ``nonResourceURLs`` exactly, by ``*``, or by a prefix ending in ``*``.
* A ClusterRole with an ``aggregationRule`` holds the rules of every ClusterRole its
  ``clusterRoleSelectors`` select (what the clusterrole-aggregation controller writes
  into its ``rules``), followed transitively.
* An allowed request's reason names the grant as Kubernetes does:
  ``RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "y" to ServiceAccount "b/a"``.
  A binding whose role is missing contributes ``RBAC: clusterrole.rbac.authorization.k8s.io
  "y" not found`` to a denial's reason.

Speed: rules are compiled per user (name and groups) and scope into a dictionary keyed
by (verb, group, resource), so one decision is a handful of lookups. The compiled grants
are dropped whenever a Role, ClusterRole, RoleBinding or ClusterRoleBinding changes (a
store listener bumps a generation counter); nothing else invalidates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lab.api.fields import as_dict, as_list, as_str, meta
from lab.api.history import Event
from lab.api.identity import UserInfo
from lab.api.rbac_rules import (
    CLUSTER_ROLE_BINDINGS,
    RBAC_GROUP,
    RBAC_KEYS,
    ROLE_BINDINGS,
    ROLES,
    Rule,
    cluster_role_rules,
    rules_of,
    url_matches,
)
from lab.api.store import Store

if TYPE_CHECKING:
    from lab.api.authz import Attributes

__all__ = ["Grant", "RbacEvaluator"]

_SA_PREFIX = "system:serviceaccount:"
_CACHE_LIMIT = 4096


# -- the evaluator ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """A rule a user holds and where it comes from (the binding that gives it)."""

    rule: Rule
    source: str


class _Grants:
    """The rules one user holds in one scope, indexed by (verb, group, resource)."""

    __slots__ = ("errors", "grants", "index", "urls")

    def __init__(self) -> None:
        self.index: dict[tuple[str, str, str], list[tuple[int, frozenset[str] | None, str]]] = {}
        self.urls: list[tuple[int, Rule, str]] = []
        self.grants: list[Grant] = []
        self.errors: list[str] = []

    def add(self, rule: Rule, source: str) -> None:
        seq = len(self.grants)
        self.grants.append(Grant(rule, source))
        names = frozenset(rule.resource_names) if rule.resource_names else None
        for verb in rule.verbs:
            for group in rule.api_groups:
                for resource in rule.resources:
                    self.index.setdefault((verb, group, resource), []).append((seq, names, source))
        if rule.non_resource_urls and rule.verbs:
            self.urls.append((seq, rule, source))

    def match(self, attrs: Attributes) -> tuple[int, str] | None:
        """(order, source) of the first grant that allows ``attrs``, if any."""
        if not attrs.resource_request:
            for seq, rule, source in self.urls:
                if ("*" in rule.verbs or attrs.verb in rule.verbs) and any(
                    url_matches(url, attrs.path) for url in rule.non_resource_urls
                ):
                    return seq, source
            return None
        sub = attrs.subresource
        resources = (f"{attrs.resource}/{sub}", "*", f"*/{sub}") if sub else (attrs.resource, "*")
        best: tuple[int, str] | None = None
        index = self.index
        for verb in (attrs.verb, "*"):
            for group in (attrs.group, "*"):
                for resource in resources:
                    entries = index.get((verb, group, resource))
                    if not entries:
                        continue
                    for seq, names, source in entries:
                        if best is not None and seq >= best[0]:
                            break
                        if names is None or attrs.name in names:
                            best = (seq, source)
                            break
        return best


def _subject_text(subject: dict[str, Any], binding_namespace: str) -> str:
    kind, name = as_str(subject.get("kind")), as_str(subject.get("name"))
    if kind == "ServiceAccount":
        return f'{kind} "{name}/{as_str(subject.get("namespace")) or binding_namespace}"'
    return f'{kind} "{name}"'


def _applies(user: UserInfo, subject: dict[str, Any], namespace: str) -> bool:
    kind, name = subject.get("kind"), as_str(subject.get("name"))
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        sa_namespace = as_str(subject.get("namespace")) or namespace
        return bool(sa_namespace) and user.name == f"{_SA_PREFIX}{sa_namespace}:{name}"
    return False


class _Subjects:
    """Bindings indexed by the subjects they name, for one scope (cluster, or one namespace)."""

    __slots__ = ("bindings", "by_key")

    def __init__(self) -> None:
        self.bindings: list[dict[str, Any]] = []
        self.by_key: dict[tuple[str, str], list[int]] = {}

    def add(self, binding: dict[str, Any], namespace: str) -> None:
        ordinal = len(self.bindings)
        self.bindings.append(binding)
        for raw in as_list(binding.get("subjects")):
            subject = as_dict(raw)
            kind, name = as_str(subject.get("kind")), as_str(subject.get("name"))
            if kind == "ServiceAccount":
                sa_namespace = as_str(subject.get("namespace")) or namespace
                if not sa_namespace:
                    continue
                kind, name = "User", f"{_SA_PREFIX}{sa_namespace}:{name}"
            if kind in ("User", "Group"):
                self.by_key.setdefault((kind, name), []).append(ordinal)

    def for_user(self, user: UserInfo) -> list[dict[str, Any]]:
        found: set[int] = set(self.by_key.get(("User", user.name), ()))
        for group in user.groups:
            found.update(self.by_key.get(("Group", group), ()))
        return [self.bindings[i] for i in sorted(found)]


class RbacEvaluator:
    """RBAC decisions over the store's Roles, ClusterRoles and bindings, compiled and cached."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.generation = 0
        self._built = -1
        self._cluster_subjects = _Subjects()
        self._namespace_subjects: dict[str, _Subjects] = {}
        self._cluster_roles: dict[str, tuple[list[Rule], str]] = {}
        self._grants: dict[tuple[str, tuple[str, ...], str], _Grants] = {}
        store.listeners.append(self._on_event)

    def _on_event(self, event: Event) -> None:
        if event.key in RBAC_KEYS:
            self.generation += 1

    # -- compiling ------------------------------------------------------------------------

    def _refresh(self) -> None:
        if self._built == self.generation:
            return
        generation = self.generation
        self._grants = {}
        self._cluster_roles = {}
        self._cluster_subjects = _Subjects()
        for binding in self.store.scan(CLUSTER_ROLE_BINDINGS):
            self._cluster_subjects.add(binding, "")
        self._namespace_subjects = {}
        for binding in self.store.scan(ROLE_BINDINGS):
            namespace = as_str(meta(binding).get("namespace"))
            self._namespace_subjects.setdefault(namespace, _Subjects()).add(binding, namespace)
        self._built = generation

    def cluster_role_rules(self, name: str) -> tuple[list[Rule], str]:
        """(rules, error) of a ClusterRole, aggregated rules included; error when it is missing."""
        self._refresh()
        return cluster_role_rules(self.store, name, self._cluster_roles)

    def role_ref_rules(self, role_ref: Any, namespace: str) -> tuple[list[Rule], str]:
        """(rules, error) of a binding's ``roleRef`` (a Role in ``namespace``, or a ClusterRole)."""
        ref = as_dict(role_ref)
        kind, name = ref.get("kind"), as_str(ref.get("name"))
        if kind == "ClusterRole":
            return self.cluster_role_rules(name)
        if kind == "Role":
            role = self.store.peek(ROLES, namespace, name)
            if role is None:
                return [], f'role.{RBAC_GROUP} "{name}" not found'
            return rules_of(role), ""
        return [], f'unsupported role reference kind: "{as_str(kind)}"'

    def _compile(self, user: UserInfo, namespace: str | None) -> _Grants:
        """The grants of ``user`` from ClusterRoleBindings (``namespace`` None) or from the
        RoleBindings of ``namespace``."""
        grants = _Grants()
        if namespace is None:
            subjects, scope, kind = self._cluster_subjects, "", "ClusterRoleBinding"
        else:
            subjects, scope, kind = (
                self._namespace_subjects.get(namespace, _Subjects()),
                namespace,
                "RoleBinding",
            )
        for binding in subjects.for_user(user):
            subject = next(
                (as_dict(s) for s in as_list(binding.get("subjects")) if _applies(user, as_dict(s), scope)),
                None,
            )
            if subject is None:
                continue
            ref = as_dict(binding.get("roleRef"))
            rules, error = self.role_ref_rules(ref, scope)
            if error:
                grants.errors.append(error)
                continue
            name = as_str(meta(binding).get("name"))
            shown = f"{name}/{scope}" if scope else name
            source = (
                f'{kind} "{shown}" of {as_str(ref.get("kind"))} "{as_str(ref.get("name"))}" '
                f"to {_subject_text(subject, scope)}"
            )
            for rule in rules:
                grants.add(rule, source)
        return grants

    def _grants_for(self, user: UserInfo, namespace: str | None) -> _Grants:
        self._refresh()
        key = (user.name, user.groups, "\x00" if namespace is None else namespace)
        grants = self._grants.get(key)
        if grants is None:
            if len(self._grants) >= _CACHE_LIMIT:
                self._grants = {}
            grants = self._grants[key] = self._compile(user, namespace)
        return grants

    # -- answers ----------------------------------------------------------------------------

    def authorize(self, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason): ``RBAC: allowed by ...`` or, when denied, the resolution errors."""
        cluster = self._grants_for(attrs.user, None)
        found = cluster.match(attrs)
        if found is not None:
            return True, f"RBAC: allowed by {found[1]}"
        errors = list(cluster.errors)
        if attrs.namespace:
            local = self._grants_for(attrs.user, attrs.namespace)
            found = local.match(attrs)
            if found is not None:
                return True, f"RBAC: allowed by {found[1]}"
            errors.extend(local.errors)
        if not errors:
            return False, ""
        return False, "RBAC: " + (errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]")

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[list[Grant], list[str]]:
        """Every rule ``user`` holds in ``namespace`` ("" for cluster-wide ones only) and the
        resolution errors met (bindings to missing roles)."""
        cluster = self._grants_for(user, None)
        grants, errors = list(cluster.grants), list(cluster.errors)
        if namespace:
            local = self._grants_for(user, namespace)
            grants.extend(local.grants)
            errors.extend(local.errors)
        return grants, errors
