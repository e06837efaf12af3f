"""``python -m lab up|status|restart-node|down`` end to end, as a user runs them.

Every command runs as its own process with ``HARNESS_LAB_DIR`` pointing at a fresh
folder, so the lab's processes are detached exactly as on a workstation; the test
checks what a user would: exit codes, one-line errors, a tenant that accepts writes,
data that survives a node crash, and no process left after ``down``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from lab import processes
from lab.kubeclient import KubeClient
from lab.paths import lab_dir, project_root
from tests.test_api_support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _lab(
    home: Path, *args: str, timeout: float = 180, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "HARNESS_LAB_DIR": str(home), "PYTHONPATH": str(project_root()), **(env or {})}
    full_env.pop("KUBECONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "lab", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def _lab_processes(home: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and any(
                str(home) in word for word in proc.info["cmdline"] or []
            ):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def tear_down_lab(home: Path) -> None:
    """Stop the lab under ``home`` (if one was brought up), kill whatever of it is left, remove
    the folder; fail the test if anything had to be killed."""
    if (home / "cluster").exists():
        _lab(home, "down", timeout=90)
    left = _lab_processes(home)
    if left:
        processes.kill_trees(left)
    shutil.rmtree(home, ignore_errors=True)
    assert not left, f"processes left behind: {[p.pid for p in left]}"


@pytest.fixture
def home() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="test-cluster-", dir=lab_dir()))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        tear_down_lab(folder)


def _sql(tenant: dict[str, Any], sql: str) -> str:
    env = {**os.environ, "PGPASSWORD": Path(tenant["password_file"]).read_text()}
    proc = subprocess.run(
        [
            "psql",
            "-X",
            "-q",
            "-tA",
            "-h",
            tenant["server"],
            "-p",
            str(tenant["port"]),
            "-U",
            tenant["user"],
            "-d",
            tenant["database"],
            "-c",
            sql,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=10,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _pod_ready(pod: dict[str, Any] | None) -> bool:
    conditions = ((pod or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def test_up_restart_node_pause_and_down(home: Path) -> None:
    began = time.monotonic()
    up = _lab(home, "up", "--tenants", "1", "--nodes", "2")
    assert up.returncode == 0, up.stderr
    up_seconds = time.monotonic() - began
    assert f"export KUBECONFIG={home / 'kubeconfig'}" in up.stdout
    tenants = json.loads((home / "tenants.json").read_text())["tenants"]
    assert [t["name"] for t in tenants] == ["tenant-0"]
    tenant = tenants[0]
    assert tenant["dialect"] == "postgresql" and tenant["server"] == "127.0.0.1"
    assert stat.S_IMODE(os.stat(tenant["password_file"]).st_mode) == 0o600
    assert (
        _sql(tenant, "CREATE TABLE kept(x int); INSERT INTO kept VALUES (1); SELECT count(*) FROM kept")
        == "1"
    )

    again = _lab(home, "up", "--tenants", "1", "--nodes", "2")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout.splitlines()[0]

    info = json.loads(_lab(home, "status", "--json").stdout)
    assert all(p["alive"] for p in info["processes"]) and len(info["processes"]) == 3
    assert sorted(n["name"] for n in info["nodes"]) == ["lab-node-1", "lab-node-2"]
    assert all(n["ready"] == "True" for n in info["nodes"])
    assert [i["ready"] for i in info["instances"]] == [True]

    client = KubeClient.from_kubeconfig(home / "kubeconfig")
    pod = client.get("pods", "tenant-0-0", "tenants")
    node = pod["spec"]["nodeName"]
    restarts = pod["status"]["containerStatuses"][0]["restartCount"]

    # A node crash: everything of the node is SIGKILLed; 5 s down makes the node NotReady.
    # Under the fast timing profile that is past the 4 s grace, so the lab operator may
    # declare the node out of service and its pod start on the other node (lab.operator.node_loss):
    # either way the pod comes back Ready with its data.
    uid = pod["metadata"]["uid"]
    crash = _lab(home, "restart-node", node, "--down", "5", timeout=60)
    assert crash.returncode == 0, crash.stderr
    back = time.monotonic()

    def back_again() -> dict[str, Any] | None:
        p = client.get_or_none("pods", "tenant-0-0", "tenants")
        if p is None or not _pod_ready(p):
            return None
        moved = p["metadata"]["uid"] != uid
        restarted = p["status"]["containerStatuses"][0]["restartCount"] == restarts + 1
        return p if moved or restarted else None

    pod = wait_for(back_again, 60)
    pod_ready_after_node = time.monotonic() - back
    node = pod["spec"]["nodeName"]
    assert _sql(tenant, "INSERT INTO kept VALUES (2); SELECT count(*) FROM kept") == "2"

    # A paused kubelet (no heartbeat, pods keep running): the node goes NotReady, its pods
    # are marked not ready, and all is Ready again once the kubelet resumes.
    kubelet = psutil.Process(int((home / "cluster" / "pids" / f"kubelet-{node}.pid").read_text()))
    kubelet.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: not _pod_ready(client.get("pods", "tenant-0-0", "tenants")), 15)
        assert _sql(tenant, "SELECT count(*) FROM kept") == "2"
    finally:
        kubelet.send_signal(signal.SIGCONT)
    wait_for(lambda: _pod_ready(client.get("pods", "tenant-0-0", "tenants")), 10)

    unknown = _lab(home, "restart-node", "lab-node-9", "--down", "0")
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1
    assert "no lab node named 'lab-node-9'" in unknown.stderr

    down = _lab(home, "down", timeout=90)
    assert down.returncode == 0, down.stderr
    assert not _lab_processes(home)
    info = json.loads(_lab(home, "status", "--json").stdout)
    assert not any(p["alive"] for p in info["processes"])
    assert (home / "cluster" / "volumes" / "tenants").is_dir(), "down must keep the data"

    # Up again: the same pods come back on the same nodes, with their data.
    again = _lab(home, "up", "--tenants", "1", "--nodes", "2")
    assert again.returncode == 0, again.stderr
    assert json.loads((home / "tenants.json").read_text())["tenants"][0]["port"] == tenant["port"]
    assert _sql(tenant, "SELECT count(*) FROM kept") == "2"
    assert client.get("pods", "tenant-0-0", "tenants")["spec"]["nodeName"] == node
    assert _lab(home, "down", timeout=90).returncode == 0
    wiped = _lab(home, "down", "--wipe")
    assert wiped.returncode == 0 and not (home / "cluster").exists() and not (home / "kubeconfig").exists()
    assert not (home / "policy.yaml").exists() and not (home / "tenants.json").exists()
    print(
        f"lab up (1 tenant, 2 nodes) {up_seconds:.1f}s; tenant pod Ready {pod_ready_after_node:.2f}s "
        "after restart-node returned"
    )


def test_up_fails_in_one_line(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = _lab(home, "up", "--tenants", "1", "--nodes", "1", "--port", str(port), timeout=30)
    assert busy.returncode == 2
    assert busy.stderr.strip() == busy.stderr.strip().splitlines()[0]
    assert f"port {port} on 127.0.0.1 is in use" in busy.stderr
    assert not _lab_processes(home)
    no_pg = _lab(home, "up", env={"HARNESS_PG_BINDIR": str(home / "nowhere")}, timeout=30)
    assert no_pg.returncode == 2 and "holds no `postgres` program" in no_pg.stderr
    assert len(no_pg.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("tenants", "needle"),
    [
        ("0", "need at least 1 node and 1 tenant (got 3 nodes, 0 tenants)"),
        ("10000", "10000 tenants need about 468.8 GiB (about 48 MiB each)"),
    ],
)
def test_a_tenant_count_the_machine_cannot_hold_is_refused_before_anything_starts(
    home: Path, tenants: str, needle: str
) -> None:
    done = _lab(home, "up", "--tenants", tenants, timeout=30)
    assert done.returncode == 2
    assert needle in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not _lab_processes(home)
    assert not (home / "tenants.json").exists() and not (home / "kubeconfig").exists()


def test_the_executor_answers_help_with_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lab.executor", "verify", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout and "backup_id" in done.stdout
    assert "cannot run" not in done.stderr
