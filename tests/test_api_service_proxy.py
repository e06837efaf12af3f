"""``services/proxy`` and ``pods/proxy`` through a real API server process to a real HTTP server.

One secured ``python -m lab.api`` (HTTPS, a token file: ``lab-admin`` in ``system:masters``,
``alice`` without rights) for the module, one plain HTTP server on a free loopback port
that answers what it was sent, and an "outsider" on another loopback port that no pod
declares (it stands for another namespace's pod or the lab's own monitoring) and records
every request that reaches it. No endpoints controller or kubelet runs: the tests write
each pod's status and each Service's Endpoints themselves, so a Service points exactly
where a test wants.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from aiohttp.test_utils import TestServer

from lab.api import service_proxy
from lab.api.server import build_app
from lab.api.settings import Settings
from lab.controllers.endpoints import endpoints_subsets
from tests.authn_support import NS, Secured, kubectl, needs_kubectl, secured_server

V1 = f"/api/v1/namespaces/{NS}"
ONLY_DECLARED = "the lab proxies only to declared container ports"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
BIG = bytes(range(256)) * 4096  # 1 MiB, every byte value


class _Echo(BaseHTTPRequestHandler):
    """Answers with what it received; a few paths answer otherwise (see :meth:`_answer`)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        if path == "/big":
            self._send(200, BIG, "application/octet-stream")
        elif path == "/gzip":
            self._send(200, gzip.compress(b"squeezed"), "text/plain", {"Content-Encoding": "gzip"})
        elif path == "/truncated":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.close_connection = True
        elif path == "/truncated-chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"a\r\n0123456789\r\n")
            self.wfile.flush()
            self.close_connection = True
        elif path == "/slow":
            time.sleep(2.0)
            self._send(200, b"late", "text/plain")
        elif path == "/redirect":
            self._send(302, b"", "text/plain", {"Location": "/elsewhere"})
        else:
            echoed = {
                "method": self.command,
                "path": path,
                "query": query,
                "body": body.decode(errors="replace"),
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "server": self.server.server_address[1],
            }
            self._send(
                201 if self.command == "POST" else 200, json.dumps(echoed).encode(), "application/json"
            )

    def _send(self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Upstream", "echo")
        self.send_header("Connection", "close")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _answer


@pytest.fixture(scope="module")
def echo() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


class _Recording(ThreadingHTTPServer):
    """An HTTP server that records the path of every request it is sent."""

    hits: list[str]


class _Outsider(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        assert isinstance(self.server, _Recording)
        self.server.hits.append(self.path)
        body = b"secret"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def outsider() -> Iterator[_Recording]:
    server = _Recording(("127.0.0.1", 0), _Outsider)
    server.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, echo: int) -> Iterator[Secured]:
    with secured_server(tmp_path_factory.mktemp("proxy")) as server:
        admin = server.admin_client()
        closed = _closed_port()
        _pod(admin, "echo-0", [("web", echo), ("master", closed)])
        _service(
            admin, "echo", [("web", 8089), ("master", 5557)], [("web", echo), ("master", closed)], "echo-0"
        )
        _service(admin, "single", [("", 80)], [("", echo)], "echo-0")
        _service(admin, "empty", [("web", 8089)], None)
        yield server


def _pod(admin: Any, name: str, ports: list[tuple[str, int]], labels: dict[str, str] | None = None) -> Any:
    """A pod declaring ``ports`` (name, containerPort), Running and Ready at 127.0.0.1, as a
    kubelet would report it; the pod as stored."""
    container_ports = [{"containerPort": p, **({"name": n} if n else {})} for n, p in ports]
    container = {"name": "c", "image": "busybox", "command": ["true"], "ports": container_ports}
    body = {"metadata": {"name": name, "labels": labels or {}}, "spec": {"containers": [container]}}
    admin.request("POST", f"{V1}/pods", body)
    current = admin.request("GET", f"{V1}/pods/{name}")
    current["status"] = {
        "phase": "Running",
        "podIP": "127.0.0.1",
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    return admin.request("PUT", f"{V1}/pods/{name}/status", current)


def _ref(admin: Any, pod: str) -> dict[str, str]:
    """The ``targetRef`` the endpoints controller writes for ``pod``."""
    uid = admin.request("GET", f"{V1}/pods/{pod}")["metadata"]["uid"]
    return {"kind": "Pod", "namespace": NS, "name": pod, "uid": uid}


def _service(
    admin: Any,
    name: str,
    ports: list[tuple[str, int]],
    endpoints: list[tuple[str, int]] | None,
    pod: str | None = None,
    addresses: list[dict[str, Any]] | None = None,
) -> None:
    """A Service without a selector and the Endpoints its owner writes: one address, naming
    ``pod`` in its ``targetRef`` (none: no targetRef), unless ``addresses`` are given."""
    spec_ports = [{"port": p, **({"name": n} if n else {})} for n, p in ports]
    admin.request("POST", f"{V1}/services", {"metadata": {"name": name}, "spec": {"ports": spec_ports}})
    subsets = []
    if endpoints is not None:
        if addresses is None:
            addresses = [{"ip": "127.0.0.1", **({"targetRef": _ref(admin, pod)} if pod else {})}]
        subsets = [
            {
                "addresses": addresses,
                "ports": [{"port": p, **({"name": n} if n else {})} for n, p in endpoints],
            }
        ]
    admin.request("POST", f"{V1}/endpoints", {"metadata": {"name": name}, "subsets": subsets})


def _call(
    server: Secured, method: str, path: str, token: str | None = None, **kwargs: Any
) -> requests.Response:
    return server.http(method, path, server.admin if token is None else token, **kwargs)


def test_get_with_query_reaches_the_service_by_port_name(secured: Secured, echo: int) -> None:
    answer = _call(
        secured,
        "GET",
        f"{V1}/services/echo:web/proxy/harness/status?offset=12&name=a%20b",
        headers={"X-Custom": "kept", "Impersonate-User": "root", "Impersonate-Group": "system:masters"},
    )
    assert answer.status_code == 200, answer.text
    seen = answer.json()
    assert (seen["method"], seen["path"], seen["query"]) == ("GET", "/harness/status", "offset=12&name=a%20b")
    assert seen["server"] == echo
    headers = seen["headers"]
    assert headers["x-custom"] == "kept"
    assert "authorization" not in headers, "the caller's credentials never reach the pod"
    assert not [h for h in headers if h.startswith("impersonate-")]
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert answer.headers["X-Upstream"] == "echo", "the upstream's headers come back"


def test_post_put_patch_delete_carry_method_and_body_by_port_number(secured: Secured) -> None:
    for method, expected in (("POST", 201), ("PUT", 200), ("PATCH", 200), ("DELETE", 200)):
        answer = _call(
            secured,
            method,
            f"{V1}/services/echo:8089/proxy/harness/stop",
            data=b'{"why": "test"}',
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code == expected, (method, answer.text)
        seen = answer.json()
        assert (seen["method"], seen["path"], seen["body"]) == (method, "/harness/stop", '{"why": "test"}')
        assert seen["headers"]["content-type"] == "application/json"
        assert seen["headers"]["content-length"] == "15"


def test_the_only_port_the_scheme_and_head(secured: Secured) -> None:
    answer = _call(secured, "GET", f"{V1}/services/single/proxy")
    assert answer.status_code == 200 and answer.json()["path"] == "/"
    answer = _call(secured, "GET", f"{V1}/services/http:single:80/proxy/x")
    assert answer.status_code == 200 and answer.json()["path"] == "/x"
    head = _call(secured, "HEAD", f"{V1}/services/echo:web/proxy/big")
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(BIG)) and not head.content
    refused = _call(secured, "GET", f"{V1}/services/https:echo:web/proxy/x")
    assert refused.status_code == 400
    assert "not https" in refused.json()["message"] and "\n" not in refused.json()["message"]
    several = _call(secured, "GET", f"{V1}/services/echo/proxy/x")
    assert several.status_code == 400
    assert several.json()["message"] == 'service "echo" has 2 ports: name one in the URL, as echo:PORT/proxy'


def test_bodies_come_back_whole_and_as_sent(secured: Secured) -> None:
    big = _call(secured, "GET", f"{V1}/services/echo:web/proxy/big")
    assert big.status_code == 200 and big.content == BIG
    raw = _call(secured, "GET", f"{V1}/services/echo:web/proxy/gzip", stream=True)
    assert raw.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(raw.raw.read(decode_content=False)) == b"squeezed"
    moved = _call(secured, "GET", f"{V1}/services/echo:web/proxy/redirect", allow_redirects=False)
    assert moved.status_code == 302 and moved.headers["Location"] == "/elsewhere", (
        "redirects are not followed"
    )


def test_an_answer_that_breaks_off_never_looks_whole(secured: Secured) -> None:
    for path in ("truncated", "truncated-chunked"):
        with pytest.raises(requests.exceptions.RequestException):
            answer = _call(secured, "GET", f"{V1}/services/echo:web/proxy/{path}")
            pytest.fail(f"{path}: a body that broke off came back as whole: {answer.content!r}")
    assert _call(secured, "GET", "/healthz").status_code == 200, "the server goes on serving"
    log = secured.api.log_path.read_text(errors="replace")
    assert "broke off mid-answer" in log and "Traceback" not in log


def test_no_endpoints_unknown_ports_and_unreachable_upstreams_are_503(secured: Secured) -> None:
    cases = {
        f"{V1}/services/empty:web/proxy/x": 'no endpoints available for service "empty"',
        f"{V1}/services/echo:9999/proxy/x": 'no service port 9999 found for service "echo"',
        f"{V1}/services/echo:nope/proxy/x": 'no service port "nope" found for service "echo"',
    }
    for path, message in cases.items():
        answer = _call(secured, "GET", path)
        assert answer.status_code == 503, (path, answer.text)
        body = answer.json()
        assert (body["kind"], body["reason"], body["message"]) == ("Status", "ServiceUnavailable", message)
    refused = _call(secured, "GET", f"{V1}/services/echo:master/proxy/x")
    assert refused.status_code == 503
    message = refused.json()["message"]
    assert message.startswith('error trying to reach service "echo" at 127.0.0.1:'), message
    missing = _call(secured, "GET", f"{V1}/services/ghost:web/proxy/x")
    assert missing.status_code == 404 and missing.json()["message"] == 'services "ghost" not found'


def test_proxy_needs_its_own_right_by_the_name_as_written(secured: Secured) -> None:
    denied = _call(secured, "GET", f"{V1}/services/echo:web/proxy/x", secured.alice)
    assert denied.status_code == 403
    assert denied.json()["message"] == (
        'services "echo:web" is forbidden: User "alice" cannot get resource "services/proxy" '
        'in API group "" in the namespace "default"'
    )
    impersonated = _call(
        secured, "POST", f"{V1}/services/echo:web/proxy/x", headers={"Impersonate-User": "alice"}
    )
    assert impersonated.status_code == 403
    assert 'User "alice" cannot create resource "services/proxy"' in impersonated.json()["message"]
    admin = secured.admin_client()
    admin.request(
        "POST",
        f"{RBAC}/namespaces/{NS}/roles",
        {
            "metadata": {"name": "proxy-echo"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["services/proxy"],
                    "verbs": ["get"],
                    "resourceNames": ["echo:web"],
                }
            ],
        },
    )
    admin.request(
        "POST",
        f"{RBAC}/namespaces/{NS}/rolebindings",
        {
            "metadata": {"name": "proxy-echo"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "proxy-echo"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}],
        },
    )
    allowed = _call(secured, "GET", f"{V1}/services/echo:web/proxy/x", secured.alice)
    assert allowed.status_code == 200 and allowed.json()["path"] == "/x"
    for method, path in (("POST", "echo:web"), ("GET", "echo:8089"), ("GET", "single")):
        other = _call(secured, method, f"{V1}/services/{path}/proxy/x", secured.alice)
        assert other.status_code == 403, (method, path)


def test_pods_are_proxied_by_port_number_name_or_their_first_port(secured: Secured, echo: int) -> None:
    admin = secured.admin_client()
    pod = {
        "metadata": {"name": "web-0"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "command": ["true"],
                    "ports": [{"name": "web", "containerPort": echo}],
                }
            ]
        },
    }
    admin.request("POST", f"{V1}/pods", pod)
    early = _call(secured, "GET", f"{V1}/pods/web-0:web/proxy/x")
    assert early.status_code == 503 and "no IP address yet" in early.json()["message"]
    current = admin.request("GET", f"{V1}/pods/web-0")
    current["status"] = {"phase": "Running", "podIP": "127.0.0.1"}
    admin.request("PUT", f"{V1}/pods/web-0/status", current)
    for segment in ("web-0:web", f"web-0:{echo}", "web-0", f"http:web-0:{echo}"):
        answer = _call(secured, "GET", f"{V1}/pods/{segment}/proxy/metrics?x=1")
        assert answer.status_code == 200, (segment, answer.text)
        assert (answer.json()["path"], answer.json()["query"]) == ("/metrics", "x=1")
    bad = _call(secured, "GET", f"{V1}/pods/web-0:nope/proxy/x")
    assert bad.status_code == 400 and 'no container port named "nope"' in bad.json()["message"]
    denied = _call(secured, "GET", f"{V1}/pods/web-0/proxy/x", secured.alice)
    assert denied.status_code == 403 and 'cannot get resource "pods/proxy"' in denied.json()["message"]


def _refused(answer: requests.Response, code: int, message: str) -> None:
    assert answer.status_code == code, answer.text
    body = answer.json()
    assert (body["kind"], body["code"], body["message"]) == ("Status", code, message)


def test_a_pod_is_proxied_only_to_a_port_it_declares(
    secured: Secured, echo: int, outsider: _Recording
) -> None:
    admin = secured.admin_client()
    _pod(admin, "plain-0", [("web", echo)])
    _pod(admin, "bare-0", [])
    elsewhere = int(outsider.server_address[1])
    for segment in (f"plain-0:{elsewhere}", f"http:plain-0:{elsewhere}"):
        _refused(
            _call(secured, "GET", f"{V1}/pods/{segment}/proxy/x"),
            400,
            f"port {elsewhere} is not a container port of pod {NS}/plain-0: {ONLY_DECLARED}",
        )
    _refused(
        _call(secured, "GET", f"{V1}/pods/bare-0/proxy/x"),
        400,
        f"pod {NS}/bare-0 declares no container port: {ONLY_DECLARED}",
    )
    _refused(
        _call(secured, "GET", f"{V1}/pods/bare-0:{echo}/proxy/x"),
        400,
        f"port {echo} is not a container port of pod {NS}/bare-0: {ONLY_DECLARED}",
    )
    assert outsider.hits == [], "an undeclared port is never connected to"
    for segment in (f"plain-0:{echo}", "plain-0:web", "plain-0"):
        answer = _call(secured, "GET", f"{V1}/pods/{segment}/proxy/y")
        assert answer.status_code == 200 and answer.json()["server"] == echo, (segment, answer.text)


def test_a_service_reaches_only_a_port_its_endpoint_pod_declares(
    secured: Secured, echo: int, outsider: _Recording
) -> None:
    admin = secured.admin_client()
    pod = _pod(admin, "sneaky-0", [("web", echo)], labels={"app": "sneaky"})
    elsewhere = int(outsider.server_address[1])
    service = admin.request(
        "POST",
        f"{V1}/services",
        {
            "metadata": {"name": "sneaky"},
            "spec": {
                "selector": {"app": "sneaky"},
                "ports": [
                    {"name": "web", "port": 8089, "targetPort": echo},
                    {"name": "loot", "port": 9093, "targetPort": elsewhere},
                ],
            },
        },
    )
    # what the endpoints controller writes for it (it does not run here)
    subsets = endpoints_subsets(service, [pod])
    assert {p["port"] for s in subsets for p in s["ports"]} == {echo, elsewhere}
    admin.request("POST", f"{V1}/endpoints", {"metadata": {"name": "sneaky"}, "subsets": subsets})
    for segment in ("sneaky:loot", "sneaky:9093"):
        _refused(
            _call(secured, "GET", f"{V1}/services/{segment}/proxy/x"),
            400,
            f"port {elsewhere} is not a container port of pod {NS}/sneaky-0: {ONLY_DECLARED}",
        )
    assert outsider.hits == [], "an undeclared target port is never connected to"
    for segment in ("sneaky:web", "sneaky:8089"):
        answer = _call(secured, "GET", f"{V1}/services/{segment}/proxy/y")
        assert answer.status_code == 200 and answer.json()["server"] == echo, (segment, answer.text)


def test_an_endpoint_must_name_a_current_pod_of_the_namespace(
    secured: Secured, echo: int, outsider: _Recording
) -> None:
    admin = secured.admin_client()
    _pod(admin, "other-0", [("web", echo)])
    ref = _ref(admin, "other-0")
    no_pod = (
        f"endpoint 127.0.0.1:{echo} names no pod of namespace {NS} in its targetRef: {ONLY_DECLARED} of pods"
    )
    _service(admin, "orphan", [("web", 8089)], [("web", echo)])
    _service(
        admin,
        "foreign",
        [("web", 8089)],
        [("web", echo)],
        addresses=[{"ip": "127.0.0.1", "targetRef": {**ref, "namespace": "kube-system"}}],
    )
    _service(
        admin,
        "node",
        [("web", 8089)],
        [("web", echo)],
        addresses=[{"ip": "127.0.0.1", "targetRef": {**ref, "kind": "Node"}}],
    )
    _service(
        admin,
        "stale",
        [("web", 8089)],
        [("web", echo)],
        addresses=[{"ip": "127.0.0.1", "targetRef": {**ref, "uid": "an-earlier-pod"}}],
    )
    _service(
        admin,
        "away",
        [("web", 8089)],
        [("web", echo)],
        addresses=[{"ip": "127.0.0.2", "targetRef": ref}],
    )
    for name in ("orphan", "foreign", "node"):
        _refused(_call(secured, "GET", f"{V1}/services/{name}:web/proxy/x"), 400, no_pod)
    _refused(
        _call(secured, "GET", f"{V1}/services/stale:web/proxy/x"),
        503,
        f"pod {NS}/other-0 behind endpoint 127.0.0.1:{echo} no longer exists: "
        "retry when the endpoints catch up",
    )
    _refused(
        _call(secured, "GET", f"{V1}/services/away:web/proxy/x"),
        503,
        f"pod {NS}/other-0 is not at endpoint 127.0.0.2:{echo}: retry when the endpoints catch up",
    )
    _pod(admin, "quiet-0", [])
    _service(
        admin,
        "mixed",
        [("web", 8089)],
        [("web", echo)],
        addresses=[
            {"ip": "127.0.0.1", "targetRef": _ref(admin, "quiet-0")},
            {"ip": "127.0.0.1", "targetRef": ref},
        ],
    )
    answer = _call(secured, "GET", f"{V1}/services/mixed:web/proxy/z")
    assert answer.status_code == 200 and answer.json()["server"] == echo, "a declaring endpoint is used"


def test_path_tricks_stay_in_their_namespace(secured: Secured) -> None:
    for path in (
        f"{V1}/services/..%2Fx/proxy/y",
        "/api/v1/namespaces/..%2Fkube-system/services/echo:web/proxy/y",
    ):
        answer = _call(secured, "GET", path)
        assert answer.status_code == 404, (path, answer.text)


@needs_kubectl
def test_kubectl_get_raw_through_the_service_proxy(secured: Secured, tmp_path: Path) -> None:
    config = secured.kubeconfig("admin-raw", secured.admin)
    result = kubectl(config, "get", "--raw", f"{V1}/services/echo:web/proxy/some/path?a=1")
    seen = json.loads(result.stdout)
    assert (seen["method"], seen["path"], seen["query"]) == ("GET", "/some/path", "a=1")
    failed = kubectl(config, "get", "--raw", f"{V1}/services/empty:web/proxy/x", ok=False)
    assert failed.returncode != 0
    assert "ServiceUnavailable" in failed.stderr or "no endpoints available" in failed.stderr, failed.stderr


def test_an_upstream_that_does_not_answer_in_time_is_503(echo: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_proxy, "PROXY_TIMEOUT", 0.5)

    async def scenario() -> tuple[int, dict[str, Any], float]:
        server = TestServer(build_app(Settings()))  # in this process, so the bound can be shortened
        await server.start_server()
        try:
            async with aiohttp.ClientSession(str(server.make_url(""))) as http:
                container = {"name": "c", "image": "busybox", "ports": [{"containerPort": echo}]}
                pod = {"metadata": {"name": "echo-0"}, "spec": {"containers": [container]}}
                async with http.post(f"{V1}/pods", json=pod) as created:
                    assert created.status == 201
                    pod = await created.json()
                pod["status"] = {"phase": "Running", "podIP": "127.0.0.1"}
                async with http.put(f"{V1}/pods/echo-0/status", json=pod) as updated:
                    assert updated.status == 200
                ref = {"kind": "Pod", "name": "echo-0", "uid": pod["metadata"]["uid"]}
                service = {"metadata": {"name": "echo"}, "spec": {"ports": [{"name": "web", "port": 8089}]}}
                address = {"ip": "127.0.0.1", "targetRef": ref}
                endpoints = {
                    "metadata": {"name": "echo"},
                    "subsets": [{"addresses": [address], "ports": [{"name": "web", "port": echo}]}],
                }
                for plural, body in (("services", service), ("endpoints", endpoints)):
                    async with http.post(f"{V1}/{plural}", json=body) as created:
                        assert created.status == 201
                began = time.monotonic()
                async with http.get(f"{V1}/services/echo:web/proxy/slow") as answer:
                    return answer.status, await answer.json(), time.monotonic() - began
        finally:
            await server.close()

    code, body, took = asyncio.run(scenario())
    assert code == 503 and body["reason"] == "ServiceUnavailable"
    assert (
        body["message"] == f'error trying to reach service "echo" at 127.0.0.1:{echo}: no answer within 0.5 s'
    )
    assert took < 1.5, "the wait is bounded"
