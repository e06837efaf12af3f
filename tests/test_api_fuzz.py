"""Random requests against a real lab API server: never a 5xx, always a Status or an object.

Methods, paths (real and made-up resources, namespaces, names, subresources), query
strings (selectors, watch with a 1 s timeout, limits, grace periods), content types,
Accept headers and bodies (random JSON, object-shaped JSON, patches, bytes, protobuf-ish)
are drawn by hypothesis. Every answer must parse: a v1 Status whose ``code`` matches the
HTTP status for errors, JSON objects for successes, JSON lines for watches. The server
must stay up and must not have logged an internal error. ``LAB_API_FUZZ_EXAMPLES``
raises the number of requests for a longer hunt (the default keeps the run near 10 s).
"""

from __future__ import annotations

import http.client
import json
import os
import string
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.api import ApiServerProcess, start_api_server
from tests.test_api_support import http as request_json
from tests.test_api_support import pod_body

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("LAB_API_FUZZ_EXAMPLES", "600"))
REASONS = {
    "BadRequest",
    "NotFound",
    "AlreadyExists",
    "Conflict",
    "Invalid",
    "MethodNotAllowed",
    "Forbidden",
    "TooManyRequests",
    "Expired",
    "Gone",
    "UnsupportedMediaType",
    "RequestEntityTooLarge",
}

PLURALS = [
    "pods",
    "nodes",
    "namespaces",
    "services",
    "secrets",
    "configmaps",
    "events",
    "persistentvolumeclaims",
    "serviceaccounts",
    "deployments",
    "statefulsets",
    "replicasets",
    "jobs",
    "cronjobs",
    "poddisruptionbudgets",
    "storageclasses",
    "customresourcedefinitions",
    "leases",
    "roles",
    "selfsubjectaccessreviews",
    "widgets",
    "nothings",
]
GROUP_VERSIONS = [
    "api/v1",
    "apis/apps/v1",
    "apis/batch/v1",
    "apis/policy/v1",
    "apis/storage.k8s.io/v1",
    "apis/apiextensions.k8s.io/v1",
    "apis/rbac.authorization.k8s.io/v1",
    "apis/coordination.k8s.io/v1",
    "apis/authorization.k8s.io/v1",
    "apis/fuzz.example.com/v1",
    "apis/apps/v2",
    "api/v2",
]
SUBRESOURCES = ["status", "scale", "log", "eviction", "binding", "finalize", "exec", "proxy"]
CONTENT_TYPES = [
    "application/json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/json-patch+json",
    "application/apply-patch+yaml",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "text/plain",
    "application/x-www-form-urlencoded",
    None,
]
ACCEPTS = [
    None,
    "application/json",
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
    "application/json;as=PartialObjectMetadata;v=v1beta1;g=meta.k8s.io",
    "application/vnd.kubernetes.protobuf",
    "*/*",
    "text/html",
]

NASTY = ["²", "9" * 30, "1e400%", "50%", "-0", "01", "..", "%2F", "-", "\\", "a" * 300]
text = st.one_of(st.text(alphabet=string.printable + "é☃\x00", max_size=12), st.sampled_from(NASTY))
KNOWN_NAMES = ["a", "web", "fuzz", "default", "fuzz-1", "n1", "widgets.fuzz.example.com", "x" * 70]
name = st.integers(0, 3).flatmap(lambda i: text if i == 0 else st.sampled_from(KNOWN_NAMES))
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
    max_leaves=12,
)
metadata = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(name, json_scalar),
        "generateName": st.sampled_from(["gen-", "", "UPPER-"]),
        "namespace": st.one_of(name, json_scalar),
        "labels": st.one_of(
            st.dictionaries(st.sampled_from(["app", "a/b", "k8s.io/x", "bad key"]), text, max_size=3),
            json_value,
        ),
        "finalizers": st.one_of(st.lists(st.sampled_from(["lab/x", "kubernetes"]), max_size=2), json_value),
        "ownerReferences": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {"apiVersion": st.just("v1"), "kind": st.just("Pod"), "name": name, "uid": text}
                ),
                max_size=2,
            ),
            json_value,
        ),
        "resourceVersion": st.one_of(st.sampled_from(["1", "999999", "abc"]), json_scalar),
    },
)
spec = st.one_of(
    json_value,
    st.fixed_dictionaries(
        {},
        optional={
            "minAvailable": st.one_of(text, st.integers(-5, 2**40)),
            "maxUnavailable": st.one_of(text, st.integers(-5, 5)),
            "selector": st.one_of(json_value, st.just({}), st.just({"matchLabels": {"app": "web"}})),
            "replicas": json_scalar,
        },
    ),
    st.fixed_dictionaries(
        {"containers": st.one_of(json_value, st.just([{"name": "main", "image": "i"}]))},
        optional={
            "nodeName": st.sampled_from(["n1", ""]),
            "terminationGracePeriodSeconds": json_scalar,
            "volumes": json_value,
        },
    ),
)
object_body = st.fixed_dictionaries(
    {"metadata": st.one_of(metadata, json_value)},
    optional={
        "apiVersion": st.sampled_from(["v1", "apps/v1", "policy/v1", "fuzz.example.com/v1", "x"]),
        "kind": st.sampled_from(["Pod", "ConfigMap", "Deployment", "Eviction", "Widget", "Status", "List"]),
        "spec": spec,
        "status": json_value,
        "data": json_value,
        "deleteOptions": json_value,
        "gracePeriodSeconds": json_scalar,
        "propagationPolicy": st.sampled_from(["Orphan", "Background", "Foreground", "Bogus"]),
    },
)
json_patch = st.lists(
    st.fixed_dictionaries(
        {
            "op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "nope"]),
            "path": st.sampled_from(
                [
                    "/metadata/labels/a",
                    "/spec",
                    "",
                    "/x/0",
                    "a",
                    "/spec/containers/²",
                    "/metadata/finalizers/01",
                    "/spec/containers/-",
                    "/spec/containers/99999999999",
                ]
            ),
        },
        optional={"value": json_value, "from": st.sampled_from(["/spec", "/q"])},
    ),
    max_size=3,
)
body = st.one_of(
    st.none(),
    object_body.map(lambda b: json.dumps(b).encode()),
    json_value.map(lambda b: json.dumps(b).encode()),
    json_patch.map(lambda b: json.dumps(b).encode()),
    st.binary(max_size=64),
    st.binary(max_size=48).map(lambda b: b"k8s\x00" + b),
    st.sampled_from([b"{", b"[]", b"null", b'{"a": NaN}', b"- a\n- b", b"a: &x [1]\nb: *x", b"{}" * 3]),
)
selector = st.one_of(
    text,
    st.sampled_from(
        [
            "app=web",
            "app in (a,b)",
            "!app",
            "app notin (x),tier",
            "a==b,c!=d",
            "metadata.name=a",
            "spec.nodeName=",
            "status.phase!=Running",
            "x>1",
        ]
    ),
)
query = st.fixed_dictionaries(
    {},
    optional={
        "labelSelector": selector,
        "fieldSelector": selector,
        "limit": st.sampled_from(["1", "0", "-1", "x", "500"]),
        "continue": st.sampled_from(["", "abc", "eyJzdGFydCI6IFsiYSIsICJiIl19"]),
        "resourceVersion": st.sampled_from(["", "0", "1", "abc", "99999999", "9" * 30, "²"]),
        "gracePeriodSeconds": st.sampled_from(["0", "5", "-3", "x", "9" * 25]),
        "propagationPolicy": st.sampled_from(["Orphan", "Background", "Bogus"]),
        "dryRun": st.sampled_from(["All", ""]),
        "includeObject": st.sampled_from(["None", "Object", "Metadata", "Bad"]),
        "tailLines": st.sampled_from(["1", "-1", "x"]),
        "container": st.sampled_from(["main", "nope"]),
        "watch": st.sampled_from(["false", "0", "maybe"]),
    },
)


TARGETS = [
    ("api/v1", "pods"),
    ("api/v1", "configmaps"),
    ("api/v1", "nodes"),
    ("api/v1", "namespaces"),
    ("apis/apps/v1", "deployments"),
    ("apis/policy/v1", "poddisruptionbudgets"),
    ("apis/fuzz.example.com/v1", "widgets"),
    ("apis/apiextensions.k8s.io/v1", "customresourcedefinitions"),
]


@st.composite
def targeted_paths(draw: st.DrawFn) -> str:
    """Paths to resources that exist, so requests reach validation and semantics, not only 404s."""
    group_version, plural = draw(st.sampled_from(TARGETS))
    scope = "" if plural in ("nodes", "namespaces", "customresourcedefinitions") else "namespaces/fuzz/"
    path = f"/{group_version}/{scope}{plural}"
    if draw(st.booleans()):
        path += "/" + draw(st.sampled_from(["a", "web", "fuzz", "n1", "widgets.fuzz.example.com", "new-1"]))
        if draw(st.integers(0, 2)) == 0:
            path += "/" + draw(st.sampled_from(["status", "scale", "eviction", "log", "binding"]))
    return path


@st.composite
def paths(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(
            st.sampled_from(
                [
                    "/",
                    "/api",
                    "/apis",
                    "/version",
                    "/healthz",
                    "/readyz/x",
                    "/livez",
                    "/openapi/v2",
                    "/openapi/v3",
                    "/openapi/v3/api/v1",
                    "/openapi/v3/apis/apps/v1",
                    "/apis/apps",
                    "/apis/nothing",
                    "/metrics",
                    "/api/v1/watch",
                ]
            )
        )
    if kind == 1:
        return "/" + "/".join(quote(s, safe="") for s in draw(st.lists(text, max_size=6)))
    if kind < 6:
        return draw(targeted_paths())
    parts = [draw(st.sampled_from(GROUP_VERSIONS))]
    if draw(st.integers(0, 30)) == 0:
        parts.append("watch")
    if draw(st.booleans()):
        parts += ["namespaces", quote(draw(name), safe="")]
    parts.append(draw(st.sampled_from(PLURALS)))
    if draw(st.booleans()):
        parts.append(quote(draw(name), safe=""))
        if draw(st.booleans()):
            parts.append(draw(st.sampled_from(SUBRESOURCES)))
    return "/" + "/".join(parts)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    params = draw(query)
    if draw(st.integers(0, 99)) == 0:
        params.update({"watch": "true", "timeoutSeconds": "1"})
    path = draw(paths())
    if "/watch/" in path or path.endswith("/watch"):
        params["timeoutSeconds"] = "1"
    return {
        "method": draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])),
        "path": path + ("?" + urlencode(params) if params else ""),
        "content_type": draw(st.sampled_from(CONTENT_TYPES)),
        "accept": draw(st.sampled_from(ACCEPTS)),
        "body": draw(body),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServerProcess]:
    root = tmp_path_factory.mktemp("api-fuzz")
    policy = root / "policy.yaml"
    policy.write_text("deny:\n  - {verb: [delete, deletecollection], resource: namespaces}\n")
    srv = start_api_server(root / "state", logs_dir=root / "logs", watch_history=200, policy=policy)
    base = srv.url
    request_json(f"{base}/api/v1/namespaces", "POST", {"metadata": {"name": "fuzz"}})
    for ns in ("default", "fuzz"):
        request_json(f"{base}/api/v1/namespaces/{ns}/pods", "POST", pod_body("a", {"app": "web"}, node="n1"))
        request_json(f"{base}/api/v1/namespaces/{ns}/configmaps", "POST", {"metadata": {"name": "web"}})
    request_json(
        f"{base}/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "POST",
        {
            "metadata": {"name": "widgets.fuzz.example.com"},
            "spec": {
                "group": "fuzz.example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "subresources": {"status": {}},
                        "additionalPrinterColumns": [{"name": "P", "type": "string", "jsonPath": ".spec.x"}],
                    }
                ],
            },
        },
    )
    yield srv
    assert srv.stop() == 0


def _send(url: str, req: dict[str, Any]) -> tuple[int, str, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
    headers = {}
    if req["content_type"]:
        headers["Content-Type"] = req["content_type"]
    if req["accept"]:
        headers["Accept"] = req["accept"]
    try:
        conn.request(req["method"], req["path"], body=req["body"], headers=headers)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        conn.close()


def _check(req: dict[str, Any], status: int, content_type: str, payload: bytes, seen: Counter[str]) -> None:
    seen["total"] += 1
    seen[f"{status // 100}xx"] += 1
    assert status < 500, (req, status, payload[:500])
    if req["method"] == "HEAD" or not content_type.startswith("application/json"):
        assert status < 400 or req["method"] == "HEAD", (req, status, payload[:300])
        return
    watching = status == 200 and ("watch=true" in req["path"] or "/watch/" in req["path"])
    try:
        document = json.loads(payload)
    except ValueError:
        document = None
    if watching and (
        document is None or (isinstance(document, dict) and {"type", "object"} <= document.keys())
    ):
        for line in payload.splitlines():
            event = json.loads(line)
            assert event["type"] in ("ADDED", "MODIFIED", "DELETED", "ERROR") and "object" in event, event
        seen["watch"] += 1
        return
    assert isinstance(document, dict), (req, document)
    if status >= 400:
        assert document["kind"] == "Status" and document["status"] == "Failure", document
        assert document["code"] == status and document["reason"] in REASONS, document
        assert isinstance(document["message"], str) and document["message"], document
        seen[document["reason"]] += 1
    else:
        assert {"kind", "paths", "gitVersion"} & document.keys(), (req, document)


def test_random_requests_never_break_the_server(server: ApiServerProcess, capsys: pytest.CaptureFixture[str]):
    seen: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(req=requests())
    def one(req: dict[str, Any]) -> None:
        _check(req, *_send(server.url, req), seen)

    one()
    status, _ = request_json(f"{server.url}/healthz")
    assert status == 200 and server.alive()
    log = Path(server.log_path).read_text()
    assert "internal error" not in log and "Traceback" not in log, log[-3000:]
    with capsys.disabled():
        summary = ", ".join(f"{k}={v}" for k, v in sorted(seen.items()) if k != "total")
        print(f"\nAPI fuzz: {seen['total']} requests ({summary})")
    assert seen["total"] >= EXAMPLES // 2 and seen["2xx"] > 0 and seen["4xx"] > 0
