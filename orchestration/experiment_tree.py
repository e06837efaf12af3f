"""Where experiments live: one folder of the fault matrix, an opt-in subfolder, var files apart.

The repository's ``experiments/`` folder, and any folder a user lays out the same way::

    experiments/*.json          the fault matrix and the backup experiments: bounded time,
                                so ``for e in experiments/*.json; do chaos run ...; done`` works
    experiments/opt-in/*.json   experiments that search or run for hours (the capacity sweep);
                                run only when named
    experiments/vars/*.json     var files (``--var-file``), never experiments

One var file serves the whole tree, so a key declared by any experiment of the tree is
legitimate for each of them; a key none declares is a typo (:func:`declared_keys`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["OPT_IN", "VARS", "declared_keys", "experiment_files", "find_experiment", "tree_home"]

OPT_IN = "opt-in"
VARS = "vars"


def tree_home(experiment: Path) -> Path:
    """The folder of the tree ``experiment`` belongs to: its own, or the parent of ``opt-in/``.

    Judged on the path as given (made absolute, symlinks kept), so a linked ``opt-in/`` or
    a linked experiment still belongs to the tree the user named.
    """
    folder = Path(os.path.abspath(experiment)).parent
    return folder.parent if folder.name == OPT_IN else folder


def _experiment_doc(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) and "method" in doc else None


def _experiment_paths(home: Path) -> list[Path]:
    return sorted(home.glob("*.json")) + sorted((home / OPT_IN).glob("*.json"))


def experiment_files(home: Path) -> list[Path]:
    """The experiments of the tree at ``home``: the matrix first, then the opt-in ones, by name."""
    return [path for path in _experiment_paths(home) if _experiment_doc(path) is not None]


def find_experiment(home: Path, name: str) -> Path | None:
    """The experiment called ``name`` (its file stem, no folder) in the tree at ``home``, or None."""
    if not name or "/" in name or name.startswith("."):
        return None
    for folder in (home, home / OPT_IN):
        path = folder / f"{name}.json"
        if path.is_file() and _experiment_doc(path) is not None:
            return path
    return None


def declared_keys(experiment: Path) -> set[str]:
    """Configuration keys declared by any experiment in the tree of ``experiment``."""
    keys: set[str] = set()
    for path in _experiment_paths(tree_home(experiment)):
        doc = _experiment_doc(path) or {}
        if isinstance(doc.get("configuration"), dict):
            keys |= set(doc["configuration"])
    return keys
