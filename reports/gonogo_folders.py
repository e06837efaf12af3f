"""The folders given to the go/no-go document: runs, capacity sweeps, and folders of them.

``python -m reports gonogo runs/demo-<time>/`` is how ``make demo`` names its output: a
folder holding neither ``summary.json`` nor ``capacity.json`` stands for its sub-folders
that hold one of them (run folders and capacity sweeps), sorted by name. Only one level
down is looked at: a sweep's step runs live in its own sub-folders and are never taken
as runs. A sub-folder with ``run.json`` but no ``summary.json`` is a run that was never
summarised: an error naming it, so an unfinished run cannot quietly drop out of the
verdict. A folder holding none of them is an error naming what was looked for
(``reports.gonogo_runs.load_run``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reports.capacity_data import CAPACITY_NAME
from reports.errors import ReportError
from reports.gonogo_runs import SUMMARY_NAME, Run, Sweep, load_folder

__all__ = ["RUN_META_NAME", "expand_folders", "is_result", "load_folders"]

RUN_META_NAME = "run.json"


def is_result(folder: Path) -> bool:
    """True for a folder the document can judge: a run with its summary, or a capacity sweep."""
    return (folder / SUMMARY_NAME).is_file() or (folder / CAPACITY_NAME).is_file()


def _children(folder: Path) -> list[Path]:
    """The run and sweep folders directly inside ``folder``, by name; [] when it holds none."""
    try:
        subs = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.name)
    except OSError as exc:
        raise ReportError(f"cannot list {folder}: {exc.strerror or exc}; check its permissions") from None
    found = [p for p in subs if is_result(p)]
    unsummarised = [p for p in subs if not is_result(p) and (p / RUN_META_NAME).is_file()]
    if unsummarised:
        names = ", ".join(p.name for p in unsummarised)
        raise ReportError(
            f"{folder} holds run folder(s) with {RUN_META_NAME} but no {SUMMARY_NAME}: {names}; run "
            f"`python -m reports build {unsummarised[0]}` for each, or pass the run folders to judge "
            "one by one"
        )
    return found


def expand_folders(paths: Sequence[str | Path]) -> list[Path]:
    """Each path as given, except a folder of runs: its run and sweep sub-folders, sorted by name."""
    out: list[Path] = []
    for path in paths:
        folder = Path(path)
        if folder.is_dir() and not is_result(folder):
            children = _children(folder)
            if children:
                out += children
                continue
        out.append(folder)  # a run, a sweep, or a folder that load_folder reports as unusable
    return out


def load_folders(paths: Sequence[str | Path]) -> list[Run | Sweep]:
    """``load_folder`` of every folder ``expand_folders`` finds, in order."""
    return [load_folder(p) for p in expand_folders(paths)]
