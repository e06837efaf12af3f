"""The lab's capacity knobs, piece by piece: CPU cgroups, the commit CPU cost, the ``up`` options.

Nothing here starts a whole lab (``python -m lab up``): the cgroup is tried on a busy
process, the engine image runs standalone as the kubelet would start it (on a free port
outside the lab's engine range), and ``up`` is only called with values it must refuse.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import psutil
import pyodbc
import pytest

from lab import capacity, cluster, processes
from lab.__main__ import main as lab_main
from lab.api import start_api_server
from lab.capacity import NodeKnobs, remove_node_groups, resolve_knobs
from lab.cgroups import CpuGroup, cpu_quota_supported, group_name
from lab.engine import free_port
from lab.errors import LabError
from lab.kubeclient import KubeClient
from lab.kubelet import commit_cost
from lab.kubelet.__main__ import parse_args as kubelet_args
from lab.kubelet.config import KubeletConfig
from lab.kubelet.engine_image import MOUNT_PATH
from lab.kubelet.node import node_object
from lab.kubelet.podspec import pass_through_env
from lab.operator.reconcile import PORT_RANGE
from lab.paths import lab_dir, project_root
from tests.test_api_support import wait_for

# -- CPU cgroups ---------------------------------------------------------------------------------------


def _tree_cpu_seconds(root: psutil.Process) -> float:
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


@pytest.mark.integration
def test_a_cpu_group_holds_a_busy_tree_to_its_quota_and_leaves_nothing(tmp_path: Path) -> None:
    reason = cpu_quota_supported()
    if reason is not None:
        pytest.skip(reason)
    group = CpuGroup.create(group_name(tmp_path, "node-under-test"), 0.2)
    # The busy process forks a second busy one after it joined: both share the one quota.
    busy = subprocess.Popen(
        [sys.executable, "-c", "import os, time\ntime.sleep(0.3)\nos.fork()\nwhile True: pass"]
    )
    try:
        assert group.add(busy.pid)
        assert group.quota_cores() == pytest.approx(0.2)
        root = psutil.Process(busy.pid)
        wait_for(lambda: len(group.pids()) == 2, timeout=5)
        time.sleep(0.2)
        cpu0, usage0, wall0 = _tree_cpu_seconds(root), group.usage_seconds(), time.monotonic()
        time.sleep(1.5)
        cpu1, usage1, wall1 = _tree_cpu_seconds(root), group.usage_seconds(), time.monotonic()
        cores = (cpu1 - cpu0) / (wall1 - wall0)
        # Unlimited, two busy processes would use up to 2 cores; the quota keeps them near 0.2.
        assert 0.08 <= cores <= 0.3, f"the tree used {cores:.3f} cores under a 0.2-core quota"
        if usage0 is not None and usage1 is not None:
            assert 0.08 <= (usage1 - usage0) / (wall1 - wall0) <= 0.3
    finally:
        processes.kill_tree(busy.pid)
        busy.wait()
        group.remove()
    assert not any(folder.exists() for folder in group.folders)
    assert not group.path.parent.exists(), "the lab's group is removed with its last node"
    assert CpuGroup.open(group.name) is None


def test_cgroup_v2_layout_on_a_fake_tree(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset memory\n")
    assert "cgroup.controllers" in (cpu_quota_supported(tmp_path) or "")
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu memory\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    (tmp_path / "cgroup.procs").write_text("")
    assert cpu_quota_supported(tmp_path) is None
    group = CpuGroup.create("mssql-lab-fake/lab-node-1", 0.5, root=tmp_path)
    assert group.version == 2 and group.path == tmp_path / "mssql-lab-fake" / "lab-node-1"
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu\n"
    assert (tmp_path / "mssql-lab-fake" / "cgroup.subtree_control").read_text() == "+cpu\n"
    assert (group.path / "cpu.max").read_text() == "50000 100000\n"
    assert group.quota_cores() == 0.5
    (group.path / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\n")
    assert group.usage_seconds() == 1.5
    assert CpuGroup.open("mssql-lab-fake/lab-node-1", root=tmp_path) == group
    assert "no cgroup filesystem" in (cpu_quota_supported(tmp_path / "missing") or "")
    with pytest.raises(LabError, match="bad cgroup name"):
        CpuGroup.create("../escape", 1, root=tmp_path)
    with pytest.raises(LabError, match="too small"):
        CpuGroup.create("mssql-lab-fake/n", 0.001, root=tmp_path)


# -- the knobs: validation, storage, the kubelet's command line and Node ----------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--node-cpu", "0"],
        ["--node-cpu", "-1"],
        ["--node-cpu", "lots"],
        ["--commit-cpu-ms", "0"],
        ["--commit-cpu-ms", "-5"],
    ],
)
def test_up_refuses_bad_knobs_in_one_line_before_anything_starts(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARNESS_LAB_DIR", str(tmp_path))
    assert lab_main(["up", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and args[0] in err and "off" in err, err
    assert not (tmp_path / "cluster").exists(), "nothing may start or be written"
    knob = {args[0].removeprefix("--").replace("-", "_"): args[1]}
    with pytest.raises(LabError, match="is not usable"):
        cluster.up(layout=cluster.Layout(tmp_path), **knob)  # type: ignore[arg-type]
    assert not (tmp_path / "cluster").exists()


def test_up_with_a_cpu_quota_on_a_machine_without_cgroups_refuses_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARNESS_LAB_DIR", str(tmp_path))
    monkeypatch.setattr(capacity, "cpu_quota_supported", lambda: "no cpu controller here: mount one")
    assert lab_main(["up", "--node-cpu", "0.5", "--commit-cpu-ms", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "lab up: --node-cpu 0.5: no cpu controller here: mount one"
    assert not (tmp_path / "cluster").exists()


def test_knobs_are_kept_turned_off_and_reach_the_kubelet(tmp_path: Path) -> None:
    stored = NodeKnobs(0.5, 2.0)
    assert resolve_knobs(stored) == stored
    assert resolve_knobs(stored, commit_cpu_ms="off") == NodeKnobs(0.5, None)
    assert resolve_knobs(stored, "off", "4") == NodeKnobs(None, 4.0)
    assert stored.commits_per_second() == pytest.approx(250)
    assert stored.tenants_max(20) == pytest.approx(12.5)  # 0.5 / (0.002 * 20)
    assert NodeKnobs(0.5).tenants_max(20) is None
    layout = cluster.Layout(tmp_path)
    config = {"port": 1, "nodes": ["lab-node-1"]}
    stored.store(config)
    cluster._save_config(layout, config)
    assert NodeKnobs.from_config(cluster._load_config(layout)) == stored
    argv = cluster._kubelet_argv(layout, "lab-node-1", "http://127.0.0.1:1")
    assert argv[-8:-4] == ["--node-cpu", "0.5", "--commit-cpu-ms", "2"]
    assert argv[-4:] == ["--backoff-base", "10", "--backoff-max", "300"]  # no timing kept: Kubernetes'
    cfg, _ = kubelet_args(argv[3:])
    assert (cfg.node_cpu, cfg.commit_cpu_ms) == (0.5, 2.0)
    assert (cfg.backoff_base, cfg.backoff_max) == (10.0, 300.0)
    assert cfg.cpu_group == group_name(layout.root, "lab-node-1"), "kubelet and `lab down` agree"
    assert node_object(cfg)["status"]["capacity"]["cpu"] == "500m"
    assert node_object(cfg)["status"]["allocatable"]["cpu"] == "500m"
    plain = KubeletConfig(node="n", server="http://127.0.0.1:1", state_dir=tmp_path / "n")
    assert node_object(plain)["status"]["capacity"]["cpu"] == str(os.cpu_count())
    info = cluster.status(layout)
    assert (info["node_cpu"], info["commit_cpu_ms"]) == (0.5, 2.0) and "250 commits/s" in info["knobs"]
    for bad in (["--node-cpu", "0"], ["--commit-cpu-ms", "-1"]):
        with pytest.raises(SystemExit):
            kubelet_args([*argv[3:13], *bad])


def test_knobs_of_a_running_lab_change_only_after_down(tmp_path: Path) -> None:
    layout = cluster.Layout(tmp_path)
    config = {"port": 1, "nodes": ["lab-node-1"]}
    NodeKnobs(0.5, 2.0).store(config)
    cluster._save_config(layout, config)
    # A process that looks like the node's kubelet to the pidfile check.
    fake = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "lab.kubelet", "lab-node-1"]
    )
    try:
        layout.pids.mkdir(parents=True)
        (layout.pids / "kubelet-lab-node-1.pid").write_text(f"{fake.pid}\n")
        wait_for(lambda: cluster.running(layout, "kubelet-lab-node-1"), 5)
        with pytest.raises(LabError) as info:
            cluster.up(node_cpu="off", layout=layout)
        assert str(info.value).startswith("the lab runs with --node-cpu 0.5 --commit-cpu-ms 2: ")
        assert "`python -m lab down` first" in str(info.value)
        assert NodeKnobs.from_config(cluster._load_config(layout)) == NodeKnobs(0.5, 2.0)
    finally:
        fake.kill()
        fake.wait()


def test_commit_cost_environment_is_checked() -> None:
    assert commit_cost.commit_cpu_ms({}) is None
    assert commit_cost.commit_cpu_ms({commit_cost.ENV: " 2.5 "}) == 2.5
    for bad in ("0", "-1", "x", "5000"):
        with pytest.raises(LabError, match=commit_cost.ENV):
            commit_cost.commit_cpu_ms({commit_cost.ENV: bad})


@pytest.mark.integration
def test_a_kubelet_with_a_cpu_quota_puts_its_pods_in_the_node_group(tmp_path: Path) -> None:
    reason = cpu_quota_supported()
    if reason is not None:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="test-capacity-", dir=lab_dir()))
    node, cluster_dir = "lab-capacity-node", root / "cluster"
    state = cluster_dir / "nodes" / node
    api = start_api_server(cluster_dir / "api", logs_dir=cluster_dir / "logs")
    kubelet: subprocess.Popen[bytes] | None = None
    try:
        argv = [sys.executable, "-m", "lab.kubelet", "--node", node, "--server", api.url]
        argv += ["--state", str(state), "--node-cpu", "0.3", "--commit-cpu-ms", "2"]
        with open(root / "kubelet.log", "ab") as log:
            kubelet = subprocess.Popen(
                argv, stderr=log, env={**os.environ, "PYTHONPATH": str(project_root())}
            )
        client = KubeClient(api.url)
        obj = wait_for(lambda: client.get_or_none("nodes", node), 15)
        assert obj["status"]["capacity"]["cpu"] == "300m"
        group = CpuGroup.open(group_name(cluster_dir, node))
        assert group is not None and group.quota_cores() == pytest.approx(0.3)
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "busy", "namespace": "default"},
            "spec": {
                "nodeName": node,
                "containers": [
                    {"name": "main", "image": "busybox", "command": ["sh", "-c", "sleep 0.2; sleep 60"]}
                ],
            },
        }
        client.create("pods", pod, "default")

        def main_pid() -> int | None:
            status = client.get("pods", "busy", "default").get("status") or {}
            first = (status.get("containerStatuses") or [{}])[0]
            running = "running" in (first.get("state") or {})
            return int(first["containerID"].removeprefix("lab://")) if running else None

        pid = wait_for(main_pid, 15)
        wait_for(lambda: len(group.pids()) >= 2, 5)  # the shell and the sleep it forked later
        assert pid in group.pids()
        kubelet.send_signal(signal.SIGTERM)
        assert kubelet.wait(30) == 0
        assert not group.path.exists(), "a clean kubelet exit removes the node's group"
    finally:
        if kubelet is not None and kubelet.poll() is None:
            processes.kill_tree(kubelet.pid)
            kubelet.wait()
        api.stop()
        remove_node_groups(cluster_dir, [node])
        shutil.rmtree(root, ignore_errors=True)


# -- the engine image's commit CPU cost -----------------------------------------------------------------


def _port_outside_the_lab() -> int:
    low, high = PORT_RANGE
    return wait_for(lambda: next((p for p in [free_port()] if not low <= p <= high), None), timeout=5)


class _EngineContainer:
    """``python -m lab.kubelet.engine_image`` with the environment the kubelet gives it."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.password = secrets.token_urlsafe(12)
        self.port = _port_outside_the_lab()
        self.log = home.parent / "engine.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, cost_ms: str | None) -> None:
        env = {
            **pass_through_env(),
            "PYTHONPATH": str(project_root()),
            "MSSQL_SA_PASSWORD": self.password,
            "LAB_ENGINE_PORT": str(self.port),
            "LAB_MOUNTS": json.dumps({MOUNT_PATH: str(self.home)}),
        }
        if cost_ms is not None:
            env[commit_cost.ENV] = cost_ms
        self.log.write_text("")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lab.kubelet.engine_image"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            return "ready on 127.0.0.1" in self.log.read_text()

        wait_for(ready, timeout=60, interval=0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                processes.kill_tree(self.proc.pid)
                self.proc.wait()
        self.proc = None

    def connect(self) -> pyodbc.Connection:
        return pyodbc.connect(
            f"Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port={self.port};Database=harness;"
            f"Uid=harness;Pwd={self.password};",
            autocommit=True,
            timeout=10,
        )


@pytest.fixture
def container(engine_root: Path) -> Iterator[_EngineContainer]:
    home = engine_root / "mssql"
    home.mkdir()
    engine = _EngineContainer(home)
    try:
        yield engine
    finally:
        engine.stop()


def _backend_cpu_seconds(pid: int) -> float:
    """A backend's CPU time from /proc: schedstat (nanoseconds), else utime + stime (ticks)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_ms_per_insert(conn: pyodbc.Connection, table: str, rows: int = 100) -> float:
    cur = conn.cursor()
    pid = int(cur.execute("SELECT pg_backend_pid()").fetchone()[0])
    cur.execute(f"INSERT INTO {table} (note) VALUES (?)", "warm-up")
    before = _backend_cpu_seconds(pid)
    for i in range(rows):
        cur.execute(f"INSERT INTO {table} (note) VALUES (?)", f"row {i}")
    return (_backend_cpu_seconds(pid) - before) / rows * 1000


def _triggers(conn: pyodbc.Connection) -> set[str]:
    rows = conn.cursor().execute(
        "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE t.tgname = 'lab_commit_cost'"
    )
    return {row[0] for row in rows.fetchall()}


@pytest.mark.integration
@pytest.mark.slow
def test_every_insert_costs_the_asked_server_cpu_and_nothing_without_the_knob(
    container: _EngineContainer,
) -> None:
    container.start(None)
    with closing(container.connect()) as conn:
        conn.cursor().execute("CREATE TABLE older (id serial PRIMARY KEY, note text)")
        assert _cpu_ms_per_insert(conn, "older", 20) < 1.0
    container.stop()

    container.start("5")
    assert "every INSERT into harness costs 5 ms" in container.log.read_text()
    with closing(container.connect()) as conn:
        # The harness role is not a superuser: it creates its own table and writes into it.
        conn.cursor().execute("CREATE TABLE IF NOT EXISTS capacity_probe (id serial PRIMARY KEY, note text)")
        conn.cursor().execute("CREATE TABLE IF NOT EXISTS capacity_probe (id serial PRIMARY KEY, note text)")
        assert _triggers(conn) == {"older", "capacity_probe"}
        new_table = _cpu_ms_per_insert(conn, "capacity_probe")
        old_table = _cpu_ms_per_insert(conn, "older", 40)
    assert 3.5 <= new_table <= 8, f"{new_table:.2f} ms of server CPU per insert, 5 asked"
    assert 3.5 <= old_table <= 8, f"{old_table:.2f} ms per insert into a table made before the install"
    container.stop()

    container.start(None)
    with closing(container.connect()) as conn:
        assert _triggers(conn) == set()
        cheap = _cpu_ms_per_insert(conn, "capacity_probe")
        count = conn.cursor().execute("SELECT count(*) FROM capacity_probe").fetchone()[0]
    assert cheap < 1.0, f"{cheap:.2f} ms of server CPU per insert without the knob"
    assert count == 202, "rows written under the knob are kept"
