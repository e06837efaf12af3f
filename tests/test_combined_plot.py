"""The cross-run RTO plot: fault labels, a log axis that separates 0.4 s from 11 s, nothing overlapping.

Summaries are hand-written (``tests.test_gonogo._summary``); the figure is checked through
matplotlib's own geometry (tick label and note bounding boxes on the drawn canvas).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Annotation
from PIL import Image

from reports.combined import NO_RTO_LABEL, column_labels, combined_rto_plot, plot_columns, rto_figure
from reports.errors import ReportError
from tests.test_gonogo import _summary

KINDS = ("operator-restart", "pod-eviction", "node-drain", "node-restart")


def _renderer(figure: Figure) -> Any:
    return figure.canvas.get_renderer()  # type: ignore[attr-defined]


def _boxes(figure: Figure, texts: list[Any]) -> list[Any]:
    renderer = _renderer(figure)
    return [t.get_window_extent(renderer) for t in texts if t.get_visible() and t.get_text()]


def _assert_apart(boxes: list[Any]) -> None:
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)


def _ys(line: Line2D) -> list[float]:
    return [float(y) for y in np.asarray(line.get_ydata(), dtype=float)]


def _legend(axes: Any) -> list[str]:
    legend = axes.get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def _notes(figure: Figure) -> list[Annotation]:
    return [t for t in figure.axes[0].texts if isinstance(t, Annotation)]


def _check_nothing_overlaps(figure: Figure) -> None:
    axes = figure.axes[0]
    _assert_apart(_boxes(figure, list(axes.get_xticklabels())))
    _assert_apart(_boxes(figure, list(axes.get_yticklabels())))
    notes = _boxes(figure, list(_notes(figure)))
    _assert_apart(notes)
    inside = axes.get_window_extent(_renderer(figure))
    for box in notes:
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1, box
    ticks = _boxes(figure, [*axes.get_xticklabels(), *axes.get_yticklabels()])
    for note in notes:
        assert not any(note.overlaps(t) for t in ticks)


def _demo_like() -> list[dict[str, Any]]:
    """Columns as in a demo: a repeated fault, 0.4 s next to 11 s, one tenant that never recovers."""
    return [
        _summary("20261130T051946.459Z-operator-restart", "operator-restart", rto=0.4),
        _summary("20261130T052011.494Z-pod-eviction", "pod-eviction", rto=11.0),
        _summary("20261130T052104.200Z-node-restart", "node-restart", recovered=False),
        _summary("20261130T052216.952Z-backup-under-chaos", "operator-restart", rto=0.02),
    ]


def test_columns_are_labelled_by_fault_and_repeats_are_numbered() -> None:
    summaries = _demo_like()
    figure = rto_figure(summaries)
    labels = [t.get_text() for t in figure.axes[0].get_xticklabels()]
    assert labels == ["operator-restart", "pod-eviction", "node-restart", "operator-restart #2"]
    assert not any(s["run_id"] in " ".join(labels) for s in summaries)  # run ids live in the runs table
    assert column_labels(summaries) == [
        ["operator-restart"],
        ["pod-eviction"],
        ["node-restart"],
        ["operator-restart #2"],
    ]
    assert [c.run_id for c in plot_columns(summaries)] == [s["run_id"] for s in summaries]
    assert "runs table" in figure.axes[0].get_xlabel()


def test_the_y_axis_is_logarithmic_and_separates_sub_second_from_ten_seconds() -> None:
    figure = rto_figure(_demo_like())
    axes = figure.axes[0]
    assert axes.get_yscale() == "log"
    to_pixels = axes.transData.transform
    height = axes.get_window_extent(_renderer(figure)).height
    apart = to_pixels((0, 11.0))[1] - to_pixels((0, 0.4))[1]
    assert apart > 0.2 * height  # on a linear 0-80 s axis this was about 13 %
    bottom, top = axes.get_ylim()
    assert bottom < 0.02 < 60.0 < top


def test_the_objective_line_stays_and_never_recovered_is_a_labelled_cross_above_it() -> None:
    figure = rto_figure(_demo_like())
    axes = figure.axes[0]
    lines = [line for line in axes.get_lines() if isinstance(line, Line2D)]
    objective = [line for line in lines if _ys(line) == [60.0, 60.0]]
    assert objective and objective[0].get_linestyle() == "--"
    crosses = [line for line in lines if line.get_marker() == "X"]
    assert len(crosses) == 1
    y = _ys(crosses[0])[0]
    assert 60.0 < y < axes.get_ylim()[1]
    ticks = {t.get_text(): t for t in axes.get_yticklabels()}
    assert NO_RTO_LABEL in ticks and "60 s" in ticks
    assert axes.get_yticks()[list(ticks).index(NO_RTO_LABEL)] == pytest.approx(y)
    assert [n.get_text() for n in _notes(figure)][2] == "not recovered: 1"
    assert "never recovered (no RTO)" in _legend(axes)


def test_nothing_overlaps_at_the_size_the_report_shows(tmp_path: Path) -> None:
    figure = rto_figure(_demo_like())
    _check_nothing_overlaps(figure)
    assert all(t.get_rotation() == 0 for t in figure.axes[0].get_xticklabels())  # room enough: upright
    path = combined_rto_plot(tmp_path / "rto.png", _demo_like())
    with Image.open(path) as image:
        assert 1000 <= image.width <= 1400 and image.height >= 550


@pytest.mark.parametrize("count", [12, 30])
def test_many_columns_turn_their_labels_and_still_do_not_overlap(count: int) -> None:
    summaries = [
        _summary(f"run-{i:02d}", KINDS[i % 4], rto=0.3 + i, recovered=i % 5 != 3) for i in range(count)
    ]
    figure = rto_figure(summaries)
    _check_nothing_overlaps(figure)
    assert {t.get_rotation() for t in figure.axes[0].get_xticklabels()} != {0}
    assert figure.get_size_inches()[0] <= 12.0


def test_an_rto_under_a_millisecond_is_drawn_at_the_floor_not_dropped() -> None:
    figure = rto_figure([_summary("fast", "pod-eviction", rto=0.0)])
    axes = figure.axes[0]
    floor = [line for line in axes.get_lines() if line.get_marker() == "v"]
    assert floor and axes.get_ylim()[0] < _ys(floor[0])[0]
    assert "under 1 ms" in _legend(axes)


def test_a_non_positive_objective_is_refused() -> None:
    with pytest.raises(ReportError, match="objective"):
        rto_figure(_demo_like(), objective=0.0)
