"""kubectl 1.32 against RBAC: real bearer tokens, ``auth can-i`` (also ``--list`` and ``--as``),
Kubernetes' Forbidden wording, escalation refused, and the operator's ClusterRole as the preflight reads it.

The API server (:func:`lab.api.server.serve`: HTTPS, a static token file, the bootstrap
policy in place) listens on a free loopback port from a thread of this process; kubectl
is the real binary, one kubeconfig per user.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from lab.api.bootstrap_policy import ensure_bootstrap_policy
from lab.api.identity import AUTHENTICATED, MASTERS
from lab.api.kubeconfig import write_kubeconfig
from lab.api.pki import ensure_pki
from lab.api.server import STATE, bound_url, serve
from lab.api.settings import Settings
from lab.api.tokens import ensure_token
from lab.controlplane import CRD_DIR

pytestmark = pytest.mark.integration

G = "rbac.authorization.k8s.io"
OPERATOR = "system:serviceaccount:mssql-operator:mssql-operator"


class Server:
    """The API server on a thread of its own (its own event loop), stopped by :meth:`stop`."""

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.url = ""
        self.runner: web.AppRunner | None = None
        self.thread = threading.Thread(target=self._run, args=(settings,), daemon=True)
        self.thread.start()
        assert self.ready.wait(15), "the API server did not start"

    def _run(self, settings: Settings) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self.runner = await serve(settings)
            ensure_bootstrap_policy(self.runner.app[STATE])  # before any client: as the post-start hook
            self.url = bound_url(self.runner)

        self.loop.run_until_complete(start())
        self.ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        async def cleanup() -> None:
            if self.runner is not None:
                await self.runner.cleanup()

        asyncio.run_coroutine_threadsafe(cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Kubectl:
    def __init__(self, home: Path, url: str, token: str, ca_pem: bytes) -> None:
        home.mkdir(parents=True, exist_ok=True)
        config = write_kubeconfig(home / "config", url, token=token, ca_pem=ca_pem)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "KUBECONFIG": str(config),
        }

    def __call__(
        self, *args: str, stdin: str | None = None, ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["kubectl", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )
        if ok:
            assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Kubectl]]:
    root = tmp_path_factory.mktemp("rbac-kubectl")
    tokens = root / "tokens.csv"
    who = {
        "admin": ("lab-admin", (MASTERS, AUTHENTICATED)),
        "alice": ("alice", ("devs", AUTHENTICATED)),
        "bob": ("bob", (AUTHENTICATED,)),
    }
    secrets = {key: ensure_token(tokens, name, name, groups) for key, (name, groups) in who.items()}
    pki = ensure_pki(root / "pki")  # kubectl sends bearer tokens over TLS only
    settings = Settings(tls_cert_file=pki.serving_cert, tls_key_file=pki.serving_key, token_auth_file=tokens)
    server = Server(settings)
    try:
        yield {key: Kubectl(root / key, server.url, token, pki.ca_pem()) for key, token in secrets.items()}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def team(users: dict[str, Kubectl]) -> str:
    admin = users["admin"]
    admin("create", "namespace", "team")
    admin("create", "namespace", "elsewhere")
    admin(
        "create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods", "-n", "team"
    )  # protobuf body
    admin("create", "rolebinding", "devs-read", "--role=pod-reader", "--group=devs", "-n", "team")
    admin(
        "create",
        "role",
        "role-maker",
        "--verb=create",
        f"--resource=roles.{G},rolebindings.{G}",
        "-n",
        "team",
    )
    admin("create", "rolebinding", "bob-makes-roles", "--role=role-maker", "--user=bob", "-n", "team")
    return "team"


def test_a_user_reads_where_bound_and_is_forbidden_elsewhere(users: dict[str, Kubectl], team: str) -> None:
    alice = users["alice"]
    assert alice("get", "pods", "-n", team).returncode == 0
    denied = alice("get", "pods", "-n", "elsewhere", ok=False)
    assert denied.returncode == 1
    assert (
        'Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource "pods" '
        'in API group "" in the namespace "elsewhere"'
    ) in denied.stderr
    denied = alice("delete", "pod", "db-0", "-n", team, ok=False)
    assert 'pods "db-0" is forbidden: User "alice" cannot delete resource "pods"' in denied.stderr
    denied = alice("get", "nodes", ok=False)
    assert 'cannot list resource "nodes" in API group "" at the cluster scope' in denied.stderr


def test_auth_can_i_for_oneself_as_a_list_and_as_someone_else(users: dict[str, Kubectl], team: str) -> None:
    alice, admin = users["alice"], users["admin"]
    assert alice("auth", "can-i", "list", "pods", "-n", team).stdout.strip() == "yes"
    no = alice("auth", "can-i", "delete", "pods", "-n", team, ok=False)
    assert no.returncode == 1 and no.stdout.startswith("no")
    assert alice("auth", "can-i", "get", "pods", "--subresource=log", "-n", team, ok=False).stdout.startswith(
        "no"
    )
    assert alice("auth", "can-i", "get", "pods/db-0", "-n", team).stdout.strip() == "yes"  # pods named db-0
    listing = alice("auth", "can-i", "--list", "-n", team).stdout
    rows = {line.split()[0]: line for line in listing.splitlines()[1:] if line.strip()}
    assert "[get list watch]" in rows["pods"], listing
    assert "selfsubjectaccessreviews.authorization.k8s.io" in rows, listing
    assert "delete" not in rows["pods"]
    # kubectl --as: the SelfSubjectAccessReview answers for the impersonated user
    assert (
        admin(
            "auth", "can-i", "list", "pods", "-n", team, "--as", "alice", "--as-group", "devs"
        ).stdout.strip()
        == "yes"
    )
    assert admin("auth", "can-i", "list", "pods", "-n", team, "--as", "carol", ok=False).stdout.startswith(
        "no"
    )
    assert admin("auth", "can-i", "delete", "nodes").stdout.strip() == "yes"
    forbidden = alice("auth", "can-i", "list", "pods", "--as", "lab-admin", ok=False)
    assert (
        'users "lab-admin" is forbidden: User "alice" cannot impersonate resource "users"' in forbidden.stderr
    )


def test_roles_and_bindings_cannot_grant_more_than_one_holds(users: dict[str, Kubectl], team: str) -> None:
    bob = users["bob"]
    denied = bob("create", "role", "sneaky", "--verb=delete", "--resource=pods", "-n", team, ok=False)
    assert denied.returncode == 1
    assert (
        f'roles.{G} "sneaky" is forbidden: user "bob" (groups=["system:authenticated"]) is attempting '
        "to grant RBAC permissions not currently held:"
    ) in denied.stderr
    assert '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}' in denied.stderr
    denied = bob(
        "create", "rolebinding", "me-admin", "--clusterrole=cluster-admin", "--user=bob", "-n", team, ok=False
    )
    assert f'rolebindings.{G} "me-admin" is forbidden' in denied.stderr
    assert "attempting to grant RBAC permissions not currently held" in denied.stderr
    # what bob holds he may pass on
    bob("create", "role", "role-maker-2", "--verb=create", f"--resource=roles.{G}", "-n", team)
    assert bob("auth", "can-i", "delete", "pods", "-n", team, ok=False).stdout.startswith("no")


def test_the_operator_cluster_role_passes_the_rbac_preflight(users: dict[str, Kubectl]) -> None:
    """What ``probes.k8s.preflight`` asks (``auth can-i VERB RESOURCE --as`` the operator's
    account) for every rule of ``lab/crds/operator.yaml``: all yes, and nothing beyond it."""
    admin = users["admin"]
    for crd in sorted(CRD_DIR.glob("*.yaml")):
        admin("apply", "-f", str(crd))
    docs = [d for d in yaml.safe_load_all((CRD_DIR / "operator.yaml").read_text()) if d]
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    admin("create", "namespace", "tenants")
    checked = 0
    for rule in role["rules"]:
        group = rule["apiGroups"][0]
        for resource in rule["resources"]:
            plural, _, sub = resource.partition("/")
            if (group, plural) == ("policy", "podsecuritypolicies"):
                # not a served type, so `auth can-i` cannot name it: a SubjectAccessReview can
                review = {
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SubjectAccessReview",
                    "spec": {
                        "user": OPERATOR,
                        "resourceAttributes": {
                            "verb": "use",
                            "group": group,
                            "resource": plural,
                            "name": "privileged",
                            "namespace": "tenants",
                        },
                    },
                }
                done = admin(
                    "create", "-f", "-", "-o", "jsonpath={.status.allowed}", stdin=json.dumps(review)
                )
                assert done.stdout.strip() == "true", done.stderr
                checked += 1
                continue
            target = f"{plural}.{group}" if group else plural
            extra = [f"--subresource={sub}"] if sub else []
            # a rule naming objects grants only those: ask for each by name
            named = [f"{target}/{name}" for name in rule.get("resourceNames") or []] or [target]
            for verb in rule["verbs"]:
                for asked in named:
                    done = admin(
                        "auth", "can-i", verb, asked, *extra, "-n", "tenants", "--as", OPERATOR, ok=False
                    )
                    assert done.stdout.strip() == "yes", (verb, asked, done.stdout, done.stderr)
                    checked += 1
                if named != [target]:  # and never the kind as a whole
                    done = admin("auth", "can-i", verb, target, "-n", "tenants", "--as", OPERATOR, ok=False)
                    assert done.stdout.startswith("no"), (verb, target)
    assert checked > 20
    for verb, target in (("delete", "pods"), ("get", "secrets"), ("create", "clusterrolebindings")):
        done = admin("auth", "can-i", verb, target, "-n", "tenants", "--as", OPERATOR, ok=False)
        assert done.stdout.startswith("no"), (verb, target)
