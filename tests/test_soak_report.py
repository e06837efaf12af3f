"""A soak's report: its Markdown section in report.md, its plots and its metrics.

The soak folder is hand-written (``tests.test_soak_summary``) and summarised by the real
``probes.soak_summary``; the analysis around it is built by hand, as in test_reports.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from probes.model import Objective, RunAnalysis
from probes.soak_summary import summarize
from reports.errors import ReportError
from reports.html import render_html, verdict_of
from reports.markdown import render_report
from reports.prom import write_metrics
from reports.soak_report import soak_plots
from tests.test_soak_summary import MSSQL, _pods, _round, _soak

T0 = 1_700_000_000.0


def _analysis(verdict: str = "GO", violations: list[str] | None = None) -> RunAnalysis:
    return RunAnalysis(
        run_id="soak-run",
        objective=Objective(),
        stability_seconds=5.0,
        tenants=["t-0", "t-1"],
        faults=[],
        totals=[],
        verdict=verdict,
        violations=violations or [],
        started_at=T0,
        ended_at=T0 + 400,
    )


def _leaky_soak(root: Path) -> tuple[Path, dict[str, Any]]:
    rounds = []
    for i in range(40):
        leaking = {"memory_bytes": 3e8 + i * 4e6 + (i % 5) * 5e6}
        rounds.append(_round(i, pods=_pods(i, **{MSSQL["t-1"]: leaking})))
    run = _soak(root, rounds)
    block = summarize(run)
    assert block is not None
    return run, block


def test_the_plots_are_readable_pngs_beside_the_report(tmp_path: Path) -> None:
    run, block = _leaky_soak(tmp_path)
    plots = soak_plots(run, block)
    assert list(plots.values()) == [
        "soak-backup-age.png",
        "soak-memory.png",
        "soak-connections.png",
        "soak-load.png",
    ]
    for name in plots.values():
        with Image.open(run / name) as image:
            assert image.format == "PNG"
            assert image.size[0] > 1000 and image.size[1] > 400
    assert soak_plots(tmp_path / "elsewhere") == {}
    (tmp_path / "bad" / "soak").mkdir(parents=True)
    (tmp_path / "bad" / "soak" / "plan.json").write_text("{")
    with pytest.raises(ReportError, match=r"plan\.json cannot be read"):
        soak_plots(tmp_path / "bad")


def test_the_report_has_a_soak_section_with_violations_backups_drills_and_slopes(tmp_path: Path) -> None:
    run, block = _leaky_soak(tmp_path)
    plots = soak_plots(run, block)
    problems = [f"soak: {v['text']}" for v in block["violations"]]
    text = render_report(
        _analysis("NO-GO", problems), {}, {"target": {"kind": "lab"}, "soak": block}, soak_plots=plots
    )
    section = text.split("## Soak", 1)[1].split("\n## ", 1)[0]
    assert "**Soak: 1 violation** (0.11 h (400 s) of 0.11 h (400 s) planned, complete)." in section
    assert "- `memory-leak` 2023-11-14T22:20:00.000Z: tenants/t-1-0 (mssql) memory: floors" in section
    assert "| t-1 | 15 | no |" in section
    assert "1 planned, 1 run: 1 validated, 0 failed" in section
    assert "| tenants/t-1-0 | mssql | memory | 40 |" in section and "| **LEAK** |" in section
    assert "![Soak: memory per pod](soak-memory.png)" in section
    assert "| soak." not in text  # the block is its own section, not flattened into the Run table
    assert verdict_of(text) == "NO-GO"
    html = render_html(text, run, "report")
    assert "data:image/png;base64," in html


def test_an_incomplete_soak_says_so_in_words(tmp_path: Path) -> None:
    run = _soak(tmp_path, [_round(i) for i in range(12)], end=False, plan={"seconds": 86400.0})
    block = summarize(run)
    assert block is not None
    text = render_report(_analysis(), {}, {}, soak=block)
    assert (
        "**Soak: INCOMPLETE** (0.03 h (120 s) of 24.00 h (86400 s) planned): the soak stopped after "
        "0.03 h (120 s) of 24.00 h (86400 s) (no end.json): killed or still running. "
        "An incomplete soak is not a result."
    ) in text
    assert "### Violations\n\nNone." in text


def test_a_run_without_a_soak_has_no_soak_section() -> None:
    assert "## Soak" not in render_report(_analysis(), {}, {"target": {"kind": "lab"}})


def _samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_the_metrics_carry_the_soak(tmp_path: Path) -> None:
    _run, block = _leaky_soak(tmp_path)
    samples = _samples(write_metrics(tmp_path / "metrics.prom", _analysis(), soak=block))
    assert samples[("harness_soak_planned_seconds", ())] == 400.0
    assert samples[("harness_soak_covered_seconds", ())] == 400.0
    assert samples[("harness_soak_complete", ())] == 1.0
    assert samples[("harness_soak_violations", ())] == 1.0
    assert samples[("harness_soak_violations_by_check", (("check", "memory-leak"),))] == 1.0
    assert samples[("harness_soak_violations_by_check", (("check", "restart"),))] == 0.0
    assert samples[("harness_soak_backup_age_max_seconds", (("tenant", "t-0"),))] == 15.0
    assert samples[("harness_soak_drills", (("result", "validated"),))] == 1.0
    leaking = (("metric", "memory_bytes"), ("pod", "tenants/t-1-0"), ("role", "mssql"))
    assert samples[("harness_soak_leak", leaking)] == 1.0
    assert samples[("harness_soak_slope_per_hour", leaking)] == pytest.approx(4e6 * 360, rel=0.05)
    healthy = (("metric", "memory_bytes"), ("pod", "tenants/t-0-0"), ("role", "mssql"))
    assert samples[("harness_soak_leak", healthy)] == 0.0
    plain = _samples(write_metrics(tmp_path / "plain.prom", _analysis()))
    assert not any(name.startswith("harness_soak") for name, _ in plain)
    json.dumps(block, allow_nan=False)
