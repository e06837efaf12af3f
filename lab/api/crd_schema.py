"""Custom resources against their CRD's structural schema: pruning and validation.

What kube-apiserver does with a custom resource before it stores it, on create, update
and patch (main resource and ``/status``), against the ``openAPIV3Schema`` of the
version the request was served at:

1. **Pruning**: a field the schema does not declare is dropped, unless the object
   declaring it has ``x-kubernetes-preserve-unknown-fields: true`` (then its unknown
   fields are kept; declared ones are still pruned inside). ``apiVersion``, ``kind`` and
   ``metadata`` are always kept at the root and in ``x-kubernetes-embedded-resource``
   objects (metadata is the server's own, checked by :mod:`lab.api.validation`). A
   ``null`` in a field that is neither ``nullable`` nor defaulted is dropped too.
2. **Validation** (go-openapi's checks, reported as kube-apiserver reports them):
   ``type`` (an integer is not a boolean; a number accepts integers), ``enum``,
   ``required``, ``minimum``/``maximum`` (and exclusive), ``multipleOf``,
   ``minLength``/``maxLength``, ``pattern`` (RE2, as Go matches it: linear in the value),
   ``minItems``/``maxItems``, ``format`` (``date-time``, ``date``, ``byte``, ``uuid``,
   ``ipv4``, ``ipv6``),
   ``x-kubernetes-int-or-string``, ``nullable``, ``properties``,
   ``additionalProperties`` and ``items``. All failures go into one 422 ``Invalid``
   with a cause each (``FieldValueTypeInvalid``, ``FieldValueNotSupported``,
   ``FieldValueRequired``, ``FieldValueTooLong``, ``FieldValueTooMany``,
   ``FieldValueInvalid``).

A ``/status`` write validates the ``status`` part only. On updates, a failure in a
value the write did not change is not reported (Kubernetes' validation ratcheting), so
an object stored before a stricter schema can still be updated elsewhere.
``anyOf``/``oneOf``/``allOf``/``not`` and CEL rules are not evaluated; defaults are not
applied.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import uuid
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import re2

from lab.api.crds import compile_pattern, served_schema
from lab.api.fields import as_dict, as_str, dig
from lab.api.resources import CRD_KEY, ResourceType
from lab.api.status import ApiError, invalid

if TYPE_CHECKING:
    from lab.api.state import State

__all__ = ["Cause", "admit", "causes_error", "prune", "validate"]

_ROOT_KEEP = ("apiVersion", "kind", "metadata")
_MISSING = object()
_DATE_TIME = re.compile(  # kube-openapi's strfmt: the zone may be left out
    r"^(\d{4}-\d{2}-\d{2})[Tt](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d+)?(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)?$"
)


@dataclass(frozen=True)
class Cause:
    """One failure: where (``path`` to walk, ``field`` as Kubernetes prints it), why, in its words."""

    path: tuple[str | int, ...]
    field: str
    reason: str
    message: str


def _field(path: tuple[str | int, ...]) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _shown(value: Any) -> str:
    """A value as Kubernetes' field errors print it (strings quoted, scalars bare)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, sort_keys=True)


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def prune(value: Any, schema: dict[str, Any], root: bool = True) -> None:
    """Drop, in place, the fields of ``value`` that ``schema`` does not declare."""
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for item in value:
                prune(item, items, False)
        return
    if not isinstance(value, dict):
        return
    props = as_dict(schema.get("properties"))
    extra = schema.get("additionalProperties")
    keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields") is True
    keep = _ROOT_KEEP if root or schema.get("x-kubernetes-embedded-resource") is True else ()
    for key in list(value):
        child = props.get(key)
        if key in keep and not isinstance(child, dict):
            continue
        if key in keep and key == "metadata":
            continue
        if not isinstance(child, dict) and isinstance(extra, dict):
            child = extra
        if not isinstance(child, dict):
            if not keep_unknown and extra is not True:
                del value[key]
            continue
        if value[key] is None:
            if child.get("nullable") is not True and "default" not in child:
                del value[key]
            continue
        prune(value[key], child, False)


def _type_causes(value: Any, schema: dict[str, Any], path: tuple[str | int, ...]) -> list[Cause]:
    field = _field(path)
    got = _json_type(value)
    if value is None:
        if schema.get("nullable") is True or not (schema.get("type") or _int_or_string(schema)):
            return []
        want = "integer,string" if _int_or_string(schema) else str(schema.get("type"))
    elif _int_or_string(schema):
        if got in ("integer", "string"):
            return []
        want = "integer,string"
    else:
        want = str(schema.get("type") or "")
        ok = (
            not want
            or want == got
            or (want == "number" and got == "integer")
            or (want == "integer" and isinstance(value, float) and value.is_integer())
        )
        if ok:
            return []
    return [
        Cause(
            path,
            field,
            "FieldValueTypeInvalid",
            f'Invalid value: "{got}": {field} in body must be of type {want}: "{got}"',
        )
    ]


def _int_or_string(schema: dict[str, Any]) -> bool:
    return schema.get("x-kubernetes-int-or-string") is True


def _format_ok(fmt: str, text: str) -> bool:
    try:
        if fmt == "date-time":
            found = _DATE_TIME.match(text)
            return found is not None and bool(date.fromisoformat(found.group(1)))
        if fmt == "date":
            return bool(date.fromisoformat(text)) and len(text) == 10
        if fmt == "byte":
            return bool(base64.b64decode(text, validate=True)) or text == ""
        if fmt == "uuid":
            return bool(uuid.UUID(text))
        if fmt == "ipv4":
            return bool(ipaddress.IPv4Address(text))
        if fmt == "ipv6":
            return bool(ipaddress.IPv6Address(text))
    except (ValueError, binascii.Error):
        return False
    return True


def _off_multiple(value: float, step: Any) -> bool:
    """Whether ``value`` misses ``multipleOf: step`` (a missing or zero step never does)."""
    if not isinstance(step, int | float) or isinstance(step, bool) or not step:
        return False
    return abs(value / step - round(value / step)) > 1e-9


def _scalar_causes(value: Any, schema: dict[str, Any], path: tuple[str | int, ...]) -> list[Cause]:
    field, out = _field(path), []
    shown = _shown(value)

    def bad(problem: str, reason: str = "FieldValueInvalid") -> None:
        out.append(Cause(path, field, reason, f"Invalid value: {shown}: {field} in body {problem}"))

    if isinstance(value, str):
        high, low, pattern, fmt = (schema.get(k) for k in ("maxLength", "minLength", "pattern", "format"))
        if isinstance(high, int) and len(value) > high:
            unit = "byte" if high == 1 else "bytes"
            out.append(
                Cause(path, field, "FieldValueTooLong", f"Too long: may not be more than {high} {unit}")
            )
        if isinstance(low, int) and len(value) < low:
            bad(f"should be at least {low} chars long")
        if isinstance(pattern, str):
            try:  # RE2, as Kubernetes matches: linear in the value, whatever the pattern
                matched = compile_pattern(pattern).search(value) is not None
            except re2.error:  # refused when the CRD was written; an older one: fail closed
                matched = False
            if not matched:
                bad(f"should match '{pattern}'")
        if isinstance(fmt, str) and not _format_ok(fmt, value):
            out.append(
                Cause(
                    path,
                    field,
                    "FieldValueTypeInvalid",
                    f"Invalid value: {shown}: {field} in body must be of type {fmt}: {shown}",
                )
            )
    elif isinstance(value, int | float) and not isinstance(value, bool):
        for key, flag, cmp, words in (
            ("minimum", "exclusiveMinimum", lambda a, b: a < b, "greater than"),
            ("maximum", "exclusiveMaximum", lambda a, b: a > b, "less than"),
        ):
            bound = schema.get(key)
            if isinstance(bound, int | float) and not isinstance(bound, bool):
                exclusive = schema.get(flag) is True
                if cmp(value, bound) or (exclusive and value == bound):
                    bad(f"should be {words}{'' if exclusive else ' or equal to'} {_number(bound)}")
        step = schema.get("multipleOf")
        if _off_multiple(value, step):
            bad(f"should be a multiple of {_number(step)}")
    enum = schema.get("enum")
    if isinstance(enum, list) and enum and value not in enum:
        allowed = ", ".join(json.dumps(v) if isinstance(v, str) else _shown(v) for v in enum)
        out.append(
            Cause(
                path,
                field,
                "FieldValueNotSupported",
                f"Unsupported value: {shown}: supported values: {allowed}",
            )
        )
    return out


def validate(
    value: Any, schema: dict[str, Any], path: tuple[str | int, ...] = (), root: bool = True
) -> list[Cause]:
    """Every way ``value`` (at ``path``) fails ``schema``, in document order."""
    out = _type_causes(value, schema, path)
    if out or value is None:
        return out
    out.extend(_scalar_causes(value, schema, path))
    if isinstance(value, list):
        field = _field(path)
        low, high = schema.get("minItems"), schema.get("maxItems")
        if isinstance(low, int) and len(value) < low:
            message = f"Invalid value: {len(value)}: {field} in body should have at least {low} items"
            out.append(Cause(path, field, "FieldValueInvalid", message))
        if isinstance(high, int) and len(value) > high:
            message = f"Too many: {len(value)}: must have at most {high} items"
            out.append(Cause(path, field, "FieldValueTooMany", message))
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                out.extend(validate(item, items, (*path, index), False))
    elif isinstance(value, dict):
        props = as_dict(schema.get("properties"))
        extra = schema.get("additionalProperties")
        skip = _ROOT_KEEP if root or schema.get("x-kubernetes-embedded-resource") is True else ()
        for name in schema.get("required") or ():
            if isinstance(name, str) and name not in value:
                child_path = (*path, name)
                out.append(Cause(child_path, _field(child_path), "FieldValueRequired", "Required value"))
        for key, child_value in value.items():
            if key in skip:
                continue
            child = props.get(key)
            if not isinstance(child, dict) and isinstance(extra, dict):
                child = extra
            if isinstance(child, dict):
                out.extend(validate(child_value, child, (*path, key), False))
    return out


def _at(obj: Any, path: tuple[str | int, ...]) -> Any:
    current = obj
    for step in path:
        if isinstance(step, int):
            if not isinstance(current, list) or step >= len(current):
                return _MISSING
        elif not isinstance(current, dict) or step not in current:
            return _MISSING
        current = current[step]
    return current


def _changed(cause: Cause, old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether the write touched the value a cause is about (a failure there is reported)."""
    before, after = _at(old, cause.path), _at(new, cause.path)
    if cause.reason == "FieldValueRequired":
        return before is not _MISSING
    return before is _MISSING or before != after


def causes_error(rt: ResourceType, name: str, causes: list[Cause]) -> ApiError:
    """One 422 ``Invalid`` carrying every cause, worded as kube-apiserver words it."""
    first = causes[0]
    error = invalid(rt.kind, name, first.field, first.message, rt.group)
    details = error.details or {}
    details["causes"] = [{"reason": c.reason, "message": c.message, "field": c.field} for c in causes]
    if len(causes) > 1:
        joined = ", ".join(f"{c.field}: {c.message}" for c in causes)
        qualified = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
        error.message = f'{qualified} "{name}" is invalid: [{joined}]'
        error.args = (error.message,)
    return error


def admit(
    state: State,
    rt: ResourceType,
    obj: dict[str, Any],
    old: dict[str, Any] | None = None,
    subresource: str | None = None,
) -> None:
    """Prune ``obj`` (a custom resource about to be stored) and raise 422 unless it fits its schema.

    Does nothing for built-in kinds and for versions that declare no schema.
    """
    if not rt.custom:
        return
    crd = state.store.peek(CRD_KEY, "", rt.crd)
    schema = served_schema(crd, rt.version) if crd is not None else None
    if schema is None:
        return
    prune(obj, schema)
    if subresource == "status":
        status_schema = dig(schema, "properties", "status")
        if not isinstance(status_schema, dict) or "status" not in obj:
            return
        causes = validate(obj["status"], status_schema, ("status",), False)
    else:
        causes = validate(obj, schema)
    if old is not None:
        causes = [c for c in causes if _changed(c, old, obj)]
    if causes:
        raise causes_error(rt, as_str(dig(obj, "metadata", "name")), causes)
