"""Authentication: who a request comes from, as kube-apiserver decides it.

:class:`Authenticator` tries, in kube-apiserver's order, a verified client certificate
(``--client-ca-file``: CN the user, O the groups), then the ``Authorization: Bearer``
token: first the static token file (:mod:`lab.api.tokens`), then a service-account JWT
(:mod:`lab.api.sa_tokens`) whose service account, and bound pod, still exist with the
uids the token names (a deleted one backs its tokens for the 60 s leeway Kubernetes
allows, so a terminating pod can still finish its work). In ``insecure_allow_all`` mode
every request is ``lab-admin`` in ``system:masters`` (the old test server).

:func:`resolve_user` is what the server's middleware runs before dispatch: no or invalid
credentials are 401 ``Unauthorized``, except that a request without any may GET the
health paths (``/healthz``, ``/livez``, ``/readyz`` and below) as ``system:anonymous``;
then impersonation (:mod:`lab.api.impersonation`); then non-resource paths (discovery,
``/version``, ``/openapi/*``, ``/``) are authorized with the request's lower-cased method
as the verb. Resource requests are authorized by their handlers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any, Protocol

from aiohttp import web

from common.times import parse_time
from lab.api.authz import Attributes
from lab.api.fields import as_str, dig, meta
from lab.api.identity import ANONYMOUS, AUTHENTICATED, MASTERS, UserInfo, service_account_user
from lab.api.impersonation import impersonate
from lab.api.sa_tokens import LEEWAY_SECONDS, InvalidToken, ServiceAccountTokens, looks_like_jwt
from lab.api.settings import Settings
from lab.api.state import State
from lab.api.status import ApiError
from lab.api.tokens import TokenFile
from lab.errors import LabError

__all__ = [
    "HEALTH_PATHS",
    "INSECURE_ADMIN",
    "Authenticator",
    "Authorizing",
    "check_settings",
    "is_health_path",
    "is_resource_path",
    "resolve_user",
    "unauthorized",
]

log = logging.getLogger(__name__)

HEALTH_PATHS = ("/healthz", "/livez", "/readyz")
#: Who every request is in ``insecure_allow_all`` mode.
INSECURE_ADMIN = UserInfo("lab-admin", groups=(MASTERS, AUTHENTICATED))
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
CREDENTIAL_ID_EXTRA = "authentication.kubernetes.io/credential-id"


class Authorizing(Protocol):
    """What authentication needs of the authorizer (:class:`lab.api.authz.Authorizer`)."""

    def check(self, attrs: Attributes) -> None: ...


def unauthorized() -> ApiError:
    """kube-apiserver's 401 Status."""
    return ApiError(401, "Unauthorized", "Unauthorized")


def is_health_path(path: str) -> bool:
    return any(path == h or path.startswith(h + "/") for h in HEALTH_PATHS)


def is_resource_path(path: str) -> bool:
    """``/api/V/RESOURCE...`` and ``/apis/G/V/RESOURCE...``; everything else is a non-resource URL."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        return len(parts) >= 3
    if parts[:1] == ["apis"]:
        return len(parts) >= 4
    return False


def check_settings(settings: Settings, require_auth: bool) -> Settings:
    """The settings to serve: LabError (one line) for a contradiction; with nothing configured,
    insecure mode unless ``require_auth`` (then an error naming the flags)."""
    sources = settings.credential_sources()
    if (settings.tls_cert_file is None) != (settings.tls_key_file is None):
        raise LabError("TLS needs both --tls-cert-file and --tls-private-key-file: give both or neither")
    authenticating = [s for s in sources if s != "--service-account-key-file"]
    if settings.insecure_allow_all and authenticating:
        raise LabError(
            f"--insecure-allow-all cannot be combined with {', '.join(authenticating)}: drop one or the other"
        )
    if settings.client_ca_file is not None and not settings.tls:
        raise LabError("--client-ca-file needs TLS: also give --tls-cert-file and --tls-private-key-file")
    if not sources and not settings.insecure_allow_all:
        if require_auth:
            raise LabError(
                "the API server has no way to authenticate anyone: give --token-auth-file and "
                "--service-account-key-file (and TLS), or --insecure-allow-all for a test server"
            )
        return replace(settings, insecure_allow_all=True)
    return settings


def _bearer(request: web.Request) -> str | None:
    """The bearer token ("" when the header is there but says nothing usable), None without one."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _deleted_long_ago(obj: dict[str, Any], now: float) -> bool:
    stamp = meta(obj).get("deletionTimestamp")
    if stamp is None:
        return False
    when = parse_time(stamp)
    return when is None or when < now - LEEWAY_SECONDS


def _peer_user(request: web.Request) -> UserInfo | None:
    transport = request.transport
    peer = transport.get_extra_info("peercert") if transport is not None else None
    if not peer:
        return None
    names: list[tuple[str, str]] = [pair for rdn in peer.get("subject", ()) for pair in rdn]
    common = [value for key, value in names if key == "commonName"]
    if not common or not common[0]:
        return None
    groups = [value for key, value in names if key == "organizationName"]
    return UserInfo(common[0], "", (*groups, AUTHENTICATED))


class Authenticator:
    """Who a request comes from (see the module docstring); built once per server."""

    def __init__(self, settings: Settings, state: State) -> None:
        self.state = state
        self.insecure = settings.insecure_allow_all
        self.client_certs = settings.client_ca_file is not None
        self.tokens = TokenFile(settings.token_auth_file) if settings.token_auth_file is not None else None
        self.service_accounts: ServiceAccountTokens | None = None
        if settings.service_account_key_file is not None:
            self.service_accounts = ServiceAccountTokens.from_key_file(
                settings.service_account_key_file, settings.service_account_issuer, settings.api_audiences
            )

    def presented_credentials(self, request: web.Request) -> bool:
        """Whether the request carries a bearer credential (a bad one is 401, never anonymous;
        a verified client certificate always authenticates)."""
        return "Authorization" in request.headers

    def authenticate(self, request: web.Request) -> UserInfo | None:
        """The request's user, or None when it has no credentials or none that are valid."""
        if self.insecure:
            return INSECURE_ADMIN
        if self.client_certs:
            user = _peer_user(request)
            if user is not None:
                return user
        token = _bearer(request)
        return self.authenticate_token(token) if token else None

    def authenticate_token(self, token: str) -> UserInfo | None:
        """The user of a bearer token (static file first, then service-account JWT), or None."""
        if self.tokens is not None:
            user = self.tokens.lookup(token)
            if user is not None:
                return user
        if self.service_accounts is not None and looks_like_jwt(token):
            try:
                return self._service_account(token)
            except InvalidToken as exc:
                log.info("service account token rejected: %s", exc)
        return None

    def _service_account(self, token: str) -> UserInfo:
        assert self.service_accounts is not None
        now = time.time()
        claims = self.service_accounts.verify(token, now)
        store = self.state.store
        account = store.peek("serviceaccounts", claims.namespace, claims.name)
        if account is None or _deleted_long_ago(account, now):
            raise InvalidToken(f"service account {claims.namespace}/{claims.name} has been deleted")
        if as_str(meta(account).get("uid")) != claims.uid:
            raise InvalidToken(
                f"service account {claims.namespace}/{claims.name} uid does not match the token"
            )
        extra: list[tuple[str, tuple[str, ...]]] = []
        if claims.pod_name:
            pod = store.peek("pods", claims.namespace, claims.pod_name)
            if pod is None or _deleted_long_ago(pod, now):
                raise InvalidToken("service account token has been invalidated (its pod is gone)")
            if as_str(dig(pod, "metadata", "uid")) != claims.pod_uid:
                raise InvalidToken("pod uid does not match the token's pod claim")
            extra += [(POD_NAME_EXTRA, (claims.pod_name,)), (POD_UID_EXTRA, (claims.pod_uid,))]
        if claims.token_id:
            extra.append((CREDENTIAL_ID_EXTRA, (f"JTI={claims.token_id}",)))
        base = service_account_user(claims.namespace, claims.name, claims.uid)
        return UserInfo(base.name, base.uid, base.groups, tuple(sorted(extra)))


def resolve_user(request: web.Request, authenticator: Authenticator, authorizer: Authorizing) -> UserInfo:
    """The user a request acts as (after impersonation), authorized for non-resource paths.

    Raises ApiError: 401 without valid credentials (health GETs excepted), 403 when
    impersonation or a non-resource path is not allowed, 400 for malformed impersonation.
    """
    user = authenticator.authenticate(request)
    path = request.path
    if user is None:
        if (
            request.method in ("GET", "HEAD")
            and is_health_path(path)
            and not authenticator.presented_credentials(request)
        ):
            return ANONYMOUS
        raise unauthorized()
    user = impersonate(request.headers, user, authorizer)
    if not is_resource_path(path) and not is_health_path(path):
        authorizer.check(Attributes(user=user, verb=request.method.lower(), group="", resource="", path=path))
    return user
