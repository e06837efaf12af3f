"""Pods that ask for root: admitted only when the creator or the pod's service account may ``use``
the ``privileged`` PodSecurityPolicy, decided by the server's real authorizer (deny list,
``system:masters``, RBAC over an in-memory store), and end to end through a real HTTPS API
server that authenticates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.api import start_api_server
from lab.api.authz import Attributes, Authorizer
from lab.api.identity import AUTHENTICATED, MASTERS, UserInfo
from lab.api.pki import ensure_pki
from lab.api.pod_security import POLICY, admit, admit_template, asks_for_root, root_request
from lab.api.settings import Settings
from lab.api.state import State
from lab.api.status import ApiError
from lab.api.tokens import ensure_token
from lab.kubeclient import ApiError as KubeApiError
from lab.kubeclient import KubeClient

Obj = dict[str, Any]
NS = "tenants"
# The store's keys of the RBAC kinds (plural.group, as the API names them).
CLUSTER_ROLES = "clusterroles.rbac.authorization.k8s.io"
CLUSTER_ROLE_BINDINGS = "clusterrolebindings.rbac.authorization.k8s.io"
ROLE_BINDINGS = "rolebindings.rbac.authorization.k8s.io"
ALICE = UserInfo("alice", groups=(AUTHENTICATED,))
ADMIN = UserInfo("lab-admin", groups=(MASTERS, AUTHENTICATED))


@pytest.fixture
def state() -> Iterator[State]:
    st = State(Settings())
    st.open()
    st.store.create(
        CLUSTER_ROLES,
        {
            "metadata": {"name": "psp:privileged"},
            "rules": [
                {
                    "apiGroups": ["policy"],
                    "resources": ["podsecuritypolicies"],
                    "resourceNames": [POLICY],
                    "verbs": ["use"],
                }
            ],
        },
    )
    yield st
    st.close()


def _pod(container: Obj | None = None, pod_sc: Obj | None = None, account: str = "default") -> Obj:
    main: Obj = {"name": "main", "image": "busybox", "command": ["sleep", "1"], **(container or {})}
    spec: Obj = {"containers": [main], "serviceAccountName": account}
    if pod_sc is not None:
        spec["securityContext"] = pod_sc
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": NS}, "spec": spec}


def _bind(state: State, subject: Obj, namespace: str | None = None) -> None:
    body: Obj = {
        "metadata": {"name": f"use-privileged-{subject['name']}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "psp:privileged"},
        "subjects": [subject],
    }
    if namespace is None:
        state.store.create(CLUSTER_ROLE_BINDINGS, body)
    else:
        body["metadata"]["namespace"] = namespace
        state.store.create(ROLE_BINDINGS, body)


def test_what_counts_as_asking_for_root() -> None:
    assert root_request(_pod()) is None
    assert root_request(_pod(pod_sc={"runAsNonRoot": False})) is None, "asks for nothing"
    lab_image = root_request(_pod({"image": "mssql-lab/engine:15", "command": None}))
    assert lab_image == (
        "main",
        "image mssql-lab/engine:15 without a command runs as the kubelet's user, root",
    )
    assert root_request(_pod({"image": "mssql-lab/engine:15", "command": ["sh"]})) is None, "a host command"
    for uid in (101, 1000, 99999):
        asked = root_request(_pod({"securityContext": {"runAsUser": uid}}))
        assert asked is not None and f"runAsUser: {uid}, a host account's id" in asked[1]
    for uid in (65534, 100000, 2**31 - 1):
        assert root_request(_pod({"securityContext": {"runAsUser": uid, "runAsGroup": uid}})) is None
    shadow = root_request(_pod(pod_sc={"supplementalGroups": [100001, 42]}))
    assert shadow is not None and "supplementalGroups: [42], a host group" in shadow[1]
    host = _pod()
    host["spec"]["volumes"] = [{"name": "etc", "hostPath": {"path": "/etc"}}]
    assert root_request(host) == ("", 'hostPath volume "etc"')
    assert root_request(_pod({"securityContext": {"runAsUser": 0}})) == (
        "main",
        "securityContext.runAsUser: 0",
    )
    assert root_request(_pod(pod_sc={"runAsUser": 0})) == ("main", "securityContext.runAsUser: 0")
    overridden = _pod({"securityContext": {"runAsUser": 100000}}, pod_sc={"runAsUser": 0})
    assert root_request(overridden) is None, "the container's own runAsUser wins over the pod's"
    assert asks_for_root({}, {"securityContext": {"runAsGroup": 0}}) == "securityContext.runAsGroup: 0"
    assert asks_for_root({}, {"securityContext": {"privileged": True}}) == "securityContext.privileged: true"
    assert asks_for_root({}, {"securityContext": {"runAsUser": False}}) is None, "a boolean is not uid 0"
    groups = _pod(pod_sc={"supplementalGroups": [5, 0]})
    assert root_request(groups) == ("main", "spec.securityContext.supplementalGroups: [0]")
    assert root_request(_pod(pod_sc={"fsGroup": 0})) == ("main", "spec.securityContext.fsGroup: 0")
    init = _pod()
    init["spec"]["initContainers"] = [{"name": "setup", "securityContext": {"runAsUser": 0}}]
    assert root_request(init) == ("setup", "securityContext.runAsUser: 0")


def test_a_pod_that_asks_for_nothing_is_admitted_without_asking_the_authorizer() -> None:
    class Refuses:
        def decide(self, attrs: Attributes) -> tuple[bool, str]:
            raise AssertionError(f"asked about {attrs}")

    admit(_pod(), ALICE, Refuses())


def test_root_is_refused_with_one_line_naming_container_and_fix(state: State) -> None:
    authorizer = Authorizer(state, None)
    with pytest.raises(ApiError) as info:
        admit(_pod({"securityContext": {"runAsUser": 0}}), ALICE, authorizer)
    error = info.value
    assert error.code == 403 and error.reason == "Forbidden"
    message = error.message
    assert "\n" not in message
    assert message.startswith('pods "p" is forbidden: PodSecurityPolicy: unable to admit pod')
    for part in (
        'container "main"',
        "securityContext.runAsUser: 0",
        'user "alice"',
        'service account "system:serviceaccount:tenants:default"',
        'grant verb "use" on podsecuritypolicies "privileged" in API group "policy"',
        "run the container as a non-root user",
    ):
        assert part in message, part


def test_masters_may_run_root(state: State) -> None:
    admit(_pod({"securityContext": {"runAsUser": 0}}), ADMIN, Authorizer(state, None))


def test_a_user_granted_use_may_run_root(state: State) -> None:
    _bind(state, {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"})
    authorizer = Authorizer(state, None)
    admit(_pod({"securityContext": {"privileged": True}}), ALICE, authorizer)
    with pytest.raises(ApiError, match='user "bob"'):
        admit(_pod({"securityContext": {"privileged": True}}), UserInfo("bob"), authorizer)


def test_the_pods_service_account_may_carry_the_grant(state: State) -> None:
    """As with PSP: the creator lacks ``use``, the pod's account holds it."""
    _bind(state, {"kind": "ServiceAccount", "name": "backup", "namespace": NS}, namespace=NS)
    authorizer = Authorizer(state, None)
    creator = UserInfo("deployer", groups=(AUTHENTICATED,))
    admit(_pod(pod_sc={"runAsUser": 0}, account="backup"), creator, authorizer)
    with pytest.raises(ApiError, match='"system:serviceaccount:tenants:default"'):
        admit(_pod(pod_sc={"runAsUser": 0}), creator, authorizer)
    elsewhere = _pod(pod_sc={"runAsUser": 0}, account="backup")
    elsewhere["metadata"]["namespace"] = "other"
    with pytest.raises(ApiError, match="forbidden"):
        admit(elsewhere, creator, authorizer)


def test_controllers_copy_templates_admitted_when_they_were_written(state: State) -> None:
    authorizer = Authorizer(state, None)
    controller = UserInfo("system:kube-controller-manager", groups=(AUTHENTICATED,))
    admit(_pod(pod_sc={"runAsUser": 0}), controller, authorizer)  # trusted: the template was checked
    workload = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": NS},
        "spec": {"template": {"spec": {"containers": [{"name": "engine", "image": "mssql-lab/engine:1"}]}}},
    }
    with pytest.raises(
        ApiError, match=r'statefulsets\.apps "db" is forbidden: .*container "engine" asks for root'
    ):
        admit_template(
            workload, "statefulsets.apps", UserInfo("deployer", groups=(AUTHENTICATED,)), authorizer
        )
    admit_template(workload, "statefulsets.apps", ADMIN, authorizer)
    _bind(state, {"kind": "User", "name": "deployer"})
    admit_template(workload, "statefulsets.apps", UserInfo("deployer", groups=(AUTHENTICATED,)), authorizer)


def test_the_deny_list_overrides_even_masters(state: State, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("deny:\n  - {verb: use, resource: podsecuritypolicies}\n")
    with pytest.raises(ApiError, match='user "lab-admin"'):
        admit(_pod({"securityContext": {"runAsUser": 0}}), ADMIN, Authorizer(state, policy))


def test_the_check_is_made_in_the_pods_namespace(state: State) -> None:
    seen: list[Attributes] = []

    class Records:
        def decide(self, attrs: Attributes) -> tuple[bool, str]:
            seen.append(attrs)
            return False, "no"

    with pytest.raises(ApiError):
        admit(_pod(pod_sc={"runAsGroup": 0}, account="sa1"), ALICE, Records())
    assert [(a.user.name, a.verb, a.group, a.resource, a.namespace, a.name) for a in seen] == [
        ("alice", "use", "policy", "podsecuritypolicies", NS, POLICY),
        ("system:serviceaccount:tenants:sa1", "use", "policy", "podsecuritypolicies", NS, POLICY),
    ]
    assert seen[1].user.groups == (
        "system:serviceaccounts",
        "system:serviceaccounts:tenants",
        AUTHENTICATED,
    )


@pytest.mark.integration
def test_the_api_server_refuses_a_root_pod_from_a_user_without_use(tmp_path: Path) -> None:
    """End to end over HTTPS with static tokens: alice may create pods, not root ones, until granted."""
    pki = ensure_pki(tmp_path / "pki")
    tokens = tmp_path / "pki" / "tokens.csv"
    admin_token = ensure_token(tokens, "lab-admin", "lab-admin", (MASTERS, AUTHENTICATED))
    alice_token = ensure_token(tokens, "alice", "alice", (AUTHENTICATED,))
    with start_api_server(tmp_path / "api", pki=pki, token_auth_file=tokens) as server:
        admin = KubeClient(server.url, admin_token, ca_pem=pki.ca_pem())
        alice = KubeClient(server.url, alice_token, ca_pem=pki.ca_pem())
        admin.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        rbac = "/apis/rbac.authorization.k8s.io/v1"
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "pods-and-psp"},
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "delete"]},
                {
                    "apiGroups": ["policy"],
                    "resources": ["podsecuritypolicies"],
                    "resourceNames": [POLICY],
                    "verbs": ["use"],
                },
            ],
        }
        admin.request("POST", f"{rbac}/clusterroles", role)
        creator = {**role, "metadata": {"name": "pods-only"}, "rules": role["rules"][:1]}
        admin.request("POST", f"{rbac}/clusterroles", creator)

        def bind(name: str, role_name: str) -> None:
            binding = {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": NS},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role_name,
                },
                "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}],
            }
            admin.request("POST", f"{rbac}/namespaces/{NS}/rolebindings", binding)

        bind("alice-pods", "pods-only")
        plain = _pod()
        plain["metadata"]["name"] = "plain"
        alice.create("pods", plain, NS)
        with pytest.raises(KubeApiError) as info:
            alice.create("pods", _pod({"securityContext": {"runAsUser": 0}}), NS)
        assert info.value.code == 403 and 'container "main" asks for root' in str(info.value)
        admin.create("pods", _pod({"securityContext": {"runAsUser": 0}}), NS)
        admin.delete("pods", "p", NS, grace=0)
        bind("alice-psp", "pods-and-psp")
        alice.create("pods", _pod({"securityContext": {"runAsUser": 0}}), NS)
