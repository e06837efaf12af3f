"""Custom resources are pruned and validated against their CRD's structural schema, and
``dryRun`` takes only ``All`` (a real API server, the Python client and raw HTTP)."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from lab.api import ApiServerProcess, start_api_server
from lab.api.crd_schema import prune, validate
from lab.api.crds import validate_crd
from lab.api.status import ApiError
from tests.test_api_support import api_client, http

_names = itertools.count()
GROUP, VERSION = "schema.example.com", "v1"
MSSQL_CRD = Path(__file__).resolve().parents[1] / "lab" / "crds" / "mssqlinstances.yaml"

SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["size"],
    "properties": {
        "size": {"type": "integer", "minimum": 1, "maximum": 10},
        "mode": {"type": "string", "enum": ["a", "b"]},
        "name": {"type": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"},
        "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "multipleOf": 0.5},
        "flag": {"type": "boolean"},
        "when": {"type": "string", "format": "date-time"},
        "port": {"x-kubernetes-int-or-string": True},
        "tags": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string"}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "items": {
            "type": "array",
            "items": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}},
        },
        "free": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}},
        },
        "note": {"type": "string", "nullable": True},
        "other": {"type": "string"},
    },
}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": SPEC_SCHEMA,
        "status": {
            "type": "object",
            "properties": {"phase": {"type": "string", "enum": ["Ok", "Bad"]}, "count": {"type": "integer"}},
        },
    },
}


def _crd(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServerProcess]:
    root = tmp_path_factory.mktemp("api-crd-schema")
    srv = start_api_server(root / "state", logs_dir=root / "logs")
    base = f"{srv.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    for crd in (_crd(SCHEMA), yaml.safe_load(MSSQL_CRD.read_text())):
        code, body = http(base, "POST", crd)
        assert code == 201, body
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def api(server: ApiServerProcess, tmp_path_factory: pytest.TempPathFactory) -> client.ApiClient:
    return api_client(server.url, tmp_path_factory.mktemp("kube") / "config")


def _url(server: ApiServerProcess, name: str = "", sub: str = "") -> str:
    url = f"{server.url}/apis/{GROUP}/{VERSION}/namespaces/default/gadgets"
    return f"{url}/{name}{'/' + sub if sub else ''}" if name else url


def _gadget(spec: dict[str, Any], name: str | None = None, **extra: Any) -> dict[str, Any]:
    name = name or f"g{next(_names)}"
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Gadget",
        "metadata": {"name": name},
        "spec": spec,
        **extra,
    }


def _causes(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c["field"], c["reason"], c["message"]) for c in body["details"]["causes"]]


def test_mssqlinstance_version_must_be_a_string(api: client.ApiClient):
    custom = client.CustomObjectsApi(api)
    body = {
        "apiVersion": "mssql.example.com/v1alpha1",
        "kind": "MSSQLInstance",
        "metadata": {"name": "x"},
        "spec": {"version": 123},
    }
    with pytest.raises(client.ApiException) as refused:
        custom.create_namespaced_custom_object(
            "mssql.example.com", "v1alpha1", "default", "mssqlinstances", body
        )
    status = json.loads(refused.value.body)
    assert refused.value.status == 422 and status["reason"] == "Invalid"
    assert status["message"] == (
        'MSSQLInstance.mssql.example.com "x" is invalid: spec.version: Invalid value: "integer": '
        'spec.version in body must be of type string: "integer"'
    )
    assert status["details"]["causes"] == [
        {
            "reason": "FieldValueTypeInvalid",
            "message": 'Invalid value: "integer": spec.version in body must be of type string: "integer"',
            "field": "spec.version",
        }
    ]
    assert status["details"]["kind"] == "MSSQLInstance" and status["details"]["group"] == "mssql.example.com"
    with pytest.raises(client.ApiException):
        custom.get_namespaced_custom_object("mssql.example.com", "v1alpha1", "default", "mssqlinstances", "x")


def _typ(field: str, want: str, got: str) -> tuple[str, str, str]:
    return (
        field,
        "FieldValueTypeInvalid",
        f'Invalid value: "{got}": {field} in body must be of type {want}: "{got}"',
    )


def _inv(field: str, shown: str, rule: str) -> tuple[str, str, str]:
    return field, "FieldValueInvalid", f"Invalid value: {shown}: {field} in body {rule}"


@pytest.mark.parametrize(
    ("spec", "cause"),
    [
        ({}, ("spec.size", "FieldValueRequired", "Required value")),
        ({"size": True}, _typ("spec.size", "integer", "boolean")),
        ({"size": 1.5}, _typ("spec.size", "integer", "number")),
        ({"size": 0}, _inv("spec.size", "0", "should be greater than or equal to 1")),
        ({"size": 11}, _inv("spec.size", "11", "should be less than or equal to 10")),
        (
            {"size": 1, "mode": "c"},
            ("spec.mode", "FieldValueNotSupported", 'Unsupported value: "c": supported values: "a", "b"'),
        ),
        ({"size": 1, "name": "a"}, _inv("spec.name", '"a"', "should be at least 2 chars long")),
        (
            {"size": 1, "name": "abcdef"},
            ("spec.name", "FieldValueTooLong", "Too long: may not be more than 5 bytes"),
        ),
        ({"size": 1, "name": "AB"}, _inv("spec.name", '"AB"', "should match '^[a-z]+$'")),
        ({"size": 1, "ratio": 0}, _inv("spec.ratio", "0", "should be greater than 0")),
        ({"size": 1, "ratio": 0.7}, _inv("spec.ratio", "0.7", "should be a multiple of 0.5")),
        ({"size": 1, "ratio": "x"}, _typ("spec.ratio", "number", "string")),
        ({"size": 1, "flag": "yes"}, _typ("spec.flag", "boolean", "string")),
        (
            {"size": 1, "when": "yesterday"},
            (
                "spec.when",
                "FieldValueTypeInvalid",
                'Invalid value: "yesterday": spec.when in body must be of type date-time: "yesterday"',
            ),
        ),
        ({"size": 1, "port": True}, _typ("spec.port", "integer,string", "boolean")),
        ({"size": 1, "tags": []}, _inv("spec.tags", "0", "should have at least 1 items")),
        (
            {"size": 1, "tags": ["a", "b", "c"]},
            ("spec.tags", "FieldValueTooMany", "Too many: 3: must have at most 2 items"),
        ),
        ({"size": 1, "tags": ["a", 2]}, _typ("spec.tags[1]", "string", "integer")),
        ({"size": 1, "labels": {"k": 1}}, _typ("spec.labels.k", "string", "integer")),
        ({"size": 1, "items": [{"id": 1}, {}]}, ("spec.items[1].id", "FieldValueRequired", "Required value")),
        ({"size": 1, "items": [None]}, _typ("spec.items[0]", "object", "null")),
    ],
)
def test_each_schema_rule_is_a_422_naming_the_field(
    server: ApiServerProcess, spec: dict[str, Any], cause: tuple[str, str, str]
):
    body = _gadget(spec)
    code, status = http(_url(server), "POST", body)
    assert code == 422 and status["reason"] == "Invalid", status
    assert _causes(status) == [cause]
    field, _reason, message = cause
    assert status["message"] == f'Gadget.{GROUP} "{body["metadata"]["name"]}" is invalid: {field}: {message}'
    assert http(_url(server, body["metadata"]["name"]))[0] == 404


def test_valid_values_pass_and_every_failure_is_listed(server: ApiServerProcess):
    good = {
        "size": 10,
        "mode": "b",
        "name": "ab",
        "ratio": 1.5,
        "flag": False,
        "when": "2026-01-02T03:04:05Z",
        "port": "http",
        "tags": ["x"],
        "labels": {"k": "v"},
        "items": [{"id": 1}],
        "note": None,
    }
    code, body = http(_url(server), "POST", _gadget(good))
    assert code == 201, body
    assert body["spec"] == good  # a nullable field keeps its null
    code, body = http(_url(server), "POST", _gadget({**good, "port": 8080, "ratio": 2, "size": 1.0}))
    assert code == 201, body
    bad = _gadget({"size": "big", "mode": "z", "items": [{}]})
    code, status = http(_url(server), "POST", bad)
    assert code == 422
    assert [c[0] for c in _causes(status)] == ["spec.size", "spec.mode", "spec.items[0].id"]
    assert status["message"].startswith(
        f'Gadget.{GROUP} "{bad["metadata"]["name"]}" is invalid: [spec.size: '
    )
    assert status["message"].endswith("]") and ", spec.mode: Unsupported value" in status["message"]


def test_unknown_fields_are_pruned_on_create_update_and_patch(server: ApiServerProcess):
    body = _gadget(
        {
            "size": 1,
            "bogus": 1,
            "labels": {"k": "v"},
            "free": {"anything": {"x": 1}, "known": {"a": "b", "z": 2}},
        },
        extra_root=1,
        status={"phase": "Ok", "junk": True},
    )
    body["metadata"]["labels"] = {"app": "g"}
    name = body["metadata"]["name"]
    code, created = http(_url(server), "POST", body)
    assert code == 201, created
    assert "extra_root" not in created and "bogus" not in created["spec"]
    assert created["spec"]["free"] == {"anything": {"x": 1}, "known": {"a": "b"}}  # preserved, known pruned
    assert created["metadata"]["labels"] == {"app": "g"} and created["apiVersion"] == f"{GROUP}/{VERSION}"
    _, stored = http(_url(server, name))
    assert stored["spec"] == created["spec"] and "extra_root" not in stored

    stored["spec"]["again"] = "x"
    stored["spec"]["mode"] = "a"
    code, updated = http(_url(server, name), "PUT", stored)
    assert code == 200 and "again" not in updated["spec"] and updated["spec"]["mode"] == "a", updated
    patch = {"spec": {"merged": 1, "other": "o", "note": None, "name": None}}
    code, merged = http(_url(server, name), "PATCH", patch, "application/merge-patch+json")
    assert code == 200 and "merged" not in merged["spec"] and merged["spec"]["other"] == "o"
    ops = [{"op": "add", "path": "/spec/viaJsonPatch", "value": 1}, {"op": "add", "path": "/top", "value": 2}]
    code, patched = http(_url(server, name), "PATCH", ops, "application/json-patch+json")
    assert code == 200 and "viaJsonPatch" not in patched["spec"] and "top" not in patched
    code, status = http(
        _url(server, name, "status"),
        "PATCH",
        {"status": {"phase": "Bad", "extra": 1}},
        "application/merge-patch+json",
    )
    assert code == 200 and status["status"] == {"phase": "Bad"}, status
    _, final = http(_url(server, name))
    assert final["status"] == {"phase": "Bad"} and "viaJsonPatch" not in final["spec"]


def test_a_null_in_a_field_that_is_not_nullable_is_dropped(server: ApiServerProcess):
    code, body = http(_url(server), "POST", _gadget({"size": 1, "other": None, "note": None}))
    assert code == 201 and body["spec"] == {"size": 1, "note": None}
    code, status = http(_url(server), "POST", _gadget({"size": None}))
    assert code == 422 and _causes(status) == [("spec.size", "FieldValueRequired", "Required value")]


def test_status_writes_validate_the_status(server: ApiServerProcess):
    name = _gadget({})["metadata"]["name"]
    assert http(_url(server), "POST", _gadget({"size": 2}, name))[0] == 201
    code, status = http(
        _url(server, name, "status"), "PATCH", {"status": {"phase": "Nope"}}, "application/merge-patch+json"
    )
    assert code == 422 and _causes(status) == [
        ("status.phase", "FieldValueNotSupported", 'Unsupported value: "Nope": supported values: "Ok", "Bad"')
    ]
    _, current = http(_url(server, name))
    current["status"] = {"count": "many"}
    code, status = http(_url(server, name, "status"), "PUT", current)
    assert code == 422 and _causes(status)[0][0] == "status.count"
    current["status"] = {"count": 3}
    code, body = http(_url(server, name, "status"), "PUT", current)
    assert code == 200 and body["status"] == {"count": 3}


def test_values_a_write_does_not_change_are_not_rechecked(server: ApiServerProcess):
    """Validation ratcheting: an object stored under a looser schema stays writable elsewhere."""
    crd_url = f"{server.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.{GROUP}"
    loose = json.loads(json.dumps(SCHEMA))
    loose["properties"]["spec"]["properties"]["size"] = {"type": "integer"}
    _, crd = http(crd_url)
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = loose
    assert http(crd_url, "PUT", crd)[0] == 200
    name = _gadget({})["metadata"]["name"]
    try:
        code, body = http(_url(server), "POST", _gadget({"size": 50}, name))
        assert code == 201, body
    finally:
        _, crd = http(crd_url)
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = SCHEMA
        assert http(crd_url, "PUT", crd)[0] == 200
    merge = "application/merge-patch+json"
    code, body = http(_url(server, name), "PATCH", {"spec": {"other": "changed"}}, merge)
    assert code == 200 and body["spec"] == {"size": 50, "other": "changed"}, body
    assert http(_url(server, name, "status"), "PATCH", {"status": {"phase": "Ok"}}, merge)[0] == 200
    code, status = http(_url(server, name), "PATCH", {"spec": {"size": 60}}, merge)
    assert code == 422 and _causes(status)[0][:2] == ("spec.size", "FieldValueInvalid")


@pytest.mark.parametrize(
    ("method", "kind"), [("POST", "CreateOptions"), ("PATCH", "PatchOptions"), ("DELETE", "DeleteOptions")]
)
def test_dry_run_accepts_only_all(server: ApiServerProcess, method: str, kind: str):
    name = _gadget({})["metadata"]["name"]
    assert http(_url(server), "POST", _gadget({"size": 3}, name))[0] == 201
    url = _url(server) if method == "POST" else _url(server, name)
    body: Any = _gadget({"size": 4}) if method == "POST" else {"spec": {"size": 4}}
    ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
    code, status = http(f"{url}?dryRun=Bogus", method, body, ctype)
    assert code == 422 and status["reason"] == "Invalid", status
    problem = 'Unsupported value: []string{"Bogus"}: supported values: "All"'
    assert status["message"] == f'{kind}.meta.k8s.io "" is invalid: dryRun: {problem}'
    assert status["details"]["causes"][0]["reason"] == "FieldValueNotSupported"
    assert http(f"{url}?dryRun=All&dryRun=Bogus", method, body, ctype)[0] == 422
    code, answer = http(f"{url}?dryRun=All&dryRun=All", method, body, ctype)
    assert code in (200, 201), answer
    _, stored = http(_url(server, name))
    assert stored["spec"] == {"size": 3}


def test_dry_run_still_validates_and_prunes(server: ApiServerProcess):
    code, status = http(f"{_url(server)}?dryRun=All", "POST", _gadget({"size": 0}))
    assert code == 422 and _causes(status)[0][0] == "spec.size"
    body = _gadget({"size": 1, "junk": 1})
    code, answer = http(f"{_url(server)}?dryRun=All", "POST", body)
    assert code == 201 and answer["spec"] == {"size": 1}
    assert http(_url(server, body["metadata"]["name"]))[0] == 404


def test_prune_and_validate_directly():
    """The two functions on their own: embedded resources, maps of objects, document order."""
    schema = {
        "type": "object",
        "properties": {
            "embedded": {
                "type": "object",
                "x-kubernetes-embedded-resource": True,
                "properties": {"spec": {"type": "object"}},
            },
            "map": {
                "type": "object",
                "additionalProperties": {"type": "object", "properties": {"a": {"type": "integer"}}},
            },
        },
    }
    value = {
        "kind": "K",
        "embedded": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}, "x": 1},
        "map": {"one": {"a": 1, "b": 2}, "two": {"a": "x"}},
    }
    prune(value, schema)
    assert value["embedded"] == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}
    assert value["map"] == {"one": {"a": 1}, "two": {"a": "x"}} and value["kind"] == "K"
    causes = validate(value, schema)
    assert [(c.field, c.reason) for c in causes] == [("map.two.a", "FieldValueTypeInvalid")]
    assert validate(1.0, {"type": "integer"}) == [] and validate(1, {"type": "number"}) == []
    assert [c.reason for c in validate(True, {"type": "integer"}, ("x",))] == ["FieldValueTypeInvalid"]
    assert validate("2026-01-02T03:04:05", {"type": "string", "format": "date-time"}) == []
    assert validate("2026-13-02T03:04:05Z", {"type": "string", "format": "date-time"}) != []


def test_python_client_dry_run_values(api: client.ApiClient):
    v1 = client.CoreV1Api(api)
    body = {"metadata": {"name": f"dry{next(_names)}"}, "data": {"k": "v"}}
    with pytest.raises(client.ApiException) as refused:
        v1.create_namespaced_config_map("default", body, dry_run="Bogus")
    assert refused.value.status == 422
    assert json.loads(refused.value.body)["details"]["kind"] == "CreateOptions"
    answered = v1.create_namespaced_config_map("default", body, dry_run="All")
    assert answered.data == {"k": "v"}
    with pytest.raises(client.ApiException) as missing:
        v1.read_namespaced_config_map(body["metadata"]["name"], "default")
    assert missing.value.status == 404


def _trap_crd(pattern: str, plural: str) -> dict[str, Any]:
    crd = _crd(
        {
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {"name": {"type": "string", "pattern": pattern}}}
            },
        }
    )
    crd["metadata"]["name"] = f"{plural}.{GROUP}"
    crd["spec"]["names"] = {"plural": plural, "singular": plural[:-1], "kind": plural.title()[:-1]}
    return crd


def test_a_backtracking_pattern_is_matched_in_linear_time(server: ApiServerProcess):
    """Kubernetes matches ``pattern`` with RE2: ``^(a+)+$`` cannot hang the API server."""
    base = f"{server.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    code, body = http(base, "POST", _trap_crd("^(a+)+$", "traps"))
    assert code == 201, body
    url = f"{server.url}/apis/{GROUP}/{VERSION}/namespaces/default/traps"
    trap = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Trap", "metadata": {"name": "t"}}
    started = time.monotonic()
    code, status = http(url, "POST", {**trap, "spec": {"name": "a" * 40 + "b"}})
    assert time.monotonic() - started < 1.0
    assert code == 422 and _causes(status)[0][2].endswith("spec.name in body should match '^(a+)+$'")
    code, status = http(url, "POST", {**trap, "spec": {"name": "aaa\n"}})  # Go's $: the end, no newline
    assert code == 422, status
    code, body = http(url, "POST", {**trap, "spec": {"name": "a" * 40}})
    assert code == 201, body


@pytest.mark.parametrize(
    ("pattern", "why"),
    [("^(a)\\1$", "invalid escape sequence: \\1"), ("^(?=a)", "invalid perl operator: (?=")],
)
def test_a_pattern_re2_cannot_compile_refuses_the_crd(server: ApiServerProcess, pattern: str, why: str):
    base = f"{server.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    code, status = http(base, "POST", _trap_crd(pattern, "snares"))
    assert code == 422, status
    field = "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[name].pattern"
    assert status["message"] == (
        f'CustomResourceDefinition.apiextensions.k8s.io "snares.{GROUP}" is invalid: {field}: '
        f"Invalid value: {json.dumps(pattern)}: must be a valid regular expression, but isn't: "
        f"error parsing regexp: {why}"
    )
    assert http(f"{base}/snares.{GROUP}")[0] == 404


def test_patterns_anywhere_in_a_schema_are_checked_and_values_matched_directly():
    schema = {"type": "object", "additionalProperties": {"type": "array", "items": {"pattern": "(a"}}}
    crd = _trap_crd("^ok$", "nests")
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["deep"] = schema
    with pytest.raises(ApiError) as caught:
        validate_crd(crd, set())
    assert "openAPIV3Schema.properties[deep].additionalProperties.items.pattern" in caught.value.message
    started = time.monotonic()
    causes = validate("a" * 5000 + "b", {"type": "string", "pattern": "^(a|aa)+$"})
    assert time.monotonic() - started < 1.0 and [c.reason for c in causes] == ["FieldValueInvalid"]
