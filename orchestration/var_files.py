"""The var files of a ``chaos run``, checked before anything starts.

Chaos Toolkit reads ``--var-file`` arguments as YAML and quietly ignores what it cannot
use, so a truncated file or a typo'd key would run the experiment with defaults: on a
real cluster, against the wrong target. :func:`check_var_files` refuses those in one
line; :func:`declared_keys` is what a var file may set for a run (the keys its
experiment, or any experiment of that experiment's tree, declares).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loadgen.errors import LoadgenError
from orchestration.experiment_tree import declared_keys as tree_keys

__all__ = ["EXPERIMENT_IDENTITY", "check_var_files", "cli_values", "declared_keys"]

#: Configuration keys that say which experiment a run is: never taken from a var file.
EXPERIMENT_IDENTITY = frozenset({"fault", "experiment_name"})


def cli_values(flag: str, argv: list[str]) -> list[str]:
    """The values of ``flag`` in ``argv`` (``--flag value`` and ``--flag=value``), in order."""
    values = []
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            values.append(argv[i + 1])
        elif arg.startswith(flag + "="):
            values.append(arg.split("=", 1)[1])
    return values


def check_var_files(argv: list[str], known: set[str] | None = None) -> None:
    """Refuse malformed ``--var-file`` arguments of this ``chaos run``.

    Chaos Toolkit reads var files as YAML and quietly ignores what it cannot use (a
    truncated JSON file still parses as YAML), so a typo would run the experiment with
    defaults: on a real cluster, against the wrong target. Each file must be a mapping
    whose only keys are ``configuration`` and ``secrets``, each a mapping; it may not set
    :data:`EXPERIMENT_IDENTITY` (``--var`` may: the capacity sweep names its steps so).
    """
    import yaml

    for path in cli_values("--var-file", argv):
        if path.endswith(".env"):
            continue
        try:
            text = Path(path).read_text()
            doc = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
        except OSError as exc:
            raise LoadgenError(f"var file {path} cannot be read ({exc.strerror}): fix the path") from None
        except json.JSONDecodeError as exc:
            raise LoadgenError(f"var file {path} is not valid JSON (line {exc.lineno}): fix it") from None
        except yaml.YAMLError:
            raise LoadgenError(f"var file {path} is not valid YAML: fix it") from None
        if not isinstance(doc, dict) or set(doc) - {"configuration", "secrets"}:
            raise LoadgenError(
                f"var file {path} must hold only 'configuration' and 'secrets' mappings: fix it"
            )
        if not all(isinstance(v, dict) for v in doc.values()):
            raise LoadgenError(f"var file {path}: 'configuration' and 'secrets' must be mappings: fix it")
        identity = sorted(set(doc.get("configuration") or {}) & EXPERIMENT_IDENTITY)
        if identity:
            raise LoadgenError(
                f"var file {path} sets {identity}, which name what each experiment is (one var file "
                "serves several, and the reports sort runs by them): remove them from the var file"
            )
        unknown = sorted(set(doc.get("configuration") or {}) - known) if known is not None else []
        if unknown:
            raise LoadgenError(
                f"var file {path} sets {unknown}, which the experiment does not declare "
                "(Chaos Toolkit would ignore them): fix the key names"
            )


def declared_keys(experiment: Mapping[str, Any], argv: list[str]) -> set[str]:
    """Configuration keys declared by this experiment or any experiment of its tree
    (:func:`orchestration.experiment_tree.declared_keys`)."""
    keys = set(experiment.get("configuration") or {})
    for arg in argv[1:]:
        path = Path(arg)
        if path.suffix == ".json" and path.is_file() and arg not in cli_values("--var-file", argv):
            keys |= tree_keys(path)
    return keys
