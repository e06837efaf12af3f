"""RBAC authorization of the lab API server, against Kubernetes' documented examples.

The evaluator (:mod:`lab.api.rbac`), the deny list and ``system:masters`` (:mod:`lab.api.authz`),
escalation prevention (:mod:`lab.api.rbac_writes`), the reviews (:mod:`lab.api.access_reviews`)
and the bootstrap policy (:mod:`lab.api.bootstrap_policy`), each over an in-memory State.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.api.access_reviews import review
from lab.api.authz import Attributes, Authorizer
from lab.api.bootstrap_policy import (
    AUTOUPDATE,
    CONTROLLER_MANAGER,
    SCHEDULER,
    bootstrap_objects,
    ensure_bootstrap_policy,
)
from lab.api.identity import AUTHENTICATED, MASTERS, UserInfo, service_account_user
from lab.api.rbac_rules import Rule, compact_rules, covers, rule_allows, rules_of
from lab.api.rbac_writes import confirm_rbac_write
from lab.api.settings import Settings
from lab.api.state import State
from lab.api.status import ApiError
from lab.controllers import CONTROLLERS

G = "rbac.authorization.k8s.io"
ROLES, CLUSTER_ROLES = f"roles.{G}", f"clusterroles.{G}"
BINDINGS, CLUSTER_BINDINGS = f"rolebindings.{G}", f"clusterrolebindings.{G}"


def user(name: str, *groups: str) -> UserInfo:
    return UserInfo(name, groups=(*groups, AUTHENTICATED))


@pytest.fixture
def state() -> State:
    s = State(Settings())
    s.open()
    for ns in ("development", "tenants", "other"):
        s.store.create("namespaces", {"metadata": {"name": ns}})
    return s


@pytest.fixture
def authz(state: State) -> Authorizer:
    return Authorizer(state, None)


def role(state: State, name: str, rules: list[dict[str, Any]], namespace: str = "", **extra: Any) -> None:
    key = ROLES if namespace else CLUSTER_ROLES
    md: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    md.update(extra.pop("metadata", {}))
    state.store.create(key, {"metadata": md, "rules": rules, **extra})


def bind(
    state: State, name: str, ref: str, subjects: list[dict[str, Any]], namespace: str = "", kind: str = ""
) -> None:
    key = BINDINGS if namespace else CLUSTER_BINDINGS
    md: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    ref_kind = kind or ("Role" if namespace else "ClusterRole")
    state.store.create(
        key, {"metadata": md, "roleRef": {"apiGroup": G, "kind": ref_kind, "name": ref}, "subjects": subjects}
    )


def can(
    authz: Authorizer, who: UserInfo, verb: str, resource: str, namespace: str = "", name: str = ""
) -> bool:
    group, _, rest = resource.rpartition(":") if ":" in resource else ("", "", resource)
    plural, _, sub = rest.partition("/")
    return authz.decide(Attributes(who, verb, group, plural, sub, namespace, name))[0]


# -- Kubernetes' documented examples -------------------------------------------------------------


def test_a_role_binding_grants_its_role_in_its_namespace_only(state: State, authz: Authorizer) -> None:
    role(
        state,
        "pod-reader",
        [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "watch", "list"]}],
        "tenants",
    )
    bind(state, "read-pods", "pod-reader", [{"kind": "User", "name": "jane", "apiGroup": G}], "tenants")
    jane = user("jane")
    assert can(authz, jane, "list", "pods", "tenants") and can(authz, jane, "get", "pods", "tenants", "db-0")
    assert authz.decide(Attributes(jane, "get", "", "pods", "", "tenants", "db-0")) == (
        True,
        'RBAC: allowed by RoleBinding "read-pods/tenants" of Role "pod-reader" to User "jane"',
    )
    assert not can(authz, jane, "list", "pods", "other")
    assert not can(authz, jane, "list", "pods")  # all namespaces: only cluster-wide grants count
    assert not can(authz, jane, "delete", "pods", "tenants", "db-0")
    assert not can(authz, jane, "get", "pods/log", "tenants", "db-0")  # a subresource is its own resource
    assert not can(authz, jane, "list", "apps:deployments", "tenants")
    assert not can(authz, user("jim"), "list", "pods", "tenants")


def test_a_role_binding_may_reference_a_cluster_role(state: State, authz: Authorizer) -> None:
    role(
        state,
        "secret-reader",
        [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "watch", "list"]}],
    )
    bind(
        state,
        "read-secrets",
        "secret-reader",
        [{"kind": "User", "name": "dave"}],
        "development",
        "ClusterRole",
    )
    dave = user("dave")
    assert can(authz, dave, "get", "secrets", "development", "db-credentials")
    assert not can(authz, dave, "get", "secrets", "tenants", "db-credentials")
    reason = authz.decide(Attributes(dave, "list", "", "secrets", "", "development"))[1]
    assert (
        reason == 'RBAC: allowed by RoleBinding "read-secrets/development" '
        'of ClusterRole "secret-reader" to User "dave"'
    )


def test_a_cluster_role_binding_grants_everywhere_to_a_group(state: State, authz: Authorizer) -> None:
    role(
        state,
        "secret-reader",
        [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "watch", "list"]}],
    )
    bind(state, "read-secrets-global", "secret-reader", [{"kind": "Group", "name": "manager", "apiGroup": G}])
    manager = user("mia", "manager")
    assert can(authz, manager, "list", "secrets") and can(authz, manager, "watch", "secrets", "other")
    assert not can(authz, user("mia"), "list", "secrets")
    reason = authz.decide(Attributes(manager, "list", "", "secrets"))[1]
    assert (
        reason == 'RBAC: allowed by ClusterRoleBinding "read-secrets-global" '
        'of ClusterRole "secret-reader" to Group "manager"'
    )


def test_subresources_wildcards_and_groups(state: State, authz: Authorizer) -> None:
    role(
        state,
        "mixed",
        [
            {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]},
            {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["update"]},
            {"apiGroups": ["batch"], "resources": ["*"], "verbs": ["*"]},
            {"apiGroups": ["*"], "resources": ["leases"], "verbs": ["get"]},
        ],
    )
    bind(state, "mixed", "mixed", [{"kind": "User", "name": "sam"}])
    sam = user("sam")
    assert can(authz, sam, "get", "pods/log", "x", "p") and can(authz, sam, "get", "pods", "x", "p")
    assert not can(authz, sam, "create", "pods/eviction", "x", "p")
    assert can(authz, sam, "update", "apps:deployments/scale", "x", "d")
    assert can(authz, sam, "update", "apps:statefulsets/scale", "x", "d")
    assert not can(authz, sam, "update", "apps:deployments", "x", "d")
    assert not can(authz, sam, "update", "apps:deployments/status", "x", "d")
    assert not can(authz, sam, "update", "deployments/scale", "x", "d")  # another group
    assert can(authz, sam, "delete", "batch:jobs/status", "x", "j")  # "*" covers subresources
    assert can(authz, sam, "deletecollection", "batch:cronjobs", "x")
    assert can(authz, sam, "get", "coordination.k8s.io:leases", "kube-node-lease", "n1")


def test_resource_names_never_match_requests_without_a_name(state: State, authz: Authorizer) -> None:
    rules = [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["my-configmap"], "verbs": ["*"]}
    ]
    role(state, "configmap-updater", rules, "tenants")
    bind(state, "u", "configmap-updater", [{"kind": "User", "name": "ann"}], "tenants")
    ann = user("ann")
    assert can(authz, ann, "get", "configmaps", "tenants", "my-configmap")
    assert can(authz, ann, "update", "configmaps", "tenants", "my-configmap")
    assert not can(authz, ann, "get", "configmaps", "tenants", "other-configmap")
    for verb in ("create", "list", "watch", "deletecollection"):  # no name on these
        assert not can(authz, ann, verb, "configmaps", "tenants"), verb
    # a list or watch naming the object by field selector carries the name (handlers.request_attributes)
    assert can(authz, ann, "list", "configmaps", "tenants", "my-configmap")


def test_non_resource_urls(state: State, authz: Authorizer) -> None:
    role(state, "health", [{"nonResourceURLs": ["/healthz", "/healthz/*", "/apis*"], "verbs": ["get"]}])
    bind(state, "health", "health", [{"kind": "Group", "name": "probers"}])
    prober = user("p", "probers")

    def get(path: str, verb: str = "get") -> bool:
        return authz.decide(Attributes(prober, verb, path=path))[0]

    assert get("/healthz") and get("/healthz/etcd") and get("/apis") and get("/apis/apps/v1")
    assert not get("/healthzz") and not get("/version") and not get("/healthz", "post")
    assert not can(authz, prober, "get", "pods", "x", "healthz")  # URL rules never grant resources


def test_service_account_subjects(state: State, authz: Authorizer) -> None:
    role(state, "reader", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}])
    bind(state, "local", "reader", [{"kind": "ServiceAccount", "name": "app"}], "tenants", "ClusterRole")
    bind(state, "nowhere", "reader", [{"kind": "ServiceAccount", "name": "app"}])  # no namespace: never
    bind(
        state,
        "all-in-other",
        "reader",
        [{"kind": "Group", "name": "system:serviceaccounts:other"}],
        "other",
        "ClusterRole",
    )
    app = service_account_user("tenants", "app")
    assert can(authz, app, "list", "pods", "tenants")
    assert not can(authz, app, "list", "pods")
    assert not can(authz, app, "list", "pods", "other")
    assert not can(authz, service_account_user("other", "app"), "list", "pods", "tenants")
    assert can(authz, service_account_user("other", "anyone"), "list", "pods", "other")
    reason = authz.decide(Attributes(app, "list", "", "pods", "", "tenants"))[1]
    assert (
        reason == 'RBAC: allowed by RoleBinding "local/tenants" '
        'of ClusterRole "reader" to ServiceAccount "app/tenants"'
    )


def test_aggregated_cluster_roles_follow_their_labels(state: State, authz: Authorizer) -> None:
    selector = {
        "clusterRoleSelectors": [{"matchLabels": {"rbac.example.com/aggregate-to-monitoring": "true"}}]
    }
    role(state, "monitoring", [], aggregationRule=selector)
    bind(state, "mon", "monitoring", [{"kind": "User", "name": "mo"}])
    mo = user("mo")
    assert not can(authz, mo, "get", "services", "x", "s")
    labels = {"labels": {"rbac.example.com/aggregate-to-monitoring": "true"}}
    role(
        state,
        "monitoring-endpoints",
        [
            {
                "apiGroups": [""],
                "resources": ["services", "endpoints", "pods"],
                "verbs": ["get", "list", "watch"],
            }
        ],
        metadata=labels,
    )
    assert can(authz, mo, "get", "services", "x", "s")  # the cache was dropped when the role appeared
    state.store.delete(CLUSTER_ROLES, "", "monitoring-endpoints")
    assert not can(authz, mo, "get", "services", "x", "s")


def test_a_binding_to_a_missing_role_says_so_in_the_denial(state: State, authz: Authorizer) -> None:
    bind(state, "dangling", "not-there", [{"kind": "User", "name": "dan"}])
    attrs = Attributes(user("dan"), "delete", "", "pods", "", "tenants", "db-0")
    assert authz.decide(attrs) == (False, f'RBAC: clusterrole.{G} "not-there" not found')
    with pytest.raises(ApiError) as caught:
        authz.check(attrs)
    assert caught.value.message.endswith(f': RBAC: clusterrole.{G} "not-there" not found')


# -- the deny list, system:masters, and the 403 -----------------------------------------------------


def test_the_policy_file_only_takes_permissions_away(state: State, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "deny:\n"
        "  - {verb: create, resource: pods/eviction, namespace: locked}\n"
        "  - {user: 'system:serviceaccount:*', verb: delete, resource: pods}\n"
        "  - {groups: system:nodes, verb: get, resource: secrets}\n"
        "  - {verb: get, path: /version}\n"
    )
    authz = Authorizer(state, policy)
    admin = user("lab-admin", MASTERS)
    assert can(authz, admin, "create", "pods/eviction", "tenants", "p")
    denied = authz.decision(Attributes(admin, "create", "", "pods", "eviction", "locked", "p"))
    assert (denied.allowed, denied.denied, denied.reason) == (
        False,
        True,
        "denied by lab policy rule deny[0]",
    )
    role(
        state,
        "all",
        [
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            {"nonResourceURLs": ["*"], "verbs": ["*"]},
        ],
    )
    bind(
        state,
        "all",
        "all",
        [{"kind": "Group", "name": "system:serviceaccounts"}, {"kind": "Group", "name": "system:nodes"}],
    )
    sa, node = service_account_user("tenants", "x"), user("system:node:n1", "system:nodes")
    assert not can(authz, sa, "delete", "pods", "tenants", "p") and can(
        authz, sa, "get", "pods", "tenants", "p"
    )
    assert not can(authz, node, "get", "secrets", "tenants", "s") and can(
        authz, node, "get", "configmaps", "t", "c"
    )
    assert not authz.decide(Attributes(sa, "get", path="/version"))[0]
    assert authz.decide(Attributes(sa, "get", path="/apis"))[0]
    # default deny with allow rules never grants what RBAC does not
    policy.write_text("default: deny\nallow:\n  - {verb: get, resource: pods}\n")
    nobody = user("nobody")
    assert not can(authz, nobody, "get", "pods", "tenants", "p")
    assert can(authz, admin, "get", "pods", "tenants", "p")
    assert not can(authz, admin, "list", "pods", "tenants")
    assert authz.decision(Attributes(admin, "list", "", "pods")).reason == "denied by lab policy default"
    assert authz.decide(Attributes(admin, "get", path="/apis"))[0]  # the default restricts resources only
    policy.write_text("deny: [unclosed\n")
    assert not can(authz, admin, "get", "pods", "tenants", "p")  # unreadable: everything denied


def test_forbidden_is_worded_as_kube_apiserver(authz: Authorizer, tmp_path: Path) -> None:
    op = service_account_user("mssql-operator", "mssql-operator")
    cases = [
        (
            Attributes(op, "delete", "", "pods", "", "tenants", "db-0"),
            'pods "db-0" is forbidden: User "system:serviceaccount:mssql-operator:mssql-operator" '
            'cannot delete resource "pods" in API group "" in the namespace "tenants"',
        ),
        (
            Attributes(op, "list", "apps", "deployments", "", "tenants"),
            'deployments.apps is forbidden: User "system:serviceaccount:mssql-operator:mssql-operator" '
            'cannot list resource "deployments" in API group "apps" in the namespace "tenants"',
        ),
        (
            Attributes(op, "patch", "", "nodes", "status", "", "n1"),
            'nodes "n1" is forbidden: User "system:serviceaccount:mssql-operator:mssql-operator" '
            'cannot patch resource "nodes/status" in API group "" at the cluster scope',
        ),
        (
            Attributes(op, "get", path="/apis"),
            'forbidden: User "system:serviceaccount:mssql-operator:mssql-operator" cannot get path "/apis"',
        ),
    ]
    for attrs, message in cases:
        with pytest.raises(ApiError) as caught:
            authz.check(attrs)
        status = caught.value.status()
        assert (status["code"], status["reason"], status["message"]) == (403, "Forbidden", message)
    details = Attributes(op, "delete", "", "pods", "", "tenants", "db-0").denial().status()["details"]
    assert details == {"name": "db-0", "kind": "pods"}
    policy = tmp_path / "p.yaml"
    policy.write_text("deny:\n  - {verb: delete}\n")
    admin = user("lab-admin", MASTERS)
    with pytest.raises(ApiError) as caught:
        Authorizer(authz.state, policy).check(Attributes(admin, "delete", "", "pods", "", "tenants", "db-0"))
    assert caught.value.message == (
        'pods "db-0" is forbidden: User "lab-admin" cannot delete resource "pods" in API group "" '
        'in the namespace "tenants": denied by lab policy rule deny[0]'
    )


# -- speed and the compiled index ------------------------------------------------------------------


def test_grants_are_cached_until_an_rbac_object_changes(state: State, authz: Authorizer) -> None:
    role(state, "r", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}], "tenants")
    jo = user("jo")
    assert not can(authz, jo, "get", "pods", "tenants", "p")
    generation = authz.rbac.generation
    state.store.create("configmaps", {"metadata": {"name": "c", "namespace": "tenants"}})
    assert authz.rbac.generation == generation  # other kinds never invalidate
    bind(state, "b", "r", [{"kind": "User", "name": "jo"}], "tenants")
    assert authz.rbac.generation == generation + 1 and can(authz, jo, "get", "pods", "tenants", "p")
    state.store.delete(BINDINGS, "tenants", "b")
    assert not can(authz, jo, "get", "pods", "tenants", "p")


def test_a_decision_takes_microseconds_with_hundreds_of_bindings(state: State, authz: Authorizer) -> None:
    ensure_bootstrap_policy(state)
    for i in range(200):
        ns = f"ns{i}"
        state.store.create("namespaces", {"metadata": {"name": ns}})
        role(
            state,
            "r",
            [{"apiGroups": [""], "resources": ["pods", "configmaps"], "verbs": ["get", "list"]}],
            ns,
        )
        bind(
            state,
            "b",
            "r",
            [{"kind": "ServiceAccount", "name": f"sa{i}"}, {"kind": "Group", "name": "devs"}],
            ns,
        )
        bind(state, f"crb{i}", "view", [{"kind": "User", "name": f"u{i}"}])
    sa = service_account_user("ns150", "sa150")
    allowed = Attributes(sa, "list", "", "pods", "", "ns150")
    denied = Attributes(sa, "delete", "", "pods", "", "ns151", "p")
    assert authz.decide(allowed)[0] and not authz.decide(denied)[0]
    rounds = 20_000
    started = time.perf_counter()
    for _ in range(rounds):
        authz.decide(allowed)
        authz.decide(denied)
    per_decision = (time.perf_counter() - started) / (2 * rounds)
    assert per_decision < 50e-6, f"{per_decision * 1e6:.1f} µs per decision"


_WORDS = st.sampled_from(["get", "list", "*", "pods", "pods/log", "*/scale", "deployments", "", "apps", "db"])


@st.composite
def _rules(draw: st.DrawFn) -> Rule:
    pick = st.lists(_WORDS, max_size=3).map(tuple)
    return Rule(draw(pick), draw(pick), draw(pick), draw(st.lists(_WORDS, max_size=2).map(tuple)))


@settings(max_examples=300, deadline=None)
@given(
    rules=st.lists(_rules(), min_size=1, max_size=4),
    verb=st.sampled_from(["get", "list", "update"]),
    group=st.sampled_from(["", "apps"]),
    resource=st.sampled_from(["pods", "deployments", "nodes"]),
    sub=st.sampled_from(["", "log", "scale"]),
    name=st.sampled_from(["", "db", "web"]),
)
def test_the_compiled_index_decides_as_rule_allows(
    rules: list[Rule], verb: str, group: str, resource: str, sub: str, name: str
) -> None:
    state = State(Settings())
    state.open()
    authz = Authorizer(state, None)
    role(state, "r", [r.as_dict() for r in rules])
    bind(state, "b", "r", [{"kind": "User", "name": "fuzz"}])
    attrs = Attributes(user("fuzz"), verb, group, resource, sub, "ns", name)
    assert authz.decide(attrs)[0] == any(rule_allows(r, attrs) for r in rules)


# -- escalation -------------------------------------------------------------------------------------


def _rbac_rt(state: State, key: str) -> Any:
    return state.registry.builtin(key)


def test_roles_may_only_grant_what_their_author_holds(state: State, authz: Authorizer) -> None:
    role(
        state,
        "team-lead",
        [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
            {"apiGroups": [G], "resources": ["roles"], "verbs": ["create", "update"]},
        ],
        "tenants",
    )
    bind(state, "lead", "team-lead", [{"kind": "User", "name": "lee"}], "tenants")
    lee = user("lee")
    rt = _rbac_rt(state, ROLES)
    ok = {
        "metadata": {"name": "viewer"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    }
    confirm_rbac_write(authz, lee, rt, "tenants", "", ok, None)
    wider = {
        "metadata": {"name": "deleter"},
        "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
        ],
    }
    with pytest.raises(ApiError) as caught:
        confirm_rbac_write(authz, lee, rt, "tenants", "", wider, None)
    assert caught.value.code == 403
    assert caught.value.message == (
        f'roles.{G} "deleter" is forbidden: user "lee" (groups=["system:authenticated"]) is attempting '
        "to grant RBAC permissions not currently held:\n"
        '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}\n'
        '{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}'
    )
    with pytest.raises(ApiError):  # the same rules in another namespace are not held there
        confirm_rbac_write(authz, lee, rt, "other", "", ok, None)
    # an update that only touches what the garbage collector writes passes
    old = {**wider, "metadata": {"name": "deleter", "resourceVersion": "5"}}
    gc_only = {**wider, "metadata": {"name": "deleter", "resourceVersion": "5", "finalizers": ["x"]}}
    confirm_rbac_write(authz, lee, rt, "tenants", "deleter", gc_only, old)
    # escalate on roles lets anything through; system:masters too
    role(state, "escalator", [{"apiGroups": [G], "resources": ["roles"], "verbs": ["escalate"]}], "tenants")
    bind(state, "esc", "escalator", [{"kind": "User", "name": "lee"}], "tenants")
    confirm_rbac_write(authz, lee, rt, "tenants", "", wider, None)
    confirm_rbac_write(authz, user("root", MASTERS), rt, "other", "", wider, None)


def test_aggregation_rules_need_full_authority(state: State, authz: Authorizer) -> None:
    # (verbs "*" would include escalate, which lets any rule through)
    role(
        state,
        "crole-admin",
        [{"apiGroups": [G], "resources": ["clusterroles"], "verbs": ["create", "update"]}],
    )
    bind(state, "cra", "crole-admin", [{"kind": "User", "name": "al"}])
    rt = _rbac_rt(state, CLUSTER_ROLES)
    body = {
        "metadata": {"name": "agg"},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]},
    }
    with pytest.raises(ApiError) as caught:
        confirm_rbac_write(authz, user("al"), rt, "", "", body, None)
    assert caught.value.message == (
        f'clusterroles.{G} "agg" is forbidden: must have cluster-admin privileges to use the aggregationRule'
    )


def test_bindings_need_the_roles_permissions_or_bind(state: State, authz: Authorizer) -> None:
    ensure_bootstrap_policy(state)
    role(
        state,
        "binder",
        [
            {"apiGroups": [G], "resources": ["rolebindings"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        ],
        "tenants",
    )
    bind(state, "binder", "binder", [{"kind": "User", "name": "bo"}], "tenants")
    bo, rt = user("bo"), _rbac_rt(state, BINDINGS)

    def binding(ref_kind: str, ref: str) -> dict[str, Any]:
        return {
            "metadata": {"name": "b"},
            "roleRef": {"apiGroup": G, "kind": ref_kind, "name": ref},
            "subjects": [{"kind": "User", "name": "eve"}],
        }

    role(state, "pods-only", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}], "tenants")
    confirm_rbac_write(authz, bo, rt, "tenants", "", binding("Role", "pods-only"), None)
    with pytest.raises(ApiError) as caught:
        confirm_rbac_write(authz, bo, rt, "tenants", "", binding("ClusterRole", "admin"), None)
    assert (
        caught.value.code == 403
        and "is attempting to grant RBAC permissions not currently held" in caught.value.message
    )
    assert caught.value.message.startswith(f'rolebindings.{G} "b" is forbidden: user "bo"')
    with pytest.raises(ApiError) as missing:
        confirm_rbac_write(authz, bo, rt, "tenants", "", binding("Role", "ghost"), None)
    assert (missing.value.code, missing.value.message) == (404, f'roles.{G} "ghost" not found')
    role(
        state,
        "admin-binder",
        [{"apiGroups": [G], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["admin"]}],
    )
    bind(state, "ab", "admin-binder", [{"kind": "User", "name": "bo"}], "tenants", "ClusterRole")
    confirm_rbac_write(authz, bo, rt, "tenants", "", binding("ClusterRole", "admin"), None)
    with pytest.raises(ApiError):
        confirm_rbac_write(authz, bo, rt, "tenants", "", binding("ClusterRole", "cluster-admin"), None)


def test_covers_and_compact_follow_kubernetes() -> None:
    owner = [
        Rule(("get", "list"), ("",), ("pods", "*/status")),
        Rule(("get",), non_resource_urls=("/healthz/*",)),
    ]
    assert covers(owner, [Rule(("get",), ("",), ("pods", "nodes/status"))]) == []
    assert covers(owner, [Rule(("get",), non_resource_urls=("/healthz/etcd",))]) == []
    missing = covers(owner, [Rule(("get", "delete"), ("",), ("pods", "pods/log"), ("a",))])
    assert [m.compact() for m in compact_rules(missing)] == [
        '{APIGroups:[""], Resources:["pods"], ResourceNames:["a"], Verbs:["delete"]}',
        '{APIGroups:[""], Resources:["pods/log"], ResourceNames:["a"], Verbs:["get"]}',
        '{APIGroups:[""], Resources:["pods/log"], ResourceNames:["a"], Verbs:["delete"]}',
    ]
    merged = compact_rules([Rule(("get",), ("",), ("pods",)), Rule(("list",), ("",), ("pods",))])
    assert merged == [Rule(("get", "list"), ("",), ("pods",))]
    # a named grant covers only that name; an unnamed one covers every name
    assert covers([Rule(("get",), ("",), ("pods",), ("a",))], [Rule(("get",), ("",), ("pods",))])
    assert not covers([Rule(("get",), ("",), ("pods",))], [Rule(("get",), ("",), ("pods",), ("a",))])


# -- reviews ----------------------------------------------------------------------------------------


def test_access_reviews(state: State, authz: Authorizer, tmp_path: Path) -> None:
    role(state, "r", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}], "tenants")
    bind(state, "b", "r", [{"kind": "Group", "name": "devs"}], "tenants")
    dev = user("dev", "devs")
    ssar = {"spec": {"resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "tenants"}}}
    answer = review(authz, dev, "SelfSubjectAccessReview", ssar)
    assert list(answer) == ["kind", "apiVersion", "metadata", "spec", "status"]
    assert answer["status"] == {
        "allowed": True,
        "reason": 'RBAC: allowed by RoleBinding "b/tenants" of Role "r" to Group "devs"',
    }
    assert review(authz, user("x"), "SelfSubjectAccessReview", ssar)["status"] == {"allowed": False}
    sar = {"spec": {"user": "dev", "groups": ["devs"], **ssar["spec"]}}
    assert review(authz, user("root", MASTERS), "SubjectAccessReview", sar)["status"]["allowed"] is True
    sar_alone = {"spec": {"user": "dev", **ssar["spec"]}}  # a user without groups is in none
    assert (
        review(authz, user("root", MASTERS), "SubjectAccessReview", sar_alone)["status"]["allowed"] is False
    )
    with pytest.raises(ApiError) as caught:
        review(authz, dev, "SubjectAccessReview", ssar)
    assert caught.value.message.endswith(
        'spec.user: Invalid value: "": at least one of user or group must be specified'
    )
    lsar = review(authz, dev, "LocalSubjectAccessReview", sar, "tenants")
    assert lsar["status"]["allowed"] and lsar["metadata"]["namespace"] == "tenants"
    with pytest.raises(ApiError) as caught:
        review(authz, dev, "LocalSubjectAccessReview", sar, "other")
    assert (caught.value.code, caught.value.message) == (
        400,
        "spec.resourceAttributes.namespace must match namespace: other",
    )
    with pytest.raises(ApiError) as caught:
        review(authz, dev, "SelfSubjectAccessReview", {"spec": {}})
    assert (
        caught.value.code == 422
        and "exactly one of nonResourceAttributes or resourceAttributes" in caught.value.message
    )
    rules = review(authz, dev, "SelfSubjectRulesReview", {"spec": {"namespace": "tenants"}})["status"]
    assert rules == {
        "resourceRules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}],
        "nonResourceRules": [],
        "incomplete": False,
    }
    with pytest.raises(ApiError) as caught:
        review(authz, dev, "SelfSubjectRulesReview", {"spec": {}})
    assert (caught.value.code, caught.value.message) == (400, "no namespace on request")
    policy = tmp_path / "p.yaml"
    policy.write_text("deny:\n  - {verb: get, resource: pods, namespace: tenants}\n")
    denying = Authorizer(state, policy)
    status = review(denying, dev, "SelfSubjectAccessReview", ssar)["status"]
    assert status == {"allowed": False, "denied": True, "reason": "denied by lab policy rule deny[0]"}
    assert review(denying, dev, "SelfSubjectRulesReview", {"spec": {"namespace": "tenants"}})["status"][
        "incomplete"
    ]


def _proto(api_version: str, kind: str, message: bytes) -> bytes:
    def field(number: int, data: bytes) -> bytes:
        assert len(data) < 128
        return bytes([number << 3 | 2, len(data)]) + data

    type_meta = field(1, api_version.encode()) + field(2, kind.encode())
    return b"k8s\x00" + field(1, type_meta) + field(2, message)


def test_protobuf_review_bodies_kubectl_sends(state: State, authz: Authorizer) -> None:
    from lab.api.access_reviews import _decode

    def field(number: int, data: bytes) -> bytes:
        return bytes([number << 3 | 2, len(data)]) + data

    ssrr = _proto("authorization.k8s.io/v1", "SelfSubjectRulesReview", field(2, field(1, b"tenants")))
    assert _decode(ssrr, "application/vnd.kubernetes.protobuf") == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": "tenants"},
    }
    attrs = field(1, b"tenants") + field(2, b"get") + field(5, b"pods")
    extra = field(1, b"scopes") + field(2, field(1, b"a") + field(1, b"b"))
    spec = (
        field(1, attrs)
        + field(3, b"dev")
        + field(4, b"devs")
        + field(4, b"ops")
        + field(5, extra)
        + field(6, b"u1")
    )
    sar = _decode(
        _proto("authorization.k8s.io/v1", "SubjectAccessReview", field(2, spec)),
        "application/vnd.kubernetes.protobuf",
    )
    assert sar["spec"] == {
        "resourceAttributes": {"namespace": "tenants", "verb": "get", "resource": "pods"},
        "user": "dev",
        "groups": ["devs", "ops"],
        "extra": {"scopes": ["a", "b"]},
        "uid": "u1",
    }


# -- the bootstrap policy ---------------------------------------------------------------------------


def test_bootstrap_policy_is_created_once_and_kept_up_to_date(state: State) -> None:
    created = ensure_bootstrap_policy(state)
    assert created >= len(bootstrap_objects()) and ensure_bootstrap_policy(state) == 0
    node = state.store.get(CLUSTER_ROLES, "", "system:node")
    assert node is not None
    node["rules"] = node["rules"][1:]  # an administrator removed a rule
    state.store.update(CLUSTER_ROLES, node)
    assert ensure_bootstrap_policy(state) == 1
    expected = next(
        o
        for o in bootstrap_objects()
        if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "system:node"
    )
    assert covers(rules_of(state.store.get(CLUSTER_ROLES, "", "system:node")), rules_of(expected)) == []
    binding = state.store.get(CLUSTER_BINDINGS, "", "system:basic-user")
    assert binding is not None
    binding["subjects"] = []
    binding["metadata"]["annotations"][AUTOUPDATE] = "false"  # opted out: left alone
    state.store.update(CLUSTER_BINDINGS, binding)
    assert ensure_bootstrap_policy(state) == 0
    view = state.store.get(CLUSTER_ROLES, "", "view")
    assert view is not None and any("pods" in r.get("resources", []) for r in view["rules"])


def test_the_bootstrap_roles_cover_the_lab_components(state: State, authz: Authorizer) -> None:
    ensure_bootstrap_policy(state)
    kubelet = user("system:node:lab-node-1", "system:nodes")
    for verb, resource, ns in [
        ("watch", "pods", ""),
        ("list", "pods", ""),
        ("patch", "pods/status", "tenants"),
        ("delete", "pods", "tenants"),
        ("get", "secrets", "tenants"),
        ("get", "configmaps", "tenants"),
        ("get", "persistentvolumeclaims", "tenants"),
        ("get", "persistentvolumes", ""),
        ("create", "nodes", ""),
        ("patch", "nodes/status", ""),
        ("patch", "nodes", ""),
        ("create", "events", "tenants"),
        ("patch", "events", "tenants"),
        ("get", "serviceaccounts", "tenants"),
        ("create", "serviceaccounts/token", "tenants"),
        ("create", "coordination.k8s.io:leases", "kube-node-lease"),
        ("patch", "coordination.k8s.io:leases", "kube-node-lease"),
    ]:
        assert can(
            authz, kubelet, verb, resource, ns, "x" if verb not in ("list", "watch", "create") else ""
        ), (verb, resource)
    assert not can(authz, kubelet, "patch", "coordination.k8s.io:leases", "tenants", "x")
    assert not can(authz, kubelet, "delete", "secrets", "tenants", "x")
    scheduler = user(SCHEDULER)
    assert can(authz, scheduler, "create", "pods/binding", "tenants", "p") and can(
        authz, scheduler, "list", "nodes"
    )
    assert not can(authz, scheduler, "delete", "nodes", "", "n1")
    kcm = user(CONTROLLER_MANAGER)
    watched = {kind for factory in CONTROLLERS.values() for kind in getattr(factory, "watches", ())}
    group_of = {
        "deployments": "apps",
        "replicasets": "apps",
        "statefulsets": "apps",
        "jobs": "batch",
        "cronjobs": "batch",
    }
    for kind in watched:
        resource = f"{group_of[kind]}:{kind}" if kind in group_of else kind
        assert can(authz, kcm, "watch", resource) and can(authz, kcm, "list", resource), kind
    for verb, resource in [
        ("create", "pods"),
        ("delete", "pods"),
        ("patch", "pods/status"),
        ("create", "apps:replicasets"),
        ("patch", "apps:statefulsets/status"),
        ("create", "persistentvolumes"),
        ("update", "endpoints"),
        ("create", "discovery.k8s.io:endpointslices"),
        ("patch", "nodes"),
    ]:
        assert can(authz, kcm, verb, resource, "tenants", "" if verb == "create" else "x"), (verb, resource)
    assert not can(authz, kcm, "get", "secrets", "tenants", "x") and not can(
        authz, kcm, "create", "pods/binding", "t", "p"
    )
    anyone = user("someone")
    assert authz.decide(Attributes(anyone, "get", path="/apis/apps/v1"))[0]
    assert can(authz, anyone, "create", "authorization.k8s.io:selfsubjectaccessreviews")
    assert not can(authz, anyone, "list", "pods", "tenants")
    anonymous = UserInfo("system:anonymous", groups=("system:unauthenticated",))
    assert authz.decide(Attributes(anonymous, "get", path="/version"))[0]
    assert not authz.decide(Attributes(anonymous, "get", path="/apis"))[0]
    # the operator's grants come from lab/crds/operator.yaml only
    operator = service_account_user("mssql-operator", "mssql-operator")
    assert not can(authz, operator, "list", "mssql.example.com:mssqlinstances")
