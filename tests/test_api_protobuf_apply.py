"""Protobuf request bodies and server-side apply in the lab API server.

Unit tests decode hand-encoded protobuf and run the apply rules on plain objects; the
integration tests drive real kubectl 1.32 against the API server alone (``python -m
lab.api`` on port 0, fresh HOME so discovery is not cached): every typed ``kubectl
create`` (sent as protobuf) and ``kubectl apply --server-side``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.api import start_api_server, verbs
from lab.api.apply import apply, check_applied
from lab.api.managed_fields import field_set, path_text, read_entries, record_update
from lab.api.protobuf import decode_message, decode_object
from lab.api.protobuf_gen import parse_go, parse_proto
from lab.api.resources import BUILTINS, ResourceType
from lab.api.settings import Settings
from lab.api.state import State
from lab.api.status import ApiError
from lab.api.subresources import patch_scale, update_scale
from lab.kubeclient import KubeClient, user_agent
from tests.lab_fixtures import Kubectl as SharedKubectl
from tests.test_api_support import http

DEPLOYMENTS = next(rt for rt in BUILTINS if rt.key == "deployments.apps")
CONFIGMAPS = next(rt for rt in BUILTINS if rt.key == "configmaps")
APPLY = "application/apply-patch+yaml"


# -- a tiny protobuf writer (the test's own, independent of the decoder) ----------------


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = b""
    while True:
        byte, value = value & 0x7F, value >> 7
        out += bytes([byte | (0x80 if value else 0)])
        if not value:
            return out


def pb(*pairs: tuple[int, Any]) -> bytes:
    """Fields in order: int -> varint, str/bytes -> length-delimited."""
    out = b""
    for number, value in pairs:
        if isinstance(value, int):
            out += _varint(number << 3) + _varint(value)
        else:
            raw = value.encode() if isinstance(value, str) else value
            out += _varint(number << 3 | 2) + _varint(len(raw)) + raw
    return out


def entry(key: str, value: str | bytes) -> bytes:
    return pb((1, key), (2, value))


def envelope(api_version: str, kind: str, message: bytes) -> bytes:
    return b"k8s\x00" + pb((1, pb((1, api_version), (2, kind))), (2, message), (3, ""), (4, ""))


def test_deployment_decodes_like_go_json():
    labels = entry("app", "web")
    quantity = pb((1, "100m"))
    container = pb(
        (1, "c"),
        (2, "nginx"),
        (6, pb((3, 8080), (4, "TCP"), (2, 0))),  # hostPort 0 is omitempty: left out
        (8, pb((1, entry("cpu", quantity)))),
    )
    spec = pb(
        (1, 0),  # replicas is a pointer: an explicit 0 stays
        (2, pb((1, labels))),
        (3, pb((1, pb((11, labels))), (2, pb((2, container), (4, -1))))),
        (4, pb((1, "RollingUpdate"), (2, pb((1, pb((1, 1), (3, "25%"))), (2, pb((1, 0), (2, 2))))))),
        (5, 0),  # minReadySeconds 0, omitempty: left out
    )
    meta = pb((1, "web"), (2, ""), (8, pb((1, 1_700_000_000), (2, 0))), (11, labels), (14, "a/b"))
    obj = decode_object(envelope("apps/v1", "Deployment", pb((1, meta), (2, spec), (3, b""))))
    assert obj["metadata"] == {
        "name": "web",
        "creationTimestamp": "2023-11-14T22:13:20Z",
        "labels": {"app": "web"},
        "finalizers": ["a/b"],
    }
    assert obj["spec"]["replicas"] == 0 and "minReadySeconds" not in obj["spec"]
    assert obj["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": "25%", "maxSurge": 2}
    pod = obj["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == -1  # a negative int64
    assert pod["containers"] == [
        {
            "name": "c",
            "image": "nginx",
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "resources": {"limits": {"cpu": "100m"}},
        }
    ]
    assert obj["status"] == {} and obj["kind"] == "Deployment" and obj["apiVersion"] == "apps/v1"


def test_secret_bytes_zero_time_and_special_types():
    meta = pb((1, "s"), (8, pb((1, 0), (2, 0))))  # a zero Time is null: left out
    secret = pb((1, meta), (2, entry("password", b"\x00s3cret")), (3, "Opaque"))
    obj = decode_object(envelope("v1", "Secret", secret))
    assert obj["data"] == {"password": "AHMzY3JldA=="} and obj["metadata"] == {"name": "s"}
    assert decode_message(pb((1, b'{"a": [1]}')), "runtime.RawExtension") == {"a": [1]}
    assert decode_message(pb((1, 90 * 10**9)), "meta.v1.Duration") == "1m30s"
    assert decode_message(pb((1, 5), (2, 123_456_789)), "meta.v1.MicroTime") == "1970-01-01T00:00:05.123456Z"
    unpacked = pb((4, 1000), (4, 2000))
    packed = pb((4, _varint(1000) + _varint(2000)))
    for wire in (unpacked, packed):
        assert decode_message(wire, "core.v1.PodSecurityContext") == {"supplementalGroups": [1000, 2000]}


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (envelope("v1", "PriorityClass", b""), 415, "send JSON or YAML"),
        (b"k8s\x00" + b"\x0a\x05\x0a\x02v1", 400, "truncated"),
        (b"not protobuf", 400, "magic"),
        (envelope("v1", "Secret", b"\x0a\x80"), 400, "truncated"),
    ],
)
def test_bad_protobuf_bodies_are_refused_with_one_line(body: bytes, code: int, words: str):
    with pytest.raises(ApiError) as caught:
        decode_object(body)
    assert caught.value.code == code and words in caught.value.message
    assert "\n" not in caught.value.message


@pytest.mark.parametrize("seconds", [2**62, -(2**62), 253_402_300_800, -62_135_596_801])
def test_a_time_outside_the_years_rfc3339_can_write_is_a_400(seconds: int):
    meta = pb((1, "s"), (8, pb((1, seconds))))  # creationTimestamp
    with pytest.raises(ApiError) as caught:
        decode_object(envelope("v1", "Secret", pb((1, meta))))
    assert caught.value.code == 400 and "\n" not in caught.value.message
    assert f"a time of {seconds} seconds since 1970 is outside the years 0001-9999" in caught.value.message


def test_times_at_the_edges_and_unnormalized_nanoseconds_decode_as_go_does():
    assert decode_message(pb((1, -62_135_596_800)), "meta.v1.Time") == "0001-01-01T00:00:00Z"
    assert decode_message(pb((1, 253_402_300_799)), "meta.v1.Time") == "9999-12-31T23:59:59Z"
    assert (
        decode_message(pb((1, 5), (2, 1_500_000_000)), "meta.v1.MicroTime") == "1970-01-01T00:00:06.500000Z"
    )


def test_generator_reads_proto_and_go_tags():
    proto = (
        "package k8s.io.api.apps.v1;\n"
        "message DeploymentSpec {\n"
        "  optional int32 replicas = 1;\n"
        "  optional .k8s.io.apimachinery.pkg.apis.meta.v1.LabelSelector selector = 2;\n"
        "  repeated string names = 3;\n"
        "  map<string, .k8s.io.apimachinery.pkg.api.resource.Quantity> limits = 4;\n"
        "}\n"
    )
    assert parse_proto(proto) == {
        "k8s.io.api.apps.v1.DeploymentSpec": {
            1: ("replicas", "int32", ""),
            2: ("selector", "meta.v1.LabelSelector", ""),
            3: ("names", "string", "r"),
            4: ("limits", "resource.Quantity", "m"),
        }
    }
    go = (
        "type DeploymentSpec struct {\n"
        '\tReplicas *int32 `json:"replicas,omitempty" protobuf:"varint,1,opt,name=replicas"`\n'
        '\tPaused bool `json:"paused" protobuf:"varint,7,opt,name=paused"`\n'
        "}\n"
    )
    assert parse_go([go], "apps.v1") == {
        ("apps.v1.DeploymentSpec", 1): ("replicas", True, True),
        ("apps.v1.DeploymentSpec", 7): ("paused", False, False),
    }


# -- server-side apply rules ---------------------------------------------------------


def _deployment(image: str = "nginx:1", replicas: int = 2, env: tuple[str, ...] = ("A",)) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": image,
                            "ports": [{"containerPort": 80}],
                            "env": [{"name": n, "value": n.lower()} for n in env],
                        }
                    ]
                },
            },
        },
    }


def _applied(rt: ResourceType, doc: dict[str, Any], manager: str = "ci") -> dict[str, Any]:
    return check_applied(rt, json.loads(json.dumps(doc)), "default", "web", manager)


def test_field_set_uses_keys_sets_and_atomic_lists():
    obj = _deployment(env=("A", "B"))
    obj["metadata"]["finalizers"] = ["x"]
    obj["spec"]["template"]["spec"]["tolerations"] = [{"key": "k", "operator": "Exists"}]
    paths = field_set(DEPLOYMENTS, obj)
    container = ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"c"}')
    assert (*container, "f:ports", 'k:{"containerPort":80,"protocol":"TCP"}', ".") in paths
    assert (*container, "f:env", 'k:{"name":"B"}', "f:value") in paths
    assert ("f:metadata", "f:finalizers", 'v:"x"') in paths
    assert ("f:spec", "f:template", "f:spec", "f:tolerations") in paths
    assert not any(p[:2] == ("f:metadata", "f:name") for p in paths)
    assert path_text((*container, "f:image")) == '.spec.template.spec.containers[name="c"].image'


def test_apply_creates_reapplies_and_removes_dropped_fields():
    first = apply(DEPLOYMENTS, None, _applied(DEPLOYMENTS, _deployment(env=("A", "B"))), "ci")
    [owner] = read_entries(first)
    assert (owner.manager, owner.operation) == ("ci", "Apply")
    changed = _deployment(image="nginx:2", env=("A",))
    del changed["metadata"]["labels"]
    second = apply(DEPLOYMENTS, first, _applied(DEPLOYMENTS, changed), "ci")
    container = second["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nginx:2" and container["env"] == [{"name": "A", "value": "a"}]
    assert "labels" not in second["metadata"]
    again = apply(DEPLOYMENTS, second, _applied(DEPLOYMENTS, changed), "ci")
    assert again == second  # a no-op apply changes nothing, not even the times


def test_apply_conflicts_with_another_manager_unless_forced():
    live = apply(DEPLOYMENTS, None, _applied(DEPLOYMENTS, _deployment()), "ci")
    scaled = json.loads(json.dumps(live))
    scaled["spec"]["replicas"] = 5
    scaled["metadata"]["managedFields"] = record_update(DEPLOYMENTS, live, scaled, "hpa")
    with pytest.raises(ApiError) as caught:
        apply(DEPLOYMENTS, scaled, _applied(DEPLOYMENTS, _deployment(image="nginx:3")), "ci")
    assert caught.value.code == 409 and caught.value.reason == "Conflict"
    assert caught.value.message == (
        'Apply failed with 1 conflict: conflict with "hpa" using apps/v1: .spec.replicas'
    )
    assert caught.value.details == {
        "causes": [
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "hpa" using apps/v1',
                "field": ".spec.replicas",
            }
        ]
    }
    shared = apply(DEPLOYMENTS, scaled, _applied(DEPLOYMENTS, _deployment(replicas=5)), "ci")
    owners = {e.manager: e for e in read_entries(shared)}
    assert ("f:spec", "f:replicas") in owners["ci"].paths & owners["hpa"].paths  # same value: shared
    forced = apply(DEPLOYMENTS, scaled, _applied(DEPLOYMENTS, _deployment(replicas=1)), "ci", force=True)
    assert forced["spec"]["replicas"] == 1
    assert "hpa" not in {e.manager for e in read_entries(forced)}  # it owned nothing else


def test_dropped_field_owned_by_another_manager_stays():
    live = apply(CONFIGMAPS, None, _applied(CONFIGMAPS, _cm({"a": "1", "b": "2"})), "one")
    both = apply(CONFIGMAPS, live, _applied(CONFIGMAPS, _cm({"b": "2"}), "two"), "two")
    after = apply(CONFIGMAPS, both, _applied(CONFIGMAPS, _cm({"a": "1"})), "one")
    assert after["data"] == {"a": "1", "b": "2"}
    final = apply(CONFIGMAPS, after, _applied(CONFIGMAPS, _cm({"c": "3"}), "two"), "two")
    assert final["data"] == {"a": "1", "c": "3"}


def test_updates_record_their_manager_and_take_fields_over():
    created = _deployment()
    created["metadata"]["managedFields"] = record_update(DEPLOYMENTS, None, created, "kubectl-create")
    [creator] = read_entries(created)
    assert (creator.manager, creator.operation, creator.api_version) == (
        "kubectl-create",
        "Update",
        "apps/v1",
    )
    edited = json.loads(json.dumps(created))
    edited["spec"]["replicas"] = 4
    del edited["metadata"]["labels"]
    edited["metadata"]["managedFields"] = record_update(DEPLOYMENTS, created, edited, "kubectl-edit")
    owners = {e.manager: e.paths for e in read_entries(edited)}
    assert owners["kubectl-edit"] == {("f:spec", "f:replicas")}
    assert ("f:spec", "f:replicas") not in owners["kubectl-create"]
    assert not any(p[:2] == ("f:metadata", "f:labels") for p in owners["kubectl-create"])
    same = json.loads(json.dumps(edited))
    same["metadata"]["resourceVersion"] = "99"
    assert record_update(DEPLOYMENTS, edited, same, "other") is edited["metadata"]["managedFields"]
    status = json.loads(json.dumps(edited))
    status["status"] = {"replicas": 4}
    [*_, kubelet] = read_entries(
        {"metadata": {"managedFields": record_update(DEPLOYMENTS, edited, status, "k", "status")}}
    )
    assert (kubelet.subresource, kubelet.paths) == ("status", {("f:status", "f:replicas")})


def _entry_for(obj: dict[str, Any], manager: str, subresource: str = "") -> dict[str, Any]:
    [found] = [
        m
        for m in obj["metadata"]["managedFields"]
        if m["manager"] == manager and m.get("subresource", "") == subresource
    ]
    return found


def test_a_status_write_leaves_the_other_entries_as_they_were():
    created = _deployment()
    created["metadata"]["managedFields"] = record_update(DEPLOYMENTS, None, created, "creator")
    first = json.loads(json.dumps(created))
    first["status"] = {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]}
    first["metadata"]["managedFields"] = record_update(DEPLOYMENTS, created, first, "ctl", "status")
    second = json.loads(json.dumps(first))
    second["status"]["conditions"] = [{"type": "Progressing", "status": "True"}]
    second["metadata"]["managedFields"] = record_update(DEPLOYMENTS, first, second, "ctl", "status")
    assert _entry_for(second, "creator") == _entry_for(created, "creator")  # untouched, time too
    assert _entry_for(second, "ctl", "status")["fieldsV1"] == {
        "f:status": {
            "f:replicas": {},
            "f:conditions": {'k:{"type":"Progressing"}': {".": {}, "f:type": {}, "f:status": {}}},
        }
    }


def test_a_scale_write_is_owned_so_a_later_apply_conflicts():
    state = State(Settings())
    state.open()
    try:  # the state opens with the default namespace
        applied = json.dumps(_deployment(replicas=2)).encode()
        verbs.patch(state, DEPLOYMENTS, "default", "web", APPLY, applied, manager="deployer")
        scaled = update_scale(
            state, DEPLOYMENTS, "default", "web", {"spec": {"replicas": 5}}, manager="kubectl"
        )
        assert scaled["spec"]["replicas"] == 5
        web = state.store.get(DEPLOYMENTS.key, "default", "web")
        assert web is not None and web["spec"]["replicas"] == 5
        scale = _entry_for(web, "kubectl", "scale")
        assert (scale["operation"], scale["apiVersion"]) == ("Update", "apps/v1")
        assert scale["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
        assert "f:replicas" not in _entry_for(web, "deployer")["fieldsV1"]["f:spec"]
        with pytest.raises(ApiError) as caught:  # the manifest still says 2: no silent revert
            verbs.patch(state, DEPLOYMENTS, "default", "web", APPLY, applied, manager="deployer")
        assert caught.value.code == 409
        assert caught.value.message == (
            'Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" '
            "using apps/v1: .spec.replicas"
        )
        patch = json.dumps({"spec": {"replicas": 6}}).encode()
        patch_scale(
            state, DEPLOYMENTS, "default", "web", "application/merge-patch+json", patch, manager="hpa"
        )
        web = state.store.get(DEPLOYMENTS.key, "default", "web")
        assert web is not None and [m["manager"] for m in web["metadata"]["managedFields"]] == [
            "deployer",
            "hpa",
        ]
    finally:
        state.close()


def _cm(data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}, "data": data}


@pytest.mark.parametrize(
    ("doc", "manager", "words"),
    [
        ({"apiVersion": "v1", "kind": "ConfigMap"}, "", "fieldManager is required"),
        ({"kind": "ConfigMap"}, "m", "apiVersion must be set"),
        ({"apiVersion": "v1", "kind": "Secret"}, "m", "this URL serves v1 ConfigMap"),
        ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, "m", "does not match"),
    ],
)
def test_bad_apply_requests_name_the_fix(doc: dict[str, Any], manager: str, words: str):
    with pytest.raises(ApiError) as caught:
        check_applied(CONFIGMAPS, doc, "default", "web", manager)
    assert caught.value.code == 400 and words in caught.value.message


# -- real kubectl against the API server alone ------------------------------------------------


class Kubectl(SharedKubectl):
    """kubectl 1.32 with :meth:`get` showing managed fields."""

    def get(self, *args: str) -> dict[str, Any]:
        """``kubectl get -o json --show-managed-fields`` (kubectl hides them otherwise)."""
        result: dict[str, Any] = json.loads(self("get", *args, "-o", "json", "--show-managed-fields").stdout)
        return result


@pytest.fixture(scope="module")
def kubectl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    root = tmp_path_factory.mktemp("api-protobuf")
    server = start_api_server(root / "state", logs_dir=root / "logs", pod_removal_grace=0)
    home = root / "home"
    home.mkdir()
    try:
        yield Kubectl(server, home, timeout=30)
    finally:
        assert server.stop() == 0


def _contains(expected: Any, actual: Any, where: str = "") -> None:
    """Every field kubectl would have sent as JSON is stored with that value."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), where
        for key, value in expected.items():
            if value in (None, {}) and key in ("creationTimestamp", "status"):
                continue
            assert key in actual, f"{where}.{key} missing"
            _contains(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for n, (e, a) in enumerate(zip(expected, actual, strict=True)):
            _contains(e, a, f"{where}[{n}]")
    else:
        assert expected == actual, f"{where}: {expected!r} != {actual!r}"


TYPED_CREATES = [
    ("deployment", "d1", ["--image=nginx:1", "--replicas=0", "--port=80", "-n", "pb"]),
    ("job", "j1", ["--image=busybox", "-n", "pb", "--", "echo", "hi"]),
    ("cronjob", "cj1", ["--image=busybox", "--schedule=*/5 * * * *", "-n", "pb", "--", "date"]),
    ("service", "clusterip", ["s1", "--tcp=80:8080", "-n", "pb"]),
    ("service", "nodeport", ["s2", "--tcp=443:https", "-n", "pb"]),
    ("poddisruptionbudget", "pdb1", ["--selector=app=d1", "--min-available=50%", "-n", "pb"]),
    ("role", "r1", ["--verb=get,list", "--resource=pods,deployments.apps", "-n", "pb"]),
    ("rolebinding", "rb1", ["--role=r1", "--user=alice", "--serviceaccount=pb:sa1", "-n", "pb"]),
    ("clusterrole", "cr1", ["--verb=get", "--resource=nodes", "--non-resource-url=/healthz"]),
    ("clusterrolebinding", "crb1", ["--clusterrole=cr1", "--group=ops"]),
    ("secret", "generic", ["sec1", "--from-literal=password=s3cret", "-n", "pb"]),
    (
        "secret",
        "docker-registry",
        ["reg1", "--docker-server=r.io", "--docker-username=u", "--docker-password=p", "-n", "pb"],
    ),
    ("configmap", "cm1", ["--from-literal=a=1", "--from-literal=b=2", "-n", "pb"]),
    ("serviceaccount", "sa1", ["-n", "pb"]),
]


def test_typed_creates_sent_as_protobuf_are_stored_as_sent(kubectl: Kubectl):
    namespace = kubectl("create", "namespace", "pb", "-v=8").stderr
    assert "Content-Type: application/vnd.kubernetes.protobuf" in namespace  # how it was sent
    assert kubectl.get("namespace", "pb")["metadata"]["name"] == "pb"
    for kind, first, rest in TYPED_CREATES:
        split = rest.index("--") if "--" in rest else len(rest)
        flags, command = rest[:split], rest[split:]
        dry = ("create", kind, first, *flags, "--dry-run=client", "-o", "json", *command)
        sent = json.loads(kubectl(*dry).stdout)
        created = kubectl("create", kind, first, *flags, "-v=8", *command)
        assert "Content-Type: application/vnd.kubernetes.protobuf" in created.stderr, kind
        name, ns = sent["metadata"]["name"], sent["metadata"].get("namespace")
        resource = (
            f"{sent['kind'].lower()}.{sent['apiVersion'].split('/')[0]}"
            if "/" in sent["apiVersion"]
            else sent["kind"]
        )
        stored = kubectl.get(resource, name, *(("-n", ns) if ns else ()))
        _contains({k: v for k, v in sent.items() if k != "status"}, stored, f"{kind} {name}")
    assert kubectl.get("deployment", "d1", "-n", "pb")["spec"]["replicas"] == 0
    assert kubectl.get("secret", "sec1", "-n", "pb")["data"] == {"password": "czNjcmV0"}
    pdb = kubectl.get("pdb", "pdb1", "-n", "pb")
    assert pdb["spec"]["minAvailable"] == "50%"
    service = kubectl.get("service", "s2", "-n", "pb")["spec"]["ports"][0]
    assert service["targetPort"] == "https" and service["port"] == 443


MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: ssa
  labels: {app: web, tier: front}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: c
        image: IMAGE
        ports: [{containerPort: 80}]
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
"""


def test_server_side_apply_with_kubectl(kubectl: Kubectl, tmp_path: Path):
    kubectl("create", "namespace", "ssa")
    manifest = tmp_path / "web.yaml"
    manifest.write_text(MANIFEST.replace("REPLICAS", "2").replace("IMAGE", "nginx:1"))
    assert "serverside-applied" in kubectl("apply", "--server-side", "-f", str(manifest)).stdout
    web = kubectl.get("deployment", "web", "-n", "ssa")
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1"
    shown = kubectl("get", "deployment", "web", "-n", "ssa", "-o", "yaml", "--show-managed-fields").stdout
    assert "manager: kubectl" in shown and "operation: Apply" in shown and "fieldsType: FieldsV1" in shown
    assert "managedFields" not in kubectl("get", "deployment", "web", "-n", "ssa", "-o", "yaml").stdout

    changed = MANIFEST.replace("REPLICAS", "2").replace("IMAGE", "nginx:2")
    manifest.write_text(changed.replace(', {name: B, value: "2"}', "").replace(", tier: front", ""))
    kubectl("apply", "--server-side", "-f", str(manifest))
    web = kubectl.get("deployment", "web", "-n", "ssa")
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nginx:2" and container["env"] == [{"name": "A", "value": "1"}]
    assert web["metadata"]["labels"] == {"app": "web"}

    kubectl("label", "deployment", "web", "-n", "ssa", "owner=ops")
    other = tmp_path / "other.yaml"
    other.write_text(MANIFEST.replace("REPLICAS", "5").replace("IMAGE", "nginx:2"))
    refused = kubectl("apply", "--server-side", "--field-manager=team-b", "-f", str(other), ok=False)
    assert refused.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas' in refused.stderr
    assert kubectl.get("deployment", "web", "-n", "ssa")["spec"]["replicas"] == 2

    kubectl("apply", "--server-side", "--field-manager=team-b", "--force-conflicts", "-f", str(other))
    web = kubectl.get("deployment", "web", "-n", "ssa")
    assert web["spec"]["replicas"] == 5 and web["metadata"]["labels"]["owner"] == "ops"
    managers = {(m["manager"], m["operation"]) for m in web["metadata"]["managedFields"]}
    assert managers == {("kubectl", "Apply"), ("team-b", "Apply"), ("kubectl-label", "Update")}
    owned = {m["manager"]: m["fieldsV1"] for m in web["metadata"]["managedFields"]}
    assert "f:replicas" in owned["team-b"]["f:spec"] and "f:replicas" not in owned["kubectl"]["f:spec"]

    mine = kubectl("apply", "--server-side", "-f", str(manifest), ok=False)  # kubectl still says 2
    assert 'conflict with "team-b": .spec.replicas' in mine.stderr


def test_apply_creates_with_managers_visible(kubectl: Kubectl):
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conf", "namespace": "default"}}
    config["data"] = {"a": "1"}
    kubectl("apply", "--server-side", "--field-manager=deployer", "-f", "-", stdin=json.dumps(config))
    kubectl("create", "configmap", "imperative", "--from-literal=x=y")
    conf = kubectl.get("configmap", "conf")
    assert [(m["manager"], m["operation"]) for m in conf["metadata"]["managedFields"]] == [
        ("deployer", "Apply")
    ]
    assert conf["metadata"]["managedFields"][0]["fieldsV1"] == {"f:data": {"f:a": {}}}
    config["data"] = {"b": "2"}
    kubectl("apply", "--server-side", "--field-manager=deployer", "-f", "-", stdin=json.dumps(config))
    assert kubectl.get("configmap", "conf")["data"] == {"b": "2"}


def test_apply_over_http_takes_yaml_and_answers_conflicts_as_status(kubectl: Kubectl):
    url = f"{kubectl.url}/api/v1/namespaces/default/configmaps/raw"
    yaml_body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: raw\ndata:\n  k: one\n"
    code, body = http(f"{url}?fieldManager=a", "PATCH", raw=yaml_body, content_type=APPLY)
    assert code == 201 or code == 200, body
    assert body["data"] == {"k": "one"} and body["metadata"]["managedFields"][0]["manager"] == "a"
    again, same = http(f"{url}?fieldManager=a", "PATCH", raw=yaml_body, content_type=APPLY)
    assert again == 200 and same["metadata"]["resourceVersion"] == body["metadata"]["resourceVersion"]
    other = yaml_body.replace(b"one", b"two")
    code, status = http(f"{url}?fieldManager=b", "PATCH", raw=other, content_type=APPLY)
    assert (code, status["reason"]) == (409, "Conflict")
    assert status["message"] == 'Apply failed with 1 conflict: conflict with "a": .data.k'
    assert status["details"]["causes"][0]["field"] == ".data.k"
    code, status = http(url, "PATCH", raw=other, content_type=APPLY)
    assert code == 400 and "fieldManager is required" in status["message"]
    code, body = http(f"{url}?fieldManager=b&force=true", "PATCH", raw=other, content_type=APPLY)
    assert code == 200 and body["data"] == {"k": "two"}
    assert [m["manager"] for m in body["metadata"]["managedFields"]] == ["b"]


def test_patches_keep_the_other_managers(kubectl: Kubectl):
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "patched", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "p"}},
            "template": {
                "metadata": {"labels": {"app": "p"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
            },
        },
    }
    kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(deployment))
    image = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:4"}]}}}}
    kubectl("patch", "deployment", "patched", "--type=strategic", "-p", json.dumps(image))
    managed = kubectl.get("deployment", "patched")["metadata"]["managedFields"]
    assert [(m["manager"], m["operation"]) for m in managed] == [
        ("kubectl", "Apply"),
        ("kubectl-patch", "Update"),
    ]
    again = kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(deployment), ok=False)
    assert (
        'conflict with "kubectl-patch" using apps/v1: .spec.template.spec.containers[name="c"].image'
        in again.stderr
    )


def test_lab_clients_write_under_their_component_names(kubectl: Kubectl):
    kubelet = KubeClient(kubectl.url, user_agent=user_agent("lab-kubelet"))
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "agents"}, "data": {"a": "1"}}
    kubelet.create("configmaps", body, "default")
    KubeClient(kubectl.url).patch("configmaps", "agents", {"data": {"b": "2"}}, "default")
    managed = kubectl.get("configmap", "agents")["metadata"]["managedFields"]
    assert [(m["manager"], m["fieldsV1"]["f:data"]) for m in managed] == [
        ("lab-kubelet", {"f:a": {}}),
        ("lab", {"f:b": {}}),
    ]
