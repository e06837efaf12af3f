"""Kubernetes protobuf request bodies, decoded into the JSON the server would have received.

Why: client-go 1.32's generated clients for built-in types are built with
``gentype.PrefersProtobuf``, so every typed request whose config leaves ``ContentType``
unset (kubectl never sets it) is sent as ``application/vnd.kubernetes.protobuf`` with
``Accept: application/vnd.kubernetes.protobuf,application/json``. A 415 does not make it
fall back (client-go falls back only from CBOR), and discovery does not change it. So
``kubectl create deployment|job|cronjob|service|secret|configmap|namespace|
serviceaccount|role|rolebinding|clusterrole|clusterrolebinding|poddisruptionbudget``
and ``auth can-i`` arrive as protobuf; ``apply``, ``patch``, ``edit`` and ``create -f``
go through the dynamic client and send JSON. Answers stay JSON, which the Accept
header allows.

The body is the magic ``k8s\\x00`` and a ``runtime.Unknown`` (1: TypeMeta {1: apiVersion,
2: kind}, 2: the raw typed message). The typed message is read with the table generated
from Kubernetes' ``generated.proto`` (:mod:`lab.api.protobuf_schema`) and written the way
Go's ``encoding/json`` writes the struct: a zero scalar that is not a pointer is left
out when its field is ``omitempty``; ``metav1.Time`` (seconds, nanos) becomes RFC 3339
(``null``, i.e. left out, when zero), ``resource.Quantity`` its string, ``IntOrString``
an int or a string, ``RawExtension`` and ``FieldsV1`` the JSON they carry, ``bytes``
base64. Kinds outside the table answer 415 naming the fix.
"""

from __future__ import annotations

import base64
import json
import struct
from datetime import UTC, datetime
from typing import Any

from lab.api.protobuf_schema import KINDS, MESSAGES
from lab.api.status import ApiError, bad_request

__all__ = ["MAGIC", "decode_message", "decode_object", "fields"]

MAGIC = b"k8s\x00"
_MAX_DEPTH = 64
_INTS = {"int32", "int64"}
_UINTS = {"uint32", "uint64"}
_PACKABLE = _INTS | _UINTS | {"bool"}

Value = bytes | int


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


def fields(data: bytes) -> list[tuple[int, Value]]:
    """(field number, value) pairs: bytes for length-delimited and fixed-width fields, int for varints."""
    out: list[tuple[int, Value]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
            continue
        if wire == 2:
            size, pos = _varint(data, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos + size > len(data):
            raise ValueError("truncated field")
        out.append((number, data[pos : pos + size]))
        pos += size
    return out


def _packed(data: bytes) -> list[int]:
    """The varints of a packed repeated field (proto2 allows either form on the wire)."""
    values, pos = [], 0
    while pos < len(data):
        value, pos = _varint(data, pos)
        values.append(value)
    return values


def _raw(value: Value) -> bytes:
    if not isinstance(value, bytes):
        raise ValueError("expected a length-delimited field")
    return value


def _int(value: Value) -> int:
    if not isinstance(value, int):
        raise ValueError("expected a varint")
    return value


def _scalar(kind: str, value: Value) -> Any:
    if kind == "string":
        return _raw(value).decode("utf-8")
    if kind == "bytes":
        return base64.b64encode(_raw(value)).decode()
    if kind == "bool":
        return bool(_int(value))
    if kind in _INTS:
        number = _int(value)
        return number - (1 << 64) if number >= 1 << 63 else number
    if kind in _UINTS:
        return _int(value)
    if kind in ("double", "float"):
        raw = _raw(value)
        return struct.unpack("<d" if len(raw) == 8 else "<f", raw)[0]
    raise ValueError(f"unknown scalar type {kind}")


#: The seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the times RFC 3339 (and so the
#: JSON a Time becomes) can write.
_FIRST_SECOND, _LAST_SECOND = -62_135_596_800, 253_402_300_799


def _time(data: bytes, micro: bool) -> str | None:
    parts = dict(fields(data))
    seconds = _scalar("int64", parts.get(1, 0))
    nanos = _scalar("int32", parts.get(2, 0))
    if seconds == 0 and nanos == 0:
        return None
    carry, nanos = divmod(nanos, 1_000_000_000)  # as Go's time.Unix normalizes them
    seconds += carry
    if not _FIRST_SECOND <= seconds <= _LAST_SECOND:
        raise ValueError(
            f"a time of {seconds} seconds since 1970 is outside the years 0001-9999 that RFC 3339 "
            "can write: send a real time"
        )
    moment = datetime.fromtimestamp(seconds, UTC)
    stamp = moment.replace(tzinfo=None).isoformat(timespec="seconds")  # years < 1000 padded too
    return f"{stamp}.{nanos // 1000:06d}Z" if micro else f"{stamp}Z"


def _json_bytes(data: bytes) -> Any:
    raw = _raw(dict(fields(data)).get(1, b""))
    return json.loads(raw) if raw.strip() else None


def _special(name: str, data: bytes) -> tuple[bool, Any]:
    """(handled, value) for the message types whose JSON is not an object of their fields."""
    if name in ("meta.v1.Time", "meta.v1.MicroTime"):
        return True, _time(data, name == "meta.v1.MicroTime")
    if name in ("resource.Quantity", "resource.QuantityValue"):
        return True, _scalar("string", dict(fields(data)).get(1, b""))
    if name == "intstr.IntOrString":
        parts = dict(fields(data))
        if _scalar("int64", parts.get(1, 0)) == 1:
            return True, _scalar("string", parts.get(3, b""))
        return True, _scalar("int32", parts.get(2, 0))
    if name in ("runtime.RawExtension", "meta.v1.FieldsV1"):
        return True, _json_bytes(data)
    if name == "meta.v1.Duration":
        return True, _duration(_scalar("int64", dict(fields(data)).get(1, 0)))
    return False, None


def _duration(nanos: int) -> str:
    """Go's time.Duration.String() for whole units (what metav1.Duration marshals)."""
    if nanos == 0:
        return "0s"
    sign, nanos = ("-", -nanos) if nanos < 0 else ("", nanos)
    hours, rest = divmod(nanos, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = rest / 1e9
    text = f"{seconds:g}s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    return f"{sign}{minutes}m{text}" if minutes else sign + text


def _value(kind: str, value: Value, depth: int) -> Any:
    if kind in MESSAGES:
        return decode_message(_raw(value), kind, depth + 1)
    return _scalar(kind, value)


def _is_zero(value: Any) -> bool:
    return not isinstance(value, dict | list) and value in ("", 0, False)


def decode_message(data: bytes, name: str, depth: int = 0) -> Any:
    """The JSON form of message ``name`` (a key of :data:`MESSAGES`); unknown fields are dropped."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"messages nest deeper than {_MAX_DEPTH} levels")
    handled, special = _special(name, data)
    if handled:
        return special
    schema = MESSAGES[name]
    out: dict[str, Any] = {}
    for number, value in fields(data):
        if number not in schema:
            continue
        key, kind, flags = schema[number]
        if "m" in flags:
            entry = dict(fields(_raw(value)))
            map_key = _scalar("string", entry.get(1, b""))
            default: Value = b"" if kind in MESSAGES or kind in ("string", "bytes") else 0
            out.setdefault(key, {})[map_key] = _value(kind, entry.get(2, default), depth)
        elif "r" in flags and isinstance(value, bytes) and kind in _PACKABLE:
            out.setdefault(key, []).extend(_scalar(kind, v) for v in _packed(value))
        elif "r" in flags:
            out.setdefault(key, []).append(_value(kind, value, depth))
        else:
            decoded = _value(kind, value, depth)
            if decoded is None or ("p" not in flags and "o" in flags and _is_zero(decoded)):
                out.pop(key, None)
                continue
            out[key] = decoded
    return out


def decode_object(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object (400 if unreadable, 415 for kinds not supported)."""
    try:
        if not body.startswith(MAGIC):
            raise ValueError("missing the k8s protobuf magic prefix")
        envelope = dict(fields(body[len(MAGIC) :]))
        meta = dict(fields(_raw(envelope.get(1, b""))))
        api_version = _scalar("string", meta.get(1, b""))
        kind = _scalar("string", meta.get(2, b""))
        message = KINDS.get(f"{api_version} {kind}")
        if message is None:
            raise ApiError(
                415,
                f"protobuf bodies of {api_version} {kind!r} are not supported by the lab API server: "
                "send JSON or YAML (kubectl create -f / apply -f)",
            )
        encoding = _scalar("string", envelope.get(3, b""))
        if encoding:
            raise ValueError(f"content encoding {encoding!r} is not supported")
        obj = decode_message(_raw(envelope.get(2, b"")), message)
    except (ValueError, UnicodeDecodeError, struct.error, OverflowError, OSError) as exc:
        raise bad_request(f"cannot decode the protobuf body: {exc}") from exc
    if not isinstance(obj, dict):
        raise bad_request(f"cannot decode the protobuf body: {kind} is not an object")
    return {"apiVersion": api_version, "kind": kind, **obj}
