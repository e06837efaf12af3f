"""The aiohttp application: routing, error wrapping, durability, start and stop.

:func:`build_app` opens the state (locks and replays the data folder) and returns the
application; :func:`serve` also binds it and returns the running ``AppRunner``
(:func:`bound_port` tells the port when 0 was asked, :func:`bound_url` the URL). Every
error becomes a v1 Status: :class:`~lab.api.status.ApiError` with its own code, anything
unexpected a logged 500.
Every non-GET request syncs the write-ahead log before its answer is sent.
``/apis/events.k8s.io/v1`` is served by :mod:`lab.api.event_views` (a view of the core
Events), and Events last written over an hour ago are removed every ``gc_interval``.

Security, in kube-apiserver's order: TLS when ``tls_cert_file``/``tls_key_file`` are set;
then, before dispatch, authentication and impersonation (:mod:`lab.api.authn`; the user
is stored as ``request[USER]``), and authorization of non-resource paths; resource
requests are authorized by their handlers with ``app[AUTHORIZER]``. ``serviceaccounts/token``
and ``selfsubjectreviews`` are answered by :mod:`lab.api.token_request`; ``services/proxy``
and ``pods/proxy`` (any method) by :mod:`lab.api.service_proxy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from typing import Any

from aiohttp import web

from lab.api import discovery, event_views, service_proxy
from lab.api.authn import Authenticator, check_settings, resolve_user
from lab.api.authz import Attributes, Authorizer
from lab.api.bootstrap_policy import ensure_bootstrap_policy
from lab.api.controllers import Controllers
from lab.api.handlers import handle_resource
from lab.api.identity import USER, user_of
from lab.api.pki import server_ssl_context
from lab.api.reads import json_response
from lab.api.routing import Target, openapi_route, parse_path
from lab.api.settings import Settings
from lab.api.state import State
from lab.api.status import ApiError, method_not_allowed, status_body
from lab.api.token_request import self_subject_review, token_request

__all__ = ["AUTHENTICATOR", "AUTHORIZER", "STATE", "bound_port", "bound_url", "build_app", "serve"]

log = logging.getLogger(__name__)

STATE = web.AppKey("state", State)
AUTHORIZER = web.AppKey("authorizer", Authorizer)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
SELF_REVIEWS = "selfsubjectreviews.authentication.k8s.io"
CONTROLLERS = web.AppKey("controllers", Controllers)
EVENT_TTL_TASK = web.AppKey("event_ttl_task", asyncio.Task)
_HEALTH = ("/healthz", "/readyz", "/livez")
_HTTP_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
}


def _missing() -> ApiError:
    return ApiError(404, "the server could not find the requested resource", "NotFound")


async def _sync_quietly(state: State) -> None:
    """Persist writes a failed request may have made before failing."""
    try:
        await state.store.sync()
    except Exception:
        log.exception("write-ahead log sync failed")


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        response: web.StreamResponse = await handler(request)
        if request.method != "GET":
            await state.store.sync()
        return response
    except ApiError as exc:
        await _sync_quietly(state)
        return json_response(exc.status(), exc.code)
    except web.HTTPException as exc:
        code = exc.status
        reason = _HTTP_REASONS.get(code, "InternalError" if code >= 500 else "BadRequest")
        return json_response(status_body(code, reason, exc.reason or exc.text or reason), code)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("internal error on %s %s", request.method, request.path_qs)
        await _sync_quietly(state)
        body = status_body(
            500,
            "InternalError",
            f"an error on the server ({type(exc).__name__}) has prevented the request from succeeding",
        )
        return json_response(body, 500)


def _non_resource(request: web.Request, app: web.Application) -> web.StreamResponse | None:
    path = request.path.rstrip("/") or "/"
    state = app[STATE]
    registry = state.registry
    if request.method != "GET":
        return None
    if path in _HEALTH or any(path.startswith(h + "/") for h in _HEALTH):
        return web.Response(text="ok", content_type="text/plain")
    if path == "/version":
        return json_response(discovery.version_info())
    if path == "/":
        return json_response(
            {
                "paths": [
                    "/api",
                    "/api/v1",
                    "/apis",
                    "/healthz",
                    "/livez",
                    "/openapi/v2",
                    "/openapi/v3",
                    "/readyz",
                    "/version",
                ]
            }
        )
    if path == "/api":
        return json_response(discovery.api_versions(request.host))
    if path == "/apis":
        return json_response(discovery.api_group_list(registry))
    openapi_answer = openapi_route(path, request.headers.get("Accept", ""), state)  # /openapi/v2, /openapi/v3
    if openapi_answer is not None:
        return openapi_answer
    parts = path.strip("/").split("/")
    if len(parts) == 2 and parts[0] == "api":
        body = discovery.resource_list(registry, "", parts[1])
    elif len(parts) == 2 and parts[0] == "apis":
        body = discovery.api_group(registry, parts[1])
    elif len(parts) == 3 and parts[0] == "apis":
        body = discovery.resource_list(registry, parts[1], parts[2])
    else:
        return None
    if body is None:
        raise _missing()
    return json_response(body)


@web.middleware
async def _authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
    """Who the request comes from (401/403 before anything else runs), stored as ``request[USER]``."""
    app = request.app
    request[USER] = resolve_user(request, app[AUTHENTICATOR], app[AUTHORIZER])
    response: web.StreamResponse = await handler(request)
    return response


async def _authentication_api(request: web.Request, target: Target) -> web.StreamResponse:
    """``serviceaccounts/{name}/token`` and ``selfsubjectreviews``: authorized as ``create``."""
    app, rt = request.app, target.rt
    if request.method != "POST" or (rt.key == SELF_REVIEWS and target.name is not None):
        raise method_not_allowed(request.method)
    app[AUTHORIZER].check(
        Attributes(
            user=user_of(request),
            verb="create",
            group=rt.group,
            resource=rt.plural,
            subresource=target.subresource or "",
            namespace=target.namespace or "",
            name=target.name or "",
        )
    )
    if rt.key == SELF_REVIEWS:
        return await self_subject_review(request)
    authn = app[AUTHENTICATOR]
    return await token_request(
        request, app[STATE], authn.service_accounts, target.namespace or "", target.name or ""
    )


async def _dispatch(request: web.Request) -> web.StreamResponse:
    app = request.app
    proxied = service_proxy.match(request)
    if proxied is not None:
        return await service_proxy.proxy(request, app[STATE], app[AUTHORIZER], proxied)
    if request.method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        raise ApiError(
            405, f"the server does not allow this method on the requested resource ({request.method})"
        )
    answer = _non_resource(request, app)
    if answer is not None:
        return answer
    target = parse_path(request.path, app[STATE].registry)
    if target.rt.key == SELF_REVIEWS or (
        target.rt.key == "serviceaccounts" and target.subresource == "token"
    ):
        return await _authentication_api(request, target)
    if target.rt.group == event_views.GROUP:
        return await event_views.handle(request, app[STATE], app[AUTHORIZER], target)
    return await handle_resource(request, app[STATE], app[AUTHORIZER], target)


async def _expire_events(state: State) -> None:
    """Remove Events older than their TTL, every ``gc_interval`` seconds (at most every minute)."""
    while True:
        await asyncio.sleep(min(state.settings.gc_interval, 60.0))
        try:
            if event_views.expire_events(state):
                await state.store.sync()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("event expiry failed; retrying")


async def _on_startup(app: web.Application) -> None:
    if ensure_bootstrap_policy(app[STATE]):  # kube-apiserver's rbac/bootstrap-roles post-start hook
        await app[STATE].store.sync()
    app[CONTROLLERS].start()
    expiry = _expire_events(app[STATE])
    app[EVENT_TTL_TASK] = asyncio.get_running_loop().create_task(expiry, name="lab-event-ttl")


async def _on_shutdown(app: web.Application) -> None:
    app[STATE].store.history.close_all()


async def _on_cleanup(app: web.Application) -> None:
    task = app.get(EVENT_TTL_TASK)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await app[CONTROLLERS].stop()
    await app[STATE].store.sync()
    app[STATE].close()


def build_app(settings: Settings, *, require_auth: bool = False) -> web.Application:
    """The API server application over ``settings`` (opens and locks the data folder).

    With no credential source in ``settings`` the server is the insecure test server
    (:data:`lab.api.authn.INSECURE_ADMIN` for every request) unless ``require_auth``,
    which makes that a LabError (the lab's control plane and ``python -m lab.api``).
    Unreadable token or key files are a LabError too.
    """
    settings = check_settings(settings, require_auth)
    state = State(settings)
    authenticator = Authenticator(settings, state)  # reads its files, before the state is locked
    state.store.history.window = settings.watch_window if settings.watch_window > 0 else None
    state.open()
    gc.freeze()  # the loaded state is long-lived: keep it out of every full collection
    app = web.Application(middlewares=[_errors, _authenticate], client_max_size=settings.max_body_bytes)
    app[STATE] = state
    app[AUTHENTICATOR] = authenticator
    app[AUTHORIZER] = Authorizer(state, settings.policy_file)
    app[CONTROLLERS] = Controllers(state)
    service_proxy.install(app)
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)
    app.on_cleanup.append(_on_cleanup)
    return app


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port ``runner`` listens on."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("the API server is not listening")


def bound_url(runner: web.AppRunner) -> str:
    """``https://HOST:PORT`` (or ``http://`` for a server without TLS) of a started server."""
    settings = runner.app[STATE].settings
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"{'https' if settings.tls else 'http'}://{host}:{bound_port(runner)}"


async def serve(settings: Settings, access_log: bool = False, *, require_auth: bool = False) -> web.AppRunner:
    """Build, bind and start the server; stop it with ``await runner.cleanup()``.

    HTTPS when ``settings`` name a TLS certificate and key (:func:`bound_url` says which).
    Raises OSError when the port is taken (the runner is cleaned up first) and LabError
    when the data folder is locked or unreadable, or the security settings are unusable
    (``require_auth``: see :func:`build_app`). Writes the bound port to
    ``<data_dir>/apiserver.port``.
    """
    context = None
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        context = server_ssl_context(settings.tls_cert_file, settings.tls_key_file, settings.client_ca_file)
    app = build_app(settings, require_auth=require_auth)
    runner = web.AppRunner(app, access_log=log if access_log else None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, ssl_context=context)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    port = bound_port(runner)
    if settings.data_dir is not None:
        (settings.data_dir / "apiserver.port").write_text(f"{port}\n")
    return runner
