"""Objects and defaults the lab's API server and controllers add as Kubernetes does.

Pod defaults (QoS class, probe and container defaults, DefaultTolerationSeconds),
Secret type, ``kubectl rollout undo`` reusing the old ReplicaSet, a PersistentVolume
per bound claim, Endpoints/EndpointSlices following pod readiness, and a StatefulSet's
ControllerRevisions; against a control plane (API server on a free port with its
controllers) and the kubelet played by :class:`tests.test_controllers.FakeKubelet`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.api import write_kubeconfig
from lab.api.pod_defaults import parse_quantity, pod_qos
from lab.controlplane import ControlPlaneProcess
from lab.kubeclient import Kind, KubeClient
from lab.timing import DEFAULT, ENV, profile
from tests.test_controllers import FakeKubelet, kubectl, plane_clients, running_plane, set_pod, wait_for

pytestmark = pytest.mark.integration

Obj = dict[str, Any]
PV = Kind("", "v1", "persistentvolumes", namespaced=False)
ENDPOINTS = Kind("", "v1", "endpoints")
SLICES = Kind("discovery.k8s.io", "v1", "endpointslices")
REVISIONS = Kind("apps", "v1", "controllerrevisions")
REVISION = "deployment.kubernetes.io/revision"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    with running_plane(tmp_path_factory.mktemp("fidelity") / "api", disable=("cronjob",)) as proc:
        yield proc


api, kubelet, ns = plane_clients("fid", nodes=("fid-node-1", "fid-node-2"))


@pytest.fixture
def kubeconfig(plane: ControlPlaneProcess, ns: str, tmp_path: Path) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", plane.url, namespace=ns)


def _container(resources: Obj | None = None, image: str = "busybox", **extra: Any) -> Obj:
    container: Obj = {"name": "main", "image": image, "command": ["sh", "-c", "sleep 3600"], **extra}
    if resources is not None:
        container["resources"] = resources
    return container


def _pod(name: str, *containers: Obj, labels: dict[str, str] | None = None, **spec: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": list(containers) or [_container()], **spec},
    }


# -- defaults ---------------------------------------------------------------------------------------


def test_quantities_and_qos_rules_without_a_server() -> None:
    assert parse_quantity("500m") == parse_quantity("0.5") == parse_quantity("5e-1")
    assert parse_quantity("1Gi") == 1024**3 and parse_quantity("1G") == 1000**3
    assert parse_quantity("12 apples") is None and parse_quantity(True) is None
    cpu_mem = {"cpu": "1", "memory": "1Gi"}
    two = {"spec": {"containers": [{"resources": {"limits": cpu_mem}}, {"resources": {"limits": cpu_mem}}]}}
    assert pod_qos(two) == "Guaranteed"
    two["spec"]["containers"][1]["resources"] = {}
    assert pod_qos(two) == "Burstable"  # one container without limits
    zero = {"spec": {"containers": [{"resources": {"requests": {"cpu": "0"}}}]}}
    assert pod_qos(zero) == "BestEffort"  # only positive quantities count
    init = {"spec": {"containers": [], "initContainers": [{"resources": {"requests": {"memory": "1Mi"}}}]}}
    assert pod_qos(init) == "Burstable"
    other = {"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}
    assert pod_qos(other) == "BestEffort"  # only cpu and memory decide


def test_pods_get_their_qos_class_at_creation(api: KubeClient, kubelet: FakeKubelet, ns: str) -> None:
    limits = {"cpu": "500m", "memory": "64Mi"}
    cases = {
        "best-effort": (_pod("best-effort"), "BestEffort"),
        "guaranteed": (_pod("guaranteed", _container({"limits": limits})), "Guaranteed"),
        "same-amounts": (
            _pod(
                "same-amounts", _container({"requests": {"cpu": "0.5", "memory": "64Mi"}, "limits": limits})
            ),
            "Guaranteed",
        ),
        "burstable": (
            _pod("burstable", _container({"requests": {"cpu": "100m"}, "limits": limits})),
            "Burstable",
        ),
        "requests-only": (_pod("requests-only", _container({"requests": {"memory": "1Mi"}})), "Burstable"),
        "cpu-limit-only": (_pod("cpu-limit-only", _container({"limits": {"cpu": "1"}})), "Burstable"),
    }
    for body, expected in cases.values():
        created = api.create("pods", body, ns)
        assert created["status"]["qosClass"] == expected, created["metadata"]["name"]
    guaranteed = api.get("pods", "guaranteed", ns)
    assert guaranteed["spec"]["containers"][0]["resources"]["requests"] == limits  # limits -> requests
    # the kubelet's status writes keep it
    wait_for("pods running", lambda: all(p["status"].get("phase") == "Running" for p in api.list("pods", ns)))
    assert api.get("pods", "burstable", ns)["status"]["qosClass"] == "Burstable"


def test_probe_container_and_secret_defaults(api: KubeClient, ns: str) -> None:
    probe = {"exec": {"command": ["true"]}}
    http_probe = {"httpGet": {"port": 8080}, "periodSeconds": 3}
    container = _container(
        livenessProbe=probe,
        readinessProbe=http_probe,
        startupProbe={"tcpSocket": {"port": 8080}},
        ports=[{"name": "http", "containerPort": 8080}],
    )
    pod = api.create("pods", _pod("probed", container, _container(image="busybox:1.36") | {"name": "c2"}), ns)
    first, second = pod["spec"]["containers"]
    for name in ("livenessProbe", "startupProbe"):
        assert {k: first[name][k] for k in ("timeoutSeconds", "periodSeconds", "successThreshold")} == {
            "timeoutSeconds": 1,
            "periodSeconds": 10,
            "successThreshold": 1,
        }
        assert first[name]["failureThreshold"] == 3
    assert first["readinessProbe"]["periodSeconds"] == 3  # a value given is kept
    assert first["readinessProbe"]["httpGet"] == {"port": 8080, "path": "/", "scheme": "HTTP"}
    assert first["terminationMessagePath"] == "/dev/termination-log"
    assert first["terminationMessagePolicy"] == "File"
    assert first["imagePullPolicy"] == "Always" and second["imagePullPolicy"] == "IfNotPresent"
    assert first["ports"][0]["protocol"] == "TCP" and first["resources"] == {}
    assert pod["spec"]["securityContext"] == {} and pod["spec"]["dnsPolicy"] == "ClusterFirst"

    secret = api.create(
        "secrets",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}},
        ns,
    )
    assert secret["type"] == "Opaque"
    tls = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t"}, "type": "kubernetes.io/tls"}
    assert api.create("secrets", tls, ns)["type"] == "kubernetes.io/tls"

    dep = api.create("deployments", _deployment("tpl", 0, probe=True, stamp=True), ns)
    template = dep["spec"]["template"]
    assert "creationTimestamp" not in template["metadata"]
    assert template["spec"]["containers"][0]["livenessProbe"]["timeoutSeconds"] == 1
    assert template["spec"]["restartPolicy"] == "Always"
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j"},
        "spec": {
            "template": {"spec": {"restartPolicy": "Never", "containers": [_container(livenessProbe=probe)]}}
        },
    }
    created = api.create("jobs", job, ns)
    assert created["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["failureThreshold"] == 3


def test_default_tolerations_are_added_on_create_only(api: KubeClient, ns: str) -> None:
    seconds = profile(os.environ.get(ENV) or DEFAULT).default_toleration_seconds
    plain = api.create("pods", _pod("plain"), ns)
    assert plain["spec"]["tolerations"] == [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}
        for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
    ]
    own = {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 7,
    }
    mine = api.create("pods", _pod("own", tolerations=[own]), ns)
    assert mine["spec"]["tolerations"][0] == own
    assert [t["key"] for t in mine["spec"]["tolerations"]] == [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ]
    everything = api.create("pods", _pod("all", tolerations=[{"operator": "Exists"}]), ns)
    assert everything["spec"]["tolerations"] == [{"operator": "Exists"}]
    no_schedule = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoSchedule"}
    other = api.create("pods", _pod("noschedule", tolerations=[no_schedule]), ns)
    assert len(other["spec"]["tolerations"]) == 3  # a NoSchedule toleration is not a NoExecute one

    # updates neither add nor refuse: labels change, a toleration may be added, the spec stays
    patched = api.patch("pods", "all", {"metadata": {"labels": {"x": "1"}}}, ns)
    assert patched["spec"]["tolerations"] == [{"operator": "Exists"}]
    more = [*plain["spec"]["tolerations"], {"key": "k", "operator": "Exists", "effect": "NoSchedule"}]
    assert len(api.patch("pods", "plain", {"spec": {"tolerations": more}}, ns)["spec"]["tolerations"]) == 3


# -- kubectl rollout undo ------------------------------------------------------------------------------


def _deployment(name: str, replicas: int, probe: bool = False, stamp: bool = False) -> Obj:
    labels = {"app": name}
    container = _container(livenessProbe={"exec": {"command": ["true"]}}) if probe else _container()
    metadata: Obj = {"labels": labels}
    if stamp:
        metadata["creationTimestamp"] = None
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": metadata, "spec": {"containers": [container]}},
        },
    }


def _sets_by_revision(api: KubeClient, ns: str) -> dict[str, Obj]:
    return {rs["metadata"]["annotations"][REVISION]: rs for rs in api.list("replicasets", ns)}


def test_rollout_undo_reuses_the_old_replicaset(
    api: KubeClient, kubelet: FakeKubelet, ns: str, kubeconfig: Path, tmp_path: Path
) -> None:
    api.create("deployments", _deployment("web", 2, probe=True), ns)
    done = kubectl(kubeconfig, tmp_path, "rollout", "status", "deployment/web", "--timeout=30s")
    assert done.returncode == 0, done.stderr
    first = _sets_by_revision(api, ns)["1"]
    changed = kubectl(kubeconfig, tmp_path, "set", "image", "deployment/web", "main=busybox:1.36")
    assert changed.returncode == 0, changed.stderr
    done = kubectl(kubeconfig, tmp_path, "rollout", "status", "deployment/web", "--timeout=30s")
    assert done.returncode == 0, done.stderr
    assert set(_sets_by_revision(api, ns)) == {"1", "2"}

    undo = kubectl(kubeconfig, tmp_path, "rollout", "undo", "deployment/web", "--to-revision=1")
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert "rolled back" in undo.stdout
    done = kubectl(kubeconfig, tmp_path, "rollout", "status", "deployment/web", "--timeout=30s")
    assert done.returncode == 0, done.stdout + done.stderr
    sets = _sets_by_revision(api, ns)
    assert set(sets) == {"2", "3"}, sets.keys()  # no new set: revision 1's is revision 3 now
    again = sets["3"]
    assert again["metadata"]["uid"] == first["metadata"]["uid"]
    assert again["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert again["spec"]["replicas"] == 2 and sets["2"]["spec"]["replicas"] == 0
    dep = api.get("deployments", "web", ns)
    assert dep["metadata"]["annotations"][REVISION] == "3"
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox"
    live = wait_for(
        "pods of the reused set",
        lambda: (
            (ps := [p for p in api.list("pods", ns) if not p["metadata"].get("deletionTimestamp")])
            and len(ps) == 2
            and all(p["metadata"]["ownerReferences"][0]["uid"] == first["metadata"]["uid"] for p in ps)
            and ps
        ),
        timeout=20,
    )
    assert len(live) == 2
    history = kubectl(kubeconfig, tmp_path, "rollout", "history", "deployment/web")
    assert history.returncode == 0 and "3" in history.stdout, history.stdout + history.stderr


# -- PersistentVolumes ------------------------------------------------------------------------------


def _claim(name: str) -> Obj:
    spec: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec}


def test_a_bound_claim_has_a_persistent_volume(
    api: KubeClient, ns: str, kubeconfig: Path, tmp_path: Path
) -> None:
    api.create("persistentvolumeclaims", _claim("data"), ns)
    claim = wait_for(
        "claim bound",
        lambda: (c := api.get("persistentvolumeclaims", "data", ns))["status"].get("phase") == "Bound" and c,
    )
    name = f"pvc-{claim['metadata']['uid']}"
    assert claim["spec"]["volumeName"] == name
    pv = wait_for(
        "volume bound", lambda: (v := api.get_or_none(PV, name)) and v["status"].get("phase") == "Bound" and v
    )
    spec = pv["spec"]
    assert spec["claimRef"]["name"] == "data" and spec["claimRef"]["namespace"] == ns
    assert (
        spec["claimRef"]["uid"] == claim["metadata"]["uid"]
        and spec["claimRef"]["kind"] == "PersistentVolumeClaim"
    )
    assert spec["capacity"] == {"storage": "2Gi"} and spec["accessModes"] == ["ReadWriteOnce"]
    assert spec["storageClassName"] == "lab-local" and spec["persistentVolumeReclaimPolicy"] == "Retain"
    assert spec["hostPath"]["path"].endswith(f"volumes/{ns}/data")
    assert "nodeAffinity" not in spec  # every node mounts the same folder
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "lab.mssql.io/local-folder"

    time.sleep(1.2)
    assert api.get(PV, name)["metadata"]["resourceVersion"] == pv["metadata"]["resourceVersion"]
    shown = kubectl(kubeconfig, tmp_path, "get", "pv", name)
    assert shown.returncode == 0, shown.stderr
    row = shown.stdout.splitlines()[1].split()
    assert row[:6] == [name, "2Gi", "RWO", "Retain", "Bound", f"{ns}/data"], shown.stdout

    api.delete("persistentvolumeclaims", "data", ns)
    wait_for("claim gone", lambda: api.get_or_none("persistentvolumeclaims", "data", ns) is None)
    released = wait_for(
        "volume released", lambda: (v := api.get(PV, name))["status"]["phase"] == "Released" and v
    )
    assert released["spec"]["claimRef"]["name"] == "data"  # Retain: the volume and its claimRef stay


# -- Endpoints and EndpointSlices ------------------------------------------------------------------------


def _service(name: str, selector: dict[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"tier": "db"}},
        "spec": {
            "selector": selector,
            "ports": [
                {"name": "web", "port": 80, "targetPort": "http"},
                {"name": "raw", "port": 9000, "targetPort": 9001},
            ],
        },
    }


def _addresses(ep: Obj, field: str) -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {}
    for subset in ep.get("subsets") or []:
        ports = tuple(sorted(f"{p.get('name')}={p['port']}" for p in subset.get("ports") or []))
        for address in subset.get(field) or []:
            found[address["targetRef"]["name"]] = ports
    return found


def _slice_endpoints(api: KubeClient, ns: str, service: str) -> dict[str, Obj]:
    slices = api.list(SLICES, ns, labels=f"kubernetes.io/service-name={service}")
    return {e["targetRef"]["name"]: e["conditions"] for s in slices for e in s.get("endpoints") or []}


def _versions(api: KubeClient, ns: str) -> list[str]:
    objects = [*api.list(ENDPOINTS, ns), *api.list(SLICES, ns), *api.list(REVISIONS, ns)]
    return sorted(f"{o['kind']}/{o['metadata']['name']}@{o['metadata']['resourceVersion']}" for o in objects)


def test_endpoints_and_slices_follow_pod_readiness(
    api: KubeClient, kubelet: FakeKubelet, ns: str, kubeconfig: Path, tmp_path: Path
) -> None:
    named = _container(ports=[{"name": "http", "containerPort": 8080}])
    api.create("pods", _pod("web-a", named, labels={"app": "web"}), ns)
    api.create("pods", _pod("web-b", named, labels={"app": "web"}), ns)
    api.create("pods", _pod("other", labels={"app": "other"}), ns)
    api.create("services", _service("web", {"app": "web"}), ns)
    wait_for("pods running", lambda: all(p["status"].get("phase") == "Running" for p in api.list("pods", ns)))
    started = time.monotonic()
    set_pod(api, ns, "web-b", ready=False)
    ep = wait_for(
        "web-b not ready in the Endpoints",
        lambda: (
            (e := api.get_or_none(ENDPOINTS, "web", ns))
            and "web-b" in _addresses(e, "notReadyAddresses")
            and e
        ),
    )
    print(f"readiness -> Endpoints: {(time.monotonic() - started) * 1000:.0f} ms")
    assert _addresses(ep, "addresses") == {"web-a": ("raw=9001", "web=8080")}
    assert ep["metadata"]["labels"] == {"tier": "db"}
    address = ep["subsets"][0]["addresses"][0]
    assert address["ip"] == "127.0.0.1" and address["targetRef"]["kind"] == "Pod"
    assert address["nodeName"] == api.get("pods", "web-a", ns)["spec"]["nodeName"]
    conditions = wait_for("slice", lambda: (c := _slice_endpoints(api, ns, "web")) and len(c) == 2 and c)
    assert conditions["web-a"] == {"ready": True, "serving": True, "terminating": False}
    assert conditions["web-b"] == {"ready": False, "serving": False, "terminating": False}
    (eps,) = api.list(SLICES, ns, labels="kubernetes.io/service-name=web")
    assert eps["addressType"] == "IPv4" and eps["metadata"]["name"].startswith("web-")
    assert (
        eps["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"]
        == "endpointslice-controller.k8s.io"
    )
    assert eps["metadata"]["ownerReferences"][0]["kind"] == "Service"
    assert sorted((p["name"], p["port"]) for p in eps["ports"]) == [("raw", 9001), ("web", 8080)]

    set_pod(api, ns, "web-b", ready=True)
    wait_for(
        "both ready",
        lambda: set(_addresses(api.get(ENDPOINTS, "web", ns), "addresses")) == {"web-a", "web-b"},
    )
    wait_for(
        "both ready in the slice", lambda: all(c["ready"] for c in _slice_endpoints(api, ns, "web").values())
    )
    versions = _versions(api, ns)
    time.sleep(1.5)  # passes keep running (heartbeats, pod status): nothing is rewritten meanwhile
    assert _versions(api, ns) == versions
    shown = kubectl(kubeconfig, tmp_path, "get", "endpoints,endpointslices")
    assert shown.returncode == 0, shown.stderr
    assert "127.0.0.1:8080" in shown.stdout and "IPv4" in shown.stdout, shown.stdout

    api.delete("pods", "web-a", ns)
    wait_for("web-a left", lambda: set(_addresses(api.get(ENDPOINTS, "web", ns), "addresses")) == {"web-b"})
    api.delete("services", "web", ns)
    wait_for("Endpoints deleted with the service", lambda: api.get_or_none(ENDPOINTS, "web", ns) is None)
    wait_for("slices collected", lambda: api.list(SLICES, ns) == [])


def test_a_service_without_matching_pods_has_empty_endpoints(api: KubeClient, ns: str) -> None:
    api.create("services", _service("lonely", {"app": "nobody"}), ns)
    ep = wait_for("Endpoints", lambda: api.get_or_none(ENDPOINTS, "lonely", ns))
    assert "subsets" not in ep
    (eps,) = wait_for("placeholder slice", lambda: api.list(SLICES, ns))
    assert eps["endpoints"] == [] and eps["ports"] == []
    manual = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "manual"},
        "spec": {"ports": [{"port": 1}]},
    }
    api.create("services", manual, ns)
    time.sleep(1.5)
    assert api.get_or_none(ENDPOINTS, "manual", ns) is None  # no selector: its owner writes them


# -- ControllerRevisions --------------------------------------------------------------------------------


def _statefulset(name: str) -> Obj:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [_container()]}},
        },
    }


def _revisions(api: KubeClient, ns: str) -> dict[str, int]:
    return {r["metadata"]["name"]: r["revision"] for r in api.list(REVISIONS, ns)}


def test_statefulset_updates_are_recorded_as_controller_revisions(
    api: KubeClient, kubelet: FakeKubelet, ns: str, kubeconfig: Path, tmp_path: Path
) -> None:
    sts = api.create("statefulsets", _statefulset("db"), ns)
    status = wait_for(
        "db ready", lambda: (s := api.get("statefulsets", "db", ns)["status"]).get("readyReplicas") == 1 and s
    )
    first = status["updateRevision"]
    assert _revisions(api, ns) == {first: 1}
    rev = api.get(REVISIONS, first, ns)
    assert rev["metadata"]["ownerReferences"][0]["uid"] == sts["metadata"]["uid"]
    assert rev["metadata"]["labels"]["app"] == "db"
    assert rev["metadata"]["labels"]["controller.kubernetes.io/hash"] == first.rpartition("-")[2]
    assert rev["data"]["spec"]["template"]["$patch"] == "replace"
    assert rev["data"]["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox"
    assert api.get("pods", "db-0", ns)["metadata"]["labels"]["controller-revision-hash"] == first

    api.patch(
        "statefulsets",
        "db",
        {"spec": {"template": {"spec": {"containers": [_container(image="busybox:1.36")]}}}},
        ns,
    )
    status = wait_for(
        "rolled to revision 2",
        lambda: (
            (s := api.get("statefulsets", "db", ns)["status"])["updateRevision"] != first
            and s["currentRevision"] == s["updateRevision"]
            and s.get("readyReplicas") == 1
            and s
        ),
        timeout=20,
    )
    second = status["updateRevision"]
    assert _revisions(api, ns) == {first: 1, second: 2}
    assert api.get("pods", "db-0", ns)["metadata"]["labels"]["controller-revision-hash"] == second

    undo = kubectl(kubeconfig, tmp_path, "rollout", "undo", "statefulset/db", "--to-revision=1")
    assert undo.returncode == 0, undo.stdout + undo.stderr
    wait_for("the first template is revision 3", lambda: _revisions(api, ns) == {first: 3, second: 2})
    status = wait_for(
        "rolled back",
        lambda: (
            (s := api.get("statefulsets", "db", ns)["status"])["currentRevision"] == first
            and s["updateRevision"] == first
            and s
        ),
        timeout=20,
    )
    versions = _versions(api, ns)
    time.sleep(1.2)
    assert _versions(api, ns) == versions
    history = kubectl(kubeconfig, tmp_path, "rollout", "history", "statefulset/db")
    assert history.returncode == 0, history.stderr
    assert [line.split()[0] for line in history.stdout.splitlines()[2:] if line.strip()] == ["2", "3"]
    shown = kubectl(kubeconfig, tmp_path, "get", "controllerrevisions")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split()[:4] == ["NAME", "CONTROLLER", "REVISION", "AGE"], shown.stdout
    every = kubectl(
        kubeconfig, tmp_path, "get", "pv,endpoints,endpointslices,controllerrevisions", "-o", "wide"
    )
    assert every.returncode == 0 and not every.stderr, every.stderr
    assert f"controllerrevision.apps/{first}" in every.stdout, every.stdout
    assert "statefulset.apps/db" in shown.stdout
