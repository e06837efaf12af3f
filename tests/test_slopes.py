"""Leak judgement by slope (probes.slopes): a saw-tooth is never a leak, a steady rise always is.

The properties are checked with hypothesis over sample counts, sampling intervals from a
second to ten minutes, floors from a few connections to gigabytes, and bounded uniform
noise (drawn from a seeded generator, so every sample differs).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.slopes import MIN_SAMPLES, judge_slope, theil_sen

T0 = 1_700_000_000.0
HOUR = 3600.0


def test_theil_sen_is_exact_on_a_line_and_ignores_a_wild_outlier() -> None:
    times = [float(t) for t in range(20)]
    values = [3.0 * t + 7.0 for t in times]
    assert theil_sen(times, values) == pytest.approx(3.0)
    values[7] = 1e9
    assert theil_sen(times, values) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="two distinct times"):
        theil_sen([1.0, 1.0], [2.0, 3.0])


def test_few_samples_give_no_verdict() -> None:
    slope = judge_slope([T0 + i for i in range(MIN_SAMPLES - 1)], [1.0, 2.0, 3.0, 4.0, 5.0])
    assert slope.leak is None and slope.per_hour is None and slope.first_floor is None
    assert slope.reason.startswith("not enough samples: 5")
    none_measured = judge_slope([T0 + i for i in range(10)], [None] * 10)
    assert none_measured.leak is None and none_measured.samples == 0


def test_a_constant_is_no_leak() -> None:
    slope = judge_slope([T0 + 60 * i for i in range(100)], [5e8] * 100)
    assert slope.leak is False
    assert slope.per_hour == 0.0 and slope.first_floor == 5e8
    assert "do not rise in every window" in slope.reason


def test_a_saw_tooth_on_a_rising_floor_is_a_leak_and_reports_its_rate() -> None:
    """Garbage collection hides a leak from the peaks, not from the troughs."""
    times = [T0 + 60 * i for i in range(24 * 60)]  # a day, one sample a minute
    base, leak_per_hour = 1e9, 0.05e9  # the floor rises 5 % of its first value per hour
    values = [base + leak_per_hour * (t - T0) / HOUR + 4e8 * ((i % 30) / 30) for i, t in enumerate(times)]
    slow = judge_slope(times, values)
    assert slow.leak is False and "not more than the 10.0 % allowed" in slow.reason
    fast = judge_slope(times, values, leak_per_hour=0.02)
    assert fast.leak is True and fast.per_hour == pytest.approx(leak_per_hour, rel=0.05)
    assert "rise in every window" in fast.reason


@st.composite
def saw_tooth(draw: st.DrawFn) -> tuple[list[float], list[float]]:
    """Flat troughs at a base, teeth of any height, noise under 0.9 % of the base."""
    dt = draw(st.floats(1.0, 600.0))
    trough_samples = draw(st.integers(2, 6))
    rise_samples = draw(st.integers(1, 40))
    period = trough_samples + rise_samples
    windows_periods = draw(st.integers(1, 6))  # whole periods per time window (4 windows)
    count = 4 * windows_periods * period + 1
    base = draw(st.floats(5.0, 1e10))
    height = draw(st.floats(0.0, 5.0)) * base
    noise = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).uniform(-0.009, 0.009, count)
    phase = draw(st.integers(0, period - 1))
    times, values = [], []
    for i in range(count):
        step = (i + phase) % period
        tooth = 0.0 if step < trough_samples else height * (step - trough_samples + 1) / rise_samples
        times.append(T0 + i * dt)
        values.append(base + tooth + noise[i] * base)
    return times, values


@settings(max_examples=300, deadline=None)
@given(saw_tooth())
def test_a_saw_tooth_with_flat_troughs_is_never_a_leak(series: tuple[list[float], list[float]]) -> None:
    times, values = series
    slope = judge_slope(times, values)
    assert slope.leak is False, slope.reason


@st.composite
def steady_rise(draw: st.DrawFn) -> tuple[list[float], list[float], float]:
    """A linear rise of at least twice the threshold (and 20 % over the run), noise bounded."""
    count = draw(st.integers(MIN_SAMPLES, 400))
    dt = draw(st.floats(1.0, 600.0))
    span_hours = (count - 1) * dt / HOUR
    threshold = draw(st.floats(0.01, 0.5))
    rate = draw(st.floats(max(2 * threshold, 0.2 / span_hours), max(2 * threshold, 0.2 / span_hours) * 50))
    base = draw(st.floats(10.0, 1e10))
    windows = 4 if count >= 8 else 3
    slope_per_second = rate * base / HOUR
    bound = min(0.05 * slope_per_second * (count - 1) * dt / windows, 0.01 * base)
    noise = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).uniform(-1.0, 1.0, count)
    times = [T0 + i * dt for i in range(count)]
    values = [base + slope_per_second * i * dt + bound * noise[i] for i in range(count)]
    return times, values, threshold


@settings(max_examples=300, deadline=None)
@given(steady_rise())
def test_a_steady_rise_above_the_threshold_is_always_a_leak(
    series: tuple[list[float], list[float], float],
) -> None:
    times, values, threshold = series
    slope = judge_slope(times, values, leak_per_hour=threshold)
    assert slope.leak is True, slope.reason
    assert slope.per_hour is not None and slope.per_hour > 0


@settings(max_examples=100, deadline=None)
@given(
    st.integers(MIN_SAMPLES, 300),
    st.floats(1.0, 600.0),
    st.floats(0.0, 1e10),
)
def test_a_constant_is_never_a_leak(count: int, dt: float, value: float) -> None:
    slope = judge_slope([T0 + i * dt for i in range(count)], [value] * count)
    assert slope.leak is False


def test_nan_and_none_are_skipped_and_samples_counted() -> None:
    times = [T0 + 60 * i for i in range(12)]
    values: list[float | None] = [float(v) for v in np.linspace(100.0, 100.0, 12)]
    values[3] = None
    values[4] = math.nan
    slope = judge_slope(times, values)
    assert slope.samples == 10 and slope.leak is False


def test_a_bad_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="positive fraction"):
        judge_slope([T0], [1.0], leak_per_hour=0.0)
