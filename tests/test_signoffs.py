"""Sign-offs for the gates only a person can judge: validation, what they do to the verdict, the template.

Run folders come from ``tests.test_gonogo`` (hand-written in the formats the harness
writes). The gates a person signs are marked in the gate registry
(``manual(reason, signable=True)``); the ``signable`` fixture marks the two the
checklist has today so these tests do not depend on another module's edit.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from reports import gates as gates_module
from reports import gonogo_decision
from reports.__main__ import main
from reports.errors import ReportError
from reports.gate_base import ManualGate, is_signable, manual, registrar, signable_ids
from reports.gonogo import FAIL, MANUAL, NOT_RUN, PASS, SIGNED_OFF, GoNoGo, write_gonogo
from reports.signoffs import (
    SignOff,
    apply_signoff,
    parse_signoffs,
    read_signoffs,
    signable_gates,
    signoffs_template,
)
from tests.test_gonogo import CRDS_GATE, FI, READY, RTO, _gates, _passing_fault_runs

RUNBOOK = "Runbook validated by a second engineer (peer validation)"
CI = "Automated e2e pipeline in CI for each release tag"
SIGNABLE = ("runbook-peer-validation", "ci-e2e-pipeline")
MACHINE_GATES = ("alerting", "restore-target-exists", "helm-deploy", "rto-objective", "failure-injection")
TODAY = dt.datetime.now(dt.UTC).date()
ENTRY = {
    "gate": "runbook-peer-validation",
    "name": "Dana Smith",
    "role": "SRE, second engineer",
    "date": "2026-01-15",
    "statement": "followed the restore runbook end to end on staging; every step worked as written",
    "evidence": "https://tickets.example.com/OPS-123",
}


@pytest.fixture
def signable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mark the checklist's person-judged gates as signable in the live registry."""
    for gate_id in SIGNABLE:
        decide = gates_module.GATES[gate_id]
        reason = decide.reason if isinstance(decide, ManualGate) else "a person signs it off"
        monkeypatch.setitem(gates_module.GATES, gate_id, manual(reason, signable=True))


def _file(root: Path, entries: Any, name: str = "signoffs.yaml") -> Path:
    path = root / name
    path.write_text(entries if isinstance(entries, str) else yaml.safe_dump(entries, sort_keys=False))
    return path


def _checklist(root: Path, *extra: str) -> Path:
    """Mandatory gates the three passing fault runs pass, plus ``extra`` lines (mandatory too)."""
    path = root / "checklist.md"
    lines = "".join(f"- [ ] {line}\n" for line in (CRDS_GATE, READY, FI, RTO, *extra))
    path.write_text(f"# Gates\n\n## Tests\n{lines}\n## Planned next improvements\n- [ ] {CI}\n")
    return path


def _judge(root: Path, checklist: Path, signoffs: Path | None) -> tuple[GoNoGo, str]:
    out = root / "out" / "go-no-go.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = write_gonogo(_passing_fault_runs(root), out, checklist, signoffs)
    return result, out.read_text()


# --------------------------------------------------------------------------- which gates


def test_the_registry_flag_marks_signable_gates_and_machine_gates_are_not() -> None:
    registry: dict[str, Any] = {}
    gate = registrar(registry)
    gate("person")(manual("a person judges it", signable=True))
    gate("unsigned")(manual("nothing checks it yet"))
    gate("machine")(lambda _ctx: (PASS, ["checked"]))
    assert signable_ids(registry) == ("person",)
    assert set(signable_gates()) <= set(SIGNABLE)  # whatever is marked today, only person-judged gates
    for gate_id in MACHINE_GATES:
        assert not is_signable(gates_module.GATES[gate_id]), gate_id


# --------------------------------------------------------------------------- what a sign-off does


def test_a_signed_manual_mandatory_gate_is_signed_off_and_go_is_reachable(
    tmp_path: Path, signable: None
) -> None:
    checklist = _checklist(tmp_path, RUNBOOK)
    unsigned, _ = _judge(tmp_path / "a", checklist, None)
    assert unsigned.verdict == "NO-GO"
    assert _gates(unsigned)[RUNBOOK].result == MANUAL

    result, text = _judge(tmp_path / "b", checklist, _file(tmp_path, [ENTRY]))
    gate = _gates(result)[RUNBOOK]
    assert result.verdict == "GO"
    assert gate.result == SIGNED_OFF == "SIGNED OFF"
    line = (
        "SIGNED OFF by Dana Smith (SRE, second engineer) on 2026-01-15: followed the restore runbook end to "
        "end on staging; every step worked as written (evidence: https://tickets.example.com/OPS-123)"
    )
    assert gate.evidence == [line]
    assert f"| {RUNBOOK} | `runbook-peer-validation` | **SIGNED OFF** | {line} |" in text
    assert "1 of them signed off by a person (`runbook-peer-validation`)" in text
    section = text.split("## Sign-offs", 1)[1].split("\n## ", 1)[0]
    assert (
        "| `runbook-peer-validation` | Dana Smith | SRE, second engineer | 2026-01-15 | followed the restore "
        "runbook end to end on staging; every step worked as written | "
        "[https://tickets.example.com/OPS-123](<https://tickets.example.com/OPS-123>) | applied: SIGNED OFF |"
    ) in section
    assert "- Sign-offs: `../../signoffs.yaml`: 1 given, 1 applied" in text


def test_a_sign_off_never_overrides_a_fail(
    tmp_path: Path, signable: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = gonogo_decision.judge

    def judge(gate_id: str, ctx: Any) -> tuple[str, list[str]]:
        if gate_id == "runbook-peer-validation":  # as if a check had disproved it
            return FAIL, ["the runbook's restore step failed on staging"]
        return real(gate_id, ctx)

    monkeypatch.setattr(gonogo_decision, "judge", judge)
    result, text = _judge(tmp_path, _checklist(tmp_path, RUNBOOK), _file(tmp_path, [ENTRY]))
    gate = _gates(result)[RUNBOOK]
    assert result.verdict == "NO-GO"
    assert gate.result == FAIL
    assert gate.evidence[0] == "the runbook's restore step failed on staging"
    assert (
        "sign-off by Dana Smith (SRE, second engineer) on 2026-01-15 ignored: a sign-off never overrides"
        in (gate.evidence[1])
    )
    assert "ignored: a sign-off never overrides a FAIL" in text.split("## Sign-offs", 1)[1]
    assert f"- **FAIL** `runbook-peer-validation`: Tests: {RUNBOOK}: " in text


@pytest.mark.parametrize(
    ("status", "why"),
    [
        (FAIL, "never overrides a FAIL"),
        (NOT_RUN, "run it instead of signing it"),
        ("PASS (lab only)", "from a real cluster decides it"),
        (PASS, "already passed"),
    ],
)
def test_only_a_manual_result_becomes_signed_off(signable: None, status: str, why: str) -> None:
    signoff = SignOff(**ENTRY, entry=1)
    kept, evidence, outcome = apply_signoff(signoff, status, ["machine evidence"])
    assert kept == status
    assert evidence[0] == "machine evidence" and why in evidence[1] and "ignored" in evidence[1]
    assert not outcome.applied
    signed, evidence, outcome = apply_signoff(signoff, MANUAL, ["needs a second engineer's sign-off"])
    assert signed == SIGNED_OFF and outcome.applied and evidence == [signoff.line()]


def test_a_sign_off_for_a_gate_the_checklist_lacks_is_shown_as_not_applied(
    tmp_path: Path, signable: None
) -> None:
    result, text = _judge(tmp_path, _checklist(tmp_path), _file(tmp_path, [ENTRY]))
    assert result.verdict == "GO"
    assert [o.applied for o in result.signoffs] == [False]
    assert "not applied: the checklist has no line for this gate" in text


def test_a_signed_non_mandatory_gate_is_signed_off_too(tmp_path: Path, signable: None) -> None:
    entry = {**ENTRY, "gate": "ci-e2e-pipeline", "statement": "release pipeline ran the e2e suite"}
    result, _ = _judge(tmp_path, _checklist(tmp_path), _file(tmp_path, [entry]))
    assert _gates(result)[CI].result == SIGNED_OFF


# --------------------------------------------------------------------------- validation


def _entries(**change: Any) -> list[dict[str, Any]]:
    entry = {k: v for k, v in {**ENTRY, **change}.items() if v is not ...}
    return [entry]


# Two days ahead: TODAY is taken when the module is imported, and a suite that runs across
# midnight UTC would otherwise check "tomorrow" on the day it has become today.
FUTURE = (TODAY + dt.timedelta(days=2)).isoformat()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("- gate: [runbook\n  name: x\n", "is not valid YAML at line"),
        ("", "holds nothing, not a list of sign-offs"),
        (yaml.safe_dump(ENTRY), "holds a dict, not a list of sign-offs"),
        (["runbook-peer-validation"], "entry 1 is str 'runbook-peer-validation', not a mapping"),
        (_entries(gate="runbook-peer-validaton"), "entry 1 (gate runbook-peer-validaton): unknown gate id"),
        (_entries(gate=...), "entry 1: gate is missing or empty"),
        (_entries(name=...), "entry 1 (gate runbook-peer-validation): name is missing or empty"),
        (_entries(role="  "), "entry 1 (gate runbook-peer-validation): role is missing or empty"),
        (_entries(statement=12), "statement must be text"),
        (_entries(evidence=None), "evidence is missing or empty"),
        (_entries(name="<full name of the person signing>"), "name is still the template's placeholder"),
        (_entries(date="15/01/2026"), "date '15/01/2026' is not a date YYYY-MM-DD"),
        (_entries(date="2026-02-30"), "date '2026-02-30' is not a date YYYY-MM-DD"),
        (_entries(date="YYYY-MM-DD"), "date 'YYYY-MM-DD' is not a date YYYY-MM-DD"),
        (_entries(date=FUTURE), f"date {FUTURE} is in the future"),
        (_entries(gate="rto-objective"), "rto-objective is checked by a machine, not signed off by a person"),
        (_entries(gate="helm-deploy"), "helm-deploy is checked by a machine"),
        (_entries(evidense="x"), "unknown field(s) evidense"),
        (
            [ENTRY, {**ENTRY, "name": "Lee Chan"}],
            "entry 2 (gate runbook-peer-validation) signs a gate entry 1",
        ),
    ],
    ids=[
        "malformed-yaml",
        "empty-file",
        "not-a-list",
        "entry-not-a-mapping",
        "unknown-gate",
        "missing-gate",
        "missing-name",
        "empty-role",
        "statement-not-text",
        "empty-evidence",
        "placeholder-name",
        "date-not-iso",
        "date-impossible",
        "date-placeholder",
        "date-in-the-future",
        "machine-gate-rto",
        "machine-gate-helm",
        "unknown-field",
        "two-for-one-gate",
    ],
)
def test_each_bad_sign_off_file_is_one_line_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signable: None, content: Any, expected: str
) -> None:
    path = _file(tmp_path, content)
    runs = _passing_fault_runs(tmp_path)
    out = tmp_path / "doc.md"
    code = main(["gonogo", *map(str, runs), "--out", str(out), "--signoffs", str(path)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"reports: {path}")
    assert expected in lines[0]
    assert "; " in lines[0]  # the fix follows the problem
    assert (
        not out.exists() and not (tmp_path / "doc-rto.png").exists() and not (tmp_path / "doc.html").exists()
    )


def test_an_unknown_gate_id_suggests_the_closest(signable: None) -> None:
    with pytest.raises(
        ReportError, match=r"unknown gate id 'runbok-peer-validation'; did you mean runbook-peer-"
    ):
        parse_signoffs(_entries(gate="runbok-peer-validation"), "f.yaml")


def test_an_unreadable_sign_off_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ReportError, match=r"cannot read the sign-offs .*nope.yaml .*--signoffs-template"):
        read_signoffs(missing)


def test_a_yaml_date_and_today_are_accepted(signable: None) -> None:
    entries = [
        {**ENTRY, "date": dt.date(2026, 1, 15)},
        {**ENTRY, "gate": "ci-e2e-pipeline", "date": str(TODAY)},
    ]
    parsed = parse_signoffs(entries, "f.yaml")
    assert [(s.gate, s.date, s.entry) for s in parsed] == [
        ("runbook-peer-validation", "2026-01-15", 1),
        ("ci-e2e-pipeline", TODAY.isoformat(), 2),
    ]
    assert parse_signoffs([], "f.yaml") == []


# --------------------------------------------------------------------------- the template


def test_the_template_lists_every_signable_gate_and_fails_until_filled_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signable: None
) -> None:
    path = tmp_path / "signoffs.yaml"
    assert main(["gonogo", "--signoffs-template", "--out", str(path)]) == 0
    printed = capsys.readouterr().out.strip()
    assert str(path) in printed and "--signoffs" in printed
    text = path.read_text()
    assert "FAILS VALIDATION AS IT IS" in text
    assert sorted(e["gate"] for e in yaml.safe_load(text)) == sorted(SIGNABLE)
    assert all(line.startswith(("#", "- ", "  ")) or not line for line in text.splitlines())

    with pytest.raises(
        ReportError, match=r"entry 1 \(gate [a-z0-9-]+\): name is still the template's placeholder"
    ):
        read_signoffs(path)
    runs = _passing_fault_runs(tmp_path)
    out = tmp_path / "doc.md"
    assert main(["gonogo", *map(str, runs), "--out", str(out), "--signoffs", str(path)]) == 2
    assert "placeholder" in capsys.readouterr().err and not out.exists()

    entries = yaml.safe_load(text)
    filled = [{**e, **{k: v for k, v in ENTRY.items() if k != "gate"}} for e in entries]
    path.write_text(yaml.safe_dump(filled))
    with pytest.raises(ReportError, match="entry 1"):  # the date left as the placeholder is refused too
        parse_signoffs([{**filled[0], "date": "YYYY-MM-DD"}], str(path))
    assert sorted(s.gate for s in read_signoffs(path)) == sorted(SIGNABLE)


def test_the_template_is_never_written_over_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signable: None
) -> None:
    path = _file(tmp_path, [ENTRY])
    before = path.read_text()
    assert main(["gonogo", "--signoffs-template", "--out", str(path)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert path.read_text() == before


def test_the_template_takes_no_run_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gonogo", str(tmp_path), "--signoffs-template", "--out", str(tmp_path / "s.yaml")]) == 2
    assert "--signoffs-template writes a template only" in capsys.readouterr().err
    assert not (tmp_path / "s.yaml").exists()


def test_gonogo_without_runs_or_out_says_what_it_needs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gonogo"]) == 2
    err = capsys.readouterr().err
    assert "needs run folders and --out PATH" in err and "--signoffs-template" in err


def test_no_template_without_a_signable_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    for gate_id in SIGNABLE:
        monkeypatch.setitem(gates_module.GATES, gate_id, manual("nobody signs this"))
    with pytest.raises(ReportError, match="nothing to sign"):
        signoffs_template()


def test_the_sign_off_section_says_which_gates_a_person_may_sign(tmp_path: Path, signable: None) -> None:
    result, text = _judge(tmp_path, _checklist(tmp_path, RUNBOOK), None)
    section = text.split("## Sign-offs", 1)[1].split("\n## ", 1)[0]
    assert "None given. A person may sign off `runbook-peer-validation`" in section
    assert "--signoffs-template" in section
    assert result.verdict == "NO-GO"
