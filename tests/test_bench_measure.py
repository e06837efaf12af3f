"""The benchmarks' process measuring: real child processes, their CPU, the machine's facts."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.benchmarks.measure import (
    CLIENT_PACKAGES,
    BenchError,
    cpu_model,
    machine_facts,
    run_measured,
    tail,
    tree_cpu,
    user_space_cpu,
)

BURN = (
    "import time\nend = time.process_time() + {cpu}\nwhile time.process_time() < end: pass\nprint('done')\n"
)


def test_run_measured_reports_exit_code_exact_cpu_and_rising_samples(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    done = run_measured(
        [sys.executable, "-c", BURN.format(cpu=0.6) + "raise SystemExit(3)"],
        env=dict(os.environ),
        cwd=tmp_path,
        log=log,
        timeout=30,
        sample=True,
    )
    assert done.returncode == 3
    assert 0.6 <= done.cpu < 3.0
    assert log.read_text().strip() == "done"
    assert len(done.samples) >= 2
    times = [t for t, _ in done.samples]
    cpus = [c for _, c in done.samples]
    assert times == sorted(times) and cpus == sorted(cpus)
    assert cpus[-1] <= done.cpu + 0.01


def test_run_measured_without_sampling_keeps_no_samples(tmp_path: Path) -> None:
    done = run_measured(
        [sys.executable, "-c", "pass"],
        env=dict(os.environ),
        cwd=tmp_path,
        log=tmp_path / "l",
        timeout=30,
        sample=False,
    )
    assert done.returncode == 0 and done.samples == []


def test_run_measured_kills_a_process_past_its_timeout(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    script = f"import os, time\nopen({str(marker)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)\n"
    began = time.monotonic()
    with pytest.raises(BenchError, match=r"still running after 1s: see .*slow\.log"):
        run_measured(
            [sys.executable, "-c", script],
            env=dict(os.environ),
            cwd=tmp_path,
            log=tmp_path / "slow.log",
            timeout=1,
            sample=True,
        )
    assert time.monotonic() - began < 10
    pid = int(marker.read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_tail_gives_the_last_lines_and_nothing_for_a_missing_file(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(40)))
    assert tail(log, 3) == "line 37\nline 38\nline 39"
    assert tail(log).splitlines()[0] == "line 25"
    assert tail(tmp_path / "missing.log") == ""


def _others_cpu(pid: int) -> float:
    """CPU of ``pid``'s tree (reaped children included) minus its own."""
    own = psutil.Process(pid).cpu_times()
    return tree_cpu(pid) - (own.user + own.system)


def test_tree_cpu_counts_live_children() -> None:
    # A tree of its own (a parent whose live child burns), so that no other process of the
    # test run (a parallel worker's, a test's leftover) can move the count.
    burn = BURN.format(cpu=0.5) + "import time; time.sleep(30)"
    spawn = f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {burn!r}])\n"
    spawn += "time.sleep(30)"
    parent = psutil.Popen([sys.executable, "-c", spawn])
    try:
        deadline = time.monotonic() + 20
        while _others_cpu(parent.pid) < 0.5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _others_cpu(parent.pid) >= 0.5
    finally:
        for proc in [*parent.children(recursive=True), parent]:
            proc.kill()
        parent.wait()


def test_user_space_cpu_sees_work_done_meanwhile() -> None:
    before = user_space_cpu()
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    assert user_space_cpu() - before >= 0.25


def test_machine_facts_put_the_server_after_the_kernel(tmp_path: Path) -> None:
    facts = machine_facts({"postgresql": "15.0", "durability": "fsync=on"})
    assert list(facts) == [
        "nproc",
        "cpu",
        "memory",
        "kernel",
        "postgresql",
        "durability",
        "python",
        "clients",
    ]
    assert facts["nproc"] == str(len(os.sched_getaffinity(0)))
    assert facts["memory"].endswith(" GiB")
    assert [part.split()[0] for part in facts["clients"].split(", ")] == list(CLIENT_PACKAGES)
    assert list(machine_facts()) == ["nproc", "cpu", "memory", "kernel", "python", "clients"]


def test_cpu_model_reads_the_first_model_name(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU @ 1 GHz\nmodel name\t: other\n")
    assert cpu_model(info) == "Test CPU @ 1 GHz"
    info.write_text("processor\t: 0\n")
    assert cpu_model(info) == "unknown"
    assert cpu_model(tmp_path / "missing") == "unknown"
