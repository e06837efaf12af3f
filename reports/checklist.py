"""The production-gates checklist: its lines, its sections, and which gate decides each line.

The checklist is ``reports/checklist.md``, kept in the project so a release is judged
against the text reviewed with the code (``--checklist PATH`` judges another one).
``parse_checklist`` reads every ``- [ ]`` line under its ``##`` heading, so a line added
to the file shows up in the document instead of vanishing.

Each line is decided by exactly one gate, named by a stable id (``crds-installed``,
``failure-injection``...). ``LINE_GATES`` maps the normalised text of every line of the
bundled checklist (lower case, backticks removed, whitespace collapsed) to its id. A
line it does not know has no gate: it stays MANUAL and is listed as unmapped, because
guessing a gate from the words of a line once made a new line pass on another line's
evidence. Rewording a line therefore means adding its new text here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "GATE_IDS",
    "LINE_GATES",
    "Checklist",
    "ChecklistItem",
    "default_checklist_path",
    "gate_id_for",
    "normalise",
    "parse_checklist",
]

_BUNDLED_CHECKLIST = Path(__file__).resolve().parent / "checklist.md"
_NOT_MANDATORY = re.compile(r"planned|next improvements", re.IGNORECASE)
_RULES_SECTION = re.compile(r"go\s*/\s*no-go", re.IGNORECASE)

LINE_GATES: dict[str, str] = {
    "crds installed and version-locked in cluster": "crds-installed",
    "helm chart deploys source mssql instance successfully": "helm-deploy",
    "mssqlinstance reconciles to ready": "instance-ready",
    "mssqlbackuppolicy reconciles to ready": "backup-policy-ready",
    "manual full and log backup crs complete successfully": "full-log-backups",
    "pitr restore request completes to target instance": "pitr-restore-completes",
    "data validation confirms target matches expected targettime window": "pitr-data-validation",
    "multi-tenant concurrency test (n instances in parallel)": "multi-tenant-concurrency",
    "long-run soak test (>=24h with periodic log backups)": "soak-24h",
    "failure-injection test (operator restart, pod eviction, node restart)": "failure-injection",
    "target instance must exist before pitr restore request": "restore-target-exists",
    "core-managed rbac is mandatory for operator reconciliation": "core-managed-rbac",
    "rto 1-minute objective must be validated in production-like workload": "rto-objective",
    "one-click restore with auto target provisioning": "one-click-restore",
    "automated e2e pipeline in ci for each release tag": "ci-e2e-pipeline",
    "backup integrity verification job (checksum + restore smoke)": "backup-integrity-job",
    "rbac preflight passes (kubectl auth can-i) for operator service account": "rbac-preflight",
    "storageclass for source/backup/target pvc is available and healthy": "storageclass",
    "image tags pinned (no floating tag in production)": "images-pinned",
    "resource limits/requests set for mssql + operator + executor jobs": "resource-limits",
    "alerting configured for failed cronjobs and failed restore jobs": "alerting",
    "runbook validated by a second engineer (peer validation)": "runbook-peer-validation",
    "tests/07-metrics-go-no-go.md updated for current run": "document-updated",
    "source/target data validation outputs attached": "validation-outputs",
    "kubectl get snapshots attached (pods, crds, crs, jobs, pvc)": "kubectl-snapshots",
    "operator logs for backup + restore windows attached": "operator-logs",
}

GATE_IDS: tuple[str, ...] = tuple(dict.fromkeys(LINE_GATES.values()))


def normalise(text: str) -> str:
    """The form a line is looked up by: lower case, no backticks, single spaces."""
    return " ".join(text.replace("`", "").lower().split())


def gate_id_for(text: str) -> str | None:
    """The id of the gate that decides this checklist line; None when no gate is mapped to it."""
    return LINE_GATES.get(normalise(text))


@dataclass(frozen=True)
class ChecklistItem:
    """One ``- [ ]`` line: its section heading (numbering removed) and text as written."""

    section: str
    text: str
    mandatory: bool

    @property
    def gate_id(self) -> str | None:
        return gate_id_for(self.text)


@dataclass(frozen=True)
class Checklist:
    title: str
    items: list[ChecklistItem]
    rules: list[str] = field(default_factory=list)


def default_checklist_path() -> Path:
    """``reports/checklist.md``: the checklist is part of the project, never read from outside it."""
    return _BUNDLED_CHECKLIST


def parse_checklist(text: str) -> Checklist:
    """Every ``- [ ]``/``- [x]`` line under its ``#`` heading; the Go/No-Go section's lines are rules.

    Every section is mandatory except "Planned next improvements": a section added
    later is mandatory too, because a release gate errs on the strict side.
    """
    title = "Production gates checklist"
    section = ""
    items: list[ChecklistItem] = []
    rules: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            name = re.sub(r"^\d+[.)]\s*", "", heading.group(2).strip())
            if len(heading.group(1)) == 1:
                title = name
            else:
                section = name
            continue
        box = re.match(r"^[-*]\s+\[[ xX]\]\s+(.*)$", line)
        if box:
            mandatory = not _NOT_MANDATORY.search(section)
            items.append(ChecklistItem(section or "Checklist", box.group(1).strip(), mandatory))
        elif _RULES_SECTION.search(section) and re.match(r"^[-*]\s+", line):
            rules.append(line[1:].strip())
    return Checklist(title, items, rules)
