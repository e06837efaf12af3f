"""The reports: summary.json, report.md, plots, metrics.prom, build() and the CLI.

Analyses are built by hand (no database) so every field, including the unknown ones,
has a value the tests choose. The build test writes a run folder by hand in the formats
the journal writer, the fault log and the read-back use, and runs the real analysis.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from loadgen.journal import ClockSample, JournalWriter, Write
from probes.model import Fault, FaultResult, Objective, RunAnalysis, TenantResult, TenantTotals
from reports.__main__ import main
from reports.build import build, timeline_name
from reports.errors import ReportError
from reports.markdown import render_report
from reports.plots import rto_rpo_plot, timeline_plot
from reports.prom import write_metrics
from reports.summary import summary_dict, write_summary

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
PROJECT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _result(tenant: str, **kw: object) -> TenantResult:
    base: dict[str, object] = {
        "tenant": tenant,
        "affected": True,
        "recovered": True,
        "rto_seconds": 8.2,
        "max_ack_gap_seconds": 9.1,
        "gap_open": False,
        "acked_writes": 1500,
        "failed_writes": 120,
        "unknown_writes": 30,
        "lost_acked_writes": 0,
        "rpo_seconds": 0.0,
        "first_failure_at": T0 + 30.1,
        "recovered_at": T0 + 38.2,
    }
    base.update(kw)
    return TenantResult(**base)  # type: ignore[arg-type]


def _analysis() -> RunAnalysis:
    """Three tenants, two faults: alpha recovers, beta is too slow once, gamma never recovers."""
    eviction = Fault("pod-eviction", "pod-eviction", T0 + 30, "alpha", T0 + 31, {"pod": "alpha-0"})
    restart = Fault("operator-restart", "operator-restart", T0 + 70, None, T0 + 72)
    gone = {
        "recovered": False,
        "rto_seconds": None,
        "max_ack_gap_seconds": None,
        "gap_open": True,
        "lost_acked_writes": None,
        "rpo_seconds": None,
        "recovered_at": None,
        "note": "no acknowledged write after the fault",
    }
    return RunAnalysis(
        run_id="run-a",
        objective=Objective(),
        stability_seconds=5.0,
        tenants=["alpha", "beta", "gamma"],
        faults=[
            FaultResult(
                eviction,
                [
                    _result("alpha"),
                    _result(
                        "beta", affected=False, rto_seconds=0.0, max_ack_gap_seconds=0.3, recovered_at=T0 + 30
                    ),
                    _result("gamma", **gone),
                ],
            ),
            FaultResult(
                restart,
                [
                    _result(
                        "alpha", rto_seconds=3.0, lost_acked_writes=2, rpo_seconds=1.5, recovered_at=T0 + 73
                    ),
                    _result("beta", rto_seconds=65.0, max_ack_gap_seconds=66.0, recovered_at=T0 + 135),
                    _result("gamma", **gone),
                ],
            ),
        ],
        totals=[
            TenantTotals("alpha", 6000, 5800, 150, 50, 2, 0, 3, 0.0012, [(1, 2), (3, 4)]),
            TenantTotals("beta", 6000, 5900, 80, 20, 0, 0, 1, -0.0004),
            TenantTotals("gamma", 6000, 3000, 2000, 1000, None, None, None, None, [], "connection refused"),
        ],
        verdict="NO-GO",
        violations=[
            "pod-eviction gamma: not recovered (no acknowledged write after the fault)",
            "operator-restart beta: RTO 65.0s exceeds the 60s objective",
            "operator-restart alpha: 2 acknowledged write(s) lost (loss window 1.5s)",
        ],
        started_at=T0,
        ended_at=T0 + 150,
    )


def _go_analysis() -> RunAnalysis:
    analysis = _analysis()
    fault = analysis.faults[0]
    return replace(
        analysis,
        tenants=["alpha"],
        faults=[FaultResult(fault.fault, [fault.results[0]])],
        totals=[replace(analysis.totals[0], lost=0, lost_keys=[])],
        verdict="GO",
        violations=[],
    )


def _writes(tenant: str, outage: tuple[float, float] | None = None, span: float = 150.0) -> list[Write]:
    """20 writes/s from T0; attempts ending inside ``outage`` (seconds after T0) fail or are unknown."""
    out = []
    for seq in range(int(span * 20)):
        start = T0 + seq / 20
        rel = start - T0
        outcome = "ok"
        if outage and outage[0] <= rel < outage[1]:
            outcome = "fail" if seq % 3 else "info"
        out.append(
            Write(
                tenant,
                seq % 4,
                seq,
                start,
                start + 0.01,
                0.01,
                outcome,  # type: ignore[arg-type]
                start + 0.005 if outcome == "ok" else None,
                None if outcome == "ok" else "down",
            )
        )
    return out


# ---- summary.json


def test_summary_has_the_schema_and_keeps_unknowns_null(tmp_path: Path) -> None:
    path = write_summary(tmp_path / "summary.json", _analysis(), {"target": "lab"})
    doc = json.loads(path.read_text())

    for key in (
        "run_id",
        "objective",
        "tenants",
        "faults",
        "totals",
        "stability_seconds",
        "verdict",
        "violations",
        "generated_at",
        "target",
    ):
        assert key in doc, key
    assert doc["objective"] == {"rto_seconds": 60.0, "rpo_seconds": 0.0}
    assert doc["tenants"] == ["alpha", "beta", "gamma"]
    assert doc["verdict"] == "NO-GO" and len(doc["violations"]) == 3
    assert doc["generated_at"].endswith("Z")

    eviction = doc["faults"][0]
    assert eviction["name"] == "pod-eviction" and eviction["kind"] == "pod-eviction"
    assert eviction["tenant"] == "alpha"
    assert eviction["injected_at"] == "2023-11-14T22:13:50.000Z"
    assert eviction["injected_at_epoch"] == T0 + 30
    assert eviction["ended_at"] == "2023-11-14T22:13:51.000Z"
    assert doc["faults"][1]["tenant"] is None

    alpha, _beta, gamma = eviction["results"]
    assert set(asdict(_result("x"))) <= set(alpha)
    assert alpha["rto_seconds"] == 8.2 and alpha["recovered"] is True
    assert alpha["recovered_at"] == "2023-11-14T22:13:58.200Z"
    # Unknown stays null: never 0.
    assert gamma["recovered"] is False
    for key in ("rto_seconds", "max_ack_gap_seconds", "lost_acked_writes", "rpo_seconds", "recovered_at"):
        assert gamma[key] is None, key

    assert doc["totals"]["alpha"]["lost_keys"] == [[1, 2], [3, 4]]
    assert doc["totals"]["gamma"]["lost"] is None
    assert doc["totals"]["gamma"]["clock_skew_seconds"] is None
    assert doc["totals"]["gamma"]["readback_error"] == "connection refused"


def test_summary_turns_nan_into_null_and_refuses_to_overwrite_fields() -> None:
    analysis = _analysis()
    analysis.totals[1].clock_skew_seconds = float("nan")
    assert summary_dict(analysis)["totals"]["beta"]["clock_skew_seconds"] is None
    with pytest.raises(ReportError, match="verdict"):
        summary_dict(analysis, {"verdict": "GO"})


# ---- report.md


def test_no_go_report_lists_every_violation_and_says_cannot_tell() -> None:
    analysis = _analysis()
    text = render_report(analysis, {"RTO per tenant per fault": "rto-rpo.png"}, {"target": "lab"})
    first = text.splitlines()[0]
    assert "NO-GO" in first
    head = text[: text.index("## Objective")]
    for violation in analysis.violations:
        assert f"- {violation}" in head
    assert "**Verdict: NO-GO**: 3 violations" in head
    gamma_rows = [line for line in text.splitlines() if line.startswith("| gamma |")]
    assert len(gamma_rows) == 3  # two faults and the totals
    assert "not recovered" in gamma_rows[0] and "cannot tell" in gamma_rows[0]
    assert "| 0 |" not in gamma_rows[0]
    assert "| alpha | yes | yes | 8.20 | 9.10 |" in text
    assert "+1.2 ms" in text
    assert "(1, 2), (3, 4)" in text
    assert "![RTO per tenant per fault](rto-rpo.png)" in text
    assert "## How measured" in text and "5 s stability period" in text and "UTC" in text


def test_go_report_says_go_and_lists_no_violation() -> None:
    text = render_report(_go_analysis(), {}, None)
    assert text.splitlines()[0] == "# Chaos run run-a: GO"
    assert "**Verdict: GO**" in text
    assert "violation" not in text[: text.index("## Objective")]


def test_report_of_a_run_without_faults() -> None:
    text = render_report(replace(_go_analysis(), faults=[]), {}, None)
    assert "No fault was injected in this run." in text


# ---- plots


def _assert_png(path: Path, size: tuple[int, int]) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000
    with Image.open(path) as image:
        assert image.size == size
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 50  # text, lines and shading, not a blank canvas


def test_timeline_plot_writes_a_readable_png(tmp_path: Path) -> None:
    analysis = _analysis()
    writes = _writes("alpha", (30, 38)) + _writes("gamma", (30, 1e9))
    faults = [f.fault for f in analysis.faults]
    for index, tenant in enumerate(("alpha", "gamma")):
        results = [f.results[2 * index] for f in analysis.faults]
        path = timeline_plot(
            tmp_path / f"{tenant}.png",
            tenant,
            writes,
            faults,
            results,
            analysis.objective,
            started_at=analysis.started_at,
            ended_at=analysis.ended_at,
        )
        _assert_png(path, (1375, 682))


def test_timeline_plot_needs_one_result_per_fault(tmp_path: Path) -> None:
    analysis = _analysis()
    with pytest.raises(ReportError, match="one result per fault"):
        timeline_plot(tmp_path / "x.png", "alpha", [], [f.fault for f in analysis.faults], [], Objective())
    assert not (tmp_path / "x.png").exists()


def test_timeline_plot_of_a_tenant_without_writes(tmp_path: Path) -> None:
    path = timeline_plot(tmp_path / "empty.png", "nobody", [], [], [], Objective())
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_rto_rpo_plot_writes_a_readable_png(tmp_path: Path) -> None:
    _assert_png(rto_rpo_plot(tmp_path / "rto.png", _analysis()), (1100, 638))
    _assert_png(rto_rpo_plot(tmp_path / "none.png", replace(_analysis(), faults=[])), (1100, 638))


# ---- metrics.prom


def _samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_file_parses_with_the_expected_values(tmp_path: Path) -> None:
    samples = _samples(write_metrics(tmp_path / "metrics.prom", _analysis()))

    def at(name: str, **labels: str) -> float | None:
        return samples.get((name, tuple(sorted(labels.items()))))

    assert at("harness_objective_rto_seconds") == 60.0
    assert at("harness_verdict_go") == 0.0
    assert at("harness_run_info", run_id="run-a") == 1.0
    assert at("harness_rto_seconds", fault="pod-eviction", tenant="alpha") == 8.2
    assert at("harness_rto_seconds", fault="operator-restart", tenant="beta") == 65.0
    assert at("harness_max_ack_gap_seconds", fault="operator-restart", tenant="beta") == 66.0
    assert at("harness_recovered", fault="pod-eviction", tenant="alpha") == 1.0
    # Not recovered: no RTO series at all, recovered = 0.
    assert at("harness_recovered", fault="pod-eviction", tenant="gamma") == 0.0
    assert at("harness_rto_seconds", fault="pod-eviction", tenant="gamma") is None
    assert at("harness_acked_writes", tenant="beta") == 5900.0
    assert at("harness_lost_acked_writes", tenant="alpha") == 2.0
    assert at("harness_lost_acked_writes", tenant="gamma") is None


def test_metrics_keep_repeated_fault_names_apart(tmp_path: Path) -> None:
    analysis = _analysis()
    first = analysis.faults[0]
    again = FaultResult(
        replace(first.fault, injected_at=T0 + 100), [replace(first.results[0], rto_seconds=4.0)]
    )
    analysis = replace(analysis, faults=[first, again], verdict="GO")
    samples = _samples(write_metrics(tmp_path / "metrics.prom", analysis))
    assert samples[("harness_rto_seconds", (("fault", "pod-eviction"), ("tenant", "alpha")))] == 8.2
    assert samples[("harness_rto_seconds", (("fault", "pod-eviction#2"), ("tenant", "alpha")))] == 4.0
    assert samples[("harness_verdict_go", ())] == 1.0


# ---- CLI


def test_cli_missing_run_folder_exits_2_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-run"
    proc = subprocess.run(
        [sys.executable, "-m", "reports", "build", str(missing)],
        check=False,
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("reports: ") and str(missing) in lines[0]


def test_cli_names_the_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run.json" in err

    (tmp_path / "run.json").write_text(json.dumps({"run_id": "r", "tenants": ["alpha"]}))
    assert main(["build", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "journal" in err and "Traceback" not in err


# ---- build() on a run folder written by hand


def _run_folder(root: Path, lose: int) -> Path:
    """alpha fails 10-14 s after T0 (fault at 10 s), beta is untouched; ``lose`` acks of alpha vanish."""
    run = root / "run-b"
    run.mkdir()
    (run / "run.json").write_text(
        json.dumps(
            {
                "run_id": "run-b",
                "tenants": ["alpha", "beta"],
                "objective": {"rto_seconds": 60, "rpo_seconds": 0},
                "stability_seconds": 2,
                "started_at": "2023-11-14T22:13:19Z",
                "ended_at": T0 + 41,
                "target": "lab",
            }
        )
    )
    writer = JournalWriter(run / "journal", "run-b")
    writes = _writes("alpha", (10, 14), span=40) + _writes("beta", span=40)
    try:
        for write in writes:
            writer.write(write)
        for tenant in ("alpha", "beta"):
            writer.clock(ClockSample(tenant, T0, 0.002, 0.001))
    finally:
        writer.close()
    fault = {
        "name": "pod-eviction",
        "kind": "pod-eviction",
        "injected_at": T0 + 10,
        "target": "alpha",
        "ended_at": None,
        "details": {},
    }
    (run / "faults.jsonl").write_text(
        json.dumps(fault)
        + "\n"
        + json.dumps({"event": "ended", "name": "pod-eviction", "ended_at": T0 + 10.5})
        + "\n"
    )
    rows: dict[str, list[list[float]]] = {"alpha": [], "beta": []}
    dropped = 0
    for w in writes:
        if w.outcome != "ok":
            continue
        if w.tenant == "alpha" and w.start - T0 >= 5 and dropped < lose:
            dropped += 1
            continue
        rows[w.tenant].append([w.writer, w.seq, w.server_ts or 0.0])
    (run / "readback.json").write_text(
        json.dumps({t: {"read_at": T0 + 45, "error": None, "rows": sorted(r)} for t, r in rows.items()})
    )
    return run


def test_build_writes_every_output_of_a_go_run(tmp_path: Path) -> None:
    run = _run_folder(tmp_path, lose=0)
    report = build(run)
    assert report == run / "report.md"
    for name in (
        "summary.json",
        "report.md",
        "rto-rpo.png",
        "metrics.prom",
        timeline_name("alpha"),
        timeline_name("beta"),
    ):
        assert (run / name).is_file(), name
    doc = json.loads((run / "summary.json").read_text())
    assert doc["verdict"] == "GO", doc["violations"]
    assert doc["target"] == "lab" and doc["stability_seconds"] == 2
    assert doc["started_at"] == "2023-11-14T22:13:19.000Z"  # run.json's start is before the first write
    alpha, beta = doc["faults"][0]["results"]
    assert alpha["affected"] is True and alpha["recovered"] is True
    assert 4.0 <= alpha["rto_seconds"] <= 4.1
    assert alpha["lost_acked_writes"] == 0
    assert beta["affected"] is False
    assert doc["faults"][0]["ended_at_epoch"] == T0 + 10.5
    assert doc["totals"]["alpha"]["clock_skew_seconds"] == 0.002
    text = report.read_text()
    assert text.startswith("# Chaos run run-b: GO")
    assert "](timeline-alpha.png)" in text and "](rto-rpo.png)" in text
    samples = _samples(run / "metrics.prom")
    assert samples[("harness_verdict_go", ())] == 1.0


def test_build_and_cli_report_lost_writes_as_no_go(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _run_folder(tmp_path, lose=3)
    assert main(["build", str(run), "--rto", "2", "--stability", "1"]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.md")
    doc = json.loads((run / "summary.json").read_text())
    assert doc["objective"] == {"rto_seconds": 2.0, "rpo_seconds": 0.0}
    assert doc["stability_seconds"] == 1.0
    assert doc["verdict"] == "NO-GO"
    assert doc["totals"]["alpha"]["lost"] == 3 and len(doc["totals"]["alpha"]["lost_keys"]) == 3
    assert doc["faults"][0]["results"][0]["lost_acked_writes"] == 3
    text = (run / "report.md").read_text()
    assert any("exceeds the 2s objective" in v for v in doc["violations"])
    for violation in doc["violations"]:
        assert f"- {violation}" in text
    samples = _samples(run / "metrics.prom")
    assert samples[("harness_lost_acked_writes", (("tenant", "alpha"),))] == 3.0
    assert samples[("harness_objective_rto_seconds", ())] == 2.0


def test_build_without_readback_says_cannot_tell_instead_of_zero(tmp_path: Path) -> None:
    run = _run_folder(tmp_path, lose=0)
    (run / "readback.json").unlink()
    build(run)
    doc = json.loads((run / "summary.json").read_text())
    assert doc["verdict"] == "NO-GO"
    assert doc["totals"]["alpha"]["lost"] is None
    assert doc["faults"][0]["results"][0]["lost_acked_writes"] is None
    samples = _samples(run / "metrics.prom")
    assert ("harness_lost_acked_writes", (("tenant", "alpha"),)) not in samples
    alpha_total = next(
        line for line in (run / "report.md").read_text().splitlines() if line.startswith("| alpha | 800")
    )
    assert alpha_total.count("cannot tell") == 3  # lost, unexpected, recovered unknown


def test_timeline_file_names_are_safe() -> None:
    assert timeline_name("team/a b") == "timeline-team_a_b.png"
    assert timeline_name("tenant-1") == "timeline-tenant-1.png"
