"""RBAC through the API server's HTTP handlers: every verb authorized, escalation refused, pods admitted.

The application (:func:`lab.api.server.build_app`, insecure test mode: the caller is
``lab-admin`` in ``system:masters``) is served on a free loopback port in this process; the
other identities are reached by impersonation (``Impersonate-User``/``-Group``), as
``kubectl --as`` does. Raw paths are sent exactly as written (percent-encodings and ``..``
kept), so traversal attempts reach the server as an attacker would send them.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from lab.api.bootstrap_policy import ensure_bootstrap_policy
from lab.api.server import STATE, build_app
from lab.api.settings import Settings

G = "rbac.authorization.k8s.io"
NS_PODS = "/api/v1/namespaces/{ns}/pods"


class Api:
    """Requests to the in-process server, as admin or impersonating someone."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        as_user: str = "",
        groups: tuple[str, ...] = (),
        ctype: str = "application/json",
    ) -> tuple[int, Any]:
        headers: list[tuple[str, str]] = []
        if as_user:
            headers.append(("Impersonate-User", as_user))
            headers.extend(("Impersonate-Group", g) for g in groups)
        data = None
        if body is not None:
            data = body if isinstance(body, bytes | str) else json.dumps(body)
            headers.append(("Content-Type", ctype))
        url = URL(self.base + path, encoded=True)
        async with self.session.request(method, url, data=data, headers=headers) as response:
            raw = await response.read()
            try:
                return response.status, json.loads(raw)
            except ValueError:
                return response.status, raw.decode(errors="replace")

    async def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        code, answer = await self(method, path, body, **kw)
        assert code in (200, 201), (method, path, code, answer)
        return answer


def run(scenario: Callable[[Api], Awaitable[None]]) -> None:
    async def main() -> None:
        app = build_app(Settings())
        ensure_bootstrap_policy(app[STATE])
        server = TestServer(app)
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as session:
                api = Api(session, str(server.make_url("")).rstrip("/"))
                for ns in ("tenants", "other"):
                    await api.ok("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
                await scenario(api)
        finally:
            await server.close()

    asyncio.run(main())


async def grant(
    api: Api, name: str, rules: list[dict[str, Any]], subject: dict[str, Any], namespace: str = ""
) -> None:
    """A Role (ClusterRole without ``namespace``) and its binding to ``subject``, made by admin."""
    kind, scope = ("Role", f"/namespaces/{namespace}") if namespace else ("ClusterRole", "")
    plural = "roles" if namespace else "clusterroles"
    await api.ok("POST", f"/apis/{G}/v1{scope}/{plural}", {"metadata": {"name": name}, "rules": rules})
    binding = {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": G, "kind": kind, "name": name},
        "subjects": [subject],
    }
    await api.ok("POST", f"/apis/{G}/v1{scope}/{plural[:-1]}bindings", binding)


def _user(name: str) -> dict[str, Any]:
    return {"kind": "User", "name": name, "apiGroup": G}


def _pod(name: str, **security: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": "busybox:1.36"}
    if security:
        container["securityContext"] = security
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [container]},
    }


def test_reads_writes_and_watches_need_their_verb() -> None:
    async def scenario(api: Api) -> None:
        await api.ok(
            "POST",
            "/api/v1/namespaces/tenants/secrets",
            {"metadata": {"name": "s"}, "stringData": {"k": "v"}},
        )
        await grant(
            api,
            "lister",
            [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
            _user("jane"),
            "tenants",
        )
        code, body = await api("GET", "/api/v1/namespaces/tenants/secrets", as_user="jane")
        assert code == 200 and [s["metadata"]["name"] for s in body["items"]] == ["s"]
        for path in (
            "/api/v1/namespaces/tenants/secrets?watch=true",
            "/api/v1/watch/namespaces/tenants/secrets",
        ):
            code, body = await api("GET", path, as_user="jane")
            assert code == 403 and body["kind"] == "Status", (path, body)
            assert body["message"] == (
                'secrets is forbidden: User "jane" cannot watch resource "secrets" in API group "" '
                'in the namespace "tenants"'
            )
        code, body = await api("GET", "/api/v1/namespaces/tenants/secrets/s", as_user="jane")
        assert code == 403 and "cannot get resource" in body["message"] and "data" not in body
        code, body = await api("GET", "/api/v1/secrets?watch=1", as_user="jane")
        assert (
            code == 403
            and 'cannot watch resource "secrets" in API group "" at the cluster scope' in body["message"]
        )
        code, body = await api("DELETE", "/api/v1/namespaces/tenants/secrets", as_user="jane")
        assert code == 403 and "cannot deletecollection" in body["message"]
        code, _ = await api("GET", "/api/v1/namespaces/tenants/secrets/s")
        assert code == 200  # still there

    run(scenario)


def test_traversal_and_encoded_names_never_reach_another_namespace() -> None:
    async def scenario(api: Api) -> None:
        await api.ok(
            "POST",
            "/api/v1/namespaces/other/secrets",
            {"metadata": {"name": "top"}, "stringData": {"pw": "hunter2"}},
        )
        await api.ok(
            "POST",
            "/api/v1/namespaces/tenants/secrets",
            {"metadata": {"name": "mine"}, "stringData": {"pw": "ok"}},
        )
        rules = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]}]
        await grant(api, "reader", rules, _user("jane"), "tenants")
        paths = [
            "/api/v1/namespaces/tenants/../other/secrets",
            "/api/v1/namespaces/tenants/%2e%2e/other/secrets",
            "/api/v1/namespaces/tenants%2F..%2Fother/secrets",
            "/api/v1/namespaces/tenants/..%2Fother/secrets",
            "/api/v1/namespaces/other%2F..%2Ftenants/secrets",
            "/api/v1/namespaces/tenants/secrets/..%2F..%2Fother%2Fsecrets%2Ftop",
            "/api/v1/namespaces/tenants/secrets/%2e%2e%2f%2e%2e%2fother%2fsecrets%2ftop",
            "/api/v1/namespaces/tenants/secrets?fieldSelector=metadata.namespace%3Dother",
            "/api/v1/namespaces/tenants/secrets/top?namespace=other",
            "/api/v1/namespaces/%6fther/secrets",
            "/api/v1/namespaces/tenants/../../v1/namespaces/other/secrets/top",
        ]
        for path in paths:
            for method in ("GET", "DELETE"):
                code, body = await api(method, path, as_user="jane")
                assert "aHVudGVyMg==" not in json.dumps(body), (method, path, code)  # base64 of hunter2
                if code < 300:
                    items = body.get("items", [body]) if isinstance(body, dict) else []
                    assert all(i.get("metadata", {}).get("namespace") == "tenants" for i in items), (
                        path,
                        body,
                    )
        # and a few hundred random paths made of the same pieces
        pieces = (
            "tenants other .. %2e%2e ..%2F %2F %2f.. secrets top mine . watch namespaces %252e%252e api v1"
        )
        pieces += " %00 tenants%00 status %20"
        pieces_list = [*pieces.split(), ""]
        queries = [
            "",
            "?watch=1",
            "?fieldSelector=metadata.name%3Dtop",
            "?labelSelector=a",
            "?watch=1&timeoutSeconds=1",
        ]
        rng = random.Random(1729)
        for _ in range(300):
            path = "/api/v1/" + "/".join(rng.choice(pieces_list) for _ in range(rng.randint(1, 6)))
            method = rng.choice(["GET", "GET", "DELETE", "PUT", "PATCH"])
            code, body = await api(method, path + rng.choice(queries), {}, as_user="jane",
                                   ctype="application/merge-patch+json")  # fmt: skip
            assert code < 500, (method, path, body)
            assert "aHVudGVyMg==" not in json.dumps(body), (method, path, code)
        code, body = await api("GET", "/api/v1/namespaces/other/secrets/top")
        assert code == 200 and body["data"]["pw"] == "aHVudGVyMg=="  # nothing was deleted or changed

    run(scenario)


def test_subresources_are_authorized_on_their_own() -> None:
    async def scenario(api: Api) -> None:
        await api.ok("POST", NS_PODS.format(ns="tenants"), _pod("db-0"))
        await grant(
            api,
            "pods",
            [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
            _user("ops"),
            "tenants",
        )
        assert (await api("GET", NS_PODS.format(ns="tenants") + "/db-0", as_user="ops"))[0] == 200
        for method, sub, verb in [
            ("GET", "log", "get"),
            ("GET", "status", "get"),
            ("POST", "eviction", "create"),
            ("PATCH", "status", "patch"),
        ]:
            code, body = await api(
                method,
                NS_PODS.format(ns="tenants") + f"/db-0/{sub}",
                {},
                as_user="ops",
                ctype="application/merge-patch+json",
            )
            assert code == 403, (sub, body)
            assert f'cannot {verb} resource "pods/{sub}"' in body["message"]
        code, _ = await api("GET", NS_PODS.format(ns="tenants") + "/db-0")
        assert code == 200  # no eviction happened

    run(scenario)


def test_resource_names_and_the_namespace_a_namespace_is_in() -> None:
    async def scenario(api: Api) -> None:
        for name in ("app-config", "other-config"):
            await api.ok("POST", "/api/v1/namespaces/tenants/configmaps", {"metadata": {"name": name}})
        rules = [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": ["app-config"],
                "verbs": ["get", "list", "watch"],
            },
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
        ]
        await grant(api, "named", rules, _user("ann"), "tenants")
        base = "/api/v1/namespaces/tenants/configmaps"
        code, body = await api("GET", f"{base}?fieldSelector=metadata.name%3Dapp-config", as_user="ann")
        assert code == 200 and [c["metadata"]["name"] for c in body["items"]] == ["app-config"]
        assert (await api("GET", base, as_user="ann"))[0] == 403
        assert (await api("GET", f"{base}?fieldSelector=metadata.name%3Dother-config", as_user="ann"))[
            0
        ] == 403
        assert (await api("GET", f"{base}/other-config", as_user="ann"))[0] == 403
        assert (await api("GET", "/api/v1/namespaces/tenants", as_user="ann"))[0] == 200
        code, body = await api("GET", "/api/v1/namespaces/other", as_user="ann")
        assert code == 403 and body["message"].endswith('in the namespace "other"')

    run(scenario)


def test_rbac_writes_cannot_escalate() -> None:
    async def scenario(api: Api) -> None:
        rules = [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
            {
                "apiGroups": [G],
                "resources": ["roles", "rolebindings"],
                "verbs": ["create", "patch", "update", "get"],
            },
        ]
        await grant(api, "lead", rules, _user("lee"), "tenants")
        roles = f"/apis/{G}/v1/namespaces/tenants/roles"
        wider = {
            "metadata": {"name": "deleter"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}],
        }
        for suffix in ("", "?dryRun=All"):
            code, body = await api("POST", roles + suffix, wider, as_user="lee")
            assert code == 403, body
            assert body["message"] == (
                f'roles.{G} "deleter" is forbidden: user "lee" (groups=["system:authenticated"]) '
                "is attempting to grant RBAC permissions not currently held:\n"
                '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}'
            )
        narrow = {
            "metadata": {"name": "reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        }
        await api.ok("POST", roles, narrow, as_user="lee")
        patch = {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]}]}
        code, body = await api(
            "PATCH", f"{roles}/reader", patch, as_user="lee", ctype="application/merge-patch+json"
        )
        assert code == 403 and "not currently held" in body["message"]
        applied = (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: applied}\nrules:\n"
            "- {apiGroups: [''], resources: [secrets], verbs: [get]}\n"
        )
        code, body = await api(
            "PATCH",
            f"{roles}/applied?fieldManager=lee",
            applied,
            as_user="lee",
            ctype="application/apply-patch+yaml",
        )
        assert code == 403 and 'Resources:["secrets"]' in body["message"]
        stored = await api.ok("GET", f"{roles}/reader")
        assert stored["rules"][0]["verbs"] == ["get"]
        assert (await api("GET", f"{roles}/applied"))[0] == 404 and (await api("GET", f"{roles}/deleter"))[
            0
        ] == 404
        binding = {
            "metadata": {"name": "b"},
            "roleRef": {"apiGroup": G, "kind": "ClusterRole", "name": "admin"},
            "subjects": [_user("eve")],
        }
        code, body = await api(
            "POST", f"/apis/{G}/v1/namespaces/tenants/rolebindings", binding, as_user="lee"
        )
        assert code == 403 and body["message"].startswith(f'rolebindings.{G} "b" is forbidden: user "lee"')
        binding["roleRef"] = {"apiGroup": G, "kind": "Role", "name": "reader"}
        await api.ok("POST", f"/apis/{G}/v1/namespaces/tenants/rolebindings", binding, as_user="lee")
        code, _ = await api("GET", NS_PODS.format(ns="tenants") + "/x", as_user="eve")
        assert code == 404  # allowed (and absent): eve got exactly what lee holds
        await api.ok("POST", roles, wider)  # system:masters may grant anything

    run(scenario)


def test_pods_created_by_anyone_pass_pod_security_admission() -> None:
    pytest.importorskip("lab.api.pod_security")

    async def scenario(api: Api) -> None:
        maker = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "patch"]}]
        await grant(api, "pod-maker", maker, _user("dev"), "tenants")
        await grant(
            api,
            "pod-patcher",
            [{"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}],
            _user("pat"),
            "tenants",
        )
        pods = NS_PODS.format(ns="tenants")
        code, body = await api("POST", pods, _pod("root", runAsUser=0), as_user="dev")
        assert code == 403 and "PodSecurityPolicy" in body["message"] and '"dev"' in body["message"], body
        # the controllers copy templates checked when their workload was written
        await api.ok("POST", pods, _pod("copied", runAsUser=0), as_user="system:kube-controller-manager")
        applied = json.dumps(_pod("applied", privileged=True))
        apply = "application/apply-patch+yaml"
        code, body = await api(
            "PATCH", f"{pods}/applied?fieldManager=dev", applied, as_user="dev", ctype=apply
        )
        assert code == 403 and "privileged" in body["message"], body
        # an apply that creates needs create, not only patch
        code, body = await api(
            "PATCH",
            f"{pods}/applied?fieldManager=pat",
            json.dumps(_pod("applied")),
            as_user="pat",
            ctype=apply,
        )
        assert code == 403 and 'cannot create resource "pods"' in body["message"], body
        await api.ok("POST", pods, _pod("plain", runAsUser=100000), as_user="dev")
        code, body = await api("POST", pods, _pod("postgres", runAsUser=101), as_user="dev")
        assert code == 403 and "a host account's id" in body["message"], body
        use = [
            {
                "apiGroups": ["policy"],
                "resources": ["podsecuritypolicies"],
                "resourceNames": ["privileged"],
                "verbs": ["use"],
            }
        ]
        await grant(
            api,
            "root-ok",
            use,
            {"kind": "ServiceAccount", "name": "default", "namespace": "tenants"},
            "tenants",
        )
        await api.ok("POST", pods, _pod("root", runAsUser=0), as_user="dev")

    run(scenario)


def test_events_api_and_reviews_are_authorized() -> None:
    async def scenario(api: Api) -> None:
        await grant(
            api,
            "core-events",
            [{"apiGroups": [""], "resources": ["events"], "verbs": ["list"]}],
            _user("ev"),
            "tenants",
        )
        assert (await api("GET", "/api/v1/namespaces/tenants/events", as_user="ev"))[0] == 200
        code, body = await api("GET", "/apis/events.k8s.io/v1/namespaces/tenants/events", as_user="ev")
        assert code == 403 and 'in API group "events.k8s.io"' in body["message"]
        ssar = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": "list", "resource": "events", "namespace": "tenants"}},
        }
        answer = await api.ok(
            "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", ssar, as_user="ev"
        )
        assert answer["status"] == {
            "allowed": True,
            "reason": 'RBAC: allowed by RoleBinding "core-events/tenants" of Role "core-events" to User "ev"',
        }
        sar = {
            "spec": {
                "user": "ev",
                "resourceAttributes": {"verb": "list", "resource": "events", "namespace": "tenants"},
            }
        }
        code, body = await api(
            "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", sar, as_user="ev"
        )
        assert code == 403 and 'cannot create resource "subjectaccessreviews"' in body["message"]
        answer = await api.ok("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", sar)
        assert answer["status"]["allowed"] is True
        sar["spec"]["user"] = "someone-else"
        lsar = {**sar, "apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview"}
        answer = await api.ok(
            "POST", "/apis/authorization.k8s.io/v1/namespaces/tenants/localsubjectaccessreviews", lsar
        )
        assert answer["status"] == {"allowed": False} and answer["metadata"]["namespace"] == "tenants"
        discovery = await api.ok("GET", "/apis/authorization.k8s.io/v1", as_user="ev")
        names = {r["name"] for r in discovery["resources"]}
        assert {
            "selfsubjectaccessreviews",
            "selfsubjectrulesreviews",
            "subjectaccessreviews",
            "localsubjectaccessreviews",
        } <= names
        code, _ = await api("GET", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
        assert code == 405

    run(scenario)
