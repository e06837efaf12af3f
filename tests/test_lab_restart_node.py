"""``python -m lab restart-node``: its JSON result and the kill time, without starting a lab.

The command's result is faked for the CLI tests; ``_kill_node`` runs against a stand-in
"kubelet" (a sleeping Python process whose command line names the node) and its child,
found through a pidfile in a temporary layout, as the real one is.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from lab import __main__ as lab_cli
from lab import cluster

_RESULT: dict[str, Any] = {
    "node": "lab-node-2",
    "killed": 7,
    "killed_at": 1000.0,
    "signalled_at": 1000.0125,
    "kill_seconds": 0.031,
    "down_seconds": 5.0,
    "kubelet_pid": 4242,
    "ready_after": 1.234,
}


@pytest.fixture
def faked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []

    def restart_node(node: str, down: float, *, wait: bool = True) -> dict[str, Any]:
        calls.append((node, down, wait))
        return dict(_RESULT)

    monkeypatch.setattr(cluster, "restart_node", restart_node)
    return calls


def test_json_prints_one_object_with_the_signal_time(
    faked: list[tuple[Any, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    code = lab_cli.main(["restart-node", "lab-node-2", "--down", "5", "--json", "--no-wait"])
    out = capsys.readouterr().out
    assert code == 0 and faked == [("lab-node-2", 5.0, False)]
    lines = out.splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result == _RESULT
    assert result["signalled_at"] >= result["killed_at"]


def test_without_json_the_sentence_is_kept(
    faked: list[tuple[Any, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert lab_cli.main(["restart-node", "lab-node-2", "--down", "5"]) == 0
    assert capsys.readouterr().out == (
        "node lab-node-2: killed 7 processes, down 5s, Ready 1.23s after its kubelet started\n"
    )


def test_kill_node_reads_the_clock_after_finding_the_processes(tmp_path: Path) -> None:
    layout = cluster.Layout(tmp_path)
    node = "lab-node-9"
    child = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    )
    kubelet = subprocess.Popen([sys.executable, "-c", child, "lab.kubelet", node])
    try:
        proc = psutil.Process(kubelet.pid)
        deadline = time.monotonic() + 10
        while not proc.children() and time.monotonic() < deadline:
            time.sleep(0.01)
        members = [proc, *proc.children(recursive=True)]
        assert len(members) == 2
        layout.pids.mkdir(parents=True)
        (layout.pids / f"kubelet-{node}.pid").write_text(str(kubelet.pid))
        before = time.time()
        killed = cluster._kill_node(layout, node)
        after = time.time()
        assert killed.count == 2
        assert killed.signalled_at is not None and before <= killed.signalled_at <= after
        assert killed.done_after is not None and 0 <= killed.done_after <= after - killed.signalled_at
        assert not any(m.is_running() and m.status() != psutil.STATUS_ZOMBIE for m in members)
        assert not (layout.pids / f"kubelet-{node}.pid").exists()
    finally:
        kubelet.kill()
        kubelet.wait()


def test_kill_node_with_nothing_running_has_no_signal_time(tmp_path: Path) -> None:
    killed = cluster._kill_node(cluster.Layout(tmp_path), "lab-node-9")
    assert (killed.count, killed.signalled_at, killed.done_after) == (0, None, None)
