"""Two labs on one machine: disjoint engine ports, and neither's harness reaches the other's servers.

Two labs (``python -m lab up --tenants 3`` in two folders, as two checkouts would) share
one port registry of their own (``HARNESS_PORTS_DIR``, never the machine's). Checked as
a user would see it:

- each lab has its own id (``cluster.json``, the ConfigMap ``kube-system/lab-identity``,
  every ``tenants.json`` entry, every tenant database's ``harness_identity``) and its own
  block of ports (the marker in its folder, the ConfigMap); every tenant's port lies in
  its lab's block, and the blocks do not overlap;
- a tenant restarted in one lab keeps its port, and an instance created meanwhile in the
  other lab does not get the freed port;
- each lab's harness accepts its own tenants and refuses the other lab's servers (the
  other lab's credentials, this lab's id: the identity check alone stands in the way);
- a lab stopped without ``--wipe`` comes back with the same block and ports;
- ``down --wipe`` gives the blocks back.

Slow (two labs, six database servers); it brings labs up, so run it alone.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.cluster_tenants import INSTANCES, TENANT_NAMESPACE, instance_body, instance_ready
from lab.kubeclient import KubeClient
from lab.paths import lab_dir
from lab.ports import MARKER, holdings, parse_range
from lab.ports_registry import registry_dir
from loadgen.identity import WrongServer, connect_tenant
from loadgen.runner import preflight
from loadgen.tenants import Tenant, load_tenants
from tests.test_api_support import wait_for
from tests.test_cluster import _lab, _lab_processes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Obj = dict[str, Any]
TENANTS = 3


class _Lab:
    """One lab's folder, run with the test's own port registry."""

    def __init__(self, name: str, registry: Path) -> None:
        self.home = Path(tempfile.mkdtemp(prefix=f"test-two-labs-{name}-", dir=lab_dir()))
        self.home.chmod(0o755)
        self.env = {"HARNESS_PORTS_DIR": str(registry)}

    def run(self, *args: str, timeout: float = 300) -> str:
        done = _lab(self.home, *args, timeout=timeout, env=self.env)
        assert done.returncode == 0, f"lab {' '.join(args)} in {self.home}: {done.stderr}"
        return done.stdout

    def up(self) -> None:
        self.run("up", "--tenants", str(TENANTS), "--nodes", "2", "--no-monitoring")

    @property
    def lab_id(self) -> str:
        return str(json.loads((self.home / "cluster" / "cluster.json").read_text())["lab_id"])

    @property
    def block(self) -> tuple[int, int]:
        marker = json.loads((self.home / "cluster" / MARKER).read_text())
        assert marker["lab_id"] == self.lab_id
        return parse_range(marker["ports"])

    def entries(self) -> list[Obj]:
        return list(json.loads((self.home / "tenants.json").read_text())["tenants"])

    def tenants(self) -> list[Tenant]:
        return load_tenants(self.home / "tenants.json")

    def client(self) -> KubeClient:
        return KubeClient.from_kubeconfig(self.home / "kubeconfig")

    def tear_down(self) -> list[int]:
        if (self.home / "cluster").exists():
            _lab(self.home, "down", "--wipe", timeout=120, env=self.env)
        left = _lab_processes(self.home)
        for proc in left:
            proc.kill()
        shutil.rmtree(self.home, ignore_errors=True)
        return [p.pid for p in left]


@pytest.fixture
def labs() -> Iterator[tuple[_Lab, _Lab, Path]]:
    registry = registry_dir()  # the machine's: other labs on this machine keep their blocks too
    made = [_Lab("a", registry), _Lab("b", registry)]
    try:
        yield made[0], made[1], registry
    finally:
        left = [pid for lab in made for pid in lab.tear_down()]
        assert not left, f"processes left behind: {left}"


def _identity_rows(tenant: Tenant) -> list[tuple[str, str]]:
    conn = connect_tenant(tenant, 5)
    try:
        return [(str(r[0]), str(r[1])) for r in conn.execute("SELECT lab_id, instance FROM harness_identity")]
    finally:
        conn.close()


def _pod(client: KubeClient, name: str) -> Obj | None:
    return client.get_or_none("pods", f"{name}-0", TENANT_NAMESPACE)


def _pod_ready(pod: Obj | None) -> bool:
    conditions = ((pod or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _port(client: KubeClient, name: str) -> int | None:
    status = (client.get(INSTANCES, name, TENANT_NAMESPACE).get("status") or {}).get("port")
    return int(status) if status is not None else None


def test_two_labs_never_reach_each_others_servers(labs: tuple[_Lab, _Lab, Path]) -> None:
    a, b, registry = labs
    a.up()
    b.up()

    # -- each lab: its own id and block, published where the operator and the harness read them
    assert a.lab_id != b.lab_id
    blocks = {a.lab_id: a.block, b.lab_id: b.block}
    (a_low, a_high), (b_low, b_high) = blocks[a.lab_id], blocks[b.lab_id]
    assert a_high <= b_low or b_high <= a_low, f"blocks overlap: {blocks}"
    for lab in (a, b):
        data = lab.client().get("configmaps", "lab-identity", "kube-system")["data"]
        low, high = blocks[lab.lab_id]
        assert data == {"labId": lab.lab_id, "portRange": f"{low}-{high - 1}"}
        entries = lab.entries()
        assert len(entries) == TENANTS
        assert all(e["lab_id"] == lab.lab_id and low <= int(e["port"]) < high for e in entries), entries
        for tenant in lab.tenants():
            assert _identity_rows(tenant) == [(lab.lab_id, f"{TENANT_NAMESPACE}/{tenant.name}")]
        preflight(lab.tenants())
    both = {
        h.lab_id: verdict for h, verdict in holdings(registry=registry) if h.lab_id in (a.lab_id, b.lab_id)
    }
    assert both == {a.lab_id: "live", b.lab_id: "live"}

    # -- each lab's harness refuses the other lab's servers (their credentials, its own lab id)
    for mine, other in ((a, b), (b, a)):
        for theirs in other.tenants():
            posing = dataclasses.replace(theirs, lab_id=mine.lab_id)
            with pytest.raises(WrongServer) as refused:
                preflight([posing])
            assert refused.value.found == [other.lab_id] and refused.value.expected == mine.lab_id

    # -- a tenant restarted in each lab keeps its port; the other lab never gets the freed one
    clients = {a.lab_id: a.client(), b.lab_id: b.client()}
    before = {
        (lab.lab_id, "tenant-1"): (
            _port(clients[lab.lab_id], "tenant-1"),
            _pod(clients[lab.lab_id], "tenant-1") or {},
        )
        for lab in (a, b)
    }
    for lab in (a, b):
        clients[lab.lab_id].delete("pods", "tenant-1-0", TENANT_NAMESPACE)
    b_client = clients[b.lab_id]
    b_client.create(INSTANCES, instance_body("extra"), TENANT_NAMESPACE)  # while a's tenant-1 is down
    wait_for(lambda: instance_ready(b_client.get(INSTANCES, "extra", TENANT_NAMESPACE)), 120)
    extra_port = _port(b_client, "extra")
    assert extra_port is not None and b_low <= extra_port < b_high
    assert extra_port != before[(a.lab_id, "tenant-1")][0]
    for (lab_id, name), (port, old_pod) in before.items():
        client = clients[lab_id]
        old_uid = (old_pod.get("metadata") or {}).get("uid")

        def restarted(client: KubeClient = client, name: str = name, old_uid: Any = old_uid) -> bool:
            pod = _pod(client, name)
            return pod is not None and pod["metadata"].get("uid") != old_uid and _pod_ready(pod)

        wait_for(restarted, 120)
        assert _port(client, name) == port, f"{lab_id} {name} changed its port"
    for lab in (a, b):
        preflight(lab.tenants())  # the restarted tenants are their labs' own again
    b_client.delete(INSTANCES, "extra", TENANT_NAMESPACE)

    # -- a lab stopped without --wipe comes back with the same block and ports
    a_block, a_ports = a.block, sorted(int(e["port"]) for e in a.entries())
    a.run("down", timeout=120)
    assert {h.lab_id: verdict for h, verdict in holdings(registry=registry)}[a.lab_id] == "down"
    a.up()
    assert a.block == a_block
    assert sorted(int(e["port"]) for e in a.entries()) == a_ports
    preflight(a.tenants())

    # -- wiping a lab gives its block back; the other keeps its own
    ids = (a.lab_id, b.lab_id)
    a.run("down", "--wipe", timeout=120)
    assert {h.lab_id: verdict for h, verdict in holdings(registry=registry) if h.lab_id in ids} == {
        ids[1]: "live"
    }
