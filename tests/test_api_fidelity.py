"""Lab API fidelity: pod logs per run, refused streaming verbs, foreground deletion, the
watch window, ``remainingItemCount``.

Clients are the real ones (kubectl 1.32, the Kubernetes Python client, raw HTTP). The
API server runs alone on a free port (in this process, so the test can shorten its watch
window to a second); the log tests run a real kubelet process against an API server
process, as ``tests/test_kubelet.py`` does, without a whole lab.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client

from lab.api import write_kubeconfig
from lab.api.logs import parse_records
from lab.api.server import bound_port, serve
from lab.api.settings import Settings
from lab.kubeclient import KubeClient
from lab.kubelet.container_log import MAX_LINE, LogPump, previous_log, rotated_logs
from tests.lab_fixtures import KubeletNode, kubelet_node
from tests.test_api_support import api_client, http, wait_for

WINDOW = 1.0
NS = "default"
NODE = "fidelity-node"
_STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


# -- the container log format, without processes ---------------------------------------------------


def test_log_pump_writes_cri_records_and_the_api_joins_them(tmp_path: Path) -> None:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    path = tmp_path / "c.log"
    pump = LogPump("c", {out_r: b"stdout", err_r: b"stderr"}, path)
    pump.start()
    long_line = b"x" * (2 * MAX_LINE + 10)
    os.write(out_w, b"first\r\n" + long_line + b"\n")
    os.write(err_w, b"oops\n")
    os.write(out_w, b"no newline at the end")
    os.close(out_w)
    os.close(err_w)
    pump.join(5)
    assert not pump.is_alive()
    records = path.read_bytes().splitlines()
    assert all(_STAMP.match(r) for r in records)
    tags = [r.split(b" ", 3)[1:3] for r in records]
    assert tags.count([b"stdout", b"P"]) == 2 and [b"stderr", b"F"] in tags
    assert max(len(r.split(b" ", 3)[3]) for r in records) == MAX_LINE
    lines = [line.text for line in parse_records(path.read_bytes())]
    assert sorted(lines) == sorted([b"first\n", long_line + b"\n", b"oops\n", b"no newline at the end\n"])
    assert parse_records(b"plain\n\nfile") == parse_records(b"plain\n\nfile\n")
    assert [line.text for line in parse_records(b"plain\n\nfile")] == [b"plain\n", b"\n", b"file\n"]


# -- the API server alone ------------------------------------------------------------------------


class InProcessServer:
    """The API server on a free port, its event loop in a thread of this process."""

    def __init__(self, settings: Settings) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, args=(settings,), daemon=True)
        self._thread.start()
        assert self._ready.wait(15), "the API server did not start"
        self.url = f"http://127.0.0.1:{self.port}"

    def _run(self, settings: Settings) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            runner = await serve(settings)
            self.port = bound_port(runner)
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()

        self._loop.run_until_complete(main())

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        assert not self._thread.is_alive(), "the API server did not stop"


class Kubectl:
    def __init__(self, url: str, home: Path) -> None:
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
        self.env["KUBECONFIG"] = str(write_kubeconfig(home / ".kube" / "config", url))

    def argv(self, *args: str) -> list[str]:
        return ["kubectl", *args]

    def __call__(self, *args: str, ok: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if ok:
            assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    root = tmp_path_factory.mktemp("api-fidelity")
    srv = InProcessServer(Settings(port=0, logs_dir=root / "logs", watch_window=WINDOW, gc_interval=0.5))
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def kubectl(server: InProcessServer, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(server.url, tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def kube(server: InProcessServer) -> KubeClient:
    return KubeClient(server.url)


def _cm(name: str, ns: str = NS, owners: list[dict[str, Any]] | None = None, **md: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": ns, **md}
    if owners:
        metadata["ownerReferences"] = owners
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"k": "v"}}


def _ref(owner: dict[str, Any], block: bool) -> dict[str, Any]:
    md = owner["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": md["name"],
        "uid": md["uid"],
        "blockOwnerDeletion": block,
    }


@needs_kubectl
@pytest.mark.integration
def test_exec_cp_attach_port_forward_say_the_lab_does_not_support_them(
    kubectl: Kubectl, kube: KubeClient, server: InProcessServer
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "shell", "namespace": NS},
        "spec": {"nodeName": "n1", "containers": [{"name": "main", "image": "busybox"}]},
    }
    kube.create("pods", pod, NS)
    kube.patch("pods", "shell", {"status": {"phase": "Running"}}, NS, sub="status")
    for args, verb in (
        (("exec", "shell", "--", "ls"), "exec"),
        (("cp", "shell:/etc/hosts", "hosts"), "exec"),
        (("attach", "shell"), "attach"),
        (("port-forward", "pod/shell", "0:80"), "portforward"),
    ):
        result = kubectl(*args, ok=False)
        assert result.returncode != 0
        assert f"pods/{verb} is not supported by the lab API server" in result.stderr, result.stderr
        assert "NotFound" not in result.stderr
    assert "Error from server (MethodNotAllowed)" in kubectl("exec", "shell", "--", "ls", ok=False).stderr
    code, body = http(f"{server.url}/api/v1/namespaces/{NS}/pods/shell/exec?command=ls", "POST")
    assert (code, body["reason"], body["code"]) == (405, "MethodNotAllowed", 405)
    assert http(f"{server.url}/api/v1/namespaces/{NS}/pods/shell/nosuch")[0] == 404


@needs_kubectl
@pytest.mark.integration
def test_foreground_cascade_waits_for_blocking_dependents(kubectl: Kubectl, kube: KubeClient) -> None:
    owner = kube.create("configmaps", _cm("fg-owner"), NS)
    other = kube.create("configmaps", _cm("fg-other"), NS)
    kube.create("configmaps", _cm("fg-held", owners=[_ref(owner, True)], finalizers=["lab.test/hold"]), NS)
    kube.create("configmaps", _cm("fg-loose", owners=[_ref(owner, False)]), NS)
    kube.create("configmaps", _cm("fg-shared", owners=[_ref(owner, True), _ref(other, True)]), NS)
    kube.create("configmaps", _cm("fg-child", owners=[_ref(owner, True)]), NS)
    waiting = subprocess.Popen(
        kubectl.argv("delete", "configmap", "fg-owner", "--cascade=foreground", "--timeout=30s"),
        env=kubectl.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        held = wait_for(
            lambda: (
                (o := kube.get_or_none("configmaps", "fg-held", NS))
                and o["metadata"].get("deletionTimestamp")
                and o
            ),
            10,
        )
        assert held["metadata"]["finalizers"] == ["lab.test/hold"]
        wait_for(lambda: kube.get_or_none("configmaps", "fg-loose", NS) is None, 5)
        wait_for(lambda: kube.get_or_none("configmaps", "fg-child", NS) is None, 5)
        shared = wait_for(
            lambda: (
                (o := kube.get("configmaps", "fg-shared", NS))
                and len(o["metadata"]["ownerReferences"]) == 1
                and o
            ),
            5,
        )
        assert shared["metadata"]["ownerReferences"][0]["uid"] == other["metadata"]["uid"]
        assert shared["metadata"].get("deletionTimestamp") is None, (
            "a dependent another live owner holds stays"
        )
        time.sleep(1.0)
        waiting_owner = kube.get("configmaps", "fg-owner", NS)
        assert waiting_owner["metadata"]["deletionTimestamp"]
        assert "foregroundDeletion" in waiting_owner["metadata"]["finalizers"]
        assert waiting.poll() is None, "kubectl returned while a blocking dependent was still there"
        kube.request(
            "PATCH",
            f"/api/v1/namespaces/{NS}/configmaps/fg-held",
            [{"op": "remove", "path": "/metadata/finalizers"}],
            content_type="application/json-patch+json",
        )
        out, err = waiting.communicate(timeout=20)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    assert waiting.returncode == 0, err
    assert 'configmap "fg-owner" deleted' in out
    assert kube.get_or_none("configmaps", "fg-owner", NS) is None
    assert kube.get_or_none("configmaps", "fg-held", NS) is None
    assert kube.get_or_none("configmaps", "fg-shared", NS) is not None


@needs_kubectl
@pytest.mark.integration
def test_background_and_orphan_still_work(kubectl: Kubectl, kube: KubeClient) -> None:
    bg = kube.create("configmaps", _cm("bg-owner"), NS)
    kube.create("configmaps", _cm("bg-child", owners=[_ref(bg, True)]), NS)
    kubectl("delete", "configmap", "bg-owner", "--cascade=background")
    assert kube.get_or_none("configmaps", "bg-owner", NS) is None
    wait_for(lambda: kube.get_or_none("configmaps", "bg-child", NS) is None, 5)
    orphaner = kube.create("configmaps", _cm("or-owner"), NS)
    kube.create("configmaps", _cm("or-child", owners=[_ref(orphaner, True)]), NS)
    kubectl("delete", "configmap", "or-owner", "--cascade=orphan")
    time.sleep(1.0)
    child = kube.get("configmaps", "or-child", NS)
    assert not child["metadata"].get("ownerReferences")


def _first_event(server: InProcessServer, rv: str, **params: str) -> dict[str, Any]:
    query = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "2", **params}
    with requests.get(
        f"{server.url}/api/v1/namespaces/{NS}/configmaps", params=query, stream=True, timeout=10
    ) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line:
                return dict(json.loads(line))
    return {}


@pytest.mark.integration
def test_watch_from_a_version_older_than_the_window_is_gone(
    server: InProcessServer, kube: KubeClient
) -> None:
    old = kube.create("configmaps", _cm("w-old"), NS)["metadata"]["resourceVersion"]
    kube.create("configmaps", _cm("w-new"), NS)
    assert _first_event(server, old)["object"]["metadata"]["name"] == "w-new", "inside the window: replayed"
    time.sleep(WINDOW + 0.3)
    latest = kube.create("configmaps", _cm("w-latest"), NS)["metadata"]["resourceVersion"]
    event = _first_event(server, old)
    assert event["type"] == "ERROR"
    status = event["object"]
    assert (status["code"], status["reason"]) == (410, "Expired")
    assert status["message"].startswith(f"too old resource version: {old} (")
    assert _first_event(server, str(int(latest) - 1))["object"]["metadata"]["name"] == "w-latest"
    # The Python client's informer-style loop: a 410 means list again, then watch from the list.
    core = client.CoreV1Api(api_client(server.url, Path(tempfile.mkdtemp()) / "config"))
    listing = core.list_namespaced_config_map(NS)
    assert any(i.metadata.name == "w-latest" for i in listing.items)
    resumed = _first_event(server, listing.metadata.resource_version, timeoutSeconds="1")
    assert resumed.get("type") != "ERROR", resumed


@pytest.mark.integration
def test_bookmarks_keep_a_quiet_watcher_inside_the_window(server: InProcessServer, kube: KubeClient) -> None:
    start = kube.create("configmaps", _cm("bm-start"), NS)["metadata"]["resourceVersion"]
    seen: list[dict[str, Any]] = []

    def churn() -> None:
        for i in range(6):
            kube.create("configmaps", _cm(f"bm-other-{i}"), NS)
            time.sleep(0.3)

    writer = threading.Thread(target=churn)
    writer.start()
    for event in kube.watch("configmaps", NS, start, timeout_seconds=3, fields="metadata.name=bm-nothing"):
        seen.append(event)
    writer.join()
    assert seen and all(e["type"] == "BOOKMARK" for e in seen), seen
    last = seen[-1]["object"]["metadata"]["resourceVersion"]
    assert int(last) > int(start)
    time.sleep(WINDOW + 0.3)  # everything the watcher skipped is now older than the window
    again = list(kube.watch("configmaps", NS, last, timeout_seconds=1, fields="metadata.name=bm-nothing"))
    assert all(e["type"] == "BOOKMARK" for e in again), again
    expired = list(kube.watch("configmaps", NS, start, timeout_seconds=1))
    assert expired and expired[0]["type"] == "ERROR" and expired[0]["object"]["code"] == 410


@pytest.mark.integration
def test_remaining_item_count_on_pages_without_selectors(server: InProcessServer, kube: KubeClient) -> None:
    kube.create("namespaces", {"metadata": {"name": "paged"}})
    for i in range(5):
        kube.create("configmaps", _cm(f"p{i}", ns="paged", labels={"page": "yes"}), "paged")
    path = "/api/v1/namespaces/paged/configmaps"
    first = kube.request("GET", path, params={"limit": 2})
    assert [i["metadata"]["name"] for i in first["items"]] == ["p0", "p1"]
    assert first["metadata"]["remainingItemCount"] == 3
    second = kube.request("GET", path, params={"limit": 2, "continue": first["metadata"]["continue"]})
    assert second["metadata"]["remainingItemCount"] == 1
    last = kube.request("GET", path, params={"limit": 2, "continue": second["metadata"]["continue"]})
    assert [i["metadata"]["name"] for i in last["items"]] == ["p4"]
    assert "remainingItemCount" not in last["metadata"] and "continue" not in last["metadata"]
    selected = kube.request("GET", path, params={"limit": 2, "labelSelector": "page=yes"})
    assert selected["metadata"]["continue"] and "remainingItemCount" not in selected["metadata"]
    core = client.CoreV1Api(api_client(server.url, Path(tempfile.mkdtemp()) / "config"))
    assert core.list_namespaced_config_map("paged", limit=4).metadata.remaining_item_count == 1


# -- logs from a real kubelet ---------------------------------------------------------------------


class Node(KubeletNode):
    """An API server process and one kubelet process on a fresh folder, with log and kubectl helpers."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, NODE, verbose=False)

    def log(self, pod: str, **params: Any) -> tuple[int, Any]:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return http(f"{self.api.url}/api/v1/namespaces/{NS}/pods/{pod}/log?{query}")

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), "-n", NS, *args],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    with kubelet_node("test-fidelity-", Node) as lab_node:
        yield lab_node


def _pod(name: str, script: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}],
        },
    }


def _main(node: Node, pod: str) -> dict[str, Any]:
    statuses = (node.client.get("pods", pod, NS).get("status") or {}).get("containerStatuses") or [{}]
    return dict(statuses[0])


#: First run: two lines and exit 1; second run: two lines, a line longer than a CRI record, then sleep.
# stdout and stderr are two pipes, read apart (as by a runtime): the pause after the stderr
# line lets it reach the log before the last stdout lines, whose order the test checks.
RESTARTING = (
    'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; echo "run $n"; echo "warn $n" >&2; '
    "sleep 0.5; "
    'if [ $n -lt 2 ]; then exit 1; fi; head -c 40000 /dev/zero | tr "\\0" x; echo; echo "end $n"; sleep 600'
)


@needs_kubectl
@pytest.mark.integration
def test_logs_previous_run_timestamps_and_since(node: Node) -> None:
    node.client.create("pods", _pod("restarts", RESTARTING), NS)
    wait_for(
        lambda: (
            _main(node, "restarts").get("restartCount") == 1
            and "running" in _main(node, "restarts").get("state", {})
        ),
        20,
    )
    current = wait_for(lambda: (r := node.log("restarts")) and "end 2" in str(r[1]) and r, 10)[1]
    lines = current.splitlines()
    assert set(lines) == {"run 2", "warn 2", "x" * 40000, "end 2"}, [line[:20] for line in lines]
    code, previous = node.log("restarts", previous="true")
    assert code == 200 and sorted(previous.splitlines()) == ["run 1", "warn 1"]
    assert sorted(node.kubectl("logs", "restarts", "--previous").stdout.splitlines()) == ["run 1", "warn 1"]
    raw = (node.logs / f"{NS}_restarts.log").read_bytes().splitlines()
    assert all(_STAMP.match(r) for r in raw) and any(r.endswith(b" stdout F end 2") for r in raw)
    assert sum(b" stdout P " in r for r in raw) == 2
    assert node.log("restarts", tailLines=1)[1] == "end 2\n"
    assert node.log("restarts", tailLines=1, limitBytes=3)[1] == "end"

    stamped = node.log("restarts", timestamps="true", tailLines=1)[1]
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.\d{9}Z end 2\n", stamped)
    assert match, stamped
    at = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    assert abs(time.time() - at.timestamp()) < 60
    since = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    later = datetime.fromtimestamp(at.timestamp() + 1, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "end 2" in node.log("restarts", sinceTime=since)[1]
    assert "end 2" not in node.log("restarts", sinceTime=later)[1]
    kubectl_stamped = node.kubectl("logs", "restarts", "--timestamps", "--tail=1").stdout
    assert kubectl_stamped == stamped
    time.sleep(max(0.0, at.timestamp() + 2.5 - time.time()))
    assert node.log("restarts", sinceSeconds=1) == (200, "")
    assert node.kubectl("logs", "restarts", "--since=1s").stdout == ""
    assert "end 2" in node.kubectl("logs", "restarts", "--since=1h").stdout
    code, both = node.log("restarts", sinceSeconds=5, sinceTime=since)
    assert code == 422 and "at most one of `sinceTime` or `sinceSeconds`" in both["message"]
    assert node.log("restarts", sinceSeconds=0)[0] == 422

    node.client.create("pods", _pod("calm", "echo calm; sleep 600"), NS)
    wait_for(lambda: node.log("calm")[1] == "calm\n", 15)
    code, refused = node.log("calm", previous="true")
    assert (code, refused["reason"]) == (400, "BadRequest")
    assert refused["message"] == 'previous terminated container "main" in pod "calm" not found'
    said = node.kubectl("logs", "calm", "-p")
    assert said.returncode != 0
    assert 'previous terminated container "main" in pod "calm" not found' in said.stderr

    node.client.delete("pods", "restarts", NS)
    wait_for(lambda: node.client.get_or_none("pods", "restarts", NS) is None, 15)
    assert not previous_log(node.logs / f"{NS}_restarts.log").exists(), (
        "a new pod of the name has no previous run"
    )


@pytest.mark.integration
def test_follow_streams_lines_as_they_are_printed(node: Node) -> None:
    script = "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done"
    node.client.create("pods", _pod("ticker", script), NS)
    wait_for(lambda: "tick 2" in str(node.log("ticker")[1]), 15)
    url = f"{node.api.url}/api/v1/namespaces/{NS}/pods/ticker/log"
    got = b""
    began = time.monotonic()
    with requests.get(url, params={"follow": "true", "timestamps": "true"}, stream=True, timeout=10) as resp:
        for chunk in resp.iter_content(chunk_size=None):
            got += chunk
            if time.monotonic() - began > 1.5:
                break
    lines = got.splitlines()
    assert len(lines) >= 8, lines
    assert all(re.fullmatch(rb"\S+Z tick \d+", line) for line in lines[:-1]), lines[:3]
    numbers = [int(line.rsplit(b" ", 1)[1]) for line in lines[:-1]]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    node.client.delete("pods", "ticker", NS)


# -- logs: large files, rotation, the end of a follow, a recreated pod ------------------------------


@dataclass
class LogServer:
    """An in-process API server whose pod logs the test writes (no kubelet runs its pods)."""

    server: InProcessServer
    kube: KubeClient
    logs: Path

    def url(self, pod: str) -> str:
        return f"{self.server.url}/api/v1/namespaces/{NS}/pods/{pod}/log"

    def idle_pod(self, name: str) -> Path:
        """A pod bound to a node that does not exist; returns the path of its log."""
        pod = _pod(name, "true")
        pod["spec"]["nodeName"] = "no-such-node"
        self.kube.create("pods", pod, NS)
        return self.logs / f"{NS}_{name}.log"


@pytest.fixture(scope="module")
def log_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LogServer]:
    logs = tmp_path_factory.mktemp("pod-logs")
    srv = InProcessServer(Settings(port=0, logs_dir=logs))
    yield LogServer(srv, KubeClient(srv.url), logs)
    srv.close()


def _cri(lines: range, stamp: bytes = b"2026-01-02T03:04:05.000000001Z") -> bytes:
    return b"".join(b"%s stdout F line %07d\n" % (stamp, i) for i in lines)


@pytest.mark.integration
def test_tail_of_a_large_log_reads_only_its_end(log_server: LogServer) -> None:
    path = log_server.idle_pod("big")
    # 400 000 lines (about 24 MB), then a line longer than the first block, in partial records
    long_line = b"y" * 70_000
    parts = [long_line[i : i + 16384] for i in range(0, len(long_line), 16384)]
    path.write_bytes(
        _cri(range(400_000))
        + b"".join(
            b"2026-01-02T03:04:06.000000001Z stdout %s %s\n" % (b"F" if i == len(parts) - 1 else b"P", part)
            for i, part in enumerate(parts)
        )
    )
    url = log_server.url("big")
    began = time.monotonic()
    tail = requests.get(url, params={"tailLines": "3"}, timeout=30)
    took = time.monotonic() - began
    assert tail.status_code == 200
    assert tail.content == b"line 0399998\nline 0399999\n" + long_line + b"\n"
    assert took < 0.5, f"a tail of 3 lines took {took:.2f}s: the whole file was read"
    stamped = requests.get(url, params={"tailLines": "1", "timestamps": "true"}, timeout=30).content
    assert stamped == b"2026-01-02T03:04:06.000000001Z " + long_line + b"\n"
    assert requests.get(url, params={"tailLines": "0"}, timeout=30).content == b""

    done: dict[str, float] = {}

    def read_all() -> None:
        began = time.monotonic()
        body = requests.get(url, timeout=60).content
        done["whole"] = time.monotonic() - began
        done["lines"] = body.count(b"\n")

    reader = threading.Thread(target=read_all)
    reader.start()
    time.sleep(0.05)
    began = time.monotonic()
    log_server.kube.get("pods", "big", NS)
    other = time.monotonic() - began
    reader.join(60)
    assert done["lines"] == 400_001
    assert other < max(0.3, done["whole"] / 2), (
        f"a GET took {other:.2f}s while the whole log was read ({done['whole']:.2f}s): the event loop waited"
    )


def _exit_container(kube: KubeClient, pod: str) -> None:
    state = {"terminated": {"exitCode": 0, "reason": "Completed"}}
    status = {"status": {"containerStatuses": [{"name": "main", "state": state, "ready": False}]}}
    kube.request(
        "PATCH",
        f"/api/v1/namespaces/{NS}/pods/{pod}/status",
        status,
        content_type="application/merge-patch+json",
    )


@pytest.mark.integration
def test_follow_goes_on_across_size_rotation_and_ends_when_the_container_exits(log_server: LogServer) -> None:
    path = log_server.idle_pod("rotating")
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pump = LogPump("rotating", {out_r: b"stdout", err_r: b"stderr"}, path, max_size=16 * 1024)
    pump.start()
    os.write(out_w, b"before 1\nbefore 2\n")
    wait_for(lambda: path.stat().st_size > 0, 5)
    got: list[bytes] = []
    ended = threading.Event()

    def follow() -> None:
        params = {"follow": "true", "tailLines": "1"}
        with requests.get(log_server.url("rotating"), params=params, stream=True, timeout=30) as resp:
            got.extend(resp.iter_content(chunk_size=None))
        ended.set()

    follower = threading.Thread(target=follow)
    follower.start()
    time.sleep(0.3)
    for burst in range(10):  # about 2.5 rotations' worth, written while the follower polls
        os.write(out_w, b"".join(b"line %04d\n" % (burst * 100 + i) for i in range(100)))
        time.sleep(0.1)
    os.close(out_w)
    os.close(err_w)
    pump.join(5)
    assert len(rotated_logs(path)) >= 2, "the writer rotated the file"
    time.sleep(0.5)
    assert not ended.is_set(), "a running container's log is followed until it exits"
    _exit_container(log_server.kube, "rotating")
    assert ended.wait(5), "follow did not end when the container exited"
    follower.join(5)
    lines = b"".join(got).splitlines()
    assert lines == [b"before 2"] + [b"line %04d" % i for i in range(1000)]


@needs_kubectl
@pytest.mark.integration
def test_kubectl_logs_follow_ends_when_the_container_exits(node: Node) -> None:
    pod = _pod("finishing", "echo one; sleep 1; echo two")
    pod["spec"]["restartPolicy"] = "Never"
    node.client.create("pods", pod, NS)
    wait_for(lambda: "one" in str(node.log("finishing")[1]), 15)
    began = time.monotonic()
    followed = node.kubectl("logs", "-f", "finishing")
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout == "one\ntwo\n"
    assert time.monotonic() - began < 10
    done = node.kubectl("logs", "-f", "finishing")
    assert (done.returncode, done.stdout) == (0, "one\ntwo\n"), "an exited container's follow ends at once"
    node.client.delete("pods", "finishing", NS)


@pytest.mark.integration
def test_a_pod_recreated_under_the_same_name_starts_an_empty_log(node: Node) -> None:
    stale = node.logs / f"{NS}_again.log"
    node.logs.mkdir(parents=True, exist_ok=True)
    stale.write_text("stale line of the pod before (its node was lost)\n")
    node.client.create("pods", _pod("again", "echo fresh; sleep 600"), NS)
    wait_for(lambda: node.log("again")[1] == "fresh\n", 15)
    retired = list((node.logs / "previous").glob(f"{NS}_again.*.log"))
    assert [p.read_text() for p in retired] == ["stale line of the pod before (its node was lost)\n"]
    node.client.delete("pods", "again", NS)
