"""The machine-wide registry of engine port blocks, and the operator's use of the lab's block.

Every test uses a registry folder of its own (never the machine's): two claims get
disjoint blocks, claims from concurrent processes too (the lock), a lab gets its block
back, and the stale-owner rule of :mod:`lab.ports` (gone owners freed at once, idle ones
only when no block is left, crashed before stopped, live ones never).
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from lab import ports_registry
from lab.cluster_tenants import check_capacity
from lab.errors import LabError
from lab.kubeclient import ApiError
from lab.operator.lab_identity import (
    IDENTITY_REFRESH,
    IdentityReader,
    LabIdentity,
    identity_of,
    with_identity,
)
from lab.operator.objects import PORT_ANNOTATION, SPEC_HASH_ANNOTATION, desired_statefulset, spec_hash
from lab.operator.reconcile import Reconciler
from lab.paths import project_root
from lab.ports import (
    MARKER,
    RANGE_SIZE,
    claim_range,
    format_range,
    holdings,
    lab_identity,
    mark_down,
    mark_running,
    parse_range,
    release_range,
)

Obj = dict[str, Any]


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    return tmp_path / "registry"


def _owner(tmp_path: Path, name: str) -> Path:
    return tmp_path / "labs" / name / "cluster"


def _verdicts(registry: Path) -> dict[str, str]:
    return {h.lab_id: verdict for h, verdict in holdings(registry=registry)}


# -- claims --------------------------------------------------------------------------------------


def test_two_labs_get_disjoint_blocks_and_each_gets_its_own_back(tmp_path: Path, registry: Path) -> None:
    a = claim_range("lab-a", _owner(tmp_path, "a"), registry=registry)
    b = claim_range("lab-b", _owner(tmp_path, "b"), registry=registry)
    assert a == (20000, 20000 + RANGE_SIZE)
    assert b == (20000 + RANGE_SIZE, 20000 + 2 * RANGE_SIZE)
    assert claim_range("lab-a", _owner(tmp_path, "a"), registry=registry) == a
    assert claim_range("lab-b", _owner(tmp_path, "b"), registry=registry) == b
    marker = json.loads((_owner(tmp_path, "a") / MARKER).read_text())
    assert marker["lab_id"] == "lab-a" and marker["ports"] == format_range(a)
    # the registry is shared by every user's labs: a sticky world-writable folder, files anyone writes
    assert stat.S_IMODE(registry.stat().st_mode) == 0o1777
    for name in ("registry.json", "registry.lock"):
        assert stat.S_IMODE((registry / name).stat().st_mode) == 0o666


def test_a_block_of_another_size_replaces_the_old_one(tmp_path: Path, registry: Path) -> None:
    claim_range("lab-a", _owner(tmp_path, "a"), registry=registry)
    assert claim_range("lab-a", _owner(tmp_path, "a"), size=50, registry=registry) == (20000, 20050)
    assert [h.high - h.low for h, _ in holdings(registry=registry)] == [50]


def test_concurrent_claims_from_processes_never_overlap(tmp_path: Path, registry: Path) -> None:
    go = tmp_path / "go"
    script = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from lab.ports import claim_range
        lab, owner, registry, go = sys.argv[1:5]
        while not Path(go).exists():
            time.sleep(0.002)
        low, high = claim_range(lab, Path(owner), size=10, low=20000, high=20200, registry=Path(registry))
        print(low, high)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(project_root())}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, f"lab-{i}", str(_owner(tmp_path, str(i))), str(registry), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(8)
    ]
    time.sleep(0.3)  # most of them are waiting for the start signal by now
    go.touch()
    blocks = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        low, high = map(int, out.split())
        blocks.append((low, high))
    assert all(high - low == 10 and low >= 20000 and high <= 20200 for low, high in blocks)
    ports = [p for low, high in blocks for p in range(low, high)]
    assert len(ports) == len(set(ports)), sorted(blocks)
    assert sorted(h.lab_id for h, _ in holdings(registry=registry)) == [f"lab-{i}" for i in range(8)]


# -- the stale-owner rule ------------------------------------------------------------------------


def test_a_deleted_or_reused_lab_folder_frees_its_block_at_once(tmp_path: Path, registry: Path) -> None:
    gone, reused = _owner(tmp_path, "gone"), _owner(tmp_path, "reused")
    claim_range("lab-gone", gone, pid=_dead_pid(), registry=registry)
    claim_range("lab-reused", reused, pid=_dead_pid(), registry=registry)
    claim_range("lab-live", _owner(tmp_path, "live"), registry=registry)  # this process: live
    gone.parent.rename(gone.parent.with_name("moved-away"))
    (reused / MARKER).write_text(json.dumps({"lab_id": "lab-new"}))  # wiped and made again by another lab
    assert _verdicts(registry) == {"lab-gone": "gone", "lab-reused": "gone", "lab-live": "live"}
    # room is left above, yet the first block goes to the next claim: nobody owns it any more
    assert claim_range("lab-next", _owner(tmp_path, "next"), registry=registry) == (20000, 20200)
    assert sorted(_verdicts(registry)) == ["lab-live", "lab-next"]


def test_a_marker_that_is_a_fifo_or_a_link_cannot_block_a_claim(tmp_path: Path, registry: Path) -> None:
    fifo, linked = _owner(tmp_path, "fifo"), _owner(tmp_path, "linked")
    claim_range("lab-fifo", fifo, pid=_dead_pid(), registry=registry)
    claim_range("lab-linked", linked, pid=_dead_pid(), registry=registry)
    (fifo / MARKER).unlink()
    os.mkfifo(fifo / MARKER)  # anyone may edit the registry: a FIFO would block a plain read
    real = tmp_path / "elsewhere.json"
    real.write_text((linked / MARKER).read_text())
    (linked / MARKER).unlink()
    (linked / MARKER).symlink_to(real)
    began = time.monotonic()
    assert _verdicts(registry) == {"lab-fifo": "gone", "lab-linked": "crashed"}
    assert time.monotonic() - began < 5


def test_a_stopped_lab_keeps_its_block_while_others_have_room(tmp_path: Path, registry: Path) -> None:
    span = {"low": 20000, "high": 20400}  # room for two blocks
    stopped = claim_range(
        "lab-stopped", _owner(tmp_path, "stopped"), pid=_dead_pid(), registry=registry, **span
    )
    assert mark_down("lab-stopped", registry=registry)
    other = claim_range("lab-other", _owner(tmp_path, "other"), registry=registry, **span)
    assert other != stopped
    assert claim_range("lab-stopped", _owner(tmp_path, "stopped"), registry=registry, **span) == stopped
    assert _verdicts(registry) == {"lab-stopped": "live", "lab-other": "live"}


def test_idle_blocks_go_when_none_is_left_crashed_first_live_never(tmp_path: Path, registry: Path) -> None:
    span = {"low": 20000, "high": 20600}  # room for three blocks
    stopped = claim_range(
        "lab-stopped", _owner(tmp_path, "stopped"), pid=_dead_pid(), registry=registry, **span
    )
    mark_down("lab-stopped", registry=registry)
    crashed = claim_range(
        "lab-crashed", _owner(tmp_path, "crashed"), pid=_dead_pid(), registry=registry, **span
    )
    live = claim_range("lab-live", _owner(tmp_path, "live"), registry=registry, **span)
    assert _verdicts(registry) == {"lab-stopped": "down", "lab-crashed": "crashed", "lab-live": "live"}
    assert claim_range("lab-d", _owner(tmp_path, "d"), registry=registry, **span) == crashed
    assert claim_range("lab-e", _owner(tmp_path, "e"), registry=registry, **span) == stopped
    with pytest.raises(LabError) as refused:
        claim_range("lab-f", _owner(tmp_path, "f"), registry=registry, **span)
    message = str(refused.value)
    assert "no free block of 200 engine ports in 20000-20599" in message and "\n" not in message
    assert all(lab in message for lab in ("lab-live", "lab-d", "lab-e")) and "python -m lab down" in message
    assert live == (20400, 20600)


def test_a_recycled_pid_is_not_the_labs_process(tmp_path: Path, registry: Path) -> None:
    claim_range("lab-a", _owner(tmp_path, "a"), registry=registry)
    mark_running("lab-a", os.getpid(), registry=registry)
    assert _verdicts(registry) == {"lab-a": "live"}
    doc = json.loads((registry / "registry.json").read_text())
    doc["ranges"][0]["pid_started"] -= 1000.0  # the pid now names another, later process
    (registry / "registry.json").write_text(json.dumps(doc))
    assert _verdicts(registry) == {"lab-a": "crashed"}


def test_release_frees_the_block_and_removes_the_marker(tmp_path: Path, registry: Path) -> None:
    owner = _owner(tmp_path, "a")
    claim_range("lab-a", owner, registry=registry)
    assert release_range("lab-a", registry=registry)
    assert not release_range("lab-a", registry=registry)
    assert not (owner / MARKER).exists() and holdings(registry=registry) == []
    assert not mark_down("lab-a", registry=registry)
    with pytest.raises(LabError, match="lab lab-a holds no port block: claim one first"):
        mark_running("lab-a", os.getpid(), registry=registry)


# -- a registry that cannot be used --------------------------------------------------------------


def test_a_broken_registry_is_refused_in_one_line(tmp_path: Path, registry: Path) -> None:
    registry.mkdir(mode=0o1777)
    (registry / "registry.json").write_text("{not json")
    with pytest.raises(LabError, match=r"is not \{\"ranges\": \[\.\.\.\]\} JSON: fix it, or delete it"):
        claim_range("lab-a", _owner(tmp_path, "a"), registry=registry)
    (registry / "registry.json").unlink()
    (registry / "registry.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(LabError, match="must be a regular file"):
        claim_range("lab-a", _owner(tmp_path, "a"), registry=registry)
    assert not (tmp_path / "elsewhere.json").exists()
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(LabError, match="is not a folder"):
        claim_range("lab-a", _owner(tmp_path, "a"), registry=not_a_folder)
    with pytest.raises(LabError, match="not an id"):
        claim_range("lab a; rm", _owner(tmp_path, "a"), registry=registry)


def test_a_held_lock_times_out_with_the_fix(
    tmp_path: Path, registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim_range("lab-a", _owner(tmp_path, "a"), registry=registry)
    monkeypatch.setattr(ports_registry, "LOCK_TIMEOUT", 0.2)
    with open(registry / "registry.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(LabError, match=r"held for more than 0s: see which process holds it \(`fuser "):
            claim_range("lab-b", _owner(tmp_path, "b"), registry=registry)


# -- the lab id and the written form of a block --------------------------------------------------


def test_the_lab_id_is_made_once_and_kept() -> None:
    config: Obj = {}
    made = lab_identity(config)
    assert made.startswith("lab-") and len(made) == 16 and config["lab_id"] == made
    assert lab_identity(config) == made
    assert lab_identity({}) != made
    with pytest.raises(LabError, match="not a lab id"):
        lab_identity({"lab_id": "edited by hand"})


def test_a_block_is_written_with_both_ends_included() -> None:
    assert format_range((20000, 20200)) == "20000-20199"
    assert parse_range("20000-20199") == (20000, 20200)
    for bad in ("20000", "20199-20000", "80-90", None, "a-b"):
        with pytest.raises(LabError, match="port range"):
            parse_range(bad)


def test_a_tenant_count_beyond_the_labs_block_is_refused() -> None:
    check_capacity(RANGE_SIZE, available=2**50)
    with pytest.raises(LabError, match=f"more engine ports than a lab's {RANGE_SIZE} hold"):
        check_capacity(RANGE_SIZE + 1, available=2**50)


# -- the operator: the lab's identity and its block ----------------------------------------------


class _Client:
    """Answers the ConfigMap read and records port patches (all the operator asks here)."""

    def __init__(self) -> None:
        self.answer: Obj | ApiError | None = None
        self.reads = 0

    def get_or_none(self, kind: str, name: str, namespace: str) -> Obj | None:
        assert (kind, namespace, name) == ("configmaps", "kube-system", "lab-identity")
        self.reads += 1
        if isinstance(self.answer, ApiError):
            raise self.answer
        return self.answer

    def patch(self, kind: Any, name: str, patch: Obj, namespace: str) -> Obj:
        return {"metadata": {"name": name, "namespace": namespace, **patch["metadata"]}}


def _configmap(lab_id: str = "lab-0123456789ab", ports: str = "40000-40009") -> Obj:
    return {"data": {"labId": lab_id, "portRange": ports}}


def test_the_operator_reads_the_labs_identity_and_caches_it() -> None:
    client, now = _Client(), [0.0]
    reader = IdentityReader(client, clock=lambda: now[0])  # type: ignore[arg-type]
    assert reader.read() is None  # no ConfigMap: not a lab
    client.answer = _configmap()
    assert reader.read() is None and client.reads == 1  # cached until the refresh
    now[0] += IDENTITY_REFRESH
    assert reader.read() == LabIdentity("lab-0123456789ab", (40000, 40010))
    client.answer = ApiError(403, "Forbidden", "configmaps is forbidden")
    now[0] += IDENTITY_REFRESH
    assert reader.read() == LabIdentity("lab-0123456789ab", (40000, 40010))  # the last good one is kept
    fresh = IdentityReader(client)  # type: ignore[arg-type]
    with pytest.raises(
        ApiError, match="grant the operator get on configmaps named lab-identity in kube-system"
    ):
        fresh.read()
    with pytest.raises(ApiError, match=r"portRange: port range .* is not LOW-HIGH"):
        identity_of(_configmap(ports="all of them"))
    with pytest.raises(ApiError, match="labId '' is not a lab id"):
        identity_of(_configmap(lab_id=""))


def _instance(port: int | None = None, annotated: int | None = None) -> Obj:
    md: Obj = {"name": "t0", "namespace": "tenants", "uid": "u1", "resourceVersion": "7"}
    if annotated is not None:
        md["annotations"] = {PORT_ANNOTATION: str(annotated)}
    return {"metadata": md, "spec": {} if port is None else {"port": port}}


def test_the_operator_hands_out_ports_of_the_labs_block_only() -> None:
    operator = Reconciler(_Client())  # type: ignore[arg-type]
    operator._lab = LabIdentity("lab-0123456789ab", (40000, 40010))
    fresh = operator._port(_instance(), set())
    assert 40000 <= fresh < 40010
    assert operator._port(_instance(annotated=40003), set()) == 40003  # kept across pod restarts
    moved = _instance(annotated=20001)  # the lab came back with another block
    port = operator._port(moved, {20001})
    assert 40000 <= port < 40010 and moved["metadata"]["annotations"][PORT_ANNOTATION] == str(port)
    assert operator._port(_instance(port=20001, annotated=20001), set()) == 20001  # spec.port is the user's
    taken = set(range(40000, 40010)) - {40007}
    assert operator._port(_instance(), taken) in (40007,)


def test_the_engine_gets_the_lab_id_and_its_statefulset_is_updated() -> None:
    instance = _instance()
    plain = desired_statefulset(instance, 40001)
    spec = plain["spec"]
    # with_identity recomputes the hash the way objects.py computes it
    assert (
        spec_hash({"replicas": spec["replicas"], "template": spec["template"]})
        == (plain["metadata"]["annotations"][SPEC_HASH_ANNOTATION])
    )
    stamped = with_identity(desired_statefulset(instance, 40001), "lab-0123456789ab", "tenants/t0")
    env = {e["name"]: e.get("value") for e in stamped["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LAB_ID"] == "lab-0123456789ab" and env["LAB_INSTANCE"] == "tenants/t0"
    assert (
        stamped["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
        != plain["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    )
    again = with_identity(stamped, "lab-0123456789ab", "tenants/t0")
    assert [e["name"] for e in again["spec"]["template"]["spec"]["containers"][0]["env"]].count("LAB_ID") == 1
