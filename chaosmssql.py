"""The Chaos Toolkit extension entry point: ``chaos discover mssql-chaos-harness``.

``chaos discover`` imports the *first* top-level name of a distribution and calls its
``discover()``. This distribution has several top-level packages (common, lab, loadgen,
orchestration, probes, reports), so this one-function module, named by the extensions'
convention (``chaos<name>``), sorts first and delegates to :func:`probes.discover`. A new
top-level package must sort after ``chaosmssql`` (``tests/test_experiments.py`` runs
``chaos discover`` and would fail).
"""

from __future__ import annotations

from typing import Any

__all__ = ["discover"]


def discover(discover_system: bool = True) -> Any:
    """The project's activities, as ``chaos discover`` expects them."""
    from probes import discover as discover_probes

    return discover_probes(discover_system)
