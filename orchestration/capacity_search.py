"""The capacity search: line search up, bisect down to the precision, repeat at the boundary.

The shape is roachtest's ``tpccbench``: step the load up until a step fails, then narrow
the interval between the last pass and the first fail. Every evaluation is a full measured
run (:mod:`orchestration.capacity_step`); this module only decides which tenant count to
run next, so it can be tested with any pass/fail rule.

A tenant count passes only when every trial run at it passed; a single failing trial
fails it (fail closed: a count that failed once is not capacity). With ``trials`` above 1,
the boundary counts are run again until the largest passing count has passed ``trials``
times and the first failing count has been run ``trials`` times too (its extra trials are
for the record: a failure needs no confirmation). A passing count that fails a repeat
moves the boundary down and the search goes on below it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Boundary", "Evaluate", "planned_steps", "search", "tenant_counts"]

#: ``evaluate(tenants, trial, phase)`` runs one measured step and says whether it passed.
Evaluate = Callable[[int, int, str], bool]


@dataclass
class Boundary:
    """What the search found at one write rate.

    ``largest_passing`` is None when no count passed (the smallest already failed);
    ``first_failing`` is None when every count up to the end of the range passed.
    """

    largest_passing: int | None = None
    first_failing: int | None = None
    results: dict[int, list[bool]] = field(default_factory=dict)

    def passed(self, tenants: int) -> bool | None:
        """True when every trial at ``tenants`` passed; None when it was never run."""
        runs = self.results.get(tenants)
        return None if not runs else all(runs)


def tenant_counts(start: int, stop: int, step: int) -> list[int]:
    """The line search's counts: ``start``, ``start + step``, ... and ``stop`` itself."""
    counts = list(range(start, stop + 1, step))
    if counts[-1] != stop:
        counts.append(stop)
    return counts


def planned_steps(start: int, stop: int, step: int, precision: int, trials: int, done: int = 0) -> int:
    """An upper bound on the steps a search still needs, for the time-left estimate."""
    line = len(tenant_counts(start, stop, step))
    bisect = math.ceil(math.log2(max(1, step / max(1, precision)))) if step > precision else 0
    return max(0, line + bisect + 2 * (trials - 1) - done)


def search(start: int, stop: int, step: int, precision: int, trials: int, evaluate: Evaluate) -> Boundary:
    """Find the largest tenant count in ``[start, stop]`` that passes, to ``precision``."""
    found = Boundary()

    def run(tenants: int, phase: str) -> bool:
        runs = found.results.setdefault(tenants, [])
        ok = evaluate(tenants, len(runs) + 1, phase)
        runs.append(ok)
        return ok

    low: int | None = None
    high: int | None = None
    for tenants in tenant_counts(start, stop, step):
        if run(tenants, "line"):
            low = tenants
        else:
            high = tenants
            break
    while True:
        low, high = _bisect(low, high, precision, found, run)
        if low is None or trials <= 1:
            break
        while len(found.results[low]) < trials and run(low, "repeat"):
            pass
        if found.passed(low):
            break
        # The largest passing count failed a repeat: it is the new first failure.
        high = low
        below = [n for n, runs in found.results.items() if n < high and all(runs)]
        low = max(below) if below else None
    if high is not None and trials > 1:
        while len(found.results[high]) < trials:
            run(high, "repeat")
    found.largest_passing, found.first_failing = low, high
    return found


def _bisect(
    low: int | None,
    high: int | None,
    precision: int,
    found: Boundary,
    run: Callable[[int, str], bool],
) -> tuple[int | None, int | None]:
    """Narrow ``(low, high)`` until they are at most ``precision`` apart."""
    if high is None or low is None:
        return low, high
    while high - low > precision:
        middle = (low + high) // 2
        if found.passed(middle) is False:
            high = middle
        elif found.passed(middle) or run(middle, "bisect"):
            low = middle
        else:
            high = middle
    return low, high
