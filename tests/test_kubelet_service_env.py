"""Service links: the variables a container gets for its namespace's Services, as Kubernetes names them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from lab.kubelet import podspec
from lab.kubelet.config import KubeletConfig
from lab.kubelet.container_setup import PodSetup
from lab.kubelet.images import LOCUSTFILE
from lab.kubelet.service_env import env_name, link_env, pod_service_env, service_links
from tests.lab_fixtures import KubeletNode, kubelet_node
from tests.test_api_support import wait_for

Obj = dict[str, Any]
NS = "default"
NODE = "lab-service-env-node"


def _service(name: str, ports: list[Obj], namespace: str = "load", **spec: Any) -> Obj:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": {"ports": ports, **spec}}


LOAD = _service(
    "harness-load-ab12",
    [{"name": "master", "port": 5557, "targetPort": 5557}, {"name": "web", "port": 8089, "protocol": "TCP"}],
)

DB = _service("db", [{"name": "sql", "port": 5432}])


def test_a_service_gets_kubernetes_variable_set() -> None:
    assert env_name("harness-load-ab12") == "HARNESS_LOAD_AB12"
    assert link_env(LOAD) == {
        "HARNESS_LOAD_AB12_SERVICE_HOST": "127.0.0.1",
        "HARNESS_LOAD_AB12_SERVICE_PORT": "5557",
        "HARNESS_LOAD_AB12_SERVICE_PORT_MASTER": "5557",
        "HARNESS_LOAD_AB12_SERVICE_PORT_WEB": "8089",
        "HARNESS_LOAD_AB12_PORT": "tcp://127.0.0.1:5557",
        "HARNESS_LOAD_AB12_PORT_5557_TCP": "tcp://127.0.0.1:5557",
        "HARNESS_LOAD_AB12_PORT_5557_TCP_PROTO": "tcp",
        "HARNESS_LOAD_AB12_PORT_5557_TCP_PORT": "5557",
        "HARNESS_LOAD_AB12_PORT_5557_TCP_ADDR": "127.0.0.1",
        "HARNESS_LOAD_AB12_PORT_8089_TCP": "tcp://127.0.0.1:8089",
        "HARNESS_LOAD_AB12_PORT_8089_TCP_PROTO": "tcp",
        "HARNESS_LOAD_AB12_PORT_8089_TCP_PORT": "8089",
        "HARNESS_LOAD_AB12_PORT_8089_TCP_ADDR": "127.0.0.1",
    }
    unnamed = link_env(_service("dns", [{"port": 53, "protocol": "UDP"}]))
    assert unnamed["DNS_SERVICE_PORT"] == "53" and unnamed["DNS_PORT"] == "udp://127.0.0.1:53"
    assert unnamed["DNS_PORT_53_UDP_PROTO"] == "udp"
    assert not [k for k in unnamed if k.startswith("DNS_SERVICE_PORT_")], (
        "an unnamed port has no named variable"
    )


def test_services_that_get_no_links() -> None:
    headless = _service("db", [{"port": 5432}], clusterIP="None")
    external = _service("ext", [{"port": 443}], type="ExternalName", externalName="example.org")
    portless = _service("bare", [])
    api = _service("kubernetes", [{"name": "https", "port": 443}], namespace="default")
    other_ns = _service("elsewhere", [{"port": 80}], namespace="other")
    assert service_links([headless, external, portless, other_ns], "load") == {}
    assert service_links([api], "default") == {}, "the kubelet's own KUBERNETES_* stand for it"
    own = _service("kubernetes", [{"port": 80}], namespace="load")
    assert service_links([own], "load")["KUBERNETES_SERVICE_PORT"] == "80", "only default's is special"
    with_ip = _service("db", [{"port": 5432}], clusterIP="10.0.0.7")
    assert service_links([with_ip], "load")["DB_SERVICE_HOST"] == "127.0.0.1", "no kube-proxy in the lab"


def test_enable_service_links_false_turns_them_off() -> None:
    pod: Obj = {"metadata": {"name": "p", "namespace": "load"}, "spec": {"containers": []}}
    asked: list[str] = []

    def lister(namespace: str) -> list[Obj]:
        asked.append(namespace)
        return [LOAD]

    assert pod_service_env(pod, lister)["HARNESS_LOAD_AB12_SERVICE_HOST"] == "127.0.0.1"
    assert asked == ["load"]
    pod["spec"]["enableServiceLinks"] = False
    assert pod_service_env(pod, lister) == {}


def _worker_pod() -> tuple[Obj, Obj]:
    container: Obj = {
        "name": "worker",
        "image": "ghcr.io/example/mssql-chaos-harness/harness:0.1.0",
        "args": [
            "--worker",
            "--master-host",
            "$(HARNESS_LOAD_AB12_SERVICE_HOST)",
            "--master-port",
            "$(HARNESS_LOAD_AB12_SERVICE_PORT_MASTER)",
            "--run-dir",
            "/var/run/harness/run",
        ],
        # A link variable the container sets itself (the harness image may not set HARNESS_*).
        "env": [{"name": "DB_SERVICE_PORT", "value": "9999"}],
        "volumeMounts": [{"name": "work", "mountPath": "/var/run/harness"}],
    }
    pod: Obj = {
        "metadata": {"name": "harness-load-ab12-worker-x", "namespace": "load", "uid": "u-1"},
        "spec": {"containers": [container], "volumes": [{"name": "work", "emptyDir": {}}]},
    }
    return pod, container


def _setup(tmp_path: Path, lookup: podspec.Lookup, **kw: Any) -> PodSetup:
    cfg = KubeletConfig(node="n", server="http://127.0.0.1:6443", state_dir=tmp_path / "n")
    runtime = tmp_path / "runtime"  # not cfg.runtime_dir: a private tmp folder would fall back to /var/tmp
    return PodSetup(cfg, runtime, False, runtime / "pods" / "u-1", lookup, **kw)


def test_a_container_starts_with_the_links_expanded_in_its_args(tmp_path: Path) -> None:
    services = [LOAD, DB, _service("kubernetes", [{"name": "https", "port": 443}], namespace="default")]
    asked: list[tuple[str, str, str]] = []

    def lookup(plural: str, namespace: str, name: str) -> Obj | None:
        asked.append((plural, namespace, name))
        if (plural, name) == ("services", ""):  # the pod worker's lookup: a GET of the collection
            return {
                "kind": "ServiceList",
                "items": [s for s in services if s["metadata"]["namespace"] == namespace],
            }
        return None

    pod, container = _worker_pod()
    prepared = _setup(tmp_path, lookup).prepare(pod, container)
    assert ("services", "load", "") in asked, "listed when the container starts"
    argv = prepared.launch.argv
    assert argv[:5] == [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    assert argv[5:] == [
        "--worker",
        "--master-host",
        "127.0.0.1",
        "--master-port",
        "5557",
        "--run-dir",
        "/var/run/harness/run",
    ]
    env = prepared.env
    assert env["DB_SERVICE_PORT"] == "9999", "the container's own env wins"
    assert env["DB_SERVICE_HOST"] == "127.0.0.1" and env["HARNESS_LOAD_AB12_SERVICE_PORT_WEB"] == "8089"
    assert env["HARNESS_LOAD_AB12_PORT"] == "tcp://127.0.0.1:5557"
    assert (env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"]) == ("127.0.0.1", "6443")
    assert "KUBERNETES_PORT_443_TCP" not in env
    assert '"/var/run/harness"' in env["LAB_MOUNTS"]


def test_an_explicit_lister_and_a_pod_without_links(tmp_path: Path) -> None:
    pod, container = _worker_pod()
    setup = _setup(tmp_path, lambda plural, namespace, name: None, services=lambda namespace: [LOAD, DB])
    assert setup.prepare(pod, container).launch.argv[7] == "127.0.0.1"
    pod["spec"]["enableServiceLinks"] = False
    prepared = setup.prepare(pod, container)
    assert "$(HARNESS_LOAD_AB12_SERVICE_HOST)" in prepared.launch.argv, "unknown variables stay as written"
    assert not [k for k in prepared.env if k.startswith(("HARNESS_LOAD_AB12_", "DB_SERVICE_HOST"))]
    assert prepared.env["DB_SERVICE_PORT"] == "9999"  # the container's own stays


@pytest.mark.integration
def test_a_real_kubelet_gives_its_containers_the_links() -> None:
    with kubelet_node("test-service-env-", lambda root: KubeletNode(root, NODE)) as node:
        node.client.create(
            "services", {"metadata": {"name": LOAD["metadata"]["name"]}, "spec": LOAD["spec"]}, NS
        )
        script = (
            "echo HOST=$HARNESS_LOAD_AB12_SERVICE_HOST WEB=$HARNESS_LOAD_AB12_SERVICE_PORT_WEB "
            "ARG=$0 API=$KUBERNETES_SERVICE_PORT"
        )
        for name, links in (("linked", True), ("unlinked", False)):
            spec: Obj = {
                "nodeName": NODE,
                "restartPolicy": "Never",
                "enableServiceLinks": links,
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox",
                        "command": ["sh", "-c", script, "$(HARNESS_LOAD_AB12_SERVICE_PORT_MASTER)"],
                    }
                ],
            }
            node.client.create("pods", {"metadata": {"name": name}, "spec": spec}, NS)
        api_port = node.api.port

        def logged(name: str) -> str:
            path = node.logs / f"{NS}_{name}.log"
            text = path.read_text(errors="replace") if path.exists() else ""
            return text if "HOST=" in text else ""

        assert f"HOST=127.0.0.1 WEB=8089 ARG=5557 API={api_port}" in wait_for(lambda: logged("linked"), 20)
        unlinked = wait_for(lambda: logged("unlinked"), 20)
        assert f"HOST= WEB= ARG=$(HARNESS_LOAD_AB12_SERVICE_PORT_MASTER) API={api_port}" in unlinked
