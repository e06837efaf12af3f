"""``python -m orchestration release`` on a real lab: exit codes, junit.xml, interruption, preflight.

One lab (3 nodes, 2 tenants) serves the module, with the short durations of
``tests/test_experiments.py``. The release runs one or two experiments, not the whole
default list: ``make demo`` runs the whole list through the same command.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from junitparser import JUnitXml, Skipped

from reports.checklist import default_checklist_path, parse_checklist
from reports.signoffs import signable_gates
from tests.test_experiments import LAB_VARS, Lab, holding_tenant_0, running_lab

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VARS = str(LAB_VARS)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab("test-release-", "--tenants", "2", "--nodes", "3", "--no-monitoring") as the_lab:
        yield the_lab


def _release(lab: Lab, out: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestration", "release", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=lab.env,
        check=False,
        cwd=lab.home,
    )


def _signoffs(path: Path) -> Path:
    entries = [
        {
            "gate": gate,
            "name": "Dana Smith",
            "role": "SRE, second engineer",
            "date": "2026-11-02",
            "statement": "walked through it end to end on staging; it worked as written",
            "evidence": "https://tickets.example.com/OPS-123",
        }
        for gate in signable_gates()
    ]
    import yaml

    path.write_text(yaml.safe_dump(entries, sort_keys=False))
    return path


def test_a_signed_off_lab_release_is_no_go_with_one_case_per_gate(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "release"
    signoffs = _signoffs(tmp_path / "signoffs.yaml")
    done = _release(
        lab, out, "--var-file", VARS, "--experiments", "pod-eviction", "--signoffs", str(signoffs)
    )
    # Lab-only evidence can never make GO, whoever signed the manual gates.
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "verdict: NO-GO" in done.stdout and "release: exit 1" in done.stdout
    record = json.loads((out / "release.json").read_text())
    assert record["exit_code"] == 1 and record["verdict"] == "NO-GO" and record["target"]["kind"] == "lab"
    assert (out / "07-metrics-go-no-go.md").exists() and (out / "07-metrics-go-no-go.html").exists()
    assert (out / "preflight" / "rbac.json").exists()

    xml = JUnitXml.fromfile(str(out / "junit.xml"))
    suites = {s.name: s for s in xml}
    gates = list(suites["gates"])
    items = parse_checklist(default_checklist_path().read_text()).items
    assert len(gates) == len(items), "one test case per checklist line"
    document = (out / "07-metrics-go-no-go.md").read_text()
    passed = [c for c in gates if c.is_passed]
    skipped = [c for c in gates if any(isinstance(r, Skipped) for r in c.result)]
    assert passed, "the signed-off gates pass"
    assert document.count("SIGNED OFF") >= len(passed)
    assert any("lab only" in (r.message or "") for c in skipped for r in c.result)
    (case,) = list(suites["experiments"])
    assert "pod-eviction" in case.name


def test_sigterm_rolls_back_and_still_writes_the_document_and_the_xml(lab: Lab, tmp_path: Path) -> None:
    client = lab.client()
    out = tmp_path / "release"
    with holding_tenant_0(client):
        argv = ["release", "--out", str(out), "--var-file", VARS, "--experiments", "node-drain,pod-eviction"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestration", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=lab.env,
            cwd=lab.home,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not list(out.glob("*/cordoned.json")):
            time.sleep(0.2)
        assert list(out.glob("*/cordoned.json")), "the drain never started"
        time.sleep(1.5)  # the budget refuses the eviction; the drain is retrying
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=180)
    assert proc.returncode == 130, output[-3000:]
    assert all(not n["spec"].get("unschedulable") for n in client.list("nodes")), output[-2000:]
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(out) in " ".join(p.info["cmdline"] or [])]
    document = (out / "07-metrics-go-no-go.md").read_text()
    assert "Incomplete: the release was interrupted" in document and "Not run: pod-eviction" in document
    xml = JUnitXml.fromfile(str(out / "junit.xml"))
    cases = {c.name: c for s in xml if s.name == "experiments" for c in s}
    assert any("node-drain" in n for n in cases), cases
    assert isinstance(cases["pod-eviction"].result[0], Skipped)  # never started
    assert json.loads((out / "release.json").read_text())["interrupted"] is True


@pytest.mark.parametrize(
    ("var_config", "args", "needle"),
    [
        ({"allowed_namespaces": "somewhere-else"}, (), "blast radius"),
        ({"mssql_group": "nothing.example.com"}, (), "MSSQL custom resources"),
        ({"namespace_typo": "tenants"}, (), "does not declare"),
        ({"runs_dir": "/tmp/somewhere-else"}, (), "runs_dir is set"),
        ({}, ("--experiments", "no-such-fault"), "no experiment"),
    ],
)
def test_a_preflight_failure_stops_before_any_fault(
    lab: Lab, tmp_path: Path, var_config: dict[str, str], args: tuple[str, ...], needle: str
) -> None:
    var_file = tmp_path / "vars.json"
    base = json.loads(Path(VARS).read_text())
    var_file.write_text(json.dumps({"configuration": {**base["configuration"], **var_config}}))
    out = tmp_path / "release"
    done = _release(lab, out, "--var-file", str(var_file), *args, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert needle in done.stdout, done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert not list(out.glob("*/faults.jsonl")) and not list(out.glob("journal-*.json")), "nothing ran"


def test_bad_command_lines_exit_2_in_one_line(tmp_path: Path) -> None:
    for args, needle in (
        (["--var-file", str(tmp_path / "missing.json")], "does not exist"),
        (["--var-file", VARS, "--signoffs", str(tmp_path / "nope.yaml")], "sign-off file"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "orchestration", "release", "--out", str(tmp_path / "r"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2 and needle in done.stdout, done.stdout + done.stderr
        assert len(done.stdout.splitlines()) == 1 and not done.stderr, done.stdout + done.stderr
