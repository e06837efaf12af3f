"""RTO/RPO analysis on constructed journals: no database, exact expectations."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from loadgen.journal import ClockSample, Write
from probes.analysis import analyze, gap_limit
from probes.model import (
    Fault,
    LoadLife,
    Objective,
    ReadBack,
    RunAnalysis,
    RunContext,
    TenantResult,
    TenantTotals,
)

RATE = 20.0  # writes per second per writer
STEP = 1.0 / RATE
LATENCY = 0.01


class Journal:
    """Builds Write lists: one writer issuing a write every STEP seconds."""

    def __init__(self) -> None:
        self.writes: list[Write] = []
        self._seq: dict[tuple[str, int], int] = {}

    def one(self, tenant: str, start: float, end: float, outcome: str = "ok", writer: int = 0) -> Write:
        seq = self._seq.get((tenant, writer), 0)
        self._seq[(tenant, writer)] = seq + 1
        w = Write(tenant, writer, seq, start, end, end - start, outcome)  # type: ignore[arg-type]
        self.writes.append(w)
        return w

    def run(
        self,
        tenant: str,
        start: float,
        stop: float,
        outcome: str | Callable[[float], str] = "ok",
        writer: int = 0,
    ) -> list[Write]:
        """Writes starting at start, start+STEP, ... while < stop."""
        out: list[Write] = []
        k = 0
        while True:
            t = round(start + k * STEP, 6)
            if t >= stop:
                return out
            o = outcome(t) if callable(outcome) else outcome
            out.append(self.one(tenant, t, t + LATENCY, o, writer))
            k += 1


def present_keys(writes: list[Write], tenant: str) -> set[tuple[int, int]]:
    """The keys of every acknowledged row of ``tenant``."""
    return {w.key for w in writes if w.tenant == tenant and w.outcome == "ok"}


def all_present(writes: list[Write], tenant: str) -> ReadBack:
    """A read-back holding every acknowledged row of ``tenant``."""
    return ReadBack.of_keys(tenant, present_keys(writes, tenant), 1e9)


def run(
    j: Journal,
    faults: list[Fault],
    tenants: list[str],
    readbacks: dict[str, ReadBack] | None = None,
    clocks: list[ClockSample] | None = None,
    objective: Objective | None = None,
    stability: float = 5.0,
) -> RunAnalysis:
    if readbacks is None:
        readbacks = {t: all_present(j.writes, t) for t in tenants}
    return analyze(
        "run-1",
        sorted(j.writes, key=lambda w: w.start),
        clocks or [],
        faults,
        readbacks,
        tenants,
        objective or Objective(),
        stability,
    )


def result(a: RunAnalysis, fault: int, tenant: str) -> TenantResult:
    return next(r for r in a.faults[fault].results if r.tenant == tenant)


def totals(a: RunAnalysis, tenant: str) -> TenantTotals:
    return next(t for t in a.totals if t.tenant == tenant)


KILL = Fault(name="pod-kill", kind="pod-kill", injected_at=100.0, target="tenant-1", ended_at=100.0)


def test_no_fault_is_go_with_whole_run_totals() -> None:
    j = Journal()
    j.run("tenant-1", 0.0, 10.0)
    j.run("tenant-2", 0.0, 10.0)
    a = run(j, [], ["tenant-1", "tenant-2"])
    assert a.verdict == "GO"
    assert a.violations == []
    assert a.faults == []
    t = totals(a, "tenant-1")
    assert (t.attempts, t.acked, t.failed, t.unknown) == (200, 200, 0, 0)
    assert (t.lost, t.unexpected, t.recovered_unknown) == (0, 0, 0)
    assert a.started_at == 0.0
    assert a.ended_at == pytest.approx(10.0 - STEP + LATENCY)


def test_clean_outage_rto_within_one_interval_of_outage() -> None:
    j = Journal()
    j.run("tenant-1", 90.0, 100.0)
    j.run("tenant-1", 100.0, 110.0, "fail")
    j.run("tenant-1", 110.0, 130.0)
    a = run(j, [KILL], ["tenant-1"])
    r = result(a, 0, "tenant-1")
    assert r.recovered
    assert r.rto_seconds is not None
    assert 10.0 <= r.rto_seconds <= 10.0 + STEP
    assert r.recovered_at == pytest.approx(100.0 + r.rto_seconds)
    assert r.affected
    assert r.first_failure_at == pytest.approx(100.0 + LATENCY)
    assert r.max_ack_gap_seconds == pytest.approx(10.0 + STEP)
    assert not r.gap_open
    assert (r.acked_writes, r.failed_writes, r.unknown_writes) == (400, 200, 0)
    assert r.lost_acked_writes == 0
    assert r.rpo_seconds == 0.0
    assert a.verdict == "GO"


def test_unaffected_tenant_recovers_at_once() -> None:
    j = Journal()
    j.run("tenant-1", 90.0, 100.0)
    j.run("tenant-1", 100.0, 110.0, "fail")
    j.run("tenant-1", 110.0, 130.0)
    j.run("tenant-2", 90.0, 130.0)
    a = run(j, [KILL], ["tenant-1", "tenant-2"])
    r = result(a, 0, "tenant-2")
    assert not r.affected
    assert r.recovered
    assert r.rto_seconds is not None
    assert r.rto_seconds <= STEP
    assert r.first_failure_at is None
    assert r.max_ack_gap_seconds == pytest.approx(STEP)


def test_rto_over_objective_is_no_go_naming_fault_tenant_and_number() -> None:
    j = Journal()
    j.run("tenant-2", 90.0, 100.0)
    j.run("tenant-2", 100.0, 172.4, "fail")
    j.run("tenant-2", 172.4, 190.0)
    a = run(j, [KILL], ["tenant-2"])
    assert a.verdict == "NO-GO"
    assert a.violations == ["pod-kill tenant-2: RTO 72.4s exceeds the 60s objective"]


def test_never_recovered() -> None:
    j = Journal()
    j.run("tenant-1", 90.0, 100.0)
    j.run("tenant-1", 100.0, 130.0, "fail")
    a = run(j, [KILL], ["tenant-1"])
    r = result(a, 0, "tenant-1")
    assert not r.recovered
    assert r.rto_seconds is None
    assert r.recovered_at is None
    assert r.note == "no acknowledged write after the fault"
    assert r.affected
    assert r.gap_open
    # open from the last ack before the fault to the tenant's last attempt
    assert r.max_ack_gap_seconds == pytest.approx((130.0 - STEP + LATENCY) - (100.0 - STEP + LATENCY))
    assert a.verdict == "NO-GO"
    assert any("pod-kill tenant-1: not recovered" in v for v in a.violations)


def test_flapping_recovery_takes_start_of_final_stable_run() -> None:
    def outcome(t: float) -> str:
        if t < 100.0:
            return "ok"
        if t < 109.0:  # fail for a second, succeed for a second, ... until 109
            return "fail" if int(t - 100.0) % 2 == 0 else "ok"
        return "ok"

    j = Journal()
    j.run("tenant-1", 90.0, 130.0, outcome)
    a = run(j, [KILL], ["tenant-1"])
    r = result(a, 0, "tenant-1")
    assert r.recovered
    assert r.rto_seconds is not None
    assert 9.0 <= r.rto_seconds <= 9.0 + STEP
    assert r.affected
    assert r.max_ack_gap_seconds == pytest.approx(1.0 + STEP)


def test_hung_call_alone_delays_rto_to_its_end() -> None:
    j = Journal()
    j.run("tenant-1", 90.0, 100.0)
    j.one("tenant-1", 100.0, 112.0, "info")  # blocked until the client timeout
    j.run("tenant-1", 112.0, 130.0)
    a = run(j, [KILL], ["tenant-1"])
    r = result(a, 0, "tenant-1")
    assert r.recovered
    assert r.rto_seconds == pytest.approx(12.0 + LATENCY)
    assert r.affected
    assert r.first_failure_at == 112.0
    assert r.unknown_writes == 1
    assert r.max_ack_gap_seconds == pytest.approx(12.0 + STEP)  # 99.96 -> 112.01


def test_hung_call_beside_healthy_writer_breaks_stability_until_it_ends() -> None:
    j = Journal()
    j.run("tenant-1", 90.0, 130.0, writer=0)  # this writer never notices anything
    j.run("tenant-1", 90.0, 101.0, writer=1)
    j.one("tenant-1", 101.0, 120.0, "info", writer=1)  # starts inside every window up to 120
    a = run(j, [KILL], ["tenant-1"])
    r = result(a, 0, "tenant-1")
    assert r.recovered
    assert r.recovered_at is not None
    assert r.recovered_at >= 120.0
    assert r.rto_seconds is not None
    assert r.rto_seconds <= 20.0 + STEP


def test_info_attempt_ending_after_window_breaks_it() -> None:
    # The hung call starts 3s after an ack and ends 20s later: that ack is not a recovery.
    j = Journal()
    j.run("tenant-1", 90.0, 100.0)
    j.one("tenant-1", 100.0, 100.01)  # ack at F
    j.one("tenant-1", 103.0, 123.0, "info", writer=1)
    j.run("tenant-1", 100.05, 140.0, writer=2)
    a = run(j, [KILL], ["tenant-1"])
    r = result(a, 0, "tenant-1")
    assert r.recovered_at is not None
    assert r.recovered_at >= 123.0


def test_info_writes_that_appear_are_recovered_not_lost() -> None:
    j = Journal()
    j.run("tenant-1", 90.0, 100.0)
    unknown = j.run("tenant-1", 100.0, 101.0, "info")
    j.run("tenant-1", 101.0, 120.0)
    rows = present_keys(j.writes, "tenant-1") | {w.key for w in unknown[:5]}
    a = run(j, [KILL], ["tenant-1"], {"tenant-1": ReadBack.of_keys("tenant-1", rows, 1e9)})
    t = totals(a, "tenant-1")
    assert t.recovered_unknown == 5
    assert t.lost == 0
    assert t.unexpected == 0
    assert t.unknown == 20
    assert a.verdict == "GO"


def test_lost_acks_attributed_across_two_faults_with_loss_window() -> None:
    f1 = Fault(name="pod-kill", kind="pod-kill", injected_at=100.0, ended_at=100.0)
    f2 = Fault(name="node-drain", kind="node-drain", injected_at=200.0, ended_at=200.0)
    j = Journal()
    writes = j.run("tenant-1", 90.0, 250.0)
    lost = [
        w
        for w in writes
        if 97.0 <= w.start < 98.0  # before f1: blamed on f1
        or 150.0 <= w.start < 150.5  # between f1 and f2: blamed on f2
        or 210.0 <= w.start < 210.25  # after the last fault: blamed on f2
    ]
    rows = {w.key for w in writes if w not in lost}
    a = run(j, [f2, f1], ["tenant-1"], {"tenant-1": ReadBack.of_keys("tenant-1", rows, 1e9)})
    assert [fr.fault.name for fr in a.faults] == ["pod-kill", "node-drain"]
    r1, r2 = result(a, 0, "tenant-1"), result(a, 1, "tenant-1")
    assert r1.lost_acked_writes == 20
    assert r1.rpo_seconds == pytest.approx(100.0 - (97.0 + LATENCY))
    assert r2.lost_acked_writes == 10 + 5
    assert r2.rpo_seconds == pytest.approx(200.0 - (150.0 + LATENCY))
    t = totals(a, "tenant-1")
    assert t.lost == 35
    assert t.lost_keys == sorted(w.key for w in lost)
    assert a.verdict == "NO-GO"
    assert any(v.startswith("pod-kill tenant-1: 20 acknowledged") for v in a.violations)
    # counts per fault window: [100, 200) and [200, end)
    assert r1.acked_writes == 2000
    assert r2.acked_writes == 1000


def test_lost_acks_within_a_nonzero_rpo_objective_pass() -> None:
    j = Journal()
    writes = j.run("tenant-1", 90.0, 130.0)
    lost = [w for w in writes if 99.0 <= w.start < 100.0]
    rows = {w.key for w in writes if w not in lost}
    rb = {"tenant-1": ReadBack.of_keys("tenant-1", rows, 1e9)}
    loose = run(j, [KILL], ["tenant-1"], rb, objective=Objective(rpo_seconds=5.0))
    assert loose.verdict == "GO"
    strict = run(j, [KILL], ["tenant-1"], rb, objective=Objective(rpo_seconds=0.5))
    assert strict.verdict == "NO-GO"
    assert strict.violations == [
        "pod-kill tenant-1: RPO 1.0s (20 acknowledged write(s) lost) exceeds the 0.5s objective"
    ]


def test_unexpected_rows_are_no_go() -> None:
    j = Journal()
    j.run("tenant-1", 90.0, 120.0)
    rows = present_keys(j.writes, "tenant-1") | {(99, 1), (0, 10_000)}
    a = run(j, [KILL], ["tenant-1"], {"tenant-1": ReadBack.of_keys("tenant-1", rows, 1e9)})
    t = totals(a, "tenant-1")
    assert t.unexpected == 2
    assert t.lost == 0
    assert a.verdict == "NO-GO"
    assert a.violations == ["tenant-1: 2 row(s) present that were never written"]


@pytest.mark.parametrize("readbacks", [{}, {"tenant-1": ReadBack("tenant-1", (), 1e9, error="timeout")}])
def test_unknown_readback_is_none_and_no_go(readbacks: dict[str, ReadBack]) -> None:
    j = Journal()
    j.run("tenant-1", 90.0, 120.0)
    a = run(j, [KILL], ["tenant-1"], readbacks)
    r = result(a, 0, "tenant-1")
    assert r.lost_acked_writes is None
    assert r.rpo_seconds is None
    assert r.recovered
    t = totals(a, "tenant-1")
    assert (t.lost, t.unexpected, t.recovered_unknown) == (None, None, None)
    assert t.readback_error
    assert a.verdict == "NO-GO"
    assert len(a.violations) == 1
    assert a.violations[0].startswith("tenant-1: cannot tell")


def test_clock_skew_is_median_per_tenant() -> None:
    j = Journal()
    j.run("tenant-1", 0.0, 1.0)
    j.run("tenant-2", 0.0, 1.0)
    clocks = [
        ClockSample("tenant-1", 0.0, 0.1, 0.001),
        ClockSample("tenant-1", 1.0, 5.0, 0.001),
        ClockSample("tenant-1", 2.0, 0.3, 0.001),
    ]
    a = run(j, [], ["tenant-1", "tenant-2"], clocks=clocks)
    assert totals(a, "tenant-1").clock_skew_seconds == pytest.approx(0.3)
    assert totals(a, "tenant-2").clock_skew_seconds is None


def test_stability_not_confirmed_when_journal_ends_early() -> None:
    j = Journal()
    j.run("tenant-1", 90.0, 100.0)
    j.run("tenant-1", 100.0, 110.0, "fail")
    j.run("tenant-1", 110.0, 113.0)
    a = run(j, [KILL], ["tenant-1"])
    r = result(a, 0, "tenant-1")
    assert not r.recovered
    assert r.rto_seconds is None
    assert r.note == "writes did not stay healthy for 5s before the run ended"
    assert not r.gap_open  # the last attempt was an ack
    assert a.verdict == "NO-GO"
    # a shorter stability period confirms it
    short = result(run(j, [KILL], ["tenant-1"], stability=2.0), 0, "tenant-1")
    assert short.recovered
    assert short.rto_seconds == pytest.approx(10.0 + LATENCY)


def test_stall_without_failures_is_affected_by_gap() -> None:
    j = Journal()
    j.run("tenant-1", 90.0, 100.0)
    j.run("tenant-1", 103.0, 120.0)  # a 3 s freeze: no attempt ends at all
    a = run(j, [KILL], ["tenant-1"])
    r = result(a, 0, "tenant-1")
    assert r.first_failure_at is None
    assert r.affected
    assert r.max_ack_gap_seconds == pytest.approx(3.0 + STEP)
    assert r.rto_seconds == pytest.approx(3.0 + LATENCY)


def test_tenant_without_writes_is_not_recovered() -> None:
    j = Journal()
    j.run("tenant-1", 90.0, 120.0)
    a = run(j, [KILL], ["tenant-1", "tenant-2"])
    r = result(a, 0, "tenant-2")
    assert not r.recovered
    assert r.note == "no writes journaled for this tenant"
    assert a.verdict == "NO-GO"
    assert a.violations == ["pod-kill tenant-2: not recovered (no writes journaled for this tenant)"]
    no_fault = run(j, [], ["tenant-1", "tenant-2"])
    assert no_fault.violations == ["tenant-2: no writes journaled for this tenant"]


def test_journal_tenant_missing_from_list_is_still_analysed() -> None:
    j = Journal()
    j.run("tenant-1", 90.0, 120.0)
    j.run("tenant-9", 90.0, 120.0)
    a = run(j, [KILL], ["tenant-1"], {t: all_present(j.writes, t) for t in ("tenant-1", "tenant-9")})
    assert a.tenants == ["tenant-1", "tenant-9"]
    assert [r.tenant for r in a.faults[0].results] == ["tenant-1", "tenant-9"]


def test_lost_keys_list_is_capped_but_count_is_not() -> None:
    j = Journal()
    j.run("tenant-1", 0.0, 60.0, writer=0)
    j.run("tenant-1", 0.0, 60.0, writer=1)
    a = run(j, [], ["tenant-1"], {"tenant-1": ReadBack("tenant-1", (), 1e9)})
    t = totals(a, "tenant-1")
    assert t.lost == 2400
    assert len(t.lost_keys) == 1000
    assert t.lost_keys == sorted(t.lost_keys)
    assert a.violations == ["tenant-1: 2400 acknowledged write(s) lost with no fault injected"]


# -- what a verdict may rest on: liveness, gaps, the run's own status ------------------------


def ctx(
    stop: float | None = None,
    died: float | None = None,
    exit_code: int | None = 0,
    status: str | None = "completed",
    failed: tuple[str, ...] = (),
) -> RunContext:
    load = LoadLife(
        started_at=0.0, stop_requested_at=stop, ended_at=stop or died, exit_code=exit_code, died_at=died
    )
    return RunContext(chaos_status=status, failed_activities=failed, load=load, write_rate=RATE)


def analysed(j: Journal, faults: list[Fault], tenants: list[str], context: RunContext) -> RunAnalysis:
    readbacks = {t: all_present(j.writes, t) for t in tenants}
    return analyze(
        "run-1", sorted(j.writes, key=lambda w: w.start), [], faults, readbacks, tenants, context=context
    )


def test_a_load_that_died_after_recovery_is_no_go_with_a_measurement_gap() -> None:
    # The reproduction: the fault, a recovery, then the load killed while the run went on.
    j = Journal()
    j.run("tenant-1", 90.0, 100.0)
    j.run("tenant-1", 100.0, 101.0, "fail")
    j.run("tenant-1", 101.0, 110.0)  # recovered at 101, stable for 9 s, then nothing
    a = analysed(j, [KILL], ["tenant-1"], ctx(stop=120.0, died=110.02, exit_code=-9))
    assert result(a, 0, "tenant-1").recovered
    assert a.verdict == "NO-GO"
    assert any("the load process died" in v and "exit status -9" in v for v in a.violations), a.violations
    (gap,) = totals(a, "tenant-1").measurement_gaps
    assert gap[1] == 120.0 and gap[0] == pytest.approx(110.0 - STEP + LATENCY)
    assert any("measurement gap" in v and "cannot tell" in v for v in a.violations)


def test_a_silent_stretch_outside_any_fault_is_a_measurement_gap_even_when_the_load_lived() -> None:
    j = Journal()
    j.run("tenant-1", 0.0, 40.0)
    j.run("tenant-1", 50.0, 60.0)  # 10 s with no record and no fault
    a = analysed(j, [], ["tenant-1"], ctx(stop=60.0))
    assert totals(a, "tenant-1").measurement_gaps == [(pytest.approx(40.0 - STEP + LATENCY), 50.0)]
    assert a.verdict == "NO-GO"


def test_a_silent_stretch_inside_an_outage_is_explained_by_the_fault() -> None:
    # A frozen server: calls hang and nothing is journaled until it comes back.
    j = Journal()
    j.run("tenant-1", 90.0, 100.0)
    j.one("tenant-1", 100.0, 108.0, "info")  # one call hung through the outage
    j.run("tenant-1", 112.0, 130.0)  # and nothing else for 4 s
    a = analysed(j, [KILL], ["tenant-1"], ctx(stop=130.0))
    assert totals(a, "tenant-1").measurement_gaps == []
    assert a.verdict == "GO", a.violations


def test_a_trailing_gap_shorter_than_the_limit_is_not_a_gap() -> None:
    j = Journal()
    j.run("tenant-1", 0.0, 30.0)
    a = analysed(j, [], ["tenant-1"], ctx(stop=31.5))
    assert totals(a, "tenant-1").measurement_gaps == []
    assert a.verdict == "GO"
    assert gap_limit(RATE) == 2.0 and gap_limit(0.5) == 6.0 and gap_limit(None) == 2.0


@pytest.mark.parametrize("status", ["failed", "aborted", "interrupted", "running"])
def test_an_experiment_that_did_not_complete_is_no_go(status: str) -> None:
    j = Journal()
    j.run("tenant-1", 90.0, 130.0)
    a = analysed(j, [KILL], ["tenant-1"], ctx(stop=130.0, status=status))
    assert a.verdict == "NO-GO"
    assert any(repr(status) in v for v in a.violations), a.violations


def test_a_fault_whose_injection_never_ended_is_no_go() -> None:
    j = Journal()
    j.run("tenant-1", 90.0, 130.0)
    refused = Fault(name="evict tenant-1", kind="pod-eviction", injected_at=100.0, target="tenant-1")
    a = analysed(j, [refused], ["tenant-1"], ctx(stop=130.0, failed=("method activity 'evict' failed: 403",)))
    assert a.verdict == "NO-GO"
    assert any("evict tenant-1: the injection never completed" in v for v in a.violations), a.violations
    assert "method activity 'evict' failed: 403" in a.violations


def test_a_load_that_exited_non_zero_after_the_stop_is_no_go() -> None:
    j = Journal()
    j.run("tenant-1", 0.0, 30.0)
    a = analysed(j, [], ["tenant-1"], ctx(stop=30.0, exit_code=1))
    assert a.verdict == "NO-GO"
    assert any("exit status 1" in v for v in a.violations)


def test_a_failed_write_found_in_the_database_is_misclassified() -> None:
    j = Journal()
    j.run("tenant-1", 0.0, 10.0)
    wrong = j.one("tenant-1", 10.0, 10.01, "fail")
    rb = ReadBack.of_keys("tenant-1", present_keys(j.writes, "tenant-1") | {wrong.key}, 1e9)
    a = run(j, [], ["tenant-1"], readbacks={"tenant-1": rb})
    assert totals(a, "tenant-1").misclassified == 1
    assert totals(a, "tenant-1").unexpected == 0
    assert a.verdict == "NO-GO"
    assert any("journaled as failed" in v for v in a.violations)


def test_the_loss_window_spans_both_sides_of_the_fault() -> None:
    j = Journal()
    before = j.run("tenant-1", 90.0, 100.0)
    j.run("tenant-1", 100.0, 101.0, "fail")
    after = j.run("tenant-1", 101.0, 120.0)
    lost = {before[-20].key, after[10].key}
    rb = ReadBack.of_keys("tenant-1", present_keys(j.writes, "tenant-1") - lost, 1e9)
    a = run(j, [KILL], ["tenant-1"], readbacks={"tenant-1": rb})
    r = result(a, 0, "tenant-1")
    assert r.lost_acked_writes == 2
    assert r.loss_window_from_seconds == pytest.approx(before[-20].end - 100.0)
    assert r.loss_window_to_seconds == pytest.approx(after[10].end - 100.0)
    assert r.rpo_seconds == pytest.approx(100.0 - before[-20].end)
    assert any("around the fault" in v for v in a.violations)
