"""Sign-offs: a person's judgement for the gates no run can check, read from a YAML file.

``python -m reports gonogo RUN_DIR... --signoffs signoffs.yaml --out DOC`` reads a list
of entries, each ``gate`` (a gate id), ``name``, ``role``, ``date`` (YYYY-MM-DD, UTC, not
in the future), ``statement`` and ``evidence`` (a link or path)::

    - gate: runbook-peer-validation
      name: Dana Smith
      role: SRE, second engineer
      date: 2026-11-02
      statement: followed the restore runbook end to end on staging; every step worked as written
      evidence: https://tickets.example.com/OPS-123

**Which gates.** Only gates registered as ``manual(reason, signable=True)``
(``reports.gate_base``; ``signable_gates()``) can be signed: a gate a machine checks
never can. **What a sign-off does.** A signed gate whose result is MANUAL reads ``SIGNED
OFF`` with the sign-off as its evidence, and counts as passed for GO. A gate reading
anything else (FAIL, NOT RUN, PASS (lab only), PASS) keeps its result, and its evidence
says the sign-off was ignored and why: a sign-off never overrides a machine's result.

**Validation** (``read_signoffs``): one ``ReportError`` line naming the entry (its number
and gate) and the fix, before anything is written, for unreadable or malformed YAML, a
document that is not a list, an unknown gate id (the closest ids suggested), a gate a
machine checks, a missing, empty or still-placeholder field, an unknown field, a date
that is not YYYY-MM-DD or is in the future, and two sign-offs for one gate.
``write_signoffs_template(path)`` writes one placeholder entry per signable gate; it
fails this validation until a person fills it in.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reports.checklist import GATE_IDS, LINE_GATES, default_checklist_path, parse_checklist
from reports.errors import ReportError
from reports.gate_base import FAIL, LAB_ONLY, MANUAL, NOT_RUN, PASS, SIGNED_OFF, ManualGate, signable_ids
from reports.gates import GATES

__all__ = [
    "DATE_PLACEHOLDER",
    "SIGNOFF_FIELDS",
    "TEMPLATE_NAME",
    "SignOff",
    "SignOffOutcome",
    "apply_signoff",
    "parse_signoffs",
    "read_signoffs",
    "signable_gates",
    "signoffs_template",
    "utc_today",
    "write_signoffs_template",
]

SIGNOFF_FIELDS = ("gate", "name", "role", "date", "statement", "evidence")
TEMPLATE_NAME = "signoffs.yaml"
DATE_PLACEHOLDER = "YYYY-MM-DD"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PLACEHOLDER = re.compile(r"^<.*>$", re.DOTALL)
_HOW_TO_START = "`python -m reports gonogo --signoffs-template` writes one to fill in"
_PLACEHOLDERS = {
    "name": "<full name of the person signing>",
    "role": "<their role, e.g. second engineer, SRE on call>",
    "statement": "<what they checked and what they found, in one sentence>",
    "evidence": "<link or path to the evidence: ticket, review, recording>",
}
_FIXES = {
    "name": "write the full name of the person signing",
    "role": "write their role (e.g. second engineer)",
    "statement": "write what was checked and what was found",
    "evidence": "write a link or path to the evidence",
}


@dataclass(frozen=True)
class SignOff:
    """One validated entry; ``entry`` is its 1-based position in the file."""

    gate: str
    name: str
    role: str
    date: str
    statement: str
    evidence: str
    entry: int = 0

    @property
    def who(self) -> str:
        return f"{self.name} ({self.role}) on {self.date}"

    def line(self) -> str:
        """``SIGNED OFF by NAME (ROLE) on DATE: STATEMENT (evidence: LINK)``."""
        return f"{SIGNED_OFF} by {self.who}: {self.statement} (evidence: {self.evidence})"


@dataclass(frozen=True)
class SignOffOutcome:
    """What a sign-off did to the document: ``applied`` or the reason it was not."""

    signoff: SignOff
    applied: bool
    note: str


def signable_gates() -> tuple[str, ...]:
    """Ids of the gates a person may sign off: those registered ``manual(..., signable=True)``."""
    return signable_ids(GATES)


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


_IGNORED = {
    FAIL: "a sign-off never overrides a FAIL; fix what failed and judge new runs",
    NOT_RUN: "the gate has a check no run exercised (NOT RUN); run it instead of signing it",
    LAB_ONLY: "it passed only off a real cluster (PASS (lab only)); the same evidence from a real cluster "
    "decides it, not a sign-off",
    PASS: "the gate already passed on its own evidence",
}


def apply_signoff(
    signoff: SignOff, status: str, evidence: list[str]
) -> tuple[str, list[str], SignOffOutcome]:
    """The gate's result and evidence with ``signoff`` applied, and what it did.

    Only a MANUAL result of a signable gate becomes SIGNED OFF; every other result stays,
    with a line saying the sign-off was ignored and why.
    """
    if status == MANUAL and signoff.gate in signable_gates():
        return SIGNED_OFF, [signoff.line()], SignOffOutcome(signoff, True, "applied")
    if status == MANUAL:
        why = "this gate is not one a person signs off"
    else:
        why = _IGNORED.get(status, f"only a MANUAL result can be signed off (this gate reads {status})")
    note = f"sign-off by {signoff.who} ignored: {why}"
    return status, [*evidence, note], SignOffOutcome(signoff, False, why)


# --------------------------------------------------------------------------- reading


def _load_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ReportError(
            f"cannot read the sign-offs {path} ({why}); pass --signoffs with a readable YAML file "
            f"({_HOW_TO_START})"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ReportError(
            f"{path} is not valid YAML{where} ({problem}); fix it: a list of entries "
            f"'- gate: ...' with {', '.join(SIGNOFF_FIELDS)}"
        ) from None


def read_signoffs(path: str | Path, *, today: dt.date | None = None) -> list[SignOff]:
    """Read and validate a sign-off file; ReportError (one line, with the fix) on any problem."""
    source = Path(path)
    return parse_signoffs(_load_yaml(source), str(source), today=today)


def _signable_text() -> str:
    return ", ".join(signable_gates()) or "none today"


def _closest(gate: str) -> str:
    close = difflib.get_close_matches(gate, signable_gates(), n=1, cutoff=0.6)
    close = close or difflib.get_close_matches(gate, _known_ids(), n=3, cutoff=0.6)
    signable = _signable_text()
    if close:
        return f"did you mean {' or '.join(close)}? (gates a person signs: {signable})"
    return f"use a gate id a person signs: {signable}"


def _known_ids() -> list[str]:
    return list(dict.fromkeys([*GATE_IDS, *GATES]))


def _text(entry: dict[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    fix = _FIXES.get(key, f"write the {key}")
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ReportError(f"{where}: {key} is missing or empty; {fix}")
    if not isinstance(value, str):
        raise ReportError(f"{where}: {key} must be text, not {type(value).__name__} {value!r}; {fix}")
    text = " ".join(value.split())
    if _PLACEHOLDER.match(text):
        raise ReportError(f"{where}: {key} is still the template's placeholder {text}; {fix}")
    return text


def _date(entry: dict[str, Any], where: str, today: dt.date) -> str:
    value = entry.get("date")
    fix = f"write the day the check was done as YYYY-MM-DD (UTC), e.g. {today.isoformat()}"
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ReportError(f"{where}: date is missing or empty; {fix}")
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date | str):
        raise ReportError(f"{where}: date {value!r} is not a date YYYY-MM-DD; {fix}")
    if isinstance(value, str):
        text = value.strip()
        try:
            if not _DATE.match(text):
                raise ValueError(text)
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise ReportError(f"{where}: date {text!r} is not a date YYYY-MM-DD; {fix}") from None
    else:
        day = value
    if day > today:
        raise ReportError(
            f"{where}: date {day.isoformat()} is in the future (today is {today.isoformat()} UTC); "
            "sign off on or after the day the check was done"
        )
    return day.isoformat()


def _entry(raw: Any, index: int, source: str, today: dt.date) -> SignOff:
    gate = raw.get("gate") if isinstance(raw, dict) else None
    where = f"{source}: entry {index}" + (f" (gate {gate})" if isinstance(gate, str) and gate else "")
    if not isinstance(raw, dict):
        raise ReportError(
            f"{where} is {type(raw).__name__} {raw!r}, not a mapping; write it as '- gate: ...' with "
            f"{', '.join(SIGNOFF_FIELDS)}"
        )
    unknown = [str(k) for k in raw if k not in SIGNOFF_FIELDS]
    if unknown:
        raise ReportError(
            f"{where}: unknown field(s) {', '.join(unknown)}; the fields are {', '.join(SIGNOFF_FIELDS)}"
        )
    if not isinstance(gate, str) or not gate.strip():
        raise ReportError(f"{where}: gate is missing or empty; name the gate signed off ({_signable_text()})")
    if gate not in _known_ids():
        raise ReportError(f"{where}: unknown gate id {gate!r}; {_closest(gate)}")
    if gate not in signable_gates():
        raise ReportError(
            f"{where}: {gate} is checked by a machine, not signed off by a person; remove this entry "
            f"(gates a person signs: {_signable_text()})"
        )
    texts = {key: _text(raw, key, where) for key in ("name", "role", "statement", "evidence")}
    return SignOff(gate=gate, date=_date(raw, where, today), entry=index, **texts)


def parse_signoffs(data: Any, source: str, *, today: dt.date | None = None) -> list[SignOff]:
    """Validate loaded YAML ``data`` (from ``source``, named in errors) into sign-offs."""
    if not isinstance(data, list):
        held = "nothing" if data is None else f"a {type(data).__name__}"
        raise ReportError(
            f"{source} holds {held}, not a list of sign-offs; write a YAML list of entries '- gate: ...' "
            f"({_HOW_TO_START})"
        )
    day = today or utc_today()
    out: list[SignOff] = []
    first: dict[str, int] = {}
    for index, raw in enumerate(data, start=1):
        signoff = _entry(raw, index, source, day)
        if signoff.gate in first:
            raise ReportError(
                f"{source}: entry {index} (gate {signoff.gate}) signs a gate entry {first[signoff.gate]} "
                "already signs; keep one sign-off per gate"
            )
        first[signoff.gate] = index
        out.append(signoff)
    return out


# --------------------------------------------------------------------------- template


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _checklist_lines() -> dict[str, str]:
    """Gate id -> its line as the bundled checklist writes it (its normalised form if unreadable)."""
    lines = {gate_id: text for text, gate_id in LINE_GATES.items()}
    try:
        parsed = parse_checklist(default_checklist_path().read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return lines
    return lines | {item.gate_id: item.text for item in parsed.items if item.gate_id}


def signoffs_template() -> str:
    """A commented YAML template, one placeholder entry per signable gate (fails validation as is)."""
    gates = signable_gates()
    if not gates:
        raise ReportError(
            "no gate is marked as signed off by a person (manual(..., signable=True) in reports/gates*.py); "
            "there is nothing to sign"
        )
    lines_by_gate = _checklist_lines()
    out = [
        "# Sign-offs for the go/no-go document:",
        "#   python -m reports gonogo RUN_DIR... --signoffs THIS_FILE --out DOCUMENT",
        "#",
        f"# Only gates a person must judge can be signed off: {', '.join(gates)}.",
        "# A signed gate whose result is MANUAL reads SIGNED OFF and counts as passed for GO.",
        "# A sign-off never overrides FAIL, NOT RUN or PASS (lab only): the document says it was ignored.",
        "#",
        "# THIS TEMPLATE FAILS VALIDATION AS IT IS: replace every <...> placeholder and the date",
        f"# {DATE_PLACEHOLDER} with the real values, and delete the entries of gates nobody has signed.",
        "#",
        "# Fields of each entry:",
        "#   gate       the gate id (keep it as written)",
        "#   name       full name of the person signing",
        "#   role       their role, e.g. second engineer, SRE on call",
        "#   date       the day the check was done, YYYY-MM-DD (UTC), not in the future",
        "#   statement  what was checked and what was found, in one sentence",
        "#   evidence   a link or path to the evidence (ticket, review, recording)",
    ]
    for gate_id in gates:
        decide = GATES[gate_id]
        reason = decide.reason if isinstance(decide, ManualGate) else ""
        checklist_line = lines_by_gate.get(gate_id, "not on the bundled checklist")
        out += [
            "",
            f"# {gate_id}: checklist line '{checklist_line}'" + (f"; {reason}" if reason else ""),
            f"- gate: {gate_id}",
            f"  name: {_quoted(_PLACEHOLDERS['name'])}",
            f"  role: {_quoted(_PLACEHOLDERS['role'])}",
            f"  date: {DATE_PLACEHOLDER}",
            f"  statement: {_quoted(_PLACEHOLDERS['statement'])}",
            f"  evidence: {_quoted(_PLACEHOLDERS['evidence'])}",
        ]
    return "\n".join(out) + "\n"


def write_signoffs_template(path: str | Path) -> Path:
    """Write the template to ``path`` (never over an existing file); returns the path."""
    target = Path(path)
    if target.exists():
        raise ReportError(f"{target} already exists; pass another --out FILE or move it away first")
    if not target.parent.resolve().is_dir():
        raise ReportError(f"folder {target.parent} does not exist; create it or pass another --out")
    text = signoffs_template()
    try:
        with target.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise ReportError(f"cannot write {target}: {exc.strerror or exc}; check the folder") from None
    return target
