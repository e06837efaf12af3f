"""Just enough protobuf to read the bodies kubectl 1.32 sends that way.

kubectl's typed clients post ``application/vnd.kubernetes.protobuf``: the magic
``k8s\\x00``, then a ``runtime.Unknown`` (field 1 TypeMeta {apiVersion=1, kind=2},
field 2 the raw message). This module walks the wire format with small hand-written
schemas (field numbers from Kubernetes' ``generated.proto``) for the kinds kubectl
creates that way and the lab supports: SelfSubjectAccessReview (``auth can-i``),
Namespace, Secret, ConfigMap and ServiceAccount (``kubectl create namespace|secret|
configmap|serviceaccount``). Other kinds raise 415; send them as YAML/JSON
(``kubectl create -f``). Answers are always JSON, which kubectl accepts.
"""

from __future__ import annotations

import base64
from typing import Any

from lab.api.status import ApiError, bad_request

__all__ = ["MAGIC", "decode_object"]

MAGIC = b"k8s\x00"

Schema = dict[int, tuple[str, Any]]

_OWNER: Schema = {
    1: ("kind", "string"),
    3: ("name", "string"),
    4: ("uid", "string"),
    5: ("apiVersion", "string"),
    6: ("controller", "bool"),
    7: ("blockOwnerDeletion", "bool"),
}
_META: Schema = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    6: ("resourceVersion", "string"),
    11: ("labels", "map"),
    12: ("annotations", "map"),
    13: ("ownerReferences", ("repeated", _OWNER)),
    14: ("finalizers", "strings"),
}
_OBJECT_REF: Schema = {1: ("kind", "string"), 2: ("namespace", "string"), 3: ("name", "string")}
_RESOURCE_ATTRS: Schema = {
    1: ("namespace", "string"),
    2: ("verb", "string"),
    3: ("group", "string"),
    4: ("version", "string"),
    5: ("resource", "string"),
    6: ("subresource", "string"),
    7: ("name", "string"),
}
_NON_RESOURCE_ATTRS: Schema = {1: ("path", "string"), 2: ("verb", "string")}
SCHEMAS: dict[str, Schema] = {
    "SelfSubjectAccessReview": {
        1: ("metadata", _META),
        2: (
            "spec",
            {1: ("resourceAttributes", _RESOURCE_ATTRS), 2: ("nonResourceAttributes", _NON_RESOURCE_ATTRS)},
        ),
    },
    "Namespace": {1: ("metadata", _META), 2: ("spec", {1: ("finalizers", "strings")})},
    "Secret": {
        1: ("metadata", _META),
        2: ("data", "map_bytes"),
        3: ("type", "string"),
        4: ("stringData", "map"),
        5: ("immutable", "bool"),
    },
    "ConfigMap": {
        1: ("metadata", _META),
        2: ("data", "map"),
        3: ("binaryData", "map_bytes"),
        4: ("immutable", "bool"),
    },
    "ServiceAccount": {
        1: ("metadata", _META),
        2: ("secrets", ("repeated", _OBJECT_REF)),
        3: ("imagePullSecrets", ("repeated", {1: ("name", "string")})),
        4: ("automountServiceAccountToken", "bool"),
    },
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def fields(data: bytes) -> list[tuple[int, bytes | int]]:
    """(field number, value) pairs: bytes for length-delimited, int for varints; fixed-width skipped."""
    out: list[tuple[int, bytes | int]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            out.append((number, data[pos : pos + length]))
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def _text(value: bytes | int) -> str:
    if not isinstance(value, bytes):
        raise ValueError("expected a length-delimited field")
    return value.decode("utf-8")


def decode(data: bytes, schema: Schema) -> dict[str, Any]:
    """Decode one message with ``schema`` into its JSON form (unknown fields are dropped)."""
    out: dict[str, Any] = {}
    for number, value in fields(data):
        if number not in schema:
            continue
        name, kind = schema[number]
        if kind == "string":
            out[name] = _text(value)
        elif kind == "bool":
            out[name] = bool(value)
        elif kind == "strings":
            out.setdefault(name, []).append(_text(value))
        elif kind in ("map", "map_bytes"):
            if not isinstance(value, bytes):
                raise ValueError("expected a map entry")
            entry = dict(fields(value))
            raw = entry.get(2, b"")
            raw = raw if isinstance(raw, bytes) else b""
            text = base64.b64encode(raw).decode() if kind == "map_bytes" else raw.decode("utf-8")
            out.setdefault(name, {})[_text(entry.get(1, b""))] = text
        elif isinstance(kind, tuple):
            out.setdefault(name, []).append(decode(value if isinstance(value, bytes) else b"", kind[1]))
        else:
            out[name] = decode(value if isinstance(value, bytes) else b"", kind)
    return out


def decode_object(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object (400 if unreadable, 415 for kinds not supported)."""
    try:
        if not body.startswith(MAGIC):
            raise ValueError("missing the k8s protobuf magic prefix")
        envelope = dict(fields(body[len(MAGIC) :]))
        type_meta = envelope.get(1, b"")
        meta = dict(fields(type_meta)) if isinstance(type_meta, bytes) else {}
        api_version, kind = _text(meta.get(1, b"")), _text(meta.get(2, b""))
        schema = SCHEMAS.get(kind)
        if schema is None:
            raise ApiError(
                415,
                f"protobuf bodies of kind {kind!r} are not supported by the lab API server: "
                "send JSON or YAML (kubectl create -f / apply -f)",
            )
        raw = envelope.get(2, b"")
        obj = decode(raw if isinstance(raw, bytes) else b"", schema)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"cannot decode the protobuf body: {exc}") from exc
    return {"apiVersion": api_version, "kind": kind, **obj}
