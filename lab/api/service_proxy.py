"""The ``services/proxy`` and ``pods/proxy`` subresources: HTTP through the API server to a pod.

``ANY /api/v1/namespaces/{ns}/services/{name}[:{port}]/proxy[/{path}]`` and the same under
``pods``, as Kubernetes serves them (``kubectl get --raw .../services/x:web/proxy/status``).
The name segment is ``[scheme:]name[:port]``; the scheme may be ``http`` (the default) but
not ``https`` (400: the lab's pods serve plain HTTP).

* Authorization, as kube-apiserver's RequestInfo reads the URL: the verb from the method
  (GET and HEAD ``get``, POST ``create``, PUT ``update``, PATCH ``patch``, DELETE ``delete``,
  OPTIONS ``options``), resource ``services`` or ``pods``, subresource ``proxy``, and the
  name segment as written (``x:web``: an RBAC rule with ``resourceNames`` names it so).
* A Service's port is its port name or number (no port: its only port, else 400). The
  upstream is the first ready address of the Service's Endpoints (the endpoints controller
  writes them; the lab's addresses are ``127.0.0.1``) with that subset's port for the
  Service port's name; none: 503 ``no endpoints available for service "<name>"``, as
  Kubernetes words it. A pod's upstream is its ``status.podIP`` and the port given (a
  number or one of its container port names; none given: its first container port).
* Only declared container ports are reached. Every lab pod's IP is ``127.0.0.1``, so a
  free choice of port would reach any process on the host's loopback (another namespace's
  pods, the lab's own monitoring), which kube-apiserver refuses by not proxying to loopback
  addresses. A pod's port must be one of its TCP container ports (400 ``port N is not a
  container port of pod ns/name: ...`` otherwise); a Service's endpoint is used only when its
  ``targetRef`` is a pod of the same namespace, still there at that address, that declares
  the endpoint's port (400 when none does: an endpoint naming no pod or an undeclared port;
  503 when its pod is gone or elsewhere: the endpoints have not caught up).
* The method, the path after ``proxy``, the query string, the body and the request's
  headers are forwarded, less the hop-by-hop headers, ``Authorization``, ``Impersonate-*``
  and ``Host``, with the caller's address appended to ``X-Forwarded-For``. The answer comes
  back as the upstream gave it (status, headers less hop-by-hop ones, body streamed,
  compressed bytes left compressed). An upstream that refuses, fails or does not answer
  within :data:`PROXY_TIMEOUT` seconds before its status line is a 503 Status naming it; one
  that fails while its body is streamed gets the client's connection cut, so a short body
  can never pass for a whole one.

:func:`match` recognises the URL, :func:`proxy` serves it; :func:`install` gives the
application its client session (closed with it).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from lab.api.authz import Attributes, Authorizer
from lab.api.fields import as_list, dig
from lab.api.identity import user_of
from lab.api.state import State
from lab.api.status import ApiError, bad_request, method_not_allowed, not_found

__all__ = [
    "CONNECT_TIMEOUT",
    "PROXY_TIMEOUT",
    "ProxyTarget",
    "install",
    "match",
    "proxy",
    "split_scheme_name_port",
]

log = logging.getLogger(__name__)

#: The longest a proxied request may take, from connecting to the last byte of the answer.
PROXY_TIMEOUT = 30.0
#: The longest connecting to the upstream may take.
CONNECT_TIMEOUT = 5.0
_CHUNK = 64 * 1024
_VERBS = {
    "GET": "get",
    "HEAD": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
    "OPTIONS": "options",
}
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_FORWARDED = frozenset({"authorization", "host", "content-length", "expect"})
_URL = re.compile(r"^/api/v1/namespaces/([^/]+)/(services|pods)/([^/]+)/proxy(/.*)?$")


@dataclass(frozen=True)
class ProxyTarget:
    """A proxy URL: ``resource`` (``services`` or ``pods``), namespace, the name segment as
    written (``[scheme:]name[:port]``) and the raw path after ``proxy`` ("" when none)."""

    resource: str
    namespace: str
    segment: str
    tail: str


class _Upstreams:
    """The application's client session to upstreams, made on first use."""

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=PROXY_TIMEOUT, connect=CONNECT_TIMEOUT),
                auto_decompress=False,  # the bytes as sent, with their Content-Encoding
                cookie_jar=aiohttp.DummyCookieJar(),  # one session for every caller: keep no cookies
                connector=aiohttp.TCPConnector(force_close=True),  # an upstream may restart on its port
                trust_env=False,
            )
        return self.session


UPSTREAMS = web.AppKey("proxy_upstreams", _Upstreams)


async def _close(app: web.Application) -> None:
    session = app[UPSTREAMS].session
    if session is not None:
        await session.close()


def install(app: web.Application) -> None:
    """Give ``app`` the proxy's client session (closed on the application's cleanup)."""
    app[UPSTREAMS] = _Upstreams()
    app.on_cleanup.append(_close)


def match(request: web.Request) -> ProxyTarget | None:
    """The proxy URL ``request`` asks for, or None when it is not one; 404 for a namespace or
    name segment that is not a single path segment (``..``, an encoded ``/``)."""
    found = _URL.match(request.rel_url.raw_path)
    if found is None:
        return None
    namespace, segment = unquote(found.group(1)), unquote(found.group(3))
    for value in (namespace, segment):
        if not value or value in (".", "..") or "/" in value:
            raise ApiError(404, "the server could not find the requested resource", "NotFound")
    return ProxyTarget(found.group(2), namespace, segment, found.group(4) or "")


def split_scheme_name_port(segment: str) -> tuple[str, str, str] | None:
    """``(scheme, name, port)`` of ``[scheme:]name[:port]`` (Kubernetes' SplitSchemeNamePort),
    or None when it is not that shape."""
    parts = segment.split(":")
    if len(parts) == 1:
        scheme, name, port = "", parts[0], ""
    elif len(parts) == 2:
        scheme, name, port = "", parts[0], parts[1]
    elif len(parts) == 3:
        scheme, name, port = parts
    else:
        return None
    if not name or scheme not in ("", "http", "https"):
        return None
    return scheme, name, port


def _unavailable(message: str) -> ApiError:
    return ApiError(503, message, "ServiceUnavailable")


_ONLY_DECLARED = "the lab proxies only to declared container ports"


def _container_ports(pod: dict[str, Any]) -> list[tuple[str, int]]:
    """``(name, number)`` of every TCP container port ``pod`` declares, in spec order."""
    declared: list[tuple[str, int]] = []
    for container in as_list(dig(pod, "spec", "containers")):
        for cport in as_list(dig(container, "ports")):
            number = dig(cport, "containerPort")
            protocol = dig(cport, "protocol") or "TCP"
            if isinstance(number, int) and not isinstance(number, bool) and protocol == "TCP":
                declared.append((str(dig(cport, "name") or ""), number))
    return declared


def _undeclared(namespace: str, pod: str, port: int) -> str:
    return f"port {port} is not a container port of pod {namespace}/{pod}: {_ONLY_DECLARED}"


def _endpoint_refusal(state: State, namespace: str, address: dict[str, Any], number: int) -> ApiError | None:
    """Why the endpoint ``address``:``number`` may not be proxied to, or None when it may: its
    ``targetRef`` must be a pod of the Service's namespace, still there (same uid), at that
    address, that declares ``number`` as a container port. Every lab pod is ``127.0.0.1``, so
    an endpoint naming no such pod could be any process on the host's loopback."""
    ip = str(address["ip"])
    ref = address.get("targetRef")
    ref_ns = dig(ref, "namespace") or namespace
    pod_name = dig(ref, "name")
    if not isinstance(ref, dict) or ref.get("kind") != "Pod" or not pod_name or ref_ns != namespace:
        return bad_request(
            f"endpoint {ip}:{number} names no pod of namespace {namespace} in its targetRef: "
            f"{_ONLY_DECLARED} of pods"
        )
    where = f"{namespace}/{pod_name}"
    pod = state.store.peek("pods", namespace, str(pod_name))
    uid = ref.get("uid")
    if pod is None or (uid and dig(pod, "metadata", "uid") != uid):
        return _unavailable(
            f"pod {where} behind endpoint {ip}:{number} no longer exists: retry when the endpoints catch up"
        )
    if dig(pod, "status", "podIP") != ip:
        return _unavailable(
            f"pod {where} is not at endpoint {ip}:{number}: retry when the endpoints catch up"
        )
    if number not in [n for _, n in _container_ports(pod)]:
        return bad_request(_undeclared(namespace, str(pod_name), number))
    return None


def _service_upstream(state: State, namespace: str, name: str, port: str) -> tuple[str, int]:
    service = state.store.peek("services", namespace, name)
    if service is None:
        raise not_found("services", name)
    ports = [p for p in as_list(dig(service, "spec", "ports")) if isinstance(p, dict)]
    if not port:
        if len(ports) != 1:
            raise bad_request(
                f'service "{name}" has {len(ports)} ports: name one in the URL, as {name}:PORT/proxy'
            )
        chosen = ports[0]
    elif port.isdigit():
        numbered = [p for p in ports if p.get("port") == int(port)]
        if not numbered:
            raise _unavailable(f'no service port {port} found for service "{name}"')
        chosen = numbered[0]
    else:
        named = [p for p in ports if p.get("name") == port]
        if not named:
            raise _unavailable(f'no service port "{port}" found for service "{name}"')
        chosen = named[0]
    port_name = str(chosen.get("name") or "")
    endpoints = state.store.peek("endpoints", namespace, name)
    refusal: ApiError | None = None
    for subset in as_list(dig(endpoints or {}, "subsets")):
        addresses = [a for a in as_list(dig(subset, "addresses")) if isinstance(a, dict) and a.get("ip")]
        for ep_port in as_list(dig(subset, "ports")):
            number = dig(ep_port, "port")
            if str(dig(ep_port, "name") or "") != port_name or not isinstance(number, int):
                continue
            for address in addresses:
                why = _endpoint_refusal(state, namespace, address, number)
                if why is None:
                    return str(address["ip"]), number
                refusal = refusal or why
    if refusal is not None:
        raise refusal
    raise _unavailable(f'no endpoints available for service "{name}"')


def _pod_upstream(state: State, namespace: str, name: str, port: str) -> tuple[str, int]:
    pod = state.store.peek("pods", namespace, name)
    if pod is None:
        raise not_found("pods", name)
    ip = dig(pod, "status", "podIP")
    if not isinstance(ip, str) or not ip:
        raise _unavailable(f'pod "{name}" has no IP address yet: wait until it is running')
    declared = _container_ports(pod)
    if port.isdigit():
        number = int(port)
        if number not in [n for _, n in declared]:
            raise bad_request(_undeclared(namespace, name, number))
    elif port:
        by_name = [n for pname, n in declared if pname == port]
        if not by_name:
            raise bad_request(f'pod "{name}" has no container port named "{port}": give its name or number')
        number = by_name[0]
    elif declared:
        number = declared[0][1]
    else:
        raise bad_request(f"pod {namespace}/{name} declares no container port: {_ONLY_DECLARED}")
    if not 0 < number < 65536:
        raise bad_request(f"port {number} is not a TCP port: give 1 to 65535")
    return ip, number


def _connection_tokens(headers: Any) -> set[str]:
    tokens: set[str] = set()
    for value in headers.getall("Connection", []):
        tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def _request_headers(request: web.Request) -> CIMultiDict[str]:
    dropped = _HOP_BY_HOP | _NOT_FORWARDED | _connection_tokens(request.headers)
    headers: CIMultiDict[str] = CIMultiDict()
    for key, value in request.headers.items():
        lower = key.lower()
        if lower in dropped or lower.startswith("impersonate-"):
            continue
        headers.add(key, value)
    forwarded = [v for v in request.headers.getall("X-Forwarded-For", [])]
    headers.popall("X-Forwarded-For", None)
    if request.remote:
        forwarded.append(request.remote)
    if forwarded:
        headers["X-Forwarded-For"] = ", ".join(forwarded)
    return headers


def _response_headers(upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
    dropped = _HOP_BY_HOP | _connection_tokens(upstream.headers)
    return CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in dropped)


def _abort(request: web.Request) -> None:
    """Cut the client's connection: an answer whose body broke off must not look complete."""
    transport = request.transport
    if transport is not None:
        transport.abort()


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {PROXY_TIMEOUT:g} s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return exc.os_error.strerror or str(exc.os_error) or type(exc).__name__
    return str(exc) or type(exc).__name__


async def proxy(
    request: web.Request, state: State, authorizer: Authorizer, target: ProxyTarget
) -> web.StreamResponse:
    """Authorize ``request`` for ``target`` and forward it to the upstream (see the module doc)."""
    verb = _VERBS.get(request.method)
    if verb is None:
        raise method_not_allowed(request.method)
    authorizer.check(
        Attributes(user_of(request), verb, "", target.resource, "proxy", target.namespace, target.segment)
    )
    what = target.resource[:-1]
    parsed = split_scheme_name_port(target.segment)
    if parsed is None:
        raise bad_request(f"invalid {what} request {target.segment!r}: use NAME, NAME:PORT or http:NAME:PORT")
    scheme, name, port = parsed
    if scheme == "https":
        raise bad_request(
            f"the lab's {what} proxy speaks plain HTTP to its pods, not https: "
            f"use {name}:{port or 'PORT'} or http:{name}:{port or 'PORT'}"
        )
    if target.resource == "services":
        host, number = _service_upstream(state, target.namespace, name, port)
    else:
        host, number = _pod_upstream(state, target.namespace, name, port)
    url = URL.build(
        scheme="http",
        host=host,
        port=number,
        path=target.tail or "/",
        query_string=request.rel_url.raw_query_string,
        encoded=True,
    )
    body = await request.read() if request.body_exists else None
    session = request.app[UPSTREAMS].get()
    where = f'{what} "{name}" at {host}:{number}'
    try:
        upstream = await session.request(
            request.method,
            url,
            headers=_request_headers(request),
            data=body,
            allow_redirects=False,
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
        )
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise _unavailable(f"error trying to reach {where}: {_why(exc)}") from None
    response = web.StreamResponse(
        status=upstream.status, reason=upstream.reason, headers=_response_headers(upstream)
    )
    try:
        await response.prepare(request)
        async for chunk in upstream.content.iter_chunked(_CHUNK):
            await response.write(chunk)
        await response.write_eof()
    except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
        # the upstream broke off or the client left: either way the answer is cut, visibly
        log.warning("proxy to %s broke off mid-answer: %s", where, _why(exc))
        _abort(request)
    finally:
        upstream.close()
    return response
