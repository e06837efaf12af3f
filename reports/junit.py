"""The go/no-go decision as JUnit XML, for the test view of a release pipeline's CI.

``write_junit(decision, path, name=..., checklist_path=...)`` (``python -m reports gonogo
RUN_DIR... --out DOC --junit FILE``) writes one ``<testsuites name=NAME>`` file, atomically
(a temporary file beside it, then a rename), with three suites:

- **gates**: one testcase per checklist line, classname its section, name its gate id
  (the line's text when no gate is mapped). PASS and SIGNED OFF pass (a sign-off's who
  and when in ``system-out`` and properties); FAIL is a ``<failure>`` whose message is the
  first evidence line and whose text is every line; NOT RUN and MANUAL are ``<skipped>``
  with the reason; PASS (lab only) is ``<skipped message="passed on the embedded lab only:
  not evidence for a real cluster">``, because it blocks GO like NOT RUN and a CI view
  must not show it green. A result this module does not know is an ``<error>`` (fail
  closed). Each testcase has the properties ``result``, ``mandatory`` (``true``/``false``:
  lines of "Planned next improvements" are optional, same mapping), ``checklist_line`` and
  ``gate_id``.
- **experiments**: one testcase per run folder (classname ``experiments``, name its
  experiment title, else its fault kinds, and ``[run id]``, time its duration, else 0)
  with the properties ``worst_rto_seconds``, ``lost_writes``, ``target``, ``verdict``
  and more. A run with a problem (``reports.gonogo_runs.run_problems``, the same list
  that fails its gates) is a ``<failure>``; a run whose only problems are that its
  analysis could not tell (read-back failed, a measurement gap, an RTO or loss unknown,
  an experiment that never finished, a verdict missing) is an ``<error>``.
- **verdict**: one testcase, ``go-no-go``, that passes only when the decision is GO
  and is a ``<failure>`` listing the blocking gates otherwise, so that a pipeline that
  counts failures cannot read a NO-GO made only of skipped gates as green.

Every suite carries the properties ``verdict`` (GO / NO-GO), ``checklist`` (its title)
and ``checklist_path`` (when given). Characters XML 1.0 cannot hold become U+FFFD;
Markdown links in evidence keep their label (their targets are relative to the document).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from xml.etree import ElementTree

from junitparser import Error, Failure, JUnitXml, Properties, Property, Skipped, TestCase, TestSuite

from common.files import replace_text
from common.times import format_time
from reports.errors import ReportError
from reports.gate_base import FAIL, LAB_ONLY, MANUAL, NOT_RUN, PASS, SIGNED_OFF
from reports.gonogo_decision import PASSED, GateResult, GoNoGo
from reports.gonogo_render import plot_name
from reports.gonogo_runs import Run, number, run_problems
from reports.signoffs import SignOff

__all__ = [
    "DEFAULT_NAME",
    "LAB_ONLY_MESSAGE",
    "UNKNOWN_MARKERS",
    "check_junit_path",
    "junit_xml",
    "worst_rto",
    "write_junit",
]

DEFAULT_NAME = "mssql-operator-go-no-go"
LAB_ONLY_MESSAGE = "passed on the embedded lab only: not evidence for a real cluster"
# Phrases with which the analysis and the run checks say they could not tell (not: it failed).
UNKNOWN_MARKERS = (
    "cannot tell",
    "cannot be trusted",
    "never finished",
    "never completed",
    "not measured",
    "may be incomplete",
    "chaos experiment aborted",
    "chaos experiment interrupted",
)
_KNOWN_VERDICTS = ("GO", "NO-GO")
_SKIP_TYPES = {NOT_RUN: "not-run", MANUAL: "manual", LAB_ONLY: "lab-only"}
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_LINK = re.compile(r"\[([^\]]*)\]\(<?[^)>]*>?\)")


def _clean(text: object) -> str:
    """Text XML 1.0 can hold: invalid characters become U+FFFD; Markdown links keep their label."""
    return _LINK.sub(r"\1", _NOT_XML.sub("\ufffd", str(text)))


def _first_line(lines: list[str], fallback: str) -> str:
    for line in lines:
        text = " ".join(_clean(line).split())
        if text:
            return text
    return fallback


def _body(lines: Iterable[str]) -> str:
    return "\n".join(_clean(line) for line in lines)


def _add_properties(case: TestCase, pairs: Iterable[tuple[str, object]]) -> None:
    props = Properties()
    for key, value in pairs:
        if value is not None:
            props.add_property(Property(key, _clean(value)))
    case.append(props)


def _new_case(name: str, classname: str, seconds: float | None = None) -> TestCase:
    elapsed = seconds if seconds is not None and seconds >= 0 else 0.0
    return TestCase(_clean(name), _clean(classname), elapsed)


# --------------------------------------------------------------------------- gates


def _signoff_of(decision: GoNoGo, gate: GateResult) -> SignOff | None:
    for outcome in decision.signoffs:
        if outcome.applied and outcome.signoff.gate == gate.gate_id:
            return outcome.signoff
    return None


def _gate_case(decision: GoNoGo, gate: GateResult) -> TestCase:
    item = gate.item
    case = _new_case(gate.gate_id or item.text, item.section)
    signoff = _signoff_of(decision, gate) if gate.result == SIGNED_OFF else None
    pairs: list[tuple[str, object]] = [
        ("result", gate.result),
        ("mandatory", "true" if item.mandatory else "false"),
        ("checklist_line", item.text),
        ("gate_id", gate.gate_id or "unmapped"),
    ]
    if signoff is not None:
        pairs += [
            ("signed_off_by", signoff.name),
            ("signed_off_role", signoff.role),
            ("signed_off_on", signoff.date),
            ("signed_off_evidence", signoff.evidence),
        ]
    _add_properties(case, pairs)
    evidence = gate.evidence
    if gate.result == FAIL:
        failure = Failure(_first_line(evidence, "FAIL (no evidence recorded)"), "gate-failed")
        failure.text = _body(evidence)
        case.append(failure)
    elif gate.result in (NOT_RUN, MANUAL, LAB_ONLY):
        fallback = f"{gate.result} (no reason recorded)"
        message = LAB_ONLY_MESSAGE if gate.result == LAB_ONLY else _first_line(evidence, fallback)
        skipped = Skipped(message, _SKIP_TYPES[gate.result])
        skipped.text = _body(evidence)
        case.append(skipped)
    elif gate.result not in (PASS, SIGNED_OFF):
        error = Error(f"unknown gate result {gate.result!r}: not counted as passed", "unknown-result")
        error.text = _body(evidence)
        case.append(error)
    if gate.result in (PASS, SIGNED_OFF) and evidence:
        who = [f"signed off by {signoff.who}"] if signoff is not None else []
        case.system_out = _body([*who, *evidence])
    return case


# --------------------------------------------------------------------------- experiments


def _title(run: Run) -> str:
    title = run.experiment.get("title") or run.experiment.get("file")
    if title:
        return str(title)
    if run.fault:
        return run.fault
    kinds = list(dict.fromkeys(str(f.get("kind")) for f in run.faults))
    return f"local run ({', '.join(kinds) or 'no fault'})"


def worst_rto(run: Run) -> str:
    """The worst RTO in seconds over every (fault, tenant), or why there is none."""
    results = [r for _, r in run.results()]
    if not results:
        return "no tenant results"
    if any(not r.get("recovered") for r in results):
        return "not recovered"
    values = [number(r.get("rto_seconds")) for r in results]
    known = [v for v in values if v is not None]
    if len(known) < len(values):
        return "cannot tell"
    return f"{max(known):.2f}"


def _unknown(problem: str) -> bool:
    lowered = problem.lower()
    return any(marker in lowered for marker in UNKNOWN_MARKERS)


def _run_case(run: Run) -> TestCase:
    case = _new_case(f"{_title(run)} [{run.run_id}]", "experiments", run.duration)
    verdict = run.summary.get("verdict")
    lost = run.lost()
    _add_properties(
        case,
        [
            ("run_id", run.run_id),
            ("experiment", _title(run)),
            ("fault", run.fault or ", ".join(run.failure_kinds()) or None),
            ("target", run.target.short),
            ("target_detail", run.target.describe()),
            ("verdict", verdict if isinstance(verdict, str) and verdict else "missing"),
            ("chaos_status", run.chaos_status),
            ("worst_rto_seconds", worst_rto(run)),
            ("lost_writes", "cannot tell" if lost is None else str(lost)),
            ("tenants", str(len(run.tenants))),
            ("folder", str(run.path)),
        ],
    )
    problems = run_problems(run)
    undecided = verdict not in _KNOWN_VERDICTS
    failed = [p for p in problems if not _unknown(p) and not (undecided and p.startswith("verdict "))]
    if failed:
        failure = Failure(_first_line(failed, "the run failed"), "run-failed")
        failure.text = _body(problems)
        case.append(failure)
    elif problems or undecided:
        lines = problems or [f"verdict {verdict!r} is neither GO nor NO-GO"]
        error = Error(_first_line(lines, "the analysis could not tell"), "cannot-tell")
        error.text = _body(lines)
        case.append(error)
    return case


# --------------------------------------------------------------------------- verdict


def _verdict_case(decision: GoNoGo) -> TestCase:
    case = _new_case("go-no-go", "verdict")
    mandatory = [g for g in decision.gates if g.item.mandatory]
    pending = [g for g in mandatory if g.result not in PASSED]
    _add_properties(
        case,
        [("verdict", decision.verdict), ("mandatory_gates", len(mandatory)), ("blocking", len(pending))],
    )
    lines = [
        f"{g.result} {g.gate_id or g.item.text}: {_first_line(g.evidence, 'no evidence')}" for g in pending
    ]
    if decision.verdict not in _KNOWN_VERDICTS:
        error = Error(f"verdict {decision.verdict!r} is neither GO nor NO-GO", "cannot-tell")
        error.text = _body(lines)
        case.append(error)
    elif decision.verdict != "GO" or pending or not mandatory:
        why = (
            f"{len(pending)} mandatory gate(s) not passed"
            if pending
            else "the checklist has no mandatory gate"
        )
        failure = Failure(f"{decision.verdict}: {why}", "no-go")
        failure.text = _body(lines)
        case.append(failure)
    else:
        case.system_out = f"GO: every one of {len(mandatory)} mandatory gate(s) passed"
    return case


# --------------------------------------------------------------------------- document


def _suite(name: str, decision: GoNoGo, checklist_path: Path | None, stamp: str) -> TestSuite:
    suite = TestSuite(name)
    suite.timestamp = stamp
    suite.add_property("verdict", decision.verdict)
    suite.add_property("checklist", _clean(decision.checklist.title))
    if checklist_path is not None:
        suite.add_property("checklist_path", _clean(checklist_path))
    return suite


def junit_xml(
    decision: GoNoGo,
    *,
    name: str = DEFAULT_NAME,
    checklist_path: str | Path | None = None,
    now: float | None = None,
) -> JUnitXml:
    """The decision as a ``JUnitXml`` tree (suites gates, experiments, verdict); see the module docstring."""
    stamp = format_time(now)
    checklist = Path(checklist_path) if checklist_path is not None else None
    root = JUnitXml(_clean(name))
    contents: list[tuple[str, list[TestCase]]] = [
        ("gates", [_gate_case(decision, g) for g in decision.gates]),
        ("experiments", [_run_case(r) for r in decision.runs]),
        ("verdict", [_verdict_case(decision)]),
    ]
    for suite_name, cases in contents:
        suite = _suite(suite_name, decision, checklist, stamp)
        if suite_name == "experiments":
            suite.add_property("runs", str(len(decision.runs)))
            suite.add_property("sweeps", str(len(decision.sweeps)))
        suite.add_testcases(cases)
        root.add_testsuite(suite)
    root.update_statistics()
    return root


def check_junit_path(path: str | Path, *, document: str | Path | None = None) -> Path:
    """``path`` if a JUnit file can be written there; ReportError (one line, with the fix) if not.

    Refused: a folder, a missing parent folder, and (with ``document``) the go/no-go
    document, its HTML page or its RTO plot.
    """
    target = Path(path)
    if not str(path).strip() or target.name in ("", ".", ".."):
        raise ReportError(f"--junit {str(path)!r} is not a file name; pass a file such as go-no-go.xml")
    if target.is_dir():
        raise ReportError(
            f"--junit {target} is a folder; pass a file in it, such as {target / 'go-no-go.xml'}"
        )
    if not target.parent.resolve().is_dir():
        raise ReportError(f"folder {target.parent} does not exist; create it or pass another --junit FILE")
    if not os.access(target.parent.resolve(), os.W_OK):
        raise ReportError(f"folder {target.parent} is not writable; pass another --junit FILE")
    if document is not None:
        doc = Path(document)
        taken = {doc, doc.with_suffix(".html"), doc.parent / plot_name(doc)}
        if target.resolve() in {p.resolve() for p in taken}:
            raise ReportError(
                f"--junit {target} would overwrite the go/no-go document or its HTML or plot; "
                "pass another file, such as go-no-go.xml"
            )
    return target


def write_junit(
    decision: GoNoGo,
    path: Path,
    *,
    name: str = DEFAULT_NAME,
    checklist_path: str | Path | None = None,
) -> Path:
    """Write the decision as JUnit XML to ``path`` atomically; returns the path.

    ``checklist_path`` (the checklist the decision was judged against) is recorded as a
    suite property when given. ReportError (one line) when ``path`` cannot be written.
    """
    target = check_junit_path(path)
    built = junit_xml(decision, name=name, checklist_path=checklist_path).tostring()
    tree = ElementTree.fromstring(built)  # noqa: S314 - the XML junitparser just built, not input
    ElementTree.indent(tree)  # whitespace between elements only: no text or attribute changes
    text = ElementTree.tostring(tree, encoding="unicode")
    try:
        replace_text(target, f"<?xml version='1.0' encoding='utf-8'?>\n{text}\n")
    except OSError as exc:
        raise ReportError(f"cannot write {target}: {exc.strerror or exc}; check the folder") from None
    return target
