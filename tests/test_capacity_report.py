"""The capacity sweep's report: the answer, capacity.md, the plots, the knee, the CLI and the gate.

Every ``capacity.json`` here is written by hand in the shape the capacity search writes,
so each case (a passing sweep, a first step that fails, a capacity beyond the range, an
interrupted sweep, two write rates, nulls everywhere) is chosen by the test. The run
folders for the go/no-go document come from ``tests.test_gonogo``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from reports.__main__ import main
from reports.capacity import answer, knee, render_sweep, write_capacity_report
from reports.capacity_data import answers, boundary
from reports.capacity_plots import PLOT_FILES, capacity_plots
from reports.gonogo import FAIL, LAB_ONLY, NOT_RUN, PASS, GoNoGo, write_gonogo
from reports.gonogo_runs import Sweep, load_folder
from tests.test_gonogo import BUNDLED, CONCURRENCY, _passing_fault_runs, _summary, _write

PROJECT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MIB = 1024 * 1024
REASON_35 = "p99 latency 212 ms over the 200 ms limit"
CLUSTER_TARGET = {
    "kind": "cluster",
    "api_server": "https://api.prod.example.com:6443",
    "nodes": ["node-a", "node-b"],
}
LAB_TARGET = {"kind": "lab", "api_server": "https://127.0.0.1:36443", "nodes": ["lab-0", "lab-1"]}

# --------------------------------------------------------------------------- capacity.json by hand


def _step(
    tenants: int,
    *,
    rate: float = 20.0,
    trial: int = 1,
    phase: str = "line",
    passed: bool = True,
    reasons: list[str] | None = None,
    p99: float | None = 40.0,
    efficiency: float | None = 0.99,
    rto: float = 8.0,
    unrecovered: int = 0,
    lost: int | None = 0,
    verdict: str | None = None,
) -> dict[str, Any]:
    per_tenant = {f"t-{i:02d}": None if i < unrecovered else rto - 0.1 * (i % 5) for i in range(tenants)}
    return {
        "tenants": tenants,
        "write_rate": rate,
        "trial": trial,
        "phase": phase,
        "run_dir": f"steps/n{tenants}-w{rate:g}-t{trial}",
        "passed": passed,
        "reasons": reasons or ([] if passed else ["RTO 75.0 s over the 60 s objective"]),
        "run_verdict": verdict or ("GO" if passed else "NO-GO"),
        "rto": {"worst": None if unrecovered else rto, "p95": rto - 0.2, "per_tenant": per_tenant},
        "lost": lost,
        "latency_ms": {"p50": None if p99 is None else p99 / 3, "p99": p99, "max": None},
        "late_starts": 0,
        "efficiency": efficiency,
        "acked_per_second": tenants * rate,
        "offered_per_second": tenants * rate,
        "nodes": {
            "node-a": {
                "cpu_cores_mean": 0.05 * tenants,
                "cpu_cores_max": 0.08 * tenants,
                "memory_bytes_max": 48 * MIB * tenants,
            },
            "node-b": {
                "cpu_cores_mean": 0.04 * tenants,
                "cpu_cores_max": 0.07 * tenants,
                "memory_bytes_max": 40 * MIB * tenants,
            },
        },
        "nodes_unavailable": None,
        "ready_again_seconds": {t: None if v is None else v * 0.6 for t, v in per_tenant.items()},
        "load_cpu_seconds": 2.5,
        "duration_seconds": 300.0,
    }


def _doc(
    steps: list[dict[str, Any]],
    boundaries: list[dict[str, Any]] | None = None,
    *,
    complete: bool = True,
    interrupted: bool = False,
    target: dict[str, Any] | None = None,
    rates: list[float] | None = None,
    sweep_id: str = "sweep-1",
    **settings: Any,
) -> dict[str, Any]:
    return {
        "kind": "capacity",
        "schema": 1,
        "sweep_id": sweep_id,
        "started_at": "2026-01-05T10:00:00Z",
        "ended_at": "2026-01-05T12:00:00Z" if complete or interrupted else None,
        "complete": complete,
        "interrupted": interrupted,
        "target": CLUSTER_TARGET if target is None else target,
        "settings": {
            "tenants_from": 10,
            "tenants_to": 50,
            "tenants_step": 10,
            "write_rates": rates or [20.0],
            "fault": "pod-eviction",
            "trials": 2,
            "objective_seconds": 60.0,
            "latency_limit_ms": 200.0,
            "min_efficiency": 0.95,
            "precision": 1,
            **settings,
        },
        "steps": steps,
        "boundaries": boundaries if boundaries is not None else [],
        "eta_seconds": None if complete else 1800.0,
    }


def _boundary(
    passing: int | None,
    failing: int | None,
    *,
    rate: float = 20.0,
    nodes: int | None = 2,
    reasons: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "write_rate": rate,
        "largest_passing": passing,
        "first_failing": failing,
        "first_failing_reasons": reasons if reasons is not None else ([REASON_35] if failing else []),
        "nodes": nodes,
    }


def _passing(**kw: Any) -> dict[str, Any]:
    """Line 10..40 (40 fails), bisect 35 (fails), 32 and 34; 34 and 35 repeated: 34 passes on 2 nodes."""
    steps = [
        _step(10),
        _step(20, p99=45.0),
        _step(30, p99=70.0, efficiency=0.98),
        _step(
            40,
            passed=False,
            p99=260.0,
            efficiency=0.90,
            reasons=["p99 latency 260 ms over the 200 ms limit"],
            unrecovered=2,
            rto=70.0,
        ),
        _step(35, phase="bisect", passed=False, p99=212.0, efficiency=0.93, reasons=[REASON_35]),
        _step(32, phase="bisect", p99=85.0, efficiency=0.97),
        _step(34, phase="bisect", p99=90.0, efficiency=0.96),
        _step(34, trial=2, phase="repeat", p99=95.0, efficiency=0.96),
        _step(35, trial=2, phase="repeat", passed=False, p99=230.0, efficiency=0.92, reasons=[REASON_35]),
    ]
    return _doc(steps, [_boundary(34, 35)], **kw)


def _first_fails() -> dict[str, Any]:
    reasons = ["RTO 75.0 s over the 60 s objective", "t-03 did not recover"]
    return _doc(
        [_step(5, passed=False, reasons=reasons, unrecovered=1)],
        [_boundary(None, 5, reasons=reasons)],
        tenants_from=5,
    )


def _beyond() -> dict[str, Any]:
    steps = [_step(n, p99=40.0 + n) for n in (10, 20, 30, 40, 50)]
    return _doc(steps, [_boundary(50, None, nodes=None)])


def _interrupted() -> dict[str, Any]:
    steps = [_step(n) for n in (10, 20, 30, 40)]
    return _doc(steps, [], complete=False, interrupted=True)


def _multi_rate() -> dict[str, Any]:
    steps = [_step(n, rate=10.0, p99=30.0 + n) for n in (10, 20, 30)]
    steps += [
        _step(10, rate=40.0, p99=60.0),
        _step(20, rate=40.0, p99=90.0),
        _step(30, rate=40.0, passed=False, p99=240.0, reasons=["p99 latency 240 ms over the 200 ms limit"]),
    ]
    boundaries = [
        _boundary(30, None, rate=10.0, nodes=2),
        _boundary(20, 30, rate=40.0, nodes=2, reasons=["p99 latency 240 ms over the 200 ms limit"]),
    ]
    return _doc(steps, boundaries, rates=[10.0, 40.0], tenants_to=30)


def _nulls() -> dict[str, Any]:
    def null_step(tenants: int, passed: bool) -> dict[str, Any]:
        step = _step(tenants, passed=passed, reasons=[])
        step.update(
            reasons=[],
            run_verdict=None,
            rto={"worst": None, "p95": None, "per_tenant": {f"t-{i}": None for i in range(tenants)}},
            lost=None,
            latency_ms={"p50": None, "p99": None, "max": None},
            late_starts=None,
            efficiency=None,
            acked_per_second=None,
            offered_per_second=None,
            nodes={},
            nodes_unavailable="metrics.k8s.io is not served by this API server",
            ready_again_seconds={f"t-{i}": None for i in range(tenants)},
            load_cpu_seconds=None,
            duration_seconds=None,
        )
        return step

    doc = _doc(
        [null_step(5, True), null_step(10, False)],
        [_boundary(5, 10, nodes=None, reasons=[])],
        complete=False,
        target={},
    )
    doc["target"] = None
    doc["settings"] = {k: None for k in doc["settings"]} | {"write_rates": [20.0]}
    return doc


def _sweep(root: Path, doc: dict[str, Any], name: str = "sweep-1", *, render: bool = True) -> Path:
    folder = root / "sweeps" / name
    folder.mkdir(parents=True)
    (folder / "capacity.json").write_text(json.dumps(doc))
    if render:
        write_capacity_report(doc, folder)
    return folder


# --------------------------------------------------------------------------- the answer


def test_answer_of_a_passing_sweep_is_per_node_with_the_first_failure() -> None:
    assert answer(_passing()) == (
        "At most 17 tenants per node (34 in all on 2 nodes) at 20 writes/s under pod-eviction within the "
        f"60 s objective; the first failing step was 35 ({REASON_35})."
    )


def test_answer_when_the_smallest_step_fails() -> None:
    assert answer(_first_fails()) == (
        "No tenant count passed at 20 writes/s under pod-eviction: the smallest step, 5, failed "
        "(RTO 75.0 s over the 60 s objective; t-03 did not recover)."
    )


def test_answer_when_nothing_failed_up_to_the_end_of_the_range() -> None:
    assert answer(_beyond()) == (
        "At least 50 tenants in all at 20 writes/s under pod-eviction within the 60 s objective: no step up "
        "to 50 failed, the capacity lies beyond the sweep."
    )


def test_answer_of_an_interrupted_sweep_says_so_and_claims_nothing_beyond() -> None:
    text = answer(_interrupted())
    assert text.startswith("Incomplete: interrupted after 4 steps; at least 40 tenants in all at 20 writes/s")
    assert "no step up to 40 failed before it stopped" in text
    assert "beyond the sweep" not in text
    unfinished = _interrupted() | {"interrupted": False, "ended_at": None}
    assert answer(unfinished).startswith("Incomplete: not finished (no end recorded) after 4 steps; ")


def test_answer_has_one_sentence_per_write_rate() -> None:
    sentences = answers(_multi_rate())
    assert sentences == [
        "At least 15 tenants per node (30 in all on 2 nodes) at 10 writes/s under pod-eviction within the "
        "60 s objective: no step up to 30 failed, the capacity lies beyond the sweep.",
        "At most 10 tenants per node (20 in all on 2 nodes) at 40 writes/s under pod-eviction within the "
        "60 s objective; the first failing step was 30 (p99 latency 240 ms over the 200 ms limit).",
    ]
    assert answer(_multi_rate()) == " ".join(sentences)


def test_answer_without_steps_or_boundary_invents_nothing() -> None:
    assert answer(_doc([], [])) == "No result: the sweep recorded no step."
    nulls = answer(_nulls())
    assert nulls.startswith("Incomplete: ")
    assert (
        "at most 5 tenants in all at 20 writes/s under an unrecorded fault within an unrecorded objective"
        in nulls
    )
    assert "the first failing step was 10 (no reason recorded)" in nulls


def test_a_missing_boundary_is_derived_from_the_steps_failing_closed() -> None:
    doc = _passing()
    doc["boundaries"] = []
    found = boundary(doc, 20.0)
    assert (found.largest_passing, found.first_failing, found.recorded) == (34, 35, False)
    assert found.first_failing_reasons == [REASON_35]
    doc["steps"].append(_step(34, trial=3, phase="repeat", passed=False, reasons=["lost 1"]))
    assert boundary(doc, 20.0).largest_passing == 32  # one failing trial fails the count


# --------------------------------------------------------------------------- the knee


def _knee_steps(*points: tuple[int, float | None, float | None], rate: float = 20.0) -> list[dict[str, Any]]:
    return [_step(n, rate=rate, p99=p99, efficiency=eff) for n, p99, eff in points]


def test_knee_is_the_first_count_whose_p99_doubles() -> None:
    steps = _knee_steps((10, 40.0, 0.99), (20, 79.9, 0.99), (30, 80.0, 0.99), (40, 300.0, 0.5))
    assert knee(steps, 20.0) == 30
    assert knee(_passing()["steps"], 20.0) == 32


def test_knee_on_an_efficiency_drop_of_more_than_five_hundredths() -> None:
    exactly = _knee_steps((10, 40.0, 0.99), (20, 41.0, 0.94), (30, 42.0, 0.939))
    assert knee(exactly, 20.0) == 30


def test_knee_uses_the_worst_trial_and_ignores_other_rates() -> None:
    steps = _knee_steps((10, 40.0, 0.99), (20, 45.0, 0.99), (30, 50.0, 0.99))
    steps.append(_step(20, trial=2, p99=85.0, efficiency=0.99))
    steps += _knee_steps((10, 1.0, 0.99), (20, 500.0, 0.1), rate=40.0)
    assert knee(steps, 20.0) == 20
    assert knee(steps, 40.0) == 20
    assert knee(steps, 80.0) is None


@pytest.mark.parametrize(
    "points",
    [
        [(10, 40.0, 0.99), (20, 50.0, 0.98), (30, 60.0, 0.97)],  # never strains
        [(10, 40.0, 0.99)],  # one count
        [(10, None, 0.99), (20, 500.0, 0.99)],  # the baseline p99 unknown
        [(10, 40.0, None), (20, 500.0, 0.99)],  # the baseline efficiency unknown
        [(10, 40.0, 0.99), (20, None, 0.99), (30, 500.0, 0.99)],  # unknown on the way: could be there
        [(10, 0.0, 0.99), (20, 500.0, 0.99)],  # nothing to double
    ],
    ids=["no-knee", "one-count", "no-base-p99", "no-base-efficiency", "unknown-on-the-way", "zero-p99"],
)
def test_knee_is_none_without_a_qualifying_count_or_with_missing_data(
    points: list[tuple[int, float | None, float | None]],
) -> None:
    assert knee(_knee_steps(*points), 20.0) is None


def test_knee_is_found_before_data_goes_missing() -> None:
    assert knee(_knee_steps((10, 40.0, 0.99), (20, 90.0, 0.99), (30, None, None)), 20.0) == 20


# --------------------------------------------------------------------------- capacity.md


def _rows(text: str) -> list[list[str]]:
    """The steps table's rows, cell by cell."""
    table = text.split("## Steps", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in table.splitlines() if line.startswith("| ")][1:]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]


def test_capacity_md_answer_first_then_settings_steps_plots_boundary(tmp_path: Path) -> None:
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / "steps" / "n34-w20-t1").mkdir(parents=True)
    (folder / "steps" / "n34-w20-t1" / "report.md").write_text("# run\n")
    report = write_capacity_report(_passing(), folder)
    text = report.read_text()

    assert report == folder / "capacity.md"
    head = text.split("\n## ", 1)[0]
    assert head.splitlines()[2].startswith(
        "At most 17 tenants per node (34 in all on 2 nodes) at 20 writes/s"
    )
    assert "INCOMPLETE" not in text
    order = [text.index(h) for h in ("## Settings", "## Steps", "## Plots", "## Boundary")]
    assert order == sorted(order)
    assert "| fault at every step | pod-eviction |" in text
    assert "| RTO objective (s) | 60 |" in text
    rows = _rows(text)
    assert len(rows) == 9
    assert rows[6] == [
        "34",
        "20",
        "1",
        "bisect",
        "8.00",
        "7.80",
        "0",
        "90.0",
        "0.960",
        "0",
        "pass",
        "",
        "[n34-w20-t1](steps/n34-w20-t1/report.md)",
    ]
    assert rows[3][:4] == ["40", "20", "1", "line"]
    assert rows[3][4] == "unknown"  # two tenants never recovered: no worst RTO, never 0
    assert rows[3][10:12] == ["**FAIL**", "p99 latency 260 ms over the 200 ms limit"]
    assert rows[0][12] == "[n10-w20-t1/](steps/n10-w20-t1/) (no report.md)"
    for caption, name in PLOT_FILES.items():
        assert f"![{caption}]({name})" in text
    assert f"| 20 | 34 | 35 | {REASON_35} | 2 | 17 | 32 | capacity.json |" in text


def test_capacity_md_of_nulls_says_unknown_never_zero(tmp_path: Path) -> None:
    text = write_capacity_report(_nulls(), tmp_path).read_text()
    assert "> **INCOMPLETE**: not finished (no end recorded) after 2 steps." in text
    assert "Target: not recorded (not production evidence" in text
    rows = _rows(text)
    assert [r[:4] for r in rows] == [["5", "20", "1", "line"], ["10", "20", "1", "line"]]
    for row in rows:
        assert row[4:10] == ["unknown"] * 6, row
    assert rows[0][10:12] == ["pass", ""]
    assert rows[1][10:12] == ["**FAIL**", "no reason recorded"]
    assert "| minimum efficiency | unknown |" in text
    assert "| 20 | 5 | 10 | unknown | unknown | unknown | unknown | capacity.json |" in text
    body = text.split("## Steps", 1)[1]
    assert "| 0 |" not in body and "| 0.00 |" not in body


def test_incomplete_banner_and_the_boundary_derived_from_steps(tmp_path: Path) -> None:
    text = write_capacity_report(_interrupted(), tmp_path).read_text()
    assert "> **INCOMPLETE**: interrupted after 4 steps." in text
    assert text.index("Incomplete: interrupted") < text.index("> **INCOMPLETE**")
    assert "about 30 min left" in text
    assert "| 20 | 40 | none failed |  | unknown | unknown | none | derived from the steps |" in text


def test_capacity_md_of_a_sweep_without_steps(tmp_path: Path) -> None:
    text = write_capacity_report(_doc([], []), tmp_path).read_text()
    assert "No result: the sweep recorded no step." in text
    assert "No step ran: the sweep has no result." in text


# --------------------------------------------------------------------------- plots


def _check_pngs(paths: list[Path], folder: Path) -> None:
    assert [p.name for p in paths] == list(PLOT_FILES.values())
    for path in paths:
        assert path.parent == folder
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert path.stat().st_size > 10_000, path
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.width >= 1000 and image.height >= 500, (path, image.size)


@pytest.mark.parametrize(
    "make",
    [_passing, _first_fails, _beyond, _interrupted, _multi_rate, _nulls, lambda: _doc([], [])],
    ids=["passing", "first-fails", "beyond", "interrupted", "multi-rate", "nulls", "no-steps"],
)
def test_every_plot_is_written_as_a_png(tmp_path: Path, make: Any) -> None:
    _check_pngs(capacity_plots(make(), tmp_path), tmp_path)


def test_the_nodes_plot_states_why_node_usage_is_unknown(tmp_path: Path) -> None:
    doc = _nulls()
    paths = capacity_plots(doc, tmp_path)
    nodes = next(p for p in paths if p.name == "capacity-nodes.png")
    with Image.open(nodes) as image:
        assert image.height < 700  # one panel with the reason, not two empty axes
    partial = _passing()
    partial["steps"][0]["nodes"] = {}
    partial["steps"][0]["nodes_unavailable"] = "metrics.k8s.io not served"
    _check_pngs(capacity_plots(partial, tmp_path), tmp_path)


# --------------------------------------------------------------------------- CLI


def test_cli_renders_the_report_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _sweep(tmp_path, _passing(), render=False)
    assert main(["capacity", str(folder)]) == 0
    assert capsys.readouterr().out.strip() == str(folder / "capacity.md")
    assert (folder / "capacity.md").read_text().startswith("# Capacity sweep sweep-1\n")
    _check_pngs([folder / name for name in PLOT_FILES.values()], folder)
    assert render_sweep(folder) == folder / "capacity.md"


@pytest.mark.parametrize(
    ("problem", "said"),
    [
        ("missing-folder", "does not exist"),
        ("no-capacity-json", "capacity.json is missing"),
        ("not-json", "cannot be read as JSON"),
        ("not-an-object", "must hold a JSON object"),
        ("wrong-kind", "is not a capacity sweep"),
        ("wrong-schema", "schema 2"),
        ("steps-not-a-list", "'steps' must be a JSON list"),
        ("step-without-tenants", "step 2 has no tenant count"),
    ],
)
def test_cli_bad_sweep_folder_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], problem: str, said: str
) -> None:
    folder = tmp_path / "sweep"
    if problem != "missing-folder":
        folder.mkdir()
    doc = _passing()
    content: str | None = json.dumps(doc)
    if problem == "no-capacity-json":
        content = None
    elif problem == "not-json":
        content = "{not json"
    elif problem == "not-an-object":
        content = "[]"
    elif problem == "wrong-kind":
        content = json.dumps(doc | {"kind": "summary"})
    elif problem == "wrong-schema":
        content = json.dumps(doc | {"schema": 2})
    elif problem == "steps-not-a-list":
        content = json.dumps(doc | {"steps": "none"})
    elif problem == "step-without-tenants":
        doc["steps"][1].pop("tenants")
        content = json.dumps(doc)
    if content is not None and folder.is_dir():
        (folder / "capacity.json").write_text(content)
    assert main(["capacity", str(folder)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reports: ")
    assert said in lines[0] and str(folder) in lines[0]
    assert not (folder / "capacity.md").exists()


def test_cli_as_a_process_prints_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reports", "capacity", str(tmp_path / "nope")],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("reports: sweep folder ") and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- go/no-go


def _judge(root: Path, folders: list[Path]) -> tuple[GoNoGo, str]:
    out = root / "out" / "07-metrics-go-no-go.md"
    out.parent.mkdir(exist_ok=True)
    result = write_gonogo(folders, out, BUNDLED)
    return result, out.read_text()


def _concurrency(result: GoNoGo) -> tuple[str, str]:
    gate = next(g for g in result.gates if g.item.text == CONCURRENCY)
    return gate.result, "\n".join(gate.evidence)


def test_a_lab_sweep_passes_the_concurrency_gate_as_lab_only(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, _passing(target=LAB_TARGET, sweep_id="lab-sweep"))
    result, text = _judge(tmp_path, [sweep])
    status, evidence = _concurrency(result)

    assert status == LAB_ONLY == "PASS (lab only)"
    assert "capacity sweep [lab-sweep/capacity.md](../sweeps/sweep-1/capacity.md) (lab)" in evidence
    assert "no run on a real cluster" in evidence
    assert "At most 17 tenants per node (34 in all on 2 nodes) at 20 writes/s under pod-eviction" in evidence
    assert "N = 34 (capacity sweep lab-sweep: largest passing at 20 writes/s under pod-eviction)" in evidence
    assert result.verdict == "NO-GO"
    assert "- Capacity sweeps (evidence for the concurrency gate): [lab-sweep/capacity.md]" in text
    assert result.runs == [] and len(result.sweeps) == 1


def test_a_complete_cluster_sweep_passes_the_concurrency_gate(tmp_path: Path) -> None:
    result, _ = _judge(tmp_path, [_sweep(tmp_path, _multi_rate())])
    status, evidence = _concurrency(result)
    assert status == PASS
    assert evidence.startswith(
        "N = 30 (capacity sweep sweep-1: largest passing at 10 writes/s under pod-eviction)"
    )
    assert "(30 in all on 2 nodes) at 10 writes/s" in evidence
    assert "(20 in all on 2 nodes) at 40 writes/s" in evidence
    assert "[sweep-1/capacity.md](../sweeps/sweep-1/capacity.md)" in evidence


def test_an_unrendered_sweep_links_its_capacity_json(tmp_path: Path) -> None:
    result, _ = _judge(tmp_path, [_sweep(tmp_path, _passing(), render=False)])
    assert "[sweep-1/capacity.json](../sweeps/sweep-1/capacity.json)" in _concurrency(result)[1]


@pytest.mark.parametrize("with_runs", [False, True], ids=["sweep-alone", "with-passing-runs"])
def test_an_incomplete_sweep_cannot_make_the_gate_pass(tmp_path: Path, with_runs: bool) -> None:
    runs = _passing_fault_runs(tmp_path) if with_runs else []
    result, _ = _judge(tmp_path, [*runs, _sweep(tmp_path, _interrupted())])
    status, evidence = _concurrency(result)
    assert status == NOT_RUN
    assert "is incomplete (interrupted after 4 steps)" in evidence
    assert evidence.index("is incomplete") < evidence.index("run the sweep to the end")


def test_a_sweep_where_no_step_passed_fails_the_gate(tmp_path: Path) -> None:
    runs = _passing_fault_runs(tmp_path)
    result, text = _judge(tmp_path, [*runs, _sweep(tmp_path, _first_fails())])
    status, evidence = _concurrency(result)
    assert status == FAIL
    assert (
        "no tenant count passed at 20 writes/s under pod-eviction: the smallest step, 5, failed"
        in evidence.lower()
    )
    assert "**FAIL** `multi-tenant-concurrency`" in text


def test_a_lab_sweep_that_failed_is_still_a_fail(tmp_path: Path) -> None:
    doc = _first_fails()
    doc["target"] = LAB_TARGET
    result, _ = _judge(tmp_path, [_sweep(tmp_path, doc)])
    assert _concurrency(result)[0] == FAIL


def test_lost_writes_at_any_step_fail_the_gate(tmp_path: Path) -> None:
    doc = _passing()
    doc["steps"][4]["lost"] = 3  # N = 35: the failing bisect step
    result, _ = _judge(tmp_path, [_sweep(tmp_path, doc)])
    status, evidence = _concurrency(result)
    assert status == FAIL
    assert "3 acknowledged write(s) lost at N = 35, 20 writes/s, trial 1" in evidence


@pytest.mark.parametrize(
    ("change", "status", "said"),
    [
        ({"lost": None}, NOT_RUN, "cannot tell whether acknowledged writes were lost"),
        ({"run_verdict": None}, NOT_RUN, "cannot tell whether acknowledged writes were lost"),
        ({"run_verdict": "NO-GO"}, FAIL, "trial(s) 2 at it did not pass"),
        ({"passed": False}, FAIL, "trial(s) 2 at it did not pass"),
    ],
)
def test_the_largest_passing_count_must_be_backed_by_its_steps(
    tmp_path: Path, change: dict[str, Any], status: str, said: str
) -> None:
    doc = _passing()
    doc["steps"][7].update(change)  # N = 34, trial 2
    result, _ = _judge(tmp_path, [_sweep(tmp_path, doc)])
    got, evidence = _concurrency(result)
    assert got == status
    assert said in evidence


def test_a_sweep_without_steps_leaves_the_gate_not_run(tmp_path: Path) -> None:
    result, _ = _judge(tmp_path, [_sweep(tmp_path, _doc([], []))])
    status, evidence = _concurrency(result)
    assert status == NOT_RUN
    assert "no step ran, so it has no result" in evidence


def test_a_lab_sweep_beside_cluster_runs_leaves_the_headline_to_the_cluster(tmp_path: Path) -> None:
    runs = _passing_fault_runs(tmp_path)
    result, _ = _judge(tmp_path, [*runs, _sweep(tmp_path, _passing(target=LAB_TARGET))])
    status, evidence = _concurrency(result)
    assert status == PASS  # the cluster runs prove N = 3 by themselves
    assert evidence.startswith("N = 3\n")
    assert (
        "capacity sweep [sweep-1/capacity.md](../sweeps/sweep-1/capacity.md) (lab: not production evidence): "
        in evidence
    )


def test_step_runs_are_not_counted_unless_passed(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, _passing())
    step_runs = []
    for index, name in enumerate(("n10-w20-t1", "n20-w20-t1")):
        step_runs.append(_write(sweep / "steps", name, _summary(name, "pod-eviction", rto=5.0 + index)))
    assert isinstance(load_folder(sweep), Sweep)
    result, text = _judge(tmp_path, [sweep])
    assert result.runs == []
    assert "n10-w20-t1" not in text.split("## Runs", 1)[1]
    result, text = _judge(tmp_path, [sweep, step_runs[0]])
    assert [r.run_id for r in result.runs] == ["n10-w20-t1"]
    assert "| n10-w20-t1 |" in text.split("## Runs", 1)[1]


def test_cli_gonogo_takes_a_sweep_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = _sweep(tmp_path, _passing())
    out = tmp_path / "doc.md"
    assert main(["gonogo", str(sweep), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"NO-GO {out}"
    assert "sweeps/sweep-1/capacity.md" in out.read_text()
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "capacity.json").write_text(json.dumps({"kind": "capacity", "schema": 9}))
    assert main(["gonogo", str(bad), "--out", str(out)]) == 2
    assert "schema 9" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("second", "expected"), [(False, FAIL), (None, NOT_RUN)], ids=["2-failed", "only-1-ran"]
)
def test_a_sweep_whose_largest_passing_count_is_one_cannot_pass_the_concurrency_gate(
    tmp_path: Path, second: bool | None, expected: str
) -> None:
    steps = [_step(1)]
    if second is not None:
        steps.append(_step(2, passed=second, reasons=["p99 latency 260 ms over the 200 ms limit"]))
    doc = _doc(steps, [_boundary(1, 2 if second is not None else None)])
    result, _ = _judge(tmp_path, [_sweep(tmp_path, doc)])
    status, evidence = _concurrency(result)
    assert status == expected
    assert "no count of two or more tenants passed at 20 writes/s" in evidence
