"""RTO against an independent observer: a freeze of known length, timed at its signals.

Real Locust load on real PostgreSQL servers; every server is frozen (SIGSTOP of its
whole tree) for FREEZE seconds, with the fault recorded at the first SIGSTOP and its end
at the first SIGCONT. The RTO the analysis reports may exceed the true outage only by
how late the writers notice the server is back: the retry backoff, the reconnect and the
first insert. ``tests.benchmarks.bench_rto_bias`` measures the same over many freezes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.engine import Engine
from tests.benchmarks.bench_rto_bias import measure

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FREEZE = 3.0
BIAS = 0.2


def test_freeze_rto_matches_the_outage(engine: Engine, engine_root: Path) -> None:
    samples = measure(
        engine,
        engine_root,
        tenants=2,
        freezes=1,
        seconds=FREEZE,
        rate=20.0,
        stability=3.0,
        settle=1.0,
        say=lambda _message: None,
    )
    assert len(samples) == 2
    for s in samples:
        assert abs(s.outage - FREEZE) < 0.05, s
        assert s.rto is not None and s.bias is not None, s
        assert abs(s.rto - s.outage) <= BIAS, s
        assert s.attempts_during >= 2, s  # the outage was seen, not slept through
