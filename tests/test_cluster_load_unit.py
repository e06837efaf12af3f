"""The harness side of the distributed load, without a lab: manifests, settings, mirror, life().

A fake API server (a real HTTP server on a free loopback port) answers the few REST calls
``ClusterLoadRun`` makes and plays the load master behind the service proxy path.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from loadgen.cluster_load import ClusterLoadRun
from loadgen.cluster_manifests import (
    TEMPLATES,
    load_id,
    object_name,
    owned_by,
    owner_reference,
    render,
    render_all,
    service_env,
)
from loadgen.cluster_mirror import JournalMirror, collection_view
from loadgen.cluster_objects import lab_ports
from loadgen.errors import LoadgenError
from loadgen.shipping import user_count
from orchestration.configuration import check_configuration, load_settings
from orchestration.errors import OrchestrationError

PASSWORDS = ["pw-alpha-123", "pw-beta-456", "pw-gamma-789"]


@pytest.fixture()
def tenants_file(tmp_path: Path) -> Path:
    entries = []
    for i, password in enumerate(PASSWORDS):
        secret = tmp_path / f"secret-{i}"
        secret.write_text(password)
        entries.append(
            {
                "name": f"tenant-{i}",
                "server": "127.0.0.1",
                "port": 20000 + i,
                "database": "harness",
                "user": "harness",
                "password_file": str(secret),
                "lab_id": "lab-0123456789ab",
            }
        )
    path = tmp_path / "tenants.json"
    path.write_text(json.dumps({"tenants": entries}))
    return path


def _objects(tenants_file: Path, workers: int = 2) -> Any:
    return render_all(
        run_id="20261126T231501.123Z-pod-eviction",
        namespace="tenants",
        image="mssql-chaos-harness/harness:0.1.0",
        tenants_file=tenants_file,
        workers=workers,
        master_port=20198,
        web_port=20199,
        write_rate=20,
        write_timeout=0.5,
        connect_timeout=0.5,
        bind_host="127.0.0.1",
    )


# -- manifests ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "k", "u"), [(1, 4, 4), (4, 4, 4), (5, 2, 6), (6, 3, 6), (7, 3, 9), (50, 8, 56)]
)
def test_users_are_a_multiple_of_workers_and_cover_every_tenant(n: int, k: int, u: int) -> None:
    assert user_count(n, k) == u
    assert user_count(n, k) % k == 0 and user_count(n, k) >= n


def test_every_placeholder_is_rendered_and_the_args_say_what_the_design_says(tenants_file: Path) -> None:
    objects = _objects(tenants_file)
    text = yaml.safe_dump_all([objects.secret, objects.service, objects.master, *objects.workers])
    assert "${" not in text
    ident = load_id("20261126T231501.123Z-pod-eviction")
    name = object_name(ident)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", ident)
    # A Job's pods are named <job>-<5 characters>, at most 63: a Job name may have 57, even for
    # the longest load id and worker 9999.
    longest = object_name(load_id("x" * 200))
    assert len(load_id("x" * 200)) == 31 and len(f"{longest}-worker-9999") <= 57
    service = objects.service
    assert service["metadata"]["name"] == name
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        "master": (20198, 20198),
        "web": (20199, 20199),
    }
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "master"
    master = objects.master["spec"]
    assert master["backoffLimit"] == 0 and master["template"]["spec"]["restartPolicy"] == "Never"
    args = master["template"]["spec"]["containers"][0]["args"]
    for flag, value in [
        ("--master-bind-port", "20198"),
        ("--web-port", "20199"),
        ("--expect-workers", "2"),
        ("--users", "4"),
        ("--spawn-rate", "4"),
        ("--run-dir", "/var/run/harness/run"),
        ("--run-id", "20261126T231501.123Z-pod-eviction"),
        ("--write-rate", "20"),
        ("--load-workers", "2"),
        ("--tenant-count", "3"),
        ("--orphan-after", "60"),
    ]:
        assert args[args.index(flag) + 1] == value, (flag, args)
    assert "--master" in args and "--autostart" in args
    # The master needs no tenants: no tenants file, nothing of the Secret mounted.
    assert "--tenants-file" not in args
    assert master["ttlSecondsAfterFinished"] == 300
    # One Job per worker, each a single pod that is never retried: a lost worker fails only
    # its own Job, so the Job controller never deletes the other workers' pods.
    assert [job["kind"] for job in objects.workers] == ["Job", "Job"]
    assert [job["metadata"]["name"] for job in objects.workers] == [f"{name}-worker-0", f"{name}-worker-1"]
    for job in objects.workers:
        assert len(job["metadata"]["name"]) <= 57
        spec = job["spec"]
        assert (spec["parallelism"], spec["completions"], spec["backoffLimit"]) == (1, 1, 0)
        assert spec["ttlSecondsAfterFinished"] == 300
        assert "ownerReferences" not in job["metadata"]  # added once the master's uid is known
        pod = spec["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
        wargs = pod["containers"][0]["args"]
        assert wargs[wargs.index("--master-host") + 1] == f"$({service_env(name)}_SERVICE_HOST)"
        assert wargs[wargs.index("--master-port") + 1] == "20198"
        assert wargs[wargs.index("--tenants-file") + 1] == "/var/run/harness-tenants/tenants.json"
        assert wargs[wargs.index("--load-workers") + 1] == "2"
        assert "--worker" in wargs
        assert spec["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
        assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
        container = pod["containers"][0]
        assert container["resources"]["requests"] and container["resources"]["limits"]
    assert service_env(name) == name.upper().replace("-", "_")
    for obj in (objects.service, objects.master, *objects.workers, objects.secret):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "mssql-harness-load"
        assert labels["app.kubernetes.io/instance"] == ident
    container = master["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    # K follows load_workers: five workers, five Jobs, five names.
    five = _objects(tenants_file, workers=5).workers
    assert len({job["metadata"]["name"] for job in five}) == len(five) == 5
    assert all(job["spec"]["backoffLimit"] == 0 and job["spec"]["completions"] == 1 for job in five)


def test_a_missing_placeholder_or_a_bad_number_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text('a: "${ONE}"\nb: ${TWO}\n')
    with pytest.raises(LoadgenError, match=r"placeholder \$\{TWO\} has no value") as err:
        render("x.yaml", {"ONE": "1"}, folder=tmp_path)
    assert "\n" not in str(err.value)
    (tmp_path / "y.yaml").write_text("port: ${MASTER_PORT}\n")
    with pytest.raises(LoadgenError, match="MASTER_PORT='80; x' must be a number"):
        render("y.yaml", {"MASTER_PORT": "80; x"}, folder=tmp_path)
    # A value cannot break out of its quoted string.
    (tmp_path / "z.yaml").write_text('name: "${NAME}"\n')
    assert render("z.yaml", {"NAME": 'a"\nb: c'}, folder=tmp_path) == [{"name": 'a"\nb: c'}]


def test_the_templates_pass_yamllint() -> None:
    yamllint = Path(".venv/bin/yamllint")
    if not yamllint.exists():
        pytest.skip("yamllint is not installed (make setup)")
    done = subprocess.run(
        [str(yamllint), "-s", "-c", "deploy/ci/yamllint.yml", str(TEMPLATES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_passwords_are_only_in_the_secret(tenants_file: Path) -> None:
    objects = _objects(tenants_file)
    data = objects.secret["data"]
    import base64

    decoded = {k: base64.b64decode(v).decode() for k, v in data.items()}
    assert [decoded[f"{i}.password"] for i in range(3)] == PASSWORDS
    inner = json.loads(decoded["tenants.json"])["tenants"]
    assert [e["password_file"] for e in inner] == [f"/var/run/harness-tenants/{i}.password" for i in range(3)]
    assert [e["name"] for e in inner] == ["tenant-0", "tenant-1", "tenant-2"]
    assert not any(p in decoded["tenants.json"] for p in PASSWORDS)
    rest = json.dumps([objects.service, objects.master, *objects.workers])
    assert not any(p in rest for p in PASSWORDS)
    # The master mounts nothing of the Secret (it is created before it, and needs no tenants).
    pod = objects.master["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["harness"]
    assert [m["mountPath"] for m in pod["containers"][0]["volumeMounts"]] == ["/var/run/harness"]


def test_the_orphan_window_and_the_ttl_are_rendered_as_given(tenants_file: Path) -> None:
    objects = render_all(
        run_id="r",
        namespace="tenants",
        image="x/y:1",
        tenants_file=tenants_file,
        workers=1,
        master_port=1,
        web_port=2,
        write_rate=20,
        write_timeout=0.5,
        connect_timeout=0.5,
        orphan_after=75,
        job_ttl=30,
    )
    args = objects.master["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--orphan-after") + 1] == "75"
    assert [j["spec"]["ttlSecondsAfterFinished"] for j in (objects.master, *objects.workers)] == [30, 30]


def test_an_owner_reference_names_the_created_job_and_refuses_one_without_uid() -> None:
    job = {"kind": "Job", "metadata": {"name": "harness-load-x-master", "uid": "u-1"}}
    reference = owner_reference(job)
    assert reference == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": "harness-load-x-master",
        "uid": "u-1",
        "blockOwnerDeletion": False,
    }
    service = {"kind": "Service", "metadata": {"name": "s", "labels": {"a": "b"}}, "spec": {}}
    owned = owned_by(service, reference)
    assert owned["metadata"] == {"name": "s", "labels": {"a": "b"}, "ownerReferences": [reference]}
    assert "ownerReferences" not in service["metadata"]  # a copy: the rendered object is unchanged
    with pytest.raises(LoadgenError, match="without a uid") as err:
        owner_reference({"kind": "Job", "metadata": {"name": "m"}})
    assert "\n" not in str(err.value)


# -- settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configuration", "message"),
    [
        ({"load_workers": 0}, "'load_workers' must be a whole number at least 1, got 0"),
        ({"load_workers": "two"}, "'load_workers' must be a whole number at least 1"),
        ({"load_workers": True}, "'load_workers' must be a whole number at least 1"),
        ({"load_mode": "pods"}, "'load_mode' must be one of local, cluster"),
        ({"load_mode": "cluster", "load_workers": 33}, "load_workers 33 is over load_workers_max 32"),
        ({"load_mode": "cluster", "load_workers": 5, "load_workers_max": 4}, "over load_workers_max 4"),
        ({"load_mode": "local", "load_workers": 4}, "load_workers is 4 but load_mode is local"),
        ({"load_workers": 2}, "set load_mode to cluster"),
    ],
)
def test_bad_load_settings_are_one_line_each(configuration: dict[str, Any], message: str) -> None:
    with pytest.raises(OrchestrationError) as err:
        load_settings(check_configuration(configuration))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_load_settings_defaults() -> None:
    local = load_settings(check_configuration({"namespace": "tenants", "load_workers": 1}))
    assert (local.mode, local.workers, local.workers_max, local.namespace) == ("local", 1, 32, "tenants")
    cluster = load_settings(
        check_configuration(
            {"namespace": "tenants", "load_mode": "cluster", "load_workers": "4", "load_image": ""}
        )
    )
    assert (cluster.workers, cluster.namespace) == (4, "tenants")
    assert cluster.image.startswith("mssql-chaos-harness/harness:")
    given = {"load_mode": "cluster", "load_namespace": "load", "load_image": "x/y:1"}
    other = load_settings(check_configuration(given))
    assert (other.namespace, other.image) == ("load", "x/y:1")


def test_every_experiment_with_a_write_rate_declares_the_load_keys() -> None:
    for path in sorted(Path("experiments").glob("*.json")):
        configuration = json.loads(path.read_text())["configuration"]
        if "write_rate" not in configuration:
            continue
        assert configuration["load_mode"] == {"type": "env", "key": "HARNESS_LOAD_MODE", "default": "local"}
        assert configuration["load_workers"]["key"] == "HARNESS_LOAD_WORKERS"
        assert configuration["load_workers"]["default"] == 1
        assert {"load_workers_max", "load_namespace", "load_image"} <= set(configuration), path


def test_lab_ports_come_from_the_top_of_the_block() -> None:
    ports = lab_ports("40000-40199", taken={40199})
    assert len(ports) == 2 and all(40000 <= p < 40199 for p in ports) and ports[0] > ports[1]
    with pytest.raises(LoadgenError, match="not LOW-HIGH"):
        lab_ports("garbage", set())


# -- the mirror and the collection ----------------------------------------------------------------


def test_the_mirror_appends_complete_lines_only_and_never_twice(tmp_path: Path) -> None:
    mirror = JournalMirror(tmp_path / "journal")
    assert mirror.wanted({"w1.jsonl": 10, "../evil.jsonl": 5, "x.txt": 3}) == [("w1.jsonl", 0)]
    assert mirror.refused == {"../evil.jsonl", "x.txt"}
    assert mirror.append("w1.jsonl", 0, b'{"a":1}\n{"b":') == 8
    assert mirror.append("w1.jsonl", 0, b'{"a":1}\n{"b":2}\n') == 0  # a stale answer for offset 0
    assert mirror.wanted({"w1.jsonl": 16}) == [("w1.jsonl", 8)]
    assert mirror.append("w1.jsonl", 8, b'{"b":2}\n') == 8
    assert (tmp_path / "journal" / "w1.jsonl").read_bytes() == b'{"a":1}\n{"b":2}\n'
    assert mirror.shortfall({"w1.jsonl": 16}) == {} and mirror.shortfall({"w1.jsonl": 20}) == {"w1.jsonl": 4}
    assert mirror.append("../evil.jsonl", 0, b"x\n") == 0 and not (tmp_path / "evil.jsonl").exists()


def test_collection_view_names_tenants_and_fails_closed() -> None:
    names = ["t0", "t1", "t2"]
    raw = {
        "workers": [
            {"worker": "a", "index": 0, "batches": 3, "contiguous": True, "missing": [], "records": 30,
             "final": {"batches": 3, "records": 30}, "complete": True, "tenants": [0, 2]},
            {"worker": "b", "index": 1, "batches": 2, "contiguous": False, "missing": [[1, 1]], "records": 10,
             "final": {"batches": 3, "records": 15}, "complete": False, "tenants": [1]},
        ]
    }  # fmt: skip
    view = collection_view(raw, 2, names)
    assert view["expected_workers"] == 2 and view["complete"] is False
    first, second = view["workers"]
    assert first["tenants"] == ["t0", "t2"] and first["complete"] and first["reason"] is None
    assert second["tenants"] == ["t1"] and not second["complete"] and "1-1" in second["reason"]
    assert second["missing"] == [[1, 1]] and second["final"] == {"batches": 3, "records": 15}
    # The master says complete, but the totals disagree: not complete.
    lying = {"workers": [dict(raw["workers"][0], records=29)]}
    assert collection_view(lying, 1, names)["complete"] is False
    # An expected worker missing from the report, or no report: not complete.
    assert collection_view({"workers": [raw["workers"][0]]}, 2, names)["complete"] is False
    assert collection_view(None, 2, names) == {"expected_workers": 2, "complete": False, "workers": []}
    never = collection_view({"workers": [{"worker": None, "index": 1, "tenants": [1]}]}, 2, names)
    assert never["workers"][0]["reason"] == "never seen by the master"


# -- ClusterLoadRun against a fake API server and master ------------------------------------------


class FakeCluster:
    """The REST calls of ClusterLoadRun, and a load master behind the service proxy path."""

    def __init__(self, workers: int) -> None:
        self.lock = threading.Lock()
        self.objects: dict[str, dict[str, Any]] = {}
        self.created: list[str] = []
        self.posted: list[str] = []
        self.files: dict[str, bytes] = {}
        self.master = "uuid-1"
        self.connected = workers
        self.workers = workers
        self.proxy_fails = False
        self.give_uid = True
        self.master_phase = "Running"
        self.collection: dict[str, Any] = {"workers": []}
        self.complete = False
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def worker_jobs(self) -> int:
        """How many worker Jobs exist: the master can see no more workers than that."""
        jobs = [o for o in self.objects.values() if o["kind"] == "Job"]
        return sum(1 for job in jobs if job["metadata"]["labels"]["app.kubernetes.io/component"] == "worker")

    def pods(self, selector: str) -> list[dict[str, Any]]:
        out = []
        jobs = [o for o in self.objects.values() if o["kind"] == "Job"]
        for job in jobs:
            component = job["metadata"]["labels"]["app.kubernetes.io/component"]
            if "component=" in selector and f"component={component}" not in selector:
                continue
            count = job["spec"].get("parallelism", 1)
            phase = self.master_phase if component == "master" else "Running"
            for i in range(count):
                name = f"{job['metadata']['name']}-{i}"
                out.append({"metadata": {"name": name}, "status": {"phase": phase}})
        return out

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes | dict[str, Any]) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length)) if length else None

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                if "/proxy/harness/" in url.path:
                    return self._proxy("GET", url.path.split("/proxy/harness/", 1)[1], query)
                if url.path.endswith("/configmaps/lab-identity"):
                    return self._send(404, {"kind": "Status", "message": "not found"})
                if url.path.endswith("/pods"):
                    with fake.lock:
                        return self._send(200, {"items": fake.pods(query["labelSelector"][0])})
                if url.path.endswith("/log"):
                    return self._send(200, b"the last line\n")
                return self._send(404, {"message": "unknown"})

            def do_POST(self) -> None:
                url = urlparse(self.path)
                body = self._body()
                if "/proxy/harness/" in url.path:
                    return self._proxy("POST", url.path.split("/proxy/harness/", 1)[1], {})
                with fake.lock:
                    key = f"{body['kind']}/{body['metadata']['name']}"
                    if fake.give_uid:
                        body["metadata"]["uid"] = f"uid-{len(fake.created)}"
                    fake.objects[key] = body
                    fake.created.append(key)
                return self._send(201, body)

            def do_DELETE(self) -> None:
                self._body()
                kind = {"secrets": "Secret", "services": "Service", "jobs": "Job"}[self.path.split("/")[-2]]
                with fake.lock:
                    fake.objects.pop(f"{kind}/{self.path.split('/')[-1]}", None)
                return self._send(200, {"kind": "Status"})

            def _proxy(self, method: str, rest: str, query: dict[str, list[str]]) -> None:
                with fake.lock:
                    if fake.proxy_fails or "Job/" not in "".join(fake.objects):
                        return self._send(503, {"kind": "Status", "message": "no endpoints available"})
                    if method == "POST":
                        fake.posted.append(rest)
                        if rest == "stop":
                            fake.on_stop()
                        return self._send(202, {})
                    if rest == "status":
                        return self._send(
                            200,
                            {
                                "master": fake.master,
                                "state": "running",
                                "expected_workers": fake.workers,
                                "connected": min(fake.connected, fake.worker_jobs()),
                                "files": {k: len(v) for k, v in fake.files.items()},
                                "collection": fake.collection,
                                "complete": fake.complete,
                            },
                        )
                    name = rest.split("/", 1)[1]
                    if name not in fake.files:
                        return self._send(404, b"no such file")
                    offset = int(query.get("offset", ["0"])[0])
                    return self._send(200, fake.files[name][offset:])

        return Handler

    def on_stop(self) -> None:
        entries = []
        for w in range(self.workers):
            entries.append(
                {"worker": f"pod{w}_abc", "index": w, "batches": 1, "contiguous": True, "missing": [],
                 "records": 2, "final": {"batches": 1, "records": 2}, "complete": True, "tenants": [w]}
            )  # fmt: skip
        self.collection = {"workers": entries}
        self.complete = True


class HttpTransport:
    """Plain HTTP to the fake (the real one goes through the kubernetes client)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def request(
        self, method: str, path: str, *, query: Any = None, body: Any = None, timeout: float = 5.0
    ) -> tuple[int, bytes]:
        url = self.base + path + ("?" + "&".join(f"{k}={v}" for k, v in query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError as exc:
            raise LoadgenError(f"{method} {path}: {exc}") from None


@pytest.fixture()
def fake() -> Any:
    cluster = FakeCluster(workers=2)
    yield cluster
    cluster.close()


def _run(tenants_file: Path, tmp_path: Path, fake: FakeCluster, **kwargs: Any) -> ClusterLoadRun:
    return ClusterLoadRun(
        tenants_file,
        tmp_path / "run",
        "20261126T231501.123Z-pod-eviction",
        workers=2,
        namespace="tenants",
        image="mssql-chaos-harness/harness:0.1.0",
        transport=HttpTransport(fake.base),
        **{"ready_timeout": 3.0, "stop_timeout": 3.0, "delete_timeout": 3.0, "interval": 0.05, **kwargs},
    )


def _line(tenant: str, seq: int) -> bytes:
    return (
        json.dumps({"kind": "write", "tenant": tenant, "writer": 0, "seq": seq, "start": 1.0, "end": 1.1,
                    "latency": 0.1, "outcome": "ok"}) + "\n"
    ).encode()  # fmt: skip


def _wait(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_run_creates_mirrors_stops_and_deletes(
    tenants_file: Path, tmp_path: Path, fake: FakeCluster
) -> None:
    load = _run(tenants_file, tmp_path, fake)
    load.start()
    try:
        # The master Job first; the Secret, the Service and the workers (after the Service: they
        # need its link variables) name it as their owner, so its deletion takes them all.
        assert [k.split("/")[0] for k in fake.created] == ["Job", "Secret", "Service", "Job", "Job"]
        assert fake.created[0].endswith("-master")
        assert [k.rsplit("-", 2)[-2:] for k in fake.created[3:]] == [["worker", "0"], ["worker", "1"]]
        master = fake.objects[fake.created[0]]["metadata"]
        assert master["uid"] == "uid-0" and "ownerReferences" not in master
        for key in fake.created[1:]:
            assert fake.objects[key]["metadata"]["ownerReferences"] == [
                {"apiVersion": "batch/v1", "kind": "Job", "name": master["name"], "uid": "uid-0",
                 "blockOwnerDeletion": False}
            ], key  # fmt: skip
        for key in (fake.created[0], *fake.created[3:]):
            assert fake.objects[key]["spec"]["ttlSecondsAfterFinished"] == 300
        args = fake.objects[fake.created[0]]["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--orphan-after") + 1] == "60"
        assert load.running() and load.ports == (5557, 8089)
        mirrored = tmp_path / "run" / "journal" / "pod0_abc.jsonl"
        with fake.lock:
            fake.files["pod0_abc.jsonl"] = _line("tenant-0", 0) + _line("tenant-0", 1)[:20]
        _wait(lambda: mirrored.exists() and mirrored.read_bytes() == _line("tenant-0", 0))
        with fake.lock:
            fake.files["pod0_abc.jsonl"] = _line("tenant-0", 0) + _line("tenant-0", 1)
        _wait(lambda: mirrored.read_bytes() == _line("tenant-0", 0) + _line("tenant-0", 1))
        interim = load.life()["collection"]
        assert interim is not None and interim["complete"] is False
    finally:
        load.stop(grace=0.5)
    assert fake.posted == ["stop", "quit"] and not fake.objects
    life = load.life()
    assert life["mode"] == "cluster" and life["workers"] == 2 and life["namespace"] == "tenants"
    assert life["users"] == 4 and life["pid"] is None and life["died_at"] is None
    assert life["stop_requested_at"] <= life["ended_at"]
    collection = life["collection"]
    assert collection["complete"] is True, (collection, life["problems"])
    assert [w["tenants"] for w in collection["workers"]] == [["tenant-0"], ["tenant-1"]]
    assert life["problems"] == [] and load.problem() is None and not load.running()
    assert not any(p in json.dumps(life) for p in PASSWORDS)


def test_a_master_that_stops_answering_is_lost(tenants_file: Path, tmp_path: Path, fake: FakeCluster) -> None:
    load = _run(tenants_file, tmp_path, fake, lost_after=0.3)
    load.start()
    try:
        with fake.lock:
            fake.proxy_fails = True
        _wait(lambda: load.died_at is not None)
        problem = load.problem()
        assert problem is not None and "service proxy for 0.3 s" in problem and "\n" not in problem
        assert not load.running()
    finally:
        load.stop(grace=0.1)
    assert "stop" not in fake.posted and not fake.objects
    life = load.life()
    assert life["collection"]["complete"] is False and life["problems"]


def test_a_failed_master_pod_or_a_new_master_id_is_lost_at_once(
    tenants_file: Path, tmp_path: Path, fake: FakeCluster
) -> None:
    load = _run(tenants_file, tmp_path, fake, lost_after=60)
    load.start()
    try:
        with fake.lock:
            fake.proxy_fails = True
            fake.master_phase = "Failed"
        _wait(lambda: load.died_at is not None, timeout=3.0)
        assert "its pod ended" in (load.problem() or "")
    finally:
        load.stop(grace=0.1)
    fake.proxy_fails, fake.master_phase, fake.master = False, "Running", "uuid-1"
    again = _run(tenants_file, tmp_path / "again", fake)
    again.start()
    try:
        with fake.lock:
            fake.master = "uuid-2"
        _wait(lambda: again.died_at is not None, timeout=3.0)
        assert "changed from uuid-1 to uuid-2" in (again.problem() or "")
    finally:
        again.stop(grace=0.1)


def test_workers_that_never_connect_fail_the_start_and_leave_nothing(
    tenants_file: Path, tmp_path: Path, fake: FakeCluster
) -> None:
    fake.connected = 1
    load = _run(tenants_file, tmp_path, fake, ready_timeout=1.0)
    with pytest.raises(LoadgenError) as err:
        load.start()
    message = str(err.value)
    assert "only 1 of 2 load workers connected" in message and "worker pod(s)" in message
    assert "\n" not in message and not fake.objects and not load.running()
    assert load.stop() is None
    shutil.rmtree(tmp_path / "run", ignore_errors=True)


def test_a_master_job_created_without_uid_stops_the_start_and_is_deleted(
    tenants_file: Path, tmp_path: Path, fake: FakeCluster
) -> None:
    fake.give_uid = False
    load = _run(tenants_file, tmp_path, fake)
    with pytest.raises(LoadgenError, match="without a uid") as err:
        load.start()
    assert "\n" not in str(err.value)
    # Nothing else was created (no Secret without an owner), and the master Job is gone.
    assert [k.split("/")[0] for k in fake.created] == ["Job"] and not fake.objects
    assert not load.running()


def test_the_orphan_window_is_never_shorter_than_the_wait_for_the_master(
    tenants_file: Path, tmp_path: Path, fake: FakeCluster
) -> None:
    assert _run(tenants_file, tmp_path, fake, ready_timeout=3.0).orphan_after() == 60
    assert _run(tenants_file, tmp_path, fake, ready_timeout=90.5).orphan_after() == 91


def test_the_lab_kubelet_accepts_every_rendered_pod(tenants_file: Path) -> None:
    # The embedded lab runs the harness image only with the options it knows (its kubelet's
    # allow-list): a manifest option it lacks would leave the load pod unstartable on the lab.
    from lab.kubelet.images import check_harness_args

    objects = _objects(tenants_file)
    for job in (objects.master, *objects.workers):
        container = job["spec"]["template"]["spec"]["containers"][0]
        check_harness_args(container, list(container["args"]))
