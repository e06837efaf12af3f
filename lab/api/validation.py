"""Request bodies: decoding, and the checks every object passes before it is stored.

Bodies are JSON (or YAML, which the real server also accepts); a body that does not
decode, is not a JSON object, or nests deeper than :data:`MAX_DEPTH` is a 400.
``kind``/``apiVersion`` may be omitted (they are filled in) but must match the URL
when given (400). ``metadata`` fields must have their API types (400, like the real
decoder); names must be DNS-1123 subdomains (labels for namespaces) and label keys and
values must be valid (422 Invalid).
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from lab.api.fields import dig, json_depth
from lab.api.protobuf import decode_object
from lab.api.resources import ResourceType
from lab.api.status import ApiError, bad_request, invalid, unsupported_media_type

__all__ = [
    "MAX_DEPTH",
    "check_kind",
    "check_labels",
    "check_metadata_types",
    "check_name",
    "check_required",
    "decode_body",
]

MAX_DEPTH = 100
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_REQUIRED: dict[str, tuple[tuple[str, ...], ...]] = {
    "pods": (("spec", "containers"),),
    "deployments.apps": (("spec", "selector"), ("spec", "template")),
    "statefulsets.apps": (("spec", "selector"), ("spec", "template")),
    "replicasets.apps": (("spec", "selector"),),
    "daemonsets.apps": (("spec", "selector"), ("spec", "template")),
    "jobs.batch": (("spec", "template"),),
    "cronjobs.batch": (("spec", "schedule"), ("spec", "jobTemplate")),
}
_QUALIFIED = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors/aliases, so a small body cannot expand into a huge one."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("YAML aliases are not accepted")
        return super().compose_node(parent, index)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON number {name}")


def decode_body(raw: bytes, content_type: str) -> Any:
    """Decode a request body by its Content-Type (missing means JSON; protobuf for a few kinds)."""
    media = content_type.split(";", 1)[0].strip().lower()
    try:
        text = "" if "protobuf" in media else raw.decode("utf-8")
        if media == "application/vnd.kubernetes.protobuf":
            value = decode_object(raw)
        elif media in ("application/yaml", "text/yaml", "application/x-yaml"):
            value = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
            json.dumps(value)
        elif media in ("", "application/octet-stream", "text/plain") or "json" in media:
            value = json.loads(text, parse_constant=_reject_constant)
        else:
            raise unsupported_media_type(content_type)
    except ApiError:
        raise
    except (ValueError, TypeError, RecursionError, yaml.YAMLError) as exc:
        raise bad_request(f"the request body could not be decoded: {str(exc)[:200]}") from exc
    if json_depth(value) > MAX_DEPTH:
        raise bad_request(f"the request body nests deeper than {MAX_DEPTH} levels")
    return value


def check_kind(rt: ResourceType, body: Any, kind: str | None = None, api_version: str | None = None) -> None:
    """Fill in or verify ``kind``/``apiVersion`` of a body sent to ``rt``'s URL."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    want_kind = kind or rt.kind
    want_version = api_version or rt.api_version
    got_kind = body.setdefault("kind", want_kind)
    got_version = body.setdefault("apiVersion", want_version)
    if got_kind != want_kind or got_version != want_version:
        raise bad_request(
            f"the API version in the data ({got_version}) and kind ({got_kind}) do not match "
            f"the expected {want_version} {want_kind} of this URL"
        )


def _string_map(md: dict[str, Any], field: str) -> None:
    value = md.get(field)
    if value is None:
        md.pop(field, None)
        return
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise bad_request(f"metadata.{field} must be a map of string keys to string values")


def check_metadata_types(body: dict[str, Any]) -> dict[str, Any]:
    """Verify the types of ``metadata`` fields; returns the metadata dict."""
    md = body.setdefault("metadata", {})
    if md is None:
        md = body["metadata"] = {}
    if not isinstance(md, dict):
        raise bad_request("metadata must be an object")
    for field in ("name", "generateName", "namespace", "resourceVersion", "uid"):
        if md.get(field) is None:
            md.pop(field, None)
        elif not isinstance(md[field], str):
            raise bad_request(f"metadata.{field} must be a string")
    _string_map(md, "labels")
    _string_map(md, "annotations")
    finalizers = md.get("finalizers")
    if finalizers is None:
        md.pop("finalizers", None)
    elif not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers):
        raise bad_request("metadata.finalizers must be a list of strings")
    refs = md.get("ownerReferences")
    if refs is None:
        md.pop("ownerReferences", None)
    elif not isinstance(refs, list) or not all(_owner_ref_ok(r) for r in refs):
        raise bad_request("metadata.ownerReferences must be a list of {apiVersion, kind, name, uid} objects")
    for field in ("spec", "status"):
        if field in body and body[field] is not None and not isinstance(body[field], dict):
            raise bad_request(f"{field} must be an object")
    return md


def _owner_ref_ok(ref: Any) -> bool:
    return (
        isinstance(ref, dict)
        and all(isinstance(ref.get(f), str) and ref.get(f) for f in ("apiVersion", "kind", "name", "uid"))
        and all(
            isinstance(ref.get(f), bool)
            for f in ("controller", "blockOwnerDeletion")
            if ref.get(f) is not None
        )
    )


def check_name(rt: ResourceType, name: str, field: str = "metadata.name") -> None:
    """422 unless ``name`` is a valid object name for ``rt``.

    RBAC kinds take any path segment name (``system:node``), as Kubernetes'
    ``ValidatePathSegmentName``: not ``.`` or ``..``, no ``/`` or ``%``.
    """
    if rt.group == "rbac.authorization.k8s.io":
        if name in (".", "..") or "/" in name or "%" in name or not name:
            raise invalid(
                rt.kind,
                name,
                field,
                f"Invalid value: \"{name}\": may not be '.' or '..' and may not contain '/' or '%'",
                rt.group,
            )
        return
    if rt.plural == "namespaces":
        ok, rule, limit = bool(_LABEL.match(name)), "RFC 1123 label", 63
    else:
        ok, rule, limit = bool(_SUBDOMAIN.match(name)), "RFC 1123 subdomain", 253
    if not ok or len(name) > limit:
        raise invalid(
            rt.kind,
            name,
            field,
            f'Invalid value: "{name}": a lowercase {rule} must consist of lower case alphanumeric '
            "characters, '-' or '.', and must start and end with an alphanumeric character "
            f"(at most {limit} characters)",
            rt.group,
        )


def check_labels(rt: ResourceType, name: str, labels: dict[str, str] | None) -> None:
    for key, value in (labels or {}).items():
        prefix, _, short = key.rpartition("/")
        key_ok = bool(short) and len(short) <= 63 and bool(_QUALIFIED.match(short))
        if "/" in key:
            key_ok = key_ok and bool(prefix) and len(prefix) <= 253 and bool(_SUBDOMAIN.match(prefix))
        if not key_ok:
            raise invalid(
                rt.kind,
                name,
                "metadata.labels",
                f'Invalid value: "{key}": name part must be a valid label key',
                rt.group,
            )
        if value and (len(value) > 63 or not _QUALIFIED.match(value)):
            raise invalid(
                rt.kind,
                name,
                "metadata.labels",
                f'Invalid value: "{value}": a valid label value must be '
                "63 characters or less, alphanumeric, '-', '_' or '.'",
                rt.group,
            )


def check_required(rt: ResourceType, obj: dict[str, Any]) -> None:
    """422 when a field the API requires is missing (clients cannot read such objects)."""
    name = str(dig(obj, "metadata", "name") or "")
    for path in _REQUIRED.get(rt.key, ()):
        if dig(obj, *path) in (None, "", [], {}):
            raise invalid(rt.kind, name, ".".join(path), "Required value", rt.group)
    containers = dig(obj, "spec", "containers") if rt.key == "pods" else []
    if not isinstance(containers, list):
        raise invalid(rt.kind, name, "spec.containers", "Invalid value: must be a list", rt.group)
    for index, container in enumerate(containers):
        for field in ("name", "image"):
            if not isinstance(dig(container, field), str) or not dig(container, field):
                raise invalid(rt.kind, name, f"spec.containers[{index}].{field}", "Required value", rt.group)
