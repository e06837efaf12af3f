"""CustomResourceDefinitions: validation, the resources they serve, their status.

A CRD (apiextensions.k8s.io/v1) named ``<plural>.<group>`` serves every version with
``served: true`` at once, storage version first (the preferred one in discovery),
with the ``status`` subresource where the version declares it and its
``additionalPrinterColumns`` for Table output. Objects are not converted between
versions (strategy None: only ``apiVersion`` changes); they are pruned and validated
against the served version's ``openAPIV3Schema`` (:func:`served_schema`, used by
:mod:`lab.api.crd_schema`). Every ``pattern`` in a schema must compile as RE2 syntax, the
regular expressions Kubernetes (Go's ``regexp``) matches with, in time linear in the input:
a backreference or a lookaround is refused when the CRD is written (422, the real server's
wording), never found out by a value that hangs the server. The server sets the CRD's
status itself:
``NamesAccepted`` and ``Established`` true, ``acceptedNames``, ``storedVersions``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import re2

from lab.api.fields import as_dict, as_list, as_str, dig, now_rfc3339
from lab.api.resources import ALL_VERBS, ResourceType, SubresourceInfo
from lab.api.status import invalid

__all__ = ["compile_pattern", "crd_status", "crd_types", "served_schema", "validate_crd"]

_KIND = "CustomResourceDefinition"
_GROUP = "apiextensions.k8s.io"
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_VERSION = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # refusals are answered to the client, not logged by RE2


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Any:
    """A schema ``pattern`` compiled as Kubernetes compiles it: RE2 (no backreferences or
    lookarounds; matching never backtracks). ``re2.error`` when RE2 refuses it."""
    return re2.compile(pattern, _RE2_OPTIONS)


def _patterns(schema: Any, where: str) -> Iterator[tuple[str, Any]]:
    """(field path, pattern) of every ``pattern`` in a schema, paths as Kubernetes names them."""
    if not isinstance(schema, dict):
        return
    if "pattern" in schema:
        yield f"{where}.pattern", schema["pattern"]
    for key in ("properties", "patternProperties", "definitions"):
        for name, sub in as_dict(schema.get(key)).items():
            yield from _patterns(sub, f"{where}.{key}[{name}]")
    items = schema.get("items")
    if isinstance(items, list):
        for index, sub in enumerate(items):
            yield from _patterns(sub, f"{where}.items[{index}]")
    else:
        yield from _patterns(items, f"{where}.items")
    yield from _patterns(schema.get("additionalProperties"), f"{where}.additionalProperties")
    yield from _patterns(schema.get("not"), f"{where}.not")
    for key in ("allOf", "anyOf", "oneOf"):
        for index, sub in enumerate(as_list(schema.get(key))):
            yield from _patterns(sub, f"{where}.{key}[{index}]")


def _check_patterns(name: str, index: int, version: dict[str, Any]) -> None:
    where = f"spec.versions[{index}].schema.openAPIV3Schema"
    for field, pattern in _patterns(dig(version, "schema", "openAPIV3Schema"), where):
        if not isinstance(pattern, str):
            raise _bad(name, field, f"Invalid value: {json.dumps(pattern)}: must be a string")
        try:
            compile_pattern(pattern)
        except re2.error as exc:
            reason = (
                exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
            )
            raise _bad(
                name,
                field,
                f"Invalid value: {json.dumps(pattern)}: must be a valid regular expression, but isn't: "
                f"error parsing regexp: {reason}",
            ) from None


def _bad(name: str, field: str, problem: str) -> Exception:
    return invalid(_KIND, name, field, problem, _GROUP)


def validate_crd(obj: dict[str, Any], builtin: set[tuple[str, str, str]]) -> None:
    """422 unless ``obj`` is a usable CRD that does not shadow a built-in resource."""
    name = as_str(dig(obj, "metadata", "name"))
    spec = as_dict(obj.get("spec"))
    group = spec.get("group")
    names = as_dict(spec.get("names"))
    plural, kind = names.get("plural"), names.get("kind")
    if not isinstance(group, str) or "." not in group:
        raise _bad(name, "spec.group", f"Invalid value: {group!r}: should be a domain with at least one dot")
    if not isinstance(plural, str) or not _DNS_LABEL.match(plural):
        raise _bad(name, "spec.names.plural", f"Invalid value: {plural!r}: must be a lowercase DNS label")
    if not isinstance(kind, str) or not kind:
        raise _bad(name, "spec.names.kind", "Required value")
    if name != f"{plural}.{group}":
        raise _bad(
            name, "metadata.name", f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group'
        )
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        raise _bad(
            name,
            "spec.scope",
            f"Unsupported value: {spec.get('scope')!r}: supported values: Cluster, Namespaced",
        )
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        raise _bad(name, "spec.versions", "Required value: must have at least one version")
    storage = 0
    for index, version in enumerate(versions):
        vname = dig(version, "name")
        if not isinstance(version, dict) or not isinstance(vname, str) or not _VERSION.match(vname):
            raise _bad(name, f"spec.versions[{index}].name", f"Invalid value: {vname!r}: must be a DNS label")
        for flag in ("served", "storage"):
            if not isinstance(version.get(flag), bool):
                raise _bad(name, f"spec.versions[{index}].{flag}", "Required value: must be true or false")
        storage += bool(version["storage"])
        _check_patterns(name, index, version)
        if (group, vname, plural) in builtin:
            raise _bad(
                name, "spec.names.plural", f"Invalid value: {plural!r}: {group}/{vname} already serves it"
            )
    if storage != 1:
        raise _bad(
            name, "spec.versions", "Invalid value: must have exactly one version marked as storage version"
        )


def crd_types(obj: dict[str, Any]) -> tuple[ResourceType, ...]:
    """The resource types a (valid) CRD serves, storage version first."""
    name = as_str(dig(obj, "metadata", "name"))
    spec = as_dict(obj.get("spec"))
    names = as_dict(spec.get("names"))
    group, plural, kind = as_str(spec.get("group")), as_str(names.get("plural")), as_str(names.get("kind"))
    namespaced = spec.get("scope") == "Namespaced"
    short = tuple(s for s in as_list(names.get("shortNames")) if isinstance(s, str))
    cats = tuple(s for s in as_list(names.get("categories")) if isinstance(s, str))
    versions = [v for v in as_list(spec.get("versions")) if isinstance(v, dict) and v.get("served")]
    versions.sort(key=lambda v: not v.get("storage"))
    types = []
    for version in versions:
        subs: list[SubresourceInfo] = []
        if isinstance(dig(version, "subresources", "status"), dict):
            subs.append(SubresourceInfo("status", kind, ("get", "patch", "update")))
        columns = tuple(c for c in as_list(version.get("additionalPrinterColumns")) if isinstance(c, dict))
        types.append(
            ResourceType(
                group,
                as_str(version.get("name")),
                plural,
                kind,
                namespaced,
                short,
                cats,
                tuple(subs),
                ALL_VERBS,
                columns,
                name,
            )
        )
    return tuple(types)


def crd_status(obj: dict[str, Any]) -> dict[str, Any]:
    """The status the server keeps on a CRD it serves."""
    spec = as_dict(obj.get("spec"))
    old = as_dict(obj.get("status"))
    stamp = now_rfc3339()
    previous = {c.get("type"): c for c in as_list(old.get("conditions")) if isinstance(c, dict)}
    conditions = []
    for ctype, reason, message in (
        ("NamesAccepted", "NoConflicts", "no conflicts found"),
        ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
    ):
        since = as_str(dig(previous.get(ctype), "lastTransitionTime")) or stamp
        conditions.append(
            {
                "type": ctype,
                "status": "True",
                "lastTransitionTime": since,
                "reason": reason,
                "message": message,
            }
        )
    storage = [
        as_str(v.get("name"))
        for v in as_list(spec.get("versions"))
        if isinstance(v, dict) and v.get("storage")
    ]
    stored = [v for v in as_list(old.get("storedVersions")) if isinstance(v, str)]
    stored.extend(v for v in storage if v not in stored)
    return {"conditions": conditions, "acceptedNames": as_dict(spec.get("names")), "storedVersions": stored}


def served_schema(obj: dict[str, Any], version: str) -> dict[str, Any] | None:
    """The ``openAPIV3Schema`` a CRD declares for ``version`` (None when it declares none)."""
    for entry in as_list(dig(obj, "spec", "versions")):
        if isinstance(entry, dict) and entry.get("name") == version:
            schema = dig(entry, "schema", "openAPIV3Schema")
            return schema if isinstance(schema, dict) else None
    return None
