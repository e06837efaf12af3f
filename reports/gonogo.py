"""The release go/no-go document: the production-gates checklist, judged from run folders.

``write_gonogo(run_dirs, out, checklist, signoffs)`` (``python -m reports gonogo
RUN_DIR... --out PATH [--checklist PATH] [--signoffs FILE]``) reads every folder
(``reports.gonogo_folders``: a run folder, a capacity sweep holding ``capacity.json``,
or a folder of them such as ``runs/demo-<time>/``; ``reports.gonogo_runs`` reads each),
parses the checklist (``reports.checklist``), reads and validates the sign-offs
(``reports.signoffs``), decides each line with the gate its id names and applies the
sign-offs (``reports.gonogo_decision``: GO only when every mandatory gate is PASS or
SIGNED OFF), and writes the markdown (``reports.gonogo_render``), ``<out-stem>-rto.png``
(``reports.combined``: RTO per tenant per fault across the runs) and ``<out-stem>.html``
(``reports.html``: the same document, self-contained) next to ``out``. Every input is
checked before anything is written.

The names other modules and tests use are importable from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from common.files import replace_text
from reports.checklist import (
    GATE_IDS,
    Checklist,
    ChecklistItem,
    default_checklist_path,
    parse_checklist,
)
from reports.combined import combined_rto_plot
from reports.errors import ReportError
from reports.gate_base import FAIL, LAB_ONLY, MANUAL, NOT_RUN, PASS, SIGNED_OFF
from reports.gonogo_decision import UNMAPPED, GateResult, GoNoGo, evaluate
from reports.gonogo_folders import load_folders
from reports.gonogo_render import LAB_NOTE, plot_name, render_gonogo
from reports.gonogo_runs import (
    CHECKLIST_RTO_SECONDS,
    FAILURE_KINDS,
    REQUIRED_FAILURE_KINDS,
    Run,
    Sweep,
    Target,
    load_run,
    run_problems,
    steady_state,
)
from reports.html import write_html
from reports.signoffs import SignOff, read_signoffs

__all__ = [
    "FAIL",
    "FAILURE_KINDS",
    "GATE_IDS",
    "LAB_NOTE",
    "LAB_ONLY",
    "MANUAL",
    "NOT_RUN",
    "PASS",
    "REQUIRED_FAILURE_KINDS",
    "SIGNED_OFF",
    "UNMAPPED",
    "Checklist",
    "ChecklistItem",
    "GateResult",
    "GoNoGo",
    "Run",
    "SignOff",
    "Sweep",
    "Target",
    "default_checklist_path",
    "evaluate",
    "load_run",
    "parse_checklist",
    "plot_name",
    "render_gonogo",
    "run_problems",
    "steady_state",
    "write_gonogo",
]


def _checklist(checklist: str | Path | None) -> tuple[Path, Checklist]:
    path = Path(checklist) if checklist is not None else default_checklist_path()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"cannot read the checklist {path} ({exc}); pass --checklist PATH") from None
    parsed = parse_checklist(text)
    if not parsed.items:
        raise ReportError(f"{path} has no '- [ ]' lines; pass the production-gates checklist")
    return path, parsed


def write_gonogo(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    checklist: str | Path | None = None,
    signoffs: str | Path | None = None,
) -> GoNoGo:
    """Read the runs (and capacity sweeps), the checklist and the sign-offs; write the document and plot.

    Returns the decision. A sweep's step runs are judged only when passed as run folders too.
    Any unusable input raises ReportError before anything is written.
    """
    if not run_dirs:
        raise ReportError("no run folder given; pass one or more run folders (runs/<run-id>/)")
    checklist_path, parsed = _checklist(checklist)
    signed = read_signoffs(signoffs) if signoffs is not None else []
    folders = load_folders(run_dirs)
    runs = [f for f in folders if isinstance(f, Run)]
    sweeps = [f for f in folders if isinstance(f, Sweep)]
    document = Path(out)
    if not document.parent.resolve().is_dir():
        raise ReportError(f"folder {document.parent} does not exist; create it or pass another --out")
    result = evaluate(parsed, runs, document=document, sweeps=sweeps, signoffs=signed)
    plot = plot_name(document)
    combined_rto_plot(document.parent / plot, [r.summary for r in runs], objective=CHECKLIST_RTO_SECONDS)
    body = render_gonogo(
        result,
        document=document,
        checklist_path=checklist_path,
        plot=plot,
        signoffs_path=Path(signoffs) if signoffs is not None else None,
    )
    try:
        replace_text(document, body)
    except OSError as exc:
        raise ReportError(f"cannot write {document}: {exc.strerror or exc}; check the folder") from None
    write_html(document)
    return result
