"""The experiments' failure paths end to end: the real ``chaos run`` against a real lab.

One lab (3 nodes, 2 tenants, no monitoring) serves the module: a fault past the
objective, SIGINT during a drain, bad configuration, malformed files, an RBAC denial, a
missing CRD, an unreachable API, a killed load, a crash in the control, the blast radius.
Durations are shortened through the experiments' own environment variables (``FAST``).
Every experiment's good path runs in ``tests/test_experiment_loop.py``, through the
README's loop; this module also holds the lab helpers the other lab tests share.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from lab.kubeclient import Kind, KubeClient
from lab.paths import lab_dir, project_root
from orchestration.experiment_tree import find_experiment
from tests.test_liveness import kill_locust_child

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHAOS = str(Path(sys.executable).with_name("chaos"))
EXPERIMENTS = project_root() / "experiments"
LAB_VARS = EXPERIMENTS / "vars" / "lab.vars.json"
FAST = {
    "HARNESS_OBSERVE_SECONDS": "4",
    "HARNESS_STABILITY": "2",
    "HARNESS_STEADY_WINDOW": "3",
    "HARNESS_NODE_DOWN_SECONDS": "3",
    "HARNESS_RECOVERY_TIMEOUT": "60",
    "HARNESS_PDB_RETRY_INTERVAL": "1",
}


def experiment_path(name: str) -> Path:
    """The repository's experiment called ``name``, in the matrix or opt-in."""
    path = find_experiment(EXPERIMENTS, name)
    assert path is not None, f"no experiment {name}"
    return path


class Lab:
    def __init__(self, home: Path, runs: Path) -> None:
        self.home = home
        self.runs = runs
        self.env = {
            **os.environ,
            "HARNESS_LAB_DIR": str(home),
            "KUBECONFIG": str(home / "kubeconfig"),
            "HOME": str(home / "home"),
            "HARNESS_RUNS_DIR": str(runs),
            **FAST,
        }
        self.env.pop("HARNESS_TENANTS", None)

    def lab(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lab", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )

    def chaos(
        self, experiment: str, *extra: str, env: dict[str, str] | None = None, timeout: float = 240
    ) -> tuple[subprocess.CompletedProcess[str], Path | None]:
        before = set(self.runs.glob("*"))
        done = subprocess.run(
            [
                CHAOS,
                "--no-version-check",
                "run",
                "--var-file",
                str(LAB_VARS),
                *extra,
                str(experiment_path(experiment)),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **(env or {})},
            check=False,
            cwd=self.home,
        )
        made = sorted(set(self.runs.glob("*")) - before)
        return done, (made[-1] if made else None)

    def start(self, experiment: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """``chaos run`` in the background, output merged into stdout (for tests that interrupt it)."""
        argv = [CHAOS, "--no-version-check", "run", *extra, "--var-file", str(LAB_VARS)]
        return subprocess.Popen(
            [*argv, str(experiment_path(experiment))],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**self.env, **(env or {})},
            cwd=self.home,
        )

    def client(self) -> KubeClient:
        return KubeClient.from_kubeconfig(self.home / "kubeconfig")

    def gonogo(self, runs: list[Path], out: Path) -> dict[str, str]:
        """``python -m reports gonogo`` over ``runs``; its table rows keyed by gate text."""
        done = subprocess.run(
            [sys.executable, "-m", "reports", "gonogo", *map(str, runs), "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
            env=self.env,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        lines = out.read_text().splitlines()
        rows = {line.split(" | ")[0].strip("| "): line for line in lines if line.startswith("| ")}
        rows["__verdict__"] = next(line for line in lines if line.startswith("**Verdict"))
        return rows


@contextlib.contextmanager
def running_lab(prefix: str, *up: str, env: dict[str, str] | None = None) -> Iterator[Lab]:
    """A lab brought up by ``lab up UP...`` in a fresh folder (mode 0755: the server's user
    must reach it), with ``env`` added to its commands; stopped and removed afterwards."""
    home = Path(tempfile.mkdtemp(prefix=prefix, dir=lab_dir()))
    home.chmod(0o755)
    (home / "home").mkdir()
    (home / "runs").mkdir()
    the_lab = Lab(home, home / "runs")
    the_lab.env.update(env or {})
    try:
        done = the_lab.lab("up", *up)
        assert done.returncode == 0, done.stderr
        yield the_lab
    finally:
        the_lab.lab("down", "--wipe")
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab("test-experiments-", "--tenants", "2", "--nodes", "3", "--no-monitoring") as the_lab:
        yield the_lab


def run_summary(run: Path | None) -> dict:
    assert run is not None and (run / "summary.json").exists(), run
    return json.loads((run / "summary.json").read_text())


def tenant_result(summary: dict, tenant: str) -> dict:
    (fault,) = summary["faults"]
    return next(r for r in fault["results"] if r["tenant"] == tenant)


def test_a_fault_past_the_objective_is_no_go(lab: Lab) -> None:
    done, run = lab.chaos(
        "node-restart", env={"HARNESS_RTO_OBJECTIVE": "2", "HARNESS_NODE_DOWN_SECONDS": "5"}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = run_summary(run)
    assert summary["verdict"] == "NO-GO"
    assert any("tenant-0" in v and "exceeds the 2s objective" in v for v in summary["violations"]), summary
    assert tenant_result(summary, "tenant-0")["rto_seconds"] > 2


def set_operator_node_loss(client: KubeClient, policy: str) -> None:
    """Roll the lab operator out with ``LAB_OPERATOR_NODE_LOSS=policy`` and wait until it runs."""
    env = [{"name": "LAB_OPERATOR_NODE_LOSS", "value": policy}]
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "operator", "env": env}]}}}}
    client.request(
        "PATCH",
        "/apis/apps/v1/namespaces/mssql-operator/deployments/mssql-operator",
        patch,
        content_type="application/strategic-merge-patch+json",
    )

    def rolled_out() -> bool:
        pods = client.list("pods", "mssql-operator", labels="app=mssql-operator")
        return len(pods) == 1 and all(
            p["status"].get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")
            and {"name": "LAB_OPERATOR_NODE_LOSS", "value": policy} in p["spec"]["containers"][0]["env"]
            for p in pods
        )

    deadline = time.monotonic() + 60
    while not rolled_out():
        assert time.monotonic() < deadline, "the operator was not rolled out with the new policy"
        time.sleep(0.2)


def test_a_node_lost_under_an_operator_that_waits_is_no_go_and_says_why(lab: Lab) -> None:
    """With ``LAB_OPERATOR_NODE_LOSS=wait`` nobody declares the lost node gone: the NoExecute
    taint evicts tenant-0's pod after its toleration, the pod stays Terminating and the tenant
    never recovers. The run is NO-GO and says so; the rollback brings the node back and the
    tenant recovers."""
    client = lab.client()
    set_operator_node_loss(client, "wait")
    try:
        done, run = lab.chaos("node-loss", env={"HARNESS_RECOVERY_TIMEOUT": "20"})
    finally:
        set_operator_node_loss(client, "out-of-service")
    assert run is not None, done.stderr[-3000:]
    assert json.loads((run / "chaos-journal.json").read_text())["deviated"] is True  # not Ready after it
    summary = run_summary(run)
    assert summary["verdict"] == "NO-GO"
    (fault,) = summary["faults"]
    lost = fault["tenant"]  # tenant-0, or the other tenant when the operator shares tenant-0's node
    assert not tenant_result(summary, lost)["recovered"]
    record = json.loads((run / "node-loss.json").read_text())
    assert record["handling"] == "none", record
    assert "node.kubernetes.io/out-of-service:NoExecute" not in record["taints"]
    (pod,) = [p for p in record["pods"] if p["name"].startswith(lost)]
    assert pod["how"] == "stayed" and pod["disruption_reason"] == "DeletionByTaintManager", pod
    # evicted by the unreachable taint once the default toleration (10 s, fast profile) ran out
    assert record["not_ready_after"] + 9 < pod["marked_for_deletion_after"] < record["not_ready_after"] + 14
    why = [v for v in summary["violations"] if v.startswith("lose ") and f"{lost}: not recovered" in v]
    assert why and "nobody applied node.kubernetes.io/out-of-service" in why[0], summary["violations"]
    # The rollback brought the node back, and with it the tenant.
    node = client.get("nodes", record["node"])
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
    instances = client.list(Kind("mssql.example.com", "v1alpha1", "mssqlinstances"), "tenants")
    ready = [c for i in instances for c in i["status"]["conditions"] if c["type"] == "Ready"]
    assert ready and all(c["status"] == "True" for c in ready)


@contextlib.contextmanager
def holding_tenant_0(client: KubeClient) -> Iterator[None]:
    """A PodDisruptionBudget that refuses every eviction of tenant-0's pod: a drain keeps retrying."""
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "hold-tenant-0", "namespace": "tenants"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"mssql.example.com/instance": "tenant-0"}}},
    }
    client.create("poddisruptionbudgets", pdb, "tenants")
    try:
        yield
    finally:
        client.delete("poddisruptionbudgets", "hold-tenant-0", "tenants")


def test_sigint_during_a_drain_uncordons_and_stops_the_load(lab: Lab) -> None:
    client = lab.client()
    with holding_tenant_0(client):
        before = set(lab.runs.glob("*"))
        proc = lab.start("node-drain")
        deadline = time.monotonic() + 60
        run = None
        while time.monotonic() < deadline:
            made = sorted(set(lab.runs.glob("*")) - before)
            if made and (made[-1] / "cordoned.json").exists():
                run = made[-1]
                break
            time.sleep(0.2)
        assert run is not None, "the drain never started"
        time.sleep(1.5)  # the budget refuses the eviction; the drain is retrying
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, output[-2000:]
    assert all(not n["spec"].get("unschedulable") for n in client.list("nodes")), output[-2000:]
    meta = json.loads((run / "run.json").read_text())
    assert meta["interrupted"] is True and meta["chaos_status"] == "interrupted"
    assert (run / "summary.json").exists()
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(run) in " ".join(p.info["cmdline"] or [])]


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"HARNESS_TARGET_TENANT": "tenant-9"}, "unknown target tenant 'tenant-9'"),
        ({"HARNESS_NAMESPACE": "kube-system"}, "not in allowed_namespaces"),
        ({"HARNESS_TENANT_NAMES": "tenant-0,nope"}, "unknown tenant(s) ['nope']"),
        ({"KUBECONFIG": "/nonexistent/kubeconfig"}, "kubeconfig"),
    ],
)
def test_bad_configuration_injects_nothing(lab: Lab, env: dict[str, str], needle: str) -> None:
    secrets_before = set(Path(tempfile.gettempdir()).glob("harness-secrets-*"))
    done, run = lab.chaos("pod-eviction", env=env)
    assert done.returncode != 0
    assert needle in done.stderr + done.stdout
    assert run is None  # no run folder, so no fault log: nothing was injected
    assert "Traceback" not in done.stderr + done.stdout
    # Tenants were discovered (passwords written) before the target was refused: none may stay.
    assert set(Path(tempfile.gettempdir()).glob("harness-secrets-*")) <= secrets_before


def test_malformed_experiment_and_var_file(lab: Lab, tmp_path: Path) -> None:
    before = set(lab.runs.glob("*"))
    broken = tmp_path / "broken.json"
    broken.write_text('{"title": "x", "method": [')
    done = subprocess.run(
        [CHAOS, "--no-version-check", "run", str(broken)],
        capture_output=True,
        text=True,
        env=lab.env,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    bad_vars = tmp_path / "vars.json"
    bad_vars.write_text("{not json")
    done = subprocess.run(
        [
            CHAOS,
            "--no-version-check",
            "run",
            "--var-file",
            str(bad_vars),
            str(EXPERIMENTS / "pod-eviction.json"),
        ],
        capture_output=True,
        text=True,
        env=lab.env,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert f"var file {bad_vars} is not valid JSON" in done.stdout + done.stderr
    assert set(lab.runs.glob("*")) == before  # refused before any load or fault


def test_rbac_denial_fails_the_action_clearly_and_rollbacks_still_run(lab: Lab) -> None:
    policy = lab.home / "policy.yaml"
    original = policy.read_text()
    policy.write_text(
        "default: allow\ndeny:\n  - {verb: create, resource: pods/eviction, namespace: tenants}\n"
    )
    try:
        done, run = lab.chaos("node-drain")
    finally:
        policy.write_text(original)
    assert run is not None, done.stderr[-2000:]
    journal = json.loads((run / "chaos-journal.json").read_text())
    drain = next(r for r in journal["run"] if r["activity"]["name"] == "drain-target-tenant-node")
    assert drain["status"] == "failed"
    assert "access denied (403)" in drain["exception"][-1]
    assert [r["status"] for r in journal["rollbacks"]] == ["succeeded"]
    assert all(not n["spec"].get("unschedulable") for n in lab.client().list("nodes"))
    # The drain was refused: whatever the writes say, the run cannot be GO.
    summary = run_summary(run)
    assert summary["verdict"] == "NO-GO"
    assert any("the injection never completed" in v for v in summary["violations"]), summary["violations"]
    assert any("drain-target-tenant-node" in v and "403" in v for v in summary["violations"])
    assert "harness_verdict_go 0.0" in (run / "metrics.prom").read_text()
    assert "# Chaos run" in (run / "report.md").read_text() and ": NO-GO" in (run / "report.md").read_text()


def test_missing_crd_and_unreachable_api_inject_nothing(lab: Lab, tmp_path: Path) -> None:
    no_crd = tmp_path / "no-crd.json"
    no_crd.write_text(
        json.dumps({"configuration": {"mssql_plural": "mssqlnothings", "allowed_namespaces": "tenants"}})
    )
    done, run = lab.chaos("pod-eviction", "--var-file", str(no_crd))
    assert done.returncode != 0 and run is None
    assert "not found (404): is the CRD installed" in done.stdout + done.stderr
    from lab.api.kubeconfig import write_kubeconfig
    from lab.engine import free_port

    dead = write_kubeconfig(tmp_path / "dead-kubeconfig", f"http://127.0.0.1:{free_port()}")
    done, run = lab.chaos("pod-eviction", env={"KUBECONFIG": str(dead)})
    assert done.returncode != 0 and run is None
    assert "cannot reach the Kubernetes API" in done.stdout + done.stderr


def test_no_secret_in_any_run_folder_or_log(lab: Lab) -> None:
    assert_no_secret_in_runs(lab)


def assert_no_secret_in_runs(lab: Lab) -> None:
    """No tenant password in any file of the lab's run folders or in its logs."""
    import base64

    secrets = [
        base64.b64decode(s["data"]["password"]).decode()
        for s in lab.client().list("secrets", "tenants")
        if "password" in (s.get("data") or {})
    ]
    assert len(secrets) == 2
    assert list(lab.runs.glob("*")), "run after the experiments so there is something to search"
    searched = 0
    for path in [*lab.runs.rglob("*"), *lab.home.glob("*.log")]:
        if path.is_file() and path.suffix != ".png":
            data = path.read_bytes()
            searched += 1
            assert not any(secret.encode() in data for secret in secrets), path
    assert searched > 20


def test_a_var_file_key_the_experiment_does_not_declare_is_refused(lab: Lab, tmp_path: Path) -> None:
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"configuration": {"namspace": "prod"}}))
    done, run = lab.chaos("pod-eviction", "--var-file", str(typo))
    assert done.returncode != 0 and run is None
    assert "sets ['namspace'], which the experiment does not declare" in done.stdout + done.stderr


def test_a_load_killed_after_recovery_makes_the_run_no_go(lab: Lab) -> None:
    """The reproduction: kill -9 the Locust child of ``chaos run`` during the pause after the fault."""
    before = set(lab.runs.glob("*"))
    proc = lab.start(
        "pod-eviction",
        "--rollback-strategy",
        "always",
        env={"HARNESS_TARGET_TENANT": "tenant-1", "HARNESS_OBSERVE_SECONDS": "10"},
    )
    try:
        deadline = time.monotonic() + 90
        run = None
        while time.monotonic() < deadline:
            made = sorted(set(lab.runs.glob("*")) - before)
            seen = made[-1] / "observations.jsonl" if made else None
            if seen is not None and seen.exists() and '"recovery"' in seen.read_text():
                run = made[-1]
                break
            time.sleep(0.2)
        assert run is not None, "the fault never recovered"
        time.sleep(3.0)  # in the pause after the fault
        kill_locust_child(proc.pid)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    summary = run_summary(run)
    assert summary["verdict"] == "NO-GO", output[-2000:]
    violations = "\n".join(summary["violations"])
    assert "the load process died" in violations
    assert "measurement gap" in violations and "cannot tell" in violations
    assert "harness_verdict_go 0.0" in (run / "metrics.prom").read_text()
    assert "NO-GO" in (run / "report.md").read_text().splitlines()[0]


def test_a_crash_inside_the_control_interrupts_the_run(lab: Lab, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-type.json"
    wrong.write_text(json.dumps({"configuration": {"allowed_namespaces": 5}}))
    done, run = lab.chaos("pod-eviction", "--var-file", str(wrong))
    out = done.stdout + done.stderr
    assert done.returncode != 0 and run is None
    assert "'allowed_namespaces' must be a comma-separated string or a list of names, got 5 (int)" in out
    assert "Traceback" not in out


def test_blast_radius_on_a_cluster_that_is_not_the_lab(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same API, judged as a real cluster: empty allow-list, operator and node guards."""
    from kubernetes.config import kube_config

    from probes.errors import ProbeError
    from probes.k8s import actions, kube

    monkeypatch.setenv("KUBECONFIG", lab.env["KUBECONFIG"])
    # The client reads KUBECONFIG once, when first imported (earlier tests may have done so).
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", lab.env["KUBECONFIG"])
    monkeypatch.delenv("HARNESS_RUN_DIR", raising=False)
    url = kube.api_server_url()
    monkeypatch.setitem(kube._lab_servers, url, False)
    pods = {p["metadata"]["name"]: p for p in lab.client().list("pods", "tenants")}
    with pytest.raises(ProbeError, match="allowed_namespaces is empty"):
        actions.evict_tenant_pod("tenant-0", configuration={"allowed_namespaces": ""})
    with pytest.raises(ProbeError, match="'mssql-operator' is not in allowed_namespaces"):
        actions.restart_operator(configuration={"allowed_namespaces": "tenants"})
    with pytest.raises(ProbeError, match="not in allowed_namespaces"):
        actions.set_canary("tenant-0", configuration={"allowed_namespaces": "other"})
    (operator,) = lab.client().list("pods", "mssql-operator")
    node = operator["spec"]["nodeName"]
    with pytest.raises(ProbeError, match=r"also runs pods of namespaces \['mssql-operator'\]"):
        actions.drain_tenant_node(node=node, configuration={"allowed_namespaces": "tenants"})
    # Nothing was injected: no node cordoned, no tenant pod replaced.
    assert all(not n["spec"].get("unschedulable") for n in lab.client().list("nodes"))
    after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in lab.client().list("pods", "tenants")}
    assert after == {name: p["metadata"]["uid"] for name, p in pods.items()}
