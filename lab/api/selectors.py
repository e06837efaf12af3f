"""Label and field selectors, parsed and matched like the real API server.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``,
``a`` (exists), ``!a`` (does not exist), ``a>1``, ``a<1``, comma-joined (AND).
Field selectors: ``field=value``, ``field==value``, ``field!=value`` over the fields
each kind supports (:data:`FIELDS`); a missing field reads as ``""`` (so
``spec.nodeName=`` selects unscheduled pods). Bad syntax and unsupported fields
raise a 400 :class:`~lab.api.status.ApiError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from lab.api.fields import dig, meta
from lab.api.status import bad_request

__all__ = ["FIELDS", "FieldSelector", "LabelSelector", "match_selector_object"]

_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_TOKEN = re.compile(r"\s*(==|!=|=|!|\(|\)|,|>|<|[^\s=!(),<>]+)")

Requirement = tuple[str, str, tuple[str, ...]]


def _check_key(key: str) -> None:
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _PREFIX.match(prefix)):
        raise bad_request(
            f"unable to parse requirement: invalid label key {key!r}: prefix must be a DNS subdomain"
        )
    if not name or len(name) > 63 or not _NAME.match(name):
        raise bad_request(
            f"unable to parse requirement: invalid label key {key!r}: name part must consist of alphanumeric "
            "characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        )


def _check_value(value: str) -> None:
    if value and (len(value) > 63 or not _NAME.match(value)):
        raise bad_request(f"unable to parse requirement: invalid label value: {value!r}")


class _Parser:
    """Recursive descent over the selector's tokens."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = self._tokens(text)
        self.pos = 0

    @staticmethod
    def _tokens(text: str) -> list[str]:
        tokens: list[str] = []
        pos = 0
        while text[pos:].strip():
            m = _TOKEN.match(text, pos)
            if not m:
                raise bad_request(f"unable to parse requirement: unexpected character in {text!r}")
            tokens.append(m.group(1))
            pos = m.end()
        return tokens

    def peek(self) -> str | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise bad_request(f"unable to parse requirement: unexpected end of selector {self.text!r}")
        self.pos += 1
        return tok

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while self.peek() is not None:
            reqs.append(self.requirement())
            if self.peek() is None:
                break
            if self.take() != ",":
                raise bad_request(f"unable to parse requirement: expected ',' in {self.text!r}")
            if self.peek() is None:
                raise bad_request(f"unable to parse requirement: trailing ',' in {self.text!r}")
        return reqs

    def requirement(self) -> Requirement:
        tok = self.take()
        if tok == "!":
            key = self.take()
            _check_key(key)
            return (key, "!", ())
        _check_key(tok)
        if self.peek() in (None, ","):
            return (tok, "exists", ())
        op = self.take()
        if op in ("=", "==", "!="):
            value = "" if self.peek() in (None, ",") else self.take()
            _check_value(value)
            return (tok, "!=" if op == "!=" else "=", (value,))
        if op in (">", "<"):
            value = self.take()
            if not re.fullmatch(r"-?\d+", value):
                raise bad_request(
                    f"unable to parse requirement: for '{op}' the value must be an integer, got {value!r}"
                )
            return (tok, op, (value,))
        if op in ("in", "notin"):
            return (tok, op, self.values(op))
        raise bad_request(f"unable to parse requirement: unknown operator {op!r} after {tok!r}")

    def values(self, op: str) -> tuple[str, ...]:
        if self.take() != "(":
            raise bad_request(f"unable to parse requirement: expected '(' after {op}")
        values: list[str] = []
        expect_value = True
        while (tok := self.take()) != ")":
            if tok == ",":
                if expect_value:
                    raise bad_request("unable to parse requirement: empty value in set")
                expect_value = True
                continue
            if not expect_value or tok in ("(", "!", "=", "==", "!=", ">", "<"):
                raise bad_request(f"unable to parse requirement: unexpected {tok!r} in value set")
            _check_value(tok)
            values.append(tok)
            expect_value = False
        if not values:
            raise bad_request(f"unable to parse requirement: for '{op}', values set can't be empty")
        return tuple(values)


class LabelSelector:
    """A parsed label selector; the empty selector matches everything."""

    def __init__(self, text: str | None) -> None:
        self.text = text or ""
        self.requirements: list[Requirement] = _Parser(self.text).parse()

    def matches(self, labels: Any) -> bool:
        labels = labels if isinstance(labels, dict) else {}
        for key, op, values in self.requirements:
            present = key in labels
            value = labels.get(key)
            if op == "exists" and not present:
                return False
            if op == "!" and present:
                return False
            if op in ("=", "in") and (not present or value not in values):
                return False
            if op in ("!=", "notin") and present and value in values:
                return False
            if op in (">", "<"):
                try:
                    number = int(str(value))
                except ValueError:
                    return False
                if not present or (number <= int(values[0]) if op == ">" else number >= int(values[0])):
                    return False
        return True


def _str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _path(*steps: str) -> Callable[[dict[str, Any]], str]:
    return lambda obj: _str(dig(obj, *steps))


_COMMON = {"metadata.name": _path("metadata", "name"), "metadata.namespace": _path("metadata", "namespace")}
_EVENT = {
    f"involvedObject.{f}": _path("involvedObject", f)
    for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
}
_EVENT.update(
    {
        "reason": _path("reason"),
        "type": _path("type"),
        "source": _path("source", "component"),
        "reportingComponent": _path("reportingComponent"),
    }
)

FIELDS: dict[str, dict[str, Callable[[dict[str, Any]], str]]] = {
    "pods": {
        **{
            f"spec.{f}": _path("spec", f)
            for f in ("nodeName", "restartPolicy", "schedulerName", "serviceAccountName", "hostNetwork")
        },
        **{f"status.{f}": _path("status", f) for f in ("phase", "podIP", "nominatedNodeName")},
    },
    "nodes": {"spec.unschedulable": _path("spec", "unschedulable")},
    "events": _EVENT,
    "secrets": {"type": _path("type")},
    "namespaces": {"status.phase": _path("status", "phase")},
    "jobs.batch": {"status.successful": _path("status", "successful")},
    "replicasets.apps": {"status.replicas": _path("status", "replicas")},
}


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


class FieldSelector:
    """A parsed field selector for objects stored under ``key``."""

    def __init__(self, text: str | None, key: str) -> None:
        self.terms: list[tuple[Callable[[dict[str, Any]], str], bool, str]] = []
        supported = {**_COMMON, **FIELDS.get(key, {})}
        for raw in re.split(r"(?<!\\),", text or ""):
            if not raw.strip():
                continue
            m = re.match(r"^\s*([^=!]+?)\s*(==|!=|=)(.*)$", raw)
            if not m:
                raise bad_request(f"invalid selector: '{text}'; can't understand '{raw}'")
            field, op, value = m.group(1), m.group(2), _unescape(m.group(3).strip())
            if field not in supported:
                raise bad_request(f"field label not supported: {field}")
            self.terms.append((supported[field], op != "!=", value))

    def matches(self, obj: dict[str, Any]) -> bool:
        return all((getter(obj) == value) == equal for getter, equal, value in self.terms)


def match_selector_object(selector: Any, labels: Any) -> bool:
    """Whether a ``metav1.LabelSelector`` (matchLabels/matchExpressions) selects ``labels``.

    An empty selector ``{}`` selects everything; None or a malformed one selects nothing.
    """
    if not isinstance(selector, dict):
        return False
    labels = labels if isinstance(labels, dict) else {}
    match_labels = selector.get("matchLabels") or {}
    if not isinstance(match_labels, dict):
        return False
    for k, v in match_labels.items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        if not isinstance(expr, dict):
            return False
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if not isinstance(values, list):
            return False
        present = key in labels
        if (
            (op == "In" and (not present or labels.get(key) not in values))
            or (op == "NotIn" and present and labels.get(key) in values)
            or (op == "Exists" and not present)
            or (op == "DoesNotExist" and present)
            or op not in ("In", "NotIn", "Exists", "DoesNotExist")
        ):
            return False
    return True


def labels_of(obj: dict[str, Any]) -> Any:
    return meta(obj).get("labels")
