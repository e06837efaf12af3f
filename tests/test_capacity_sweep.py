"""The capacity sweep end to end on a lab whose capacity is known in advance.

The lab runs one node under a CPU quota (``--node-cpu``) and makes every committed
insert cost a known amount of server CPU (``--commit-cpu-ms``), so the node is fully
busy at ``node_cpu / (commit_cpu * write_rate)`` tenants: the boundary is computable
before the sweep starts, and the search must land within one step below it (the insert
itself, the operator and a restarting engine cost a little more, never less). Every step is a real
``chaos run`` of the pod-eviction experiment with real load.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from lab.cgroups import cpu_quota_supported
from lab.cluster import INSTANCES
from orchestration.capacity_tenants import SWEEP_LABEL
from tests.test_experiments import EXPERIMENTS, LAB_VARS, Lab, running_lab

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NODE_CPU = 0.5
COMMIT_CPU_MS = 10.0
RATE = 10.0
#: tenants the node can carry: 0.5 core / (10 ms x 10 writes/s) = 5
KNOWN_CAPACITY = int(NODE_CPU / (COMMIT_CPU_MS / 1000 * RATE))
STEP = 2


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    reason = cpu_quota_supported()
    if reason:
        pytest.skip(reason)
    up = (
        "--tenants",
        "1",
        "--nodes",
        "1",
        "--node-cpu",
        f"{NODE_CPU:g}",
        "--commit-cpu-ms",
        f"{COMMIT_CPU_MS:g}",
    )
    with running_lab("test-capacity-", *up) as the_lab:
        yield the_lab


def _sweep_instances(lab: Lab) -> list[str]:
    """The sweep's instances still in the lab, and the claims they left."""
    items = lab.client().list(INSTANCES, "tenants")
    left = [i["metadata"]["name"] for i in items if SWEEP_LABEL in (i["metadata"].get("labels") or {})]
    claims = lab.client().list("persistentvolumeclaims", "tenants")
    return left + [c["metadata"]["name"] for c in claims if "-cap-" in c["metadata"]["name"]]


def _capacity(lab: Lab, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestration", "capacity", "--var-file", str(LAB_VARS),
         "--experiments", str(EXPERIMENTS), "--out", str(lab.runs), *args],
        capture_output=True, text=True, timeout=timeout, env=lab.env, check=False, cwd=lab.home,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--namespace", "kube-system"], "not in allowed_namespaces"),
        (["--from", "6", "--to", "2"], "tenants_from (6) is above tenants_to (2)"),
        (["--step", "0"], "tenants_step must be a whole number of at least 1"),
        (["--to", "100000"], "the lab cannot hold 100000 more tenants"),
        (["--fault", "no-such-fault"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_creates_nothing(lab: Lab, args: list[str], words: str) -> None:
    before = set(lab.runs.iterdir())
    done = _capacity(lab, *args, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert words in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not _sweep_instances(lab)
    assert set(lab.runs.iterdir()) == before


def test_a_template_that_is_not_an_mssql_instance_creates_nothing(lab: Lab) -> None:
    template = lab.home / "pod.yaml"
    template.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: []}\n")
    done = _capacity(lab, "--template", str(template), timeout=60)
    assert done.returncode == 2 and "not an MSSQLInstance" in done.stderr, done.stderr
    assert not _sweep_instances(lab)


def test_the_sweep_finds_the_known_capacity_within_one_step(lab: Lab) -> None:
    """Through ``chaos run experiments/opt-in/capacity.json``, as a user would start it."""
    env = {
        "HARNESS_CAPACITY_FROM": str(KNOWN_CAPACITY - STEP),  # the line search: test_capacity_search.py
        "HARNESS_CAPACITY_TO": str(KNOWN_CAPACITY + 2),
        "HARNESS_CAPACITY_STEP": str(STEP),
        "HARNESS_CAPACITY_RATES": f"{RATE:g}",
        # The boundary under test is the node's CPU. At 3 tenants the node is already about 80 %
        # busy (the inserts, the operator, the evicted engine's restart), and p99 latency from
        # the schedule measured 458 and 564 ms in two runs: a 500 ms limit made the step a coin
        # flip. At 1000 ms, 3 passes, while 4 (1585 ms) and 5 (3260 ms, efficiency 0.76) fail.
        "HARNESS_CAPACITY_LATENCY_LIMIT": "1000",
        "HARNESS_OBSERVE_SECONDS": "4",
    }
    done, _ = lab.chaos("capacity", env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sweeps = sorted(lab.runs.glob("capacity-*"))
    assert sweeps, done.stdout[-2000:]
    doc = json.loads((sweeps[-1] / "capacity.json").read_text())
    assert doc["complete"] is True and doc["target"]["kind"] == "lab"
    boundary = doc["boundaries"][0]
    found = boundary["largest_passing"]
    # At the computed capacity the node is 100% busy and an open-model load's backlog grows
    # without bound, so that count must fail; the boundary lies within one step below it.
    steps = [(s["tenants"], s["passed"], s["reasons"]) for s in doc["steps"]]  # why each step ended so
    assert found is not None and KNOWN_CAPACITY - STEP <= found < KNOWN_CAPACITY, steps
    failing = [s for s in doc["steps"] if not s["passed"]]
    assert failing and all(s["reasons"] for s in failing)
    for step in doc["steps"]:
        run_dir = sweeps[-1] / step["run_dir"]
        assert (run_dir / "summary.json").exists() and (run_dir / "report.md").exists()
        assert step["efficiency"] is not None and step["latency_ms"]["p99"] is not None
    passing = [s for s in doc["steps"] if s["passed"]]
    assert passing and all(s["lost"] == 0 for s in passing)
    text = (sweeps[-1] / "capacity.md").read_text()
    assert f"{found} tenants" in text
    assert (sweeps[-1] / "capacity-rto.png").stat().st_size > 5000
    assert not _sweep_instances(lab)


def test_an_interrupted_sweep_deletes_what_it_created_and_reports_the_finished_steps(lab: Lab) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestration", "capacity", "--var-file", str(LAB_VARS),
         "--experiments", str(EXPERIMENTS), "--out", str(lab.runs), "--from", "1", "--to", "3", "--step", "1",
         "--rate", "5", "--observe", "3", "--stability", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**lab.env, "PYTHONUNBUFFERED": "1"},
        cwd=lab.home,
    )  # fmt: skip
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if not line:
            break  # the sweep ended before its first step did
        if line.startswith("capacity: N=1"):
            break
    if not lines[-1].startswith("capacity: N=1"):
        proc.kill()
        pytest.fail("".join(lines))
    time.sleep(3)  # inside the second step: its instances exist and its load runs
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 130, "".join(lines) + out
    sweep = max(lab.runs.glob("capacity-*"), key=lambda p: p.stat().st_mtime)
    doc = json.loads((sweep / "capacity.json").read_text())
    assert doc["interrupted"] is True and doc["complete"] is False
    assert [s["tenants"] for s in doc["steps"]][:1] == [1]
    assert "INCOMPLETE" in (sweep / "capacity.md").read_text().upper()
    assert not _sweep_instances(lab)
