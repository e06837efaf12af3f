"""Authorization from a policy file: deny rules that apply to every request.

The lab has one user. With no policy file everything is allowed. A policy (YAML or
JSON) looks like::

    default: allow            # or deny
    deny:
      - {verb: create, resource: pods/eviction}
      - {verb: delete, resource: pods, namespace: prod, name: db-0}
    allow: []                 # consulted only when default is deny

A rule field that is missing or ``"*"`` matches anything; a field may be a string or
a list. ``resource`` is ``pods`` (the resource itself, not its subresources),
``pods/eviction``, ``pods/*`` or ``*``; ``group`` is ``""`` for the core group.
Deny wins over allow. The file is re-read when it changes, so tests may rewrite it
while the server runs. Discovery and health paths are always allowed.
SelfSubjectAccessReviews are answered from the same rules.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lab.api.status import forbidden

__all__ = ["USER", "Attributes", "Policy"]

log = logging.getLogger(__name__)

USER = "lab-admin"


@dataclass(frozen=True)
class Attributes:
    verb: str
    group: str
    resource: str
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    def denial(self, reason: str) -> Exception:
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        subject = f'{self.resource} "{self.name}"' if self.name else self.resource
        where = f' in the namespace "{self.namespace}"' if self.namespace else " at the cluster scope"
        return forbidden(
            f'{subject} is forbidden: User "{USER}" cannot {self.verb} resource "{resource}" '
            f'in API group "{self.group}"{where}: {reason}'
        )


def _matches(rule_value: Any, actual: str) -> bool:
    if rule_value is None or rule_value == "*":
        return True
    values = rule_value if isinstance(rule_value, list) else [rule_value]
    return any(v in ("*", actual) for v in values)


def _resource_matches(rule_value: Any, attrs: Attributes) -> bool:
    if rule_value is None:
        return True
    values = rule_value if isinstance(rule_value, list) else [rule_value]
    for value in values:
        if not isinstance(value, str):
            continue
        resource, _, sub = value.partition("/")
        if resource not in ("*", attrs.resource):
            continue
        if (not sub and not attrs.subresource) or sub in ("*", attrs.subresource) or value == "*":
            return True
    return False


def _rule_matches(rule: dict[str, Any], attrs: Attributes) -> bool:
    resource = rule.get("resource")
    if rule.get("subresource") is not None and isinstance(resource, str):
        resource = f"{resource}/{rule['subresource']}"
    return (
        _matches(rule.get("verb"), attrs.verb)
        and _matches(rule.get("group"), attrs.group)
        and _resource_matches(resource, attrs)
        and _matches(rule.get("namespace"), attrs.namespace)
        and _matches(rule.get("name"), attrs.name)
    )


class Policy:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._stamp: tuple[float, int] | None = None
        self._doc: dict[str, Any] = {}
        self._load()

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            stat = self.path.stat()
        except OSError:
            self._doc, self._stamp = {}, None
            return
        stamp = (stat.st_mtime, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            text = self.path.read_text()
            doc = json.loads(text) if self.path.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            log.error(
                "policy file %s is unreadable (%s); denying everything until it is fixed", self.path, exc
            )
            doc = {"default": "deny"}
        self._doc = doc if isinstance(doc, dict) else {}
        self._stamp = stamp

    def decide(self, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason) for a request with ``attrs``."""
        self._load()
        for index, rule in enumerate(self._doc.get("deny") or []):
            if isinstance(rule, dict) and _rule_matches(rule, attrs):
                return False, f"denied by lab policy rule deny[{index}]"
        if self._doc.get("default") == "deny":
            for index, rule in enumerate(self._doc.get("allow") or []):
                if isinstance(rule, dict) and _rule_matches(rule, attrs):
                    return True, f"allowed by lab policy rule allow[{index}]"
            return False, "denied by lab policy default"
        return True, "allowed by lab policy"

    def check(self, attrs: Attributes) -> None:
        """Raise 403 Forbidden when ``attrs`` is denied."""
        allowed, reason = self.decide(attrs)
        if not allowed:
            raise attrs.denial(reason)
