"""The OpenAPI v2 document in the protobuf form kubectl asks for.

kubectl (1.20 and 1.32 alike) fetches ``/openapi/v2`` with ``Accept:
application/com.github.proto-openapi.spec.v2@v1.0+protobuf`` and unmarshals the body as
gnostic's ``openapi.v2.Document`` without looking at the Content-Type, so a JSON answer
fails and a 404 only sends it to the older ``/swagger-2.0.0.pb-v1`` (also protobuf).
This writes the messages kubectl reads (field numbers from gnostic's
``openapiv2/OpenAPIv2.proto``): ``Document`` (swagger 1, info 2, paths 8, definitions
9), ``Info`` (title 1, version 2), the PATCH ``Operation`` of each path with its query
parameters (kubectl 1.20 looks for ``dryRun`` there) and ``Schema`` with its references, descriptions,
types, formats, limits, ``required``, ``enum``, ``items``, ``properties``,
``additionalProperties`` and vendor extensions (``x-kubernetes-group-version-kind``,
the patch strategy), whose values travel as YAML text, which JSON is.
"""

from __future__ import annotations

import json
import struct
from typing import Any

__all__ = ["V2_PROTOBUF", "encode_document"]

#: The answer's Content-Type: what kubectl asks for, with ``.`` for the ``@`` Go's MIME parser refuses.
V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"

_STRINGS = {"$ref": 1, "format": 2, "title": 3, "description": 4, "pattern": 13}
_DOUBLES = {"multipleOf": 6, "maximum": 7, "minimum": 9}
_BOOLS = {"exclusiveMaximum": 8, "exclusiveMinimum": 10, "uniqueItems": 16, "readOnly": 27}
_INTS = {
    "maxLength": 11,
    "minLength": 12,
    "maxItems": 14,
    "minItems": 15,
    "maxProperties": 17,
    "minProperties": 18,
}


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _message(field: int, body: bytes) -> bytes:
    return _tag(field, 2) + _varint(len(body)) + body


def _string(field: int, text: str) -> bytes:
    return _message(field, text.encode())


def _any(field: int, value: Any) -> bytes:
    """gnostic's ``Any``: the value as YAML (field 2)."""
    return _message(field, _string(2, json.dumps(value, sort_keys=True)))


def _named_any(field: int, name: str, value: Any) -> bytes:
    return _message(field, _string(1, name) + _any(2, value))


def _schema(schema: dict[str, Any]) -> bytes:
    out = bytearray()
    for key, number in _STRINGS.items():
        if isinstance(schema.get(key), str):
            out += _string(number, schema[key])
    for key, number in _DOUBLES.items():
        value = schema.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out += _tag(number, 1) + struct.pack("<d", float(value))
    for key, number in _BOOLS.items():
        if schema.get(key) is True:
            out += _tag(number, 0) + b"\x01"
    for key, number in _INTS.items():
        value = schema.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            out += _tag(number, 0) + _varint(value)
    for name in schema.get("required") or ():
        if isinstance(name, str):
            out += _string(19, name)
    for value in schema.get("enum") or ():
        out += _any(20, value)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        out += _message(21, _message(1, _schema(extra)))
    elif isinstance(extra, bool):
        out += _message(21, _tag(2, 0) + (b"\x01" if extra else b"\x00"))
    kind = schema.get("type")
    if isinstance(kind, str):
        out += _message(22, _string(1, kind))
    items = schema.get("items")
    if isinstance(items, dict):
        out += _message(23, _message(1, _schema(items)))
    props = schema.get("properties")
    if isinstance(props, dict):
        named = b"".join(
            _message(1, _string(1, name) + _message(2, _schema(sub)))
            for name, sub in props.items()
            if isinstance(sub, dict)
        )
        out += _message(25, named)
    for key, value in schema.items():
        if key.startswith("x-"):
            out += _named_any(31, key, value)
    return bytes(out)


def _operation(op: dict[str, Any]) -> bytes:
    """``Operation``: operationId 5, query parameters 8, responses 9, vendor extensions 13."""
    out = _string(5, str(op.get("operationId", "")))
    for param in op.get("parameters") or ():
        query = _string(2, str(param.get("in", "query"))) + _string(4, str(param.get("name", "")))
        query += _string(6, str(param.get("type", "string")))
        if param.get("uniqueItems") is True:
            query += _tag(20, 0) + b"\x01"
        out += _message(8, _message(1, _message(2, _message(3, query))))
    codes = b"".join(
        _message(
            1, _string(1, code) + _message(2, _message(1, _string(1, str(answer.get("description", "")))))
        )
        for code, answer in (op.get("responses") or {}).items()
    )
    out += _message(9, codes)
    for key, value in op.items():
        if key.startswith("x-"):
            out += _named_any(13, key, value)
    return out


def _paths(paths: dict[str, Any]) -> bytes:
    """``Paths`` (field 2: named ``PathItem``s, each with its PATCH operation, field 8)."""
    return b"".join(
        _message(2, _string(1, url) + _message(2, _message(8, _operation(item["patch"]))))
        for url, item in paths.items()
        if isinstance(item, dict) and isinstance(item.get("patch"), dict)
    )


def encode_document(doc: dict[str, Any]) -> bytes:
    """A Swagger 2.0 document (as :func:`lab.api.openapi.openapi_v2` builds it) as protobuf."""
    info = doc.get("info") or {}
    out = _string(1, str(doc.get("swagger", "2.0")))
    out += _message(2, _string(1, str(info.get("title", ""))) + _string(2, str(info.get("version", ""))))
    out += _message(8, _paths(doc.get("paths") or {}))
    definitions = b"".join(
        _message(1, _string(1, name) + _message(2, _schema(schema)))
        for name, schema in (doc.get("definitions") or {}).items()
    )
    return out + _message(9, definitions)
