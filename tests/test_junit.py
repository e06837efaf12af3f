"""The go/no-go decision as JUnit XML: each gate result's state, the runs, the verdict case, the CLI.

Run folders are hand-written in the harness's formats (``tests.test_gonogo``'s helpers);
every file written is read back with ``junitparser`` and with ``xml.etree.ElementTree``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import junitparser as jp
import pytest
import yaml
from junitparser import Error, Failure, JUnitXml, Properties, Skipped

from reports.checklist import Checklist, ChecklistItem
from reports.errors import ReportError
from reports.gonogo import (
    FAIL,
    LAB_ONLY,
    MANUAL,
    NOT_RUN,
    PASS,
    SIGNED_OFF,
    GateResult,
    GoNoGo,
    evaluate,
    load_run,
    write_gonogo,
)
from reports.junit import LAB_ONLY_MESSAGE, check_junit_path, junit_xml, write_junit
from tests.test_gonogo import (
    CRDS_GATE,
    FI,
    LAB,
    PROJECT,
    RBAC,
    RBAC_OK,
    RUNBOOK,
    SOAK,
    _edit_summary,
    _journal,
    _k8s,
    _passing_fault_runs,
    _summary,
    _write,
)

CI_LINE = "Automated e2e pipeline in CI for each release tag"
ODD_LINE = "Escaping <checked> & \"quoted\" 'too'"
SIGNOFF = {
    "gate": "runbook-peer-validation",
    "name": "Dana Smith",
    "role": "SRE, second engineer",
    "date": "2026-01-15",
    "statement": "followed the restore runbook end to end on staging",
    "evidence": "https://tickets.example.com/OPS-123",
}


# --------------------------------------------------------------------------- reading back


def _read(path: Path) -> dict[str, jp.TestSuite]:
    """The suites by name; the file must also parse with the standard library."""
    root = ElementTree.parse(path).getroot()
    assert root.tag == "testsuites"
    xml = JUnitXml.fromfile(str(path))
    suites = {suite.name: suite for suite in xml}
    assert [s.get("name") for s in root.findall("testsuite")] == list(suites)
    return suites


def _cases(suite: jp.TestSuite) -> dict[str, jp.TestCase]:
    return {case.name: case for case in suite}


def _props(element: jp.TestCase) -> dict[str, str]:
    props = element.child(Properties)
    return {} if props is None else {p.name: p.value for p in props}


def _suite_props(suite: jp.TestSuite) -> dict[str, str]:
    return {p.name: p.value for p in suite.properties()}


def _counts(suite: jp.TestSuite | JUnitXml) -> tuple[int, int, int, int]:
    return (suite.tests, suite.failures, suite.skipped, suite.errors)


def _state(case: jp.TestCase) -> tuple[str, str | None, str | None]:
    """(passed/failure/skipped/error, message, text) of one testcase."""
    results = case.result
    assert len(results) <= 1, results
    if not results:
        return "passed", None, None
    result = results[0]
    kind = {Failure: "failure", Skipped: "skipped", Error: "error"}[type(result)]
    return kind, result.message, result.text


# --------------------------------------------------------------------------- gates


def _real_decision(root: Path) -> tuple[GoNoGo, Path, list[Path]]:
    """Every result kind from real run folders: PASS, PASS (lab only), NOT RUN, FAIL, SIGNED OFF, MANUAL."""
    runs = _passing_fault_runs(root)
    _edit_summary(runs[2], target=LAB)  # node-restart only in the lab: failure-injection is lab only
    denied = json.loads(json.dumps(RBAC_OK))
    denied["checks"][1]["allowed"] = False
    (runs[0] / "rbac.json").write_text(json.dumps(denied))
    checklist = root / "checklist.md"
    checklist.write_text(
        "# Gates\n\n## 1) Tests\n"
        f"- [ ] {CRDS_GATE}\n- [ ] {FI}\n- [ ] {SOAK}\n- [ ] {RBAC}\n"
        f"## Pre-Go-Live technical gates\n- [ ] {RUNBOOK}\n- [ ] {ODD_LINE}\n"
        f"## 4) Planned next improvements\n- [ ] {CI_LINE}\n"
    )
    signoffs = root / "signoffs.yaml"
    signoffs.write_text(yaml.safe_dump([SIGNOFF], sort_keys=False))
    out = root / "out" / "go-no-go.md"
    out.parent.mkdir()
    return write_gonogo(runs, out, checklist, signoffs), checklist, runs


def test_every_gate_result_is_its_junit_state_with_result_and_mandatory_properties(tmp_path: Path) -> None:
    decision, checklist, _ = _real_decision(tmp_path)
    by_text = {g.item.text: g.result for g in decision.gates}
    assert by_text == {
        CRDS_GATE: PASS,
        FI: LAB_ONLY,
        SOAK: NOT_RUN,
        RBAC: FAIL,
        RUNBOOK: SIGNED_OFF,
        ODD_LINE: MANUAL,
        CI_LINE: MANUAL,
    }
    path = write_junit(decision, tmp_path / "go-no-go.xml", checklist_path=checklist)
    suites = _read(path)
    gates = suites["gates"]
    assert _counts(gates) == (7, 1, 4, 0)
    cases = _cases(gates)
    assert list(cases) == [
        "crds-installed",
        "failure-injection",
        "soak-24h",
        "rbac-preflight",
        "runbook-peer-validation",
        ODD_LINE,  # unmapped: named by its text
        "ci-e2e-pipeline",
    ]
    assert {c.classname for c in cases.values()} == {
        "Tests",
        "Pre-Go-Live technical gates",
        "Planned next improvements",
    }

    assert _state(cases["crds-installed"]) == ("passed", None, None)
    assert "run-operator-restart before/crds.txt lists mssqlinstances" in cases["crds-installed"].system_out

    kind, message, text = _state(cases["failure-injection"])
    assert (kind, message) == ("skipped", LAB_ONLY_MESSAGE)
    assert message == "passed on the embedded lab only: not evidence for a real cluster"
    assert text is not None and "not on a real cluster" in text
    assert cases["failure-injection"].result[0].type == "lab-only"

    assert _state(cases["soak-24h"])[:2] == (
        "skipped",
        "no soak run (longest run 0.20 h; only a run of experiments/opt-in/soak.json, with its `soak` block, "
        "counts: "
        "a plain run checks no log backups)",
    )

    rbac = next(g for g in decision.gates if g.gate_id == "rbac-preflight")
    kind, message, text = _state(cases["rbac-preflight"])
    assert kind == "failure"
    assert message is not None and "mssql-operator cannot delete pods in db" in message
    assert rbac.evidence[0].startswith("[run-operator-restart/rbac.json](../runs/run-operator-restart/")
    assert message == "run-operator-restart/rbac.json: mssql-operator cannot delete pods in db"
    assert text is not None and len(text.splitlines()) == len(rbac.evidence)
    assert "](" not in text  # Markdown links keep their label only

    signed = cases["runbook-peer-validation"]
    assert _state(signed) == ("passed", None, None)
    assert signed.system_out.startswith("signed off by Dana Smith (SRE, second engineer) on 2026-01-15")
    assert "https://tickets.example.com/OPS-123" in signed.system_out
    assert _props(signed)["signed_off_by"] == "Dana Smith"
    assert _props(signed)["signed_off_on"] == "2026-01-15"

    assert _state(cases[ODD_LINE])[:2] == ("skipped", "no automated check for this line (unmapped)")
    assert _state(cases["ci-e2e-pipeline"])[:2] == ("skipped", "planned: not checked by a run")

    results = {name: _props(case)["result"] for name, case in cases.items()}
    assert results == {
        "crds-installed": PASS,
        "failure-injection": LAB_ONLY,
        "soak-24h": NOT_RUN,
        "rbac-preflight": FAIL,
        "runbook-peer-validation": SIGNED_OFF,
        ODD_LINE: MANUAL,
        "ci-e2e-pipeline": MANUAL,
    }
    mandatory = {name: _props(case)["mandatory"] for name, case in cases.items()}
    assert mandatory.pop("ci-e2e-pipeline") == "false"
    assert set(mandatory.values()) == {"true"}
    assert _props(cases[ODD_LINE])["gate_id"] == "unmapped"
    assert _props(cases["soak-24h"])["checklist_line"] == SOAK

    for suite in suites.values():
        props = _suite_props(suite)
        assert props["verdict"] == "NO-GO"
        assert props["checklist_path"] == str(checklist)
        assert props["checklist"] == "Gates"


def test_the_root_is_named_and_counts_every_suite(tmp_path: Path) -> None:
    decision, _, _ = _real_decision(tmp_path)
    path = write_junit(decision, tmp_path / "j.xml", name="release 1.2 gates")
    xml = JUnitXml.fromfile(str(path))
    assert xml.name == "release 1.2 gates"
    suites = _read(path)
    assert list(suites) == ["gates", "experiments", "verdict"]
    assert _counts(xml) == tuple(sum(c) for c in zip(*(_counts(s) for s in suites.values()), strict=True))
    assert _counts(suites["experiments"]) == (3, 0, 0, 0)
    assert "checklist_path" not in _suite_props(suites["gates"])  # not given: not invented
    assert path.read_text(encoding="utf-8").startswith("<?xml version='1.0' encoding='utf-8'?>\n")


# --------------------------------------------------------------------------- the verdict case


def _decision(gates: list[tuple[str, str, bool]], verdict: str, runs: list[Any] | None = None) -> GoNoGo:
    """A hand-made decision: (line, result, mandatory) per gate."""
    items = [ChecklistItem("Tests" if m else "Planned next improvements", t, m) for t, _, m in gates]
    results = [
        GateResult(item, r, [f"evidence of {item.text}"], None)
        for item, (_, r, _) in zip(items, gates, strict=True)
    ]
    return GoNoGo(verdict, results, runs or [], Checklist("Gates", items))


def test_a_no_go_of_only_skipped_gates_still_fails_the_verdict_case(tmp_path: Path) -> None:
    decision = _decision([("a", NOT_RUN, True), ("b", LAB_ONLY, True), ("c", MANUAL, True)], "NO-GO")
    suites = _read(write_junit(decision, tmp_path / "j.xml"))
    assert _counts(suites["gates"]) == (3, 0, 3, 0)
    verdict = suites["verdict"]
    assert _counts(verdict) == (1, 1, 0, 0)
    kind, message, text = _state(_cases(verdict)["go-no-go"])
    assert (kind, message) == ("failure", "NO-GO: 3 mandatory gate(s) not passed")
    assert text == "NOT RUN a: evidence of a\nPASS (lab only) b: evidence of b\nMANUAL c: evidence of c"
    assert _props(_cases(verdict)["go-no-go"]) == {
        "verdict": "NO-GO",
        "mandatory_gates": "3",
        "blocking": "3",
    }


def test_go_passes_every_case_and_optional_lines_do_not_block(tmp_path: Path) -> None:
    decision = _decision([("a", PASS, True), ("b", SIGNED_OFF, True), ("c", NOT_RUN, False)], "GO")
    suites = _read(write_junit(decision, tmp_path / "j.xml"))
    assert _counts(suites["gates"]) == (3, 0, 1, 0)
    case = _cases(suites["verdict"])["go-no-go"]
    assert _state(case) == ("passed", None, None)
    assert case.system_out == "GO: every one of 2 mandatory gate(s) passed"
    assert _props(_cases(suites["gates"])["c"])["mandatory"] == "false"


@pytest.mark.parametrize(
    ("gates", "verdict", "expected"),
    [
        ([("a", "WHATEVER", True)], "NO-GO", ("gates", "error")),  # an unknown result is never green
        ([("a", PASS, True)], "MAYBE", ("verdict", "error")),
        ([("a", NOT_RUN, True)], "GO", ("verdict", "failure")),  # a GO the gates contradict
        ([("a", PASS, False)], "NO-GO", ("verdict", "failure")),  # nothing mandatory
    ],
    ids=["unknown-result", "unknown-verdict", "contradicted-go", "no-mandatory-gate"],
)
def test_what_cannot_be_read_as_passed_is_not_green(
    tmp_path: Path, gates: list[tuple[str, str, bool]], verdict: str, expected: tuple[str, str]
) -> None:
    suites = _read(write_junit(_decision(gates, verdict), tmp_path / "j.xml"))
    suite, kind = expected
    case = next(iter(suites[suite]))
    assert _state(case)[0] == kind


# --------------------------------------------------------------------------- experiments


def _runs(root: Path) -> list[Path]:
    passing = _k8s(root, "operator-restart")
    failing = _k8s(
        root, "pod-eviction", rto=75.0, violations=["pod-eviction 1 t-1: RTO 75.0s exceeds the 60s objective"]
    )
    unknown = _k8s(
        root,
        "node-restart",
        violations=["t-1: cannot tell whether acknowledged writes were lost: read-back failed"],
        totals={"t-0": {"lost": 0}, "t-1": {"lost": None}},
    )
    no_verdict = _k8s(root, "node-drain")
    _edit_summary(no_verdict, verdict=..., started_at_epoch=..., target=LAB)
    local = _write(root, "local-1", _summary("local-1", "freeze", experiment=False, hours=0.01))
    return [passing, failing, unknown, no_verdict, local]


def test_each_run_is_a_testcase_that_fails_errors_or_passes_with_its_numbers(tmp_path: Path) -> None:
    runs = [load_run(p) for p in _runs(tmp_path)]
    checklist = Checklist("Gates", [ChecklistItem("Tests", FI, True)])
    decision = evaluate(checklist, runs, document=tmp_path / "doc.md")
    suites = _read(write_junit(decision, tmp_path / "j.xml"))
    experiments = suites["experiments"]
    assert _counts(experiments) == (5, 1, 0, 2)
    cases = _cases(experiments)
    assert list(cases) == [
        "operator-restart under load [run-operator-restart]",
        "pod-eviction under load [run-pod-eviction]",
        "node-restart under load [run-node-restart]",
        "node-drain under load [run-node-drain]",
        "local run (freeze) [local-1]",
    ]
    assert {c.classname for c in cases.values()} == {"experiments"}
    passing, failing, unknown, no_verdict, local = cases.values()

    assert _state(passing) == ("passed", None, None)
    assert passing.time == pytest.approx(720.0)
    props = _props(passing)
    assert (props["worst_rto_seconds"], props["lost_writes"], props["target"], props["verdict"]) == (
        "8.00",
        "0",
        "cluster",
        "GO",
    )
    assert props["run_id"] == "run-operator-restart" and props["fault"] == "operator-restart"

    kind, message, _ = _state(failing)
    assert (kind, message) == ("failure", "pod-eviction 1 t-1: RTO 75.0s exceeds the 60s objective")
    assert _props(failing)["worst_rto_seconds"] == "75.00" and _props(failing)["verdict"] == "NO-GO"

    kind, message, _ = _state(unknown)
    assert kind == "error"
    assert message == "t-1: cannot tell whether acknowledged writes were lost: read-back failed"
    assert _props(unknown)["lost_writes"] == "cannot tell"

    kind, message, _ = _state(no_verdict)
    assert (kind, message) == ("error", "verdict missing (no violation recorded)")
    assert no_verdict.time == 0.0  # no start time: duration unknown
    assert _props(no_verdict)["verdict"] == "missing" and _props(no_verdict)["target"] == "lab"

    assert _state(local) == ("passed", None, None)
    assert local.time == pytest.approx(36.0)
    assert experiments.time == pytest.approx(720 * 3 + 36.0)
    assert _suite_props(experiments)["runs"] == "5"


@pytest.mark.parametrize(("status", "kind"), [("failed", "failure"), ("aborted", "error")])
def test_a_chaos_experiment_that_failed_fails_and_one_aborted_cannot_tell(
    tmp_path: Path, status: str, kind: str
) -> None:
    run = load_run(_k8s(tmp_path, "pod-eviction", journal=_journal(status=status)))
    decision = evaluate(
        Checklist("Gates", [ChecklistItem("Tests", FI, True)]), [run], document=tmp_path / "d.md"
    )
    case = next(iter(_read(write_junit(decision, tmp_path / "j.xml"))["experiments"]))
    assert _state(case)[:2] == (kind, f"chaos experiment {status}")


# --------------------------------------------------------------------------- text and files


def test_markup_and_control_characters_survive_as_well_formed_xml(tmp_path: Path) -> None:
    item = ChecklistItem('Sec <1> & "two"', ODD_LINE, True)
    evidence = ['first <b>&amp; "line"\x1b[0m', "[run-1](<../runs/run 1/>): second ]]> line"]
    decision = GoNoGo("NO-GO", [GateResult(item, FAIL, evidence)], [], Checklist('T <&">', [item]))
    path = write_junit(decision, tmp_path / "j.xml")
    case = _cases(_read(path)["gates"])[ODD_LINE]
    assert case.classname == 'Sec <1> & "two"'
    kind, message, text = _state(case)
    assert kind == "failure"
    assert message == 'first <b>&amp; "line"\ufffd[0m'
    assert text == 'first <b>&amp; "line"\ufffd[0m\nrun-1: second ]]> line'
    assert _props(case)["checklist_line"] == ODD_LINE
    assert _suite_props(_read(path)["gates"])["checklist"] == 'T <&">'


def test_the_file_is_replaced_whole_and_nothing_is_left_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "j.xml"
    path.write_text("old")
    write_junit(_decision([("a", PASS, True)], "GO"), path)
    assert _counts(_read(path)["gates"]) == (1, 0, 0, 0)
    assert sorted(os.listdir(tmp_path)) == ["j.xml"]


@pytest.mark.parametrize("problem", ["folder", "missing-parent", "empty", "the-document", "the-html"])
def test_a_bad_junit_path_is_one_line(tmp_path: Path, problem: str) -> None:
    doc = tmp_path / "go.md"
    path = {
        "folder": tmp_path,
        "missing-parent": tmp_path / "no" / "j.xml",
        "empty": Path(""),
        "the-document": doc,
        "the-html": tmp_path / "go.html",
    }[problem]
    with pytest.raises(ReportError) as info:
        check_junit_path(path, document=doc)
    message = str(info.value)
    assert "\n" not in message and "--junit" in message
    if problem not in ("the-document", "the-html"):  # write_junit alone does not know the document
        with pytest.raises(ReportError):
            write_junit(_decision([("a", PASS, True)], "GO"), path)
    assert sorted(os.listdir(tmp_path)) == []


def test_junit_xml_is_built_without_writing(tmp_path: Path) -> None:
    xml = junit_xml(_decision([("a", FAIL, True)], "NO-GO"), now=0.0)
    suites = {s.name: s for s in xml}
    assert suites["gates"].timestamp == "1970-01-01T00:00:00Z"
    assert _counts(xml) == (2, 2, 0, 0)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the command line


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reports", "gonogo", *args],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_writes_the_junit_file_beside_the_document(tmp_path: Path) -> None:
    runs = _passing_fault_runs(tmp_path)
    out = tmp_path / "go-no-go.md"
    junit = tmp_path / "go-no-go.xml"
    proc = _cli(*map(str, runs), "--out", str(out), "--junit", str(junit))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"NO-GO {out}", str(junit)]
    assert out.is_file()
    suites = _read(junit)
    assert _counts(suites["gates"])[0] == 26  # the bundled checklist's lines
    assert _counts(suites["experiments"]) == (3, 0, 0, 0)
    assert _counts(suites["verdict"]) == (1, 1, 0, 0)
    assert _suite_props(suites["gates"])["checklist_path"] == str(PROJECT / "reports" / "checklist.md")


@pytest.mark.parametrize("problem", ["missing-folder", "same-as-out"])
def test_cli_bad_junit_path_exits_2_with_one_line_and_writes_nothing(tmp_path: Path, problem: str) -> None:
    run = _k8s(tmp_path, "pod-eviction")
    out = tmp_path / "doc.md"
    junit = tmp_path / "no" / "such" / "j.xml" if problem == "missing-folder" else out
    proc = _cli(str(run), "--out", str(out), "--junit", str(junit))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reports: ") and "--junit" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not out.exists() and not junit.exists()
    assert not (tmp_path / "doc.html").exists() and not (tmp_path / "doc-rto.png").exists()
