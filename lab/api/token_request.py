"""The TokenRequest subresource and SelfSubjectReview (``kubectl create token``, ``kubectl auth whoami``).

``POST /api/v1/namespaces/NS/serviceaccounts/NAME/token`` with an
``authentication.k8s.io/v1 TokenRequest`` (JSON or protobuf) answers 201 with the same
object, its spec filled in and ``status.token`` / ``status.expirationTimestamp``:

* ``spec.expirationSeconds``: default 3607 (what the kubelet asks for), at least 600
  (422 ``may not specify a duration less than 10 minutes``), at most 2^32;
* ``spec.audiences``: default the server's audiences;
* ``spec.boundObjectRef``: only ``kind: Pod`` (``apiVersion`` v1); the pod must exist
  (404), its uid match when one is given (409), and it must run as this service
  account (400); the answer carries the pod's uid.

The service account must exist (404). Without a signing key the server answers 503.

``POST /apis/authentication.k8s.io/v1/selfsubjectreviews`` answers 201 with
``status.userInfo``: the request's user after impersonation.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from common.times import format_time
from lab.api.fields import as_dict, as_list, as_str, dig, meta
from lab.api.identity import user_of
from lab.api.protobuf import MAGIC, fields
from lab.api.reads import json_response
from lab.api.sa_tokens import ServiceAccountTokens
from lab.api.state import State
from lab.api.status import ApiError, bad_request, conflict, invalid, not_found
from lab.api.validation import decode_body

__all__ = [
    "DEFAULT_EXPIRATION_SECONDS",
    "MAX_EXPIRATION_SECONDS",
    "MIN_EXPIRATION_SECONDS",
    "self_subject_review",
    "token_request",
]

GROUP = "authentication.k8s.io"
API_VERSION = f"{GROUP}/v1"
DEFAULT_EXPIRATION_SECONDS = 3607
MIN_EXPIRATION_SECONDS = 600
MAX_EXPIRATION_SECONDS = 1 << 32
PROTOBUF = "application/vnd.kubernetes.protobuf"


def _string(value: bytes | int) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else ""


def _signed64(value: bytes | int) -> int:
    number = value if isinstance(value, int) else 0
    return number - (1 << 64) if number >= 1 << 63 else number


def _protobuf_request(raw: bytes, kind: str) -> dict[str, Any]:
    """A TokenRequest or SelfSubjectReview from protobuf (only the spec fields read here)."""
    try:
        if not raw.startswith(MAGIC):
            raise ValueError("missing the k8s protobuf magic prefix")
        envelope = dict(fields(raw[len(MAGIC) :]))
        type_meta = envelope.get(1, b"")
        typed = dict(fields(type_meta)) if isinstance(type_meta, bytes) else {}
        api_version, got = _string(typed.get(1, b"")), _string(typed.get(2, b""))
        if (api_version, got) != (API_VERSION, kind):
            raise ValueError(f"expected {API_VERSION} {kind}, got {api_version or '?'} {got or '?'}")
        body: dict[str, Any] = {"apiVersion": api_version, "kind": got}
        message = envelope.get(2, b"")
        top = fields(message) if isinstance(message, bytes) else []
        if kind != "TokenRequest":
            return body
        spec: dict[str, Any] = {}
        for number, value in (f for n, v in top if n == 2 and isinstance(v, bytes) for f in fields(v)):
            if number == 1:
                spec.setdefault("audiences", []).append(_string(value))
            elif number == 4:
                spec["expirationSeconds"] = _signed64(value)
            elif number == 3 and isinstance(value, bytes):
                names = {1: "kind", 2: "apiVersion", 3: "name", 4: "uid"}
                ref = {names[n]: _string(v) for n, v in fields(value) if n in names}
                spec["boundObjectRef"] = {k: v for k, v in ref.items() if v}
        body["spec"] = spec
        return body
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"cannot decode the protobuf body: {exc}") from exc


async def _body(request: web.Request, kind: str) -> dict[str, Any]:
    raw = await request.read()
    content_type = request.headers.get("Content-Type", "")
    if not raw.strip():
        return {"apiVersion": API_VERSION, "kind": kind}
    if content_type.split(";", 1)[0].strip().lower() == PROTOBUF:
        return _protobuf_request(raw, kind)
    body = decode_body(raw, content_type)
    if not isinstance(body, dict):
        raise bad_request(f"a {kind} must be a JSON object")
    if body.get("kind", kind) != kind or body.get("apiVersion", API_VERSION) != API_VERSION:
        raise bad_request(
            f"the body must be an {API_VERSION} {kind}, not {body.get('apiVersion')} {body.get('kind')}"
        )
    return body


def _invalid(name: str, field: str, problem: str) -> ApiError:
    return invalid("TokenRequest", name, field, problem, GROUP)


def _expiration(name: str, spec: dict[str, Any]) -> int:
    value = spec.get("expirationSeconds")
    if value is None:
        return DEFAULT_EXPIRATION_SECONDS
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(name, "spec.expirationSeconds", f"Invalid value: {value!r}: must be an integer")
    if value < MIN_EXPIRATION_SECONDS:
        raise _invalid(
            name,
            "spec.expirationSeconds",
            f"Invalid value: {value}: may not specify a duration less than 10 minutes",
        )
    if value > MAX_EXPIRATION_SECONDS:
        raise _invalid(
            name,
            "spec.expirationSeconds",
            f"Invalid value: {value}: may not specify a duration larger than 2^32 seconds",
        )
    return value


def _bound_pod(state: State, namespace: str, account: str, ref: dict[str, Any]) -> tuple[str, str]:
    kind, version = as_str(ref.get("kind")), as_str(ref.get("apiVersion"), "v1")
    name, uid = as_str(ref.get("name")), as_str(ref.get("uid"))
    if kind != "Pod" or version != "v1":
        raise _invalid(
            account,
            "spec.boundObjectRef.kind",
            f'Unsupported value: "{kind}": supported values: "Pod" (apiVersion v1); the lab binds '
            "tokens to pods only",
        )
    if not name:
        raise _invalid(account, "spec.boundObjectRef.name", "Required value")
    pod = state.store.peek("pods", namespace, name)
    if pod is None:
        raise not_found("pods", name)
    pod_uid = as_str(meta(pod).get("uid"))
    if uid and uid != pod_uid:
        raise conflict(
            "Pod",
            name,
            "",
            f"the UID in the bound object reference ({uid}) does not match the UID in record. "
            "The object might have been deleted and then recreated",
        )
    if (as_str(dig(pod, "spec", "serviceAccountName")) or "default") != account:
        raise bad_request(
            f'cannot bind token for serviceaccount "{account}" to pod running with different '
            "serviceaccount name."
        )
    return name, pod_uid


async def token_request(
    request: web.Request, state: State, signer: ServiceAccountTokens | None, namespace: str, account: str
) -> web.Response:
    """Answer ``POST .../serviceaccounts/{account}/token`` (authorization already done)."""
    if request.method != "POST":
        raise ApiError(
            405, f"the server does not allow this method on the requested resource ({request.method})"
        )
    body = await _body(request, "TokenRequest")
    if signer is None:
        raise ApiError(
            503,
            "service account token issuing is not configured on this API server: "
            "start it with --service-account-key-file",
            "ServiceUnavailable",
        )
    sa = state.store.peek("serviceaccounts", namespace, account)
    if sa is None:
        raise not_found("serviceaccounts", account)
    spec = as_dict(body.get("spec"))
    seconds = _expiration(account, spec)
    audiences = [a for a in as_list(spec.get("audiences")) if isinstance(a, str) and a] or list(
        signer.audiences
    )
    ref = as_dict(spec.get("boundObjectRef"))
    pod = _bound_pod(state, namespace, account, ref) if ref else None
    token, expires = signer.issue(namespace, account, as_str(meta(sa).get("uid")), seconds, audiences, pod)
    out_spec: dict[str, Any] = {"audiences": audiences, "expirationSeconds": seconds}
    if pod is not None:
        out_spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": pod[0], "uid": pod[1]}
    answer = {
        "kind": "TokenRequest",
        "apiVersion": API_VERSION,
        "metadata": {"name": account, "namespace": namespace, "creationTimestamp": None},
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": format_time(expires)},
    }
    return json_response(answer, 201)


async def self_subject_review(request: web.Request) -> web.Response:
    """Answer ``POST /apis/authentication.k8s.io/v1/selfsubjectreviews`` with the request's user."""
    if request.method != "POST":
        raise ApiError(
            405, f"the server does not allow this method on the requested resource ({request.method})"
        )
    await _body(request, "SelfSubjectReview")
    answer = {
        "kind": "SelfSubjectReview",
        "apiVersion": API_VERSION,
        "metadata": {"creationTimestamp": None},
        "status": {"userInfo": user_of(request).as_user_info()},
    }
    return json_response(answer, 201)
