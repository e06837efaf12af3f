"""``authorization.k8s.io/v1`` reviews: who may do what, answered by the server's authorizer.

* ``SelfSubjectAccessReview`` (``kubectl auth can-i``): may the request's own user (the
  impersonated one under ``--as``) do what ``spec.resourceAttributes`` or
  ``spec.nonResourceAttributes`` describe?
* ``SubjectAccessReview`` (cluster-scoped): the same for ``spec.user``, ``spec.groups``,
  ``spec.uid`` and ``spec.extra``; ``LocalSubjectAccessReview`` (namespaced): the same
  within the URL's namespace, which ``spec.resourceAttributes.namespace`` must equal.
* ``SelfSubjectRulesReview`` (``kubectl auth can-i --list``): every RBAC rule the
  request's user holds in ``spec.namespace``.

Answers are created objects (201) echoing the request with a ``status``: ``allowed``,
``denied`` (only when the lab's deny list refused it), ``reason`` (``RBAC: allowed by
ClusterRoleBinding "x" of ClusterRole "y" to ServiceAccount "b/a"``) and
``evaluationError``; for rules, ``resourceRules``, ``nonResourceRules`` and
``incomplete`` (true while the policy file may deny what the rules grant). Bodies may be
JSON, YAML or Kubernetes protobuf (kubectl's typed clients send protobuf; kinds missing
from the generated message table are read here). Answers are JSON.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lab.api.authz import Attributes, Authorizer, Decision
from lab.api.fields import as_dict, as_list, as_str, clone
from lab.api.identity import UserInfo, user_of
from lab.api.protobuf import MAGIC, decode_message, fields
from lab.api.protobuf_schema import KINDS
from lab.api.reads import json_response
from lab.api.routing import Target
from lab.api.status import ApiError, bad_request, invalid, method_not_allowed
from lab.api.validation import decode_body

__all__ = ["GROUP", "REVIEW_KINDS", "handle", "review"]

GROUP = "authorization.k8s.io"
REVIEW_KINDS = (
    "SelfSubjectAccessReview",
    "SubjectAccessReview",
    "LocalSubjectAccessReview",
    "SelfSubjectRulesReview",
)
_PROTOBUF = "application/vnd.kubernetes.protobuf"


# -- protobuf bodies of the kinds the generated table lacks -----------------------------------


def _bytes(value: bytes | int | None) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, bytes):
        raise ValueError("a message or string field is not length-delimited")
    return value


def _text(value: bytes | int | None) -> str:
    return _bytes(value).decode("utf-8")


def _spec_from_proto(kind: str, data: bytes) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for number, value in fields(data):
        if not isinstance(value, bytes):
            continue
        if kind == "SelfSubjectRulesReview":
            if number == 1:
                spec["namespace"] = _text(value)
        elif number == 1:
            spec["resourceAttributes"] = decode_message(value, "authorization.v1.ResourceAttributes")
        elif number == 2:
            spec["nonResourceAttributes"] = decode_message(value, "authorization.v1.NonResourceAttributes")
        elif number == 3:
            spec["user"] = _text(value)
        elif number == 4:
            spec.setdefault("groups", []).append(_text(value))
        elif number == 5:
            entry = dict(fields(value))
            items = [_text(v) for n, v in fields(_bytes(entry.get(2))) if n == 1]
            spec.setdefault("extra", {})[_text(entry.get(1))] = items
        elif number == 6:
            spec["uid"] = _text(value)
    return spec


def _decode(raw: bytes, content_type: str) -> Any:
    """The request body; protobuf review kinds outside the generated table are decoded here."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media != _PROTOBUF or not raw.startswith(MAGIC):
        return decode_body(raw, content_type)
    try:
        envelope = dict(fields(raw[len(MAGIC) :]))
        type_meta = dict(fields(_bytes(envelope.get(1))))
        api_version, kind = _text(type_meta.get(1)), _text(type_meta.get(2))
        if f"{api_version} {kind}" in KINDS or kind not in REVIEW_KINDS or api_version != f"{GROUP}/v1":
            return decode_body(raw, content_type)
        body: dict[str, Any] = {"apiVersion": api_version, "kind": kind}
        for number, value in fields(_bytes(envelope.get(2))):
            if number == 1 and isinstance(value, bytes):
                body["metadata"] = decode_message(value, "meta.v1.ObjectMeta")
            elif number == 2 and isinstance(value, bytes):
                body["spec"] = _spec_from_proto(kind, value)
        return body
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"cannot decode the protobuf body: {exc}") from exc


# -- the reviews ------------------------------------------------------------------------------


def _attributes(user: UserInfo, spec: dict[str, Any], kind: str) -> Attributes:
    resource = spec.get("resourceAttributes")
    non_resource = spec.get("nonResourceAttributes")
    if resource is not None and non_resource is not None:
        raise invalid(
            kind,
            "",
            "spec.nonResourceAttributes",
            "Invalid value: cannot be specified in combination with resourceAttributes",
            GROUP,
        )
    if isinstance(resource, dict):
        return Attributes(
            user,
            as_str(resource.get("verb")),
            as_str(resource.get("group")),
            as_str(resource.get("resource")),
            as_str(resource.get("subresource")),
            as_str(resource.get("namespace")),
            as_str(resource.get("name")),
        )
    if isinstance(non_resource, dict):
        # an empty path is still a non-resource request: "" would read as a resource request
        path = as_str(non_resource.get("path")) or "\x00"
        return Attributes(user, as_str(non_resource.get("verb")), path=path)
    raise invalid(
        kind,
        "",
        "spec.resourceAttributes",
        'Invalid value: "null": exactly one of nonResourceAttributes or resourceAttributes must be specified',
        GROUP,
    )


def _subject(spec: dict[str, Any], kind: str) -> UserInfo:
    name = as_str(spec.get("user"))
    groups = tuple(g for g in as_list(spec.get("groups")) if isinstance(g, str))
    if not name and not groups:
        raise invalid(
            kind, "", "spec.user", 'Invalid value: "": at least one of user or group must be specified', GROUP
        )
    extra = tuple(
        (str(key), tuple(v for v in as_list(values) if isinstance(v, str)))
        for key, values in sorted(as_dict(spec.get("extra")).items())
    )
    return UserInfo(name, as_str(spec.get("uid")), groups, extra)


def _status(decision: Decision) -> dict[str, Any]:
    status: dict[str, Any] = {"allowed": decision.allowed}
    if decision.denied:
        status["denied"] = True
    if decision.reason:
        status["reason"] = decision.reason
    return status


def _rules_status(authorizer: Authorizer, user: UserInfo, namespace: str) -> dict[str, Any]:
    grants, errors = authorizer.rules_for(user, namespace)
    resource_rules, non_resource_rules = [], []
    for grant in grants:
        rule = grant.rule
        if rule.resources:
            entry: dict[str, Any] = {"verbs": list(rule.verbs)}
            if rule.api_groups:
                entry["apiGroups"] = list(rule.api_groups)
            entry["resources"] = list(rule.resources)
            if rule.resource_names:
                entry["resourceNames"] = list(rule.resource_names)
            resource_rules.append(entry)
        if rule.non_resource_urls:
            non_resource_rules.append(
                {"verbs": list(rule.verbs), "nonResourceURLs": list(rule.non_resource_urls)}
            )
    status: dict[str, Any] = {
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": authorizer.policy.restricts(),
    }
    if errors:
        status["evaluationError"] = errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]"
    return status


def review(
    authorizer: Authorizer, requester: UserInfo, kind: str, body: Any, namespace: str = ""
) -> dict[str, Any]:
    """The answer to a review of ``kind`` posted by ``requester`` (``namespace``: the URL's)."""
    if not isinstance(body, dict):
        raise bad_request(f"a {kind} must be a JSON object")
    sent = clone(body)
    metadata, spec = as_dict(sent.pop("metadata", None)), as_dict(sent.pop("spec", None))
    metadata.setdefault("creationTimestamp", None)
    for key in ("kind", "apiVersion", "status"):
        sent.pop(key, None)
    answer: dict[str, Any] = {
        "kind": kind,
        "apiVersion": f"{GROUP}/v1",
        "metadata": metadata,
        "spec": spec,
        **sent,
    }
    if kind == "SelfSubjectRulesReview":
        target = as_str(spec.get("namespace"))
        if not target:
            raise bad_request("no namespace on request")
        return {
            "kind": kind,
            "apiVersion": f"{GROUP}/v1",
            "metadata": {"creationTimestamp": None},
            "spec": {},
            "status": _rules_status(authorizer, requester, target),
        }
    user = requester if kind == "SelfSubjectAccessReview" else _subject(spec, kind)
    if kind == "LocalSubjectAccessReview":
        if metadata.get("namespace") not in (None, "", namespace):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        metadata["namespace"] = namespace
        if spec.get("nonResourceAttributes") is not None:
            raise invalid(
                kind,
                "",
                "spec.nonResourceAttributes",
                "Invalid value: disallowed on this kind of request",
                GROUP,
            )
        attrs = as_dict(spec.get("resourceAttributes"))
        if spec.get("resourceAttributes") is not None and as_str(attrs.get("namespace")) != namespace:
            raise bad_request(f"spec.resourceAttributes.namespace must match namespace: {namespace}")
    answer["status"] = _status(authorizer.decision(_attributes(user, spec, kind)))
    return answer


async def handle(request: web.Request, authorizer: Authorizer, target: Target) -> web.Response:
    """POST to one of the review kinds (already authorized as ``create``)."""
    if request.method != "POST" or target.name is not None or target.subresource is not None:
        raise method_not_allowed(request.method)
    kind = target.rt.kind
    if kind not in REVIEW_KINDS:
        raise ApiError(404, "the server could not find the requested resource", "NotFound")
    body = _decode(await request.read(), request.headers.get("Content-Type", ""))
    answer = review(authorizer, user_of(request), kind, body, target.namespace or "")
    return json_response(answer, 201)
