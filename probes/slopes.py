"""Leak judgement by slope, not endpoint: a steady rise over the run is a leak, a saw-tooth is not.

A pod's memory (or open-connection count) sampled over a soak is split into ``k`` equal
time windows (4; 3 with fewer than 8 samples) and each window's minimum, its *floor*, is
taken: garbage collection, caches and pools make a saw-tooth whose peaks say nothing,
but a leak lifts the troughs. The series is a leak only when all of these hold:

- the floors rise from every window to the next (strictly);
- the Theil-Sen slope of the floors (the median of the slopes between every pair of
  floor points, each at the time of its minimum) is more than ``leak_per_hour`` times
  the first floor per hour (plan.json's ``leak_per_hour``, default 0.10: a floor rising
  more than 10 % of its first value per hour);
- the floors rose by at least ``MIN_RISE`` (2 %) of the first floor in total: a smaller
  rise is within the noise of a memory reading, however short the run.

Fewer than ``MIN_SAMPLES`` (6) samples, or fewer than ``MIN_WINDOWS`` (3) windows that
hold a sample, give no verdict (``leak`` is None, "not enough samples"). A first floor
of 0 or less (no connection open) is judged against 1 (one connection, one byte) so an
idle pool that starts leaking is still seen.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DEFAULT_LEAK_PER_HOUR",
    "MIN_RISE",
    "MIN_SAMPLES",
    "MIN_WINDOWS",
    "WINDOWS",
    "Slope",
    "floors",
    "judge_slope",
    "theil_sen",
]

DEFAULT_LEAK_PER_HOUR = 0.10
WINDOWS = 4
MIN_WINDOWS = 3
MIN_SAMPLES = 6
MIN_RISE = 0.02
_MAX_POINTS = 1000  # Theil-Sen on more points is thinned evenly (pairs grow with the square)


@dataclass(frozen=True)
class Slope:
    """The judgement of one series.

    ``per_hour`` is the Theil-Sen slope of the floors in the series' unit per hour and
    ``first_floor`` the first window's minimum (both None without a verdict); ``leak``
    None means no verdict (``reason`` says why); ``samples`` counts the finite samples
    judged; ``floors`` are the windows' minima in time order.
    """

    per_hour: float | None
    first_floor: float | None
    leak: bool | None
    samples: int
    reason: str
    floors: tuple[float, ...] = field(default=())


def theil_sen(times: Sequence[float], values: Sequence[float]) -> float:
    """The Theil-Sen slope (value per time unit): the median of every pairwise slope.

    Pairs with equal times are left out; ValueError when fewer than two distinct times.
    More than 1,000 points are thinned to 1,000 evenly spaced ones.
    """
    t = np.asarray(times, dtype=float)
    v = np.asarray(values, dtype=float)
    if t.shape != v.shape:
        raise ValueError(
            f"times and values differ in length ({t.size} and {v.size}); pass one value per time"
        )
    if t.size > _MAX_POINTS:
        keep = np.linspace(0, t.size - 1, _MAX_POINTS).round().astype(int)
        t, v = t[keep], v[keep]
    i, j = np.triu_indices(t.size, k=1)
    dt = t[j] - t[i]
    usable = dt != 0
    if not usable.any():
        raise ValueError("a slope needs at least two distinct times")
    return float(np.median((v[j] - v[i])[usable] / dt[usable]))


def floors(times: Sequence[float], values: Sequence[float], windows: int) -> list[tuple[float, float]]:
    """(time, value) of the minimum of each of ``windows`` equal time windows that holds a sample.

    The last window includes the last sample's time. Samples must be finite.
    """
    if not times:
        return []
    start, end = min(times), max(times)
    width = (end - start) / windows
    lowest: dict[int, tuple[float, float]] = {}
    for t, v in zip(times, values, strict=True):
        index = windows - 1 if width <= 0 else min(int((t - start) / width), windows - 1)
        if index not in lowest or v < lowest[index][1]:
            lowest[index] = (t, v)
    return [lowest[k] for k in sorted(lowest)]


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def judge_slope(
    times: Sequence[float],
    values: Sequence[float | None],
    leak_per_hour: float = DEFAULT_LEAK_PER_HOUR,
    min_rise: float = 0.0,
) -> Slope:
    """Judge one series of (epoch seconds, value) samples; None or non-finite values are skipped.

    ``min_rise`` is the smallest total rise of the floors, in the series' own unit, that can
    be a leak (besides the relative :data:`MIN_RISE`): a server warming its caches in the
    first minutes of a short soak rises steadily too, by a few MiB.
    """
    if leak_per_hour <= 0 or not math.isfinite(leak_per_hour):
        raise ValueError(f"leak_per_hour must be a positive fraction, got {leak_per_hour!r}")
    pairs = sorted(
        (float(t), float(v))
        for t, v in zip(times, values, strict=True)
        if v is not None and math.isfinite(v) and math.isfinite(t)
    )
    count = len(pairs)
    needed = f"at least {MIN_SAMPLES} over {MIN_WINDOWS} time windows are needed"
    if count < MIN_SAMPLES:
        return Slope(None, None, None, count, f"not enough samples: {count} ({needed})")
    ts, vs = [p[0] for p in pairs], [p[1] for p in pairs]
    points = floors(ts, vs, WINDOWS if count >= 2 * WINDOWS else MIN_WINDOWS)
    if len(points) < MIN_WINDOWS:
        return Slope(
            None, None, None, count, f"not enough samples: {len(points)} windows hold one ({needed})"
        )
    lows = tuple(v for _, v in points)
    first = lows[0]
    scale = max(first, 1.0)
    per_hour = 3600.0 * theil_sen([t for t, _ in points], list(lows))
    allowed = leak_per_hour * scale
    shown = ", ".join(f"{v:.6g}" for v in lows)
    rising = all(b > a for a, b in itertools.pairwise(lows))
    rate = f"{_pct(per_hour / scale)} of the first floor per hour"
    if not rising:
        reason = f"floors {shown} do not rise in every window: no leak"
        return Slope(per_hour, first, False, count, reason, lows)
    rise = (lows[-1] - first) / scale
    if rise < MIN_RISE:
        reason = f"floors {shown} rose {_pct(rise)} in all, within the {_pct(MIN_RISE)} noise: no leak"
        return Slope(per_hour, first, False, count, reason, lows)
    if lows[-1] - first < min_rise:
        reason = (
            f"floors {shown} rose {lows[-1] - first:.6g} in all, under the {min_rise:.6g} of a leak: no leak"
        )
        return Slope(per_hour, first, False, count, reason, lows)
    if per_hour <= allowed:
        reason = f"floors {shown} rise {rate}, not more than the {_pct(leak_per_hour)} allowed: no leak"
        return Slope(per_hour, first, False, count, reason, lows)
    reason = (
        f"floors {shown} rise in every window, {rate} (more than the {_pct(leak_per_hour)} allowed): a leak"
    )
    return Slope(per_hour, first, True, count, reason, lows)
