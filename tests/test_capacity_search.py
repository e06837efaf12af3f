"""The capacity search's decisions and a step's pass/fail rule, without running steps.

The search is driven by a rule known in advance (a tenant count passes when it is at or
below a capacity), so the boundary it must find is known; the end-to-end test with real
runs on the lab is tests/test_capacity_sweep.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.crd import CrdCoordinates
from orchestration.capacity import worker_nodes
from orchestration.capacity_search import planned_steps, search, tenant_counts
from orchestration.capacity_settings import Settings, read_var_files
from orchestration.capacity_step import check_experiment, judge, step_record
from orchestration.capacity_tenants import ledger_entries, load_template
from orchestration.errors import OrchestrationError


class Rule:
    """Passes at or below ``capacity``; records every evaluation."""

    def __init__(self, capacity: int, flaky: dict[tuple[int, int], bool] | None = None) -> None:
        self.capacity, self.flaky, self.calls = capacity, flaky or {}, []  # type: list[tuple[int, int, str]]

    def __call__(self, tenants: int, trial: int, phase: str) -> bool:
        self.calls.append((tenants, trial, phase))
        return self.flaky.get((tenants, trial), tenants <= self.capacity)


@pytest.mark.parametrize("capacity", [5, 7, 17, 33, 49])
def test_the_search_finds_a_known_capacity_exactly_at_precision_one(capacity: int) -> None:
    rule = Rule(capacity)
    found = search(5, 50, 5, 1, 1, rule)
    assert found.largest_passing == capacity
    assert found.first_failing == capacity + 1 or (capacity % 5 == 0 and found.first_failing == capacity + 1)
    phases = [phase for _, _, phase in rule.calls]
    assert phases[0] == "line" and set(phases) <= {"line", "bisect"}
    # line search stopped at the first failure: nothing above it was run
    assert max(n for n, _, _ in rule.calls) == (capacity // 5 + 1) * 5


def test_the_search_stops_at_the_precision() -> None:
    found = search(10, 100, 20, 5, 1, Rule(47))
    assert found.largest_passing is not None and found.first_failing is not None
    assert found.first_failing - found.largest_passing <= 5
    assert found.largest_passing <= 47 < found.first_failing


def test_nothing_passing_and_nothing_failing_are_both_reported() -> None:
    none = search(5, 50, 5, 1, 1, Rule(2))
    assert (none.largest_passing, none.first_failing) == (None, 5)
    every = search(5, 23, 5, 1, 1, Rule(100))
    assert (every.largest_passing, every.first_failing) == (23, None)
    assert tenant_counts(5, 23, 5) == [5, 10, 15, 20, 23]


def test_trials_repeat_the_boundary_and_a_failed_repeat_moves_it_down() -> None:
    steady = Rule(12)
    found = search(4, 20, 4, 1, 3, steady)
    assert (found.largest_passing, found.first_failing) == (12, 13)
    assert found.results[12] == [True, True, True] and len(found.results[13]) == 3
    # 12 passes its first run and fails its second: 12 is not capacity; 11 is confirmed instead
    flaky = Rule(12, {(12, 2): False})
    found = search(4, 20, 4, 1, 3, flaky)
    assert found.first_failing == 12
    assert found.largest_passing is not None and found.largest_passing < 12
    assert found.results[found.largest_passing] == [True, True, True]


def test_planned_steps_bounds_the_remaining_work() -> None:
    assert planned_steps(5, 50, 5, 1, 1) == 10 + 3
    assert planned_steps(5, 50, 5, 1, 1, done=13) == 0
    assert planned_steps(5, 50, 5, 5, 2) == 10 + 2


def _record(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "rto": {"worst": 0.8, "p95": 0.8, "per_tenant": {"a": 0.8, "b": 0.0}},
        "lost": 0,
        "latency_ms": {"p50": 3.0, "p99": 20.0, "max": 40.0},
        "efficiency": 0.97,
        "run_verdict": "GO",
        "run_violations": [],
    }
    base.update(over)
    return base


def test_a_step_passes_only_when_every_criterion_holds() -> None:
    assert judge(_record(), 60, 200, 0.85) == []


def test_one_lost_acknowledged_write_fails_the_step_whatever_its_rto() -> None:
    reasons = judge(_record(lost=1, rto={"worst": 0.0, "p95": 0.0, "per_tenant": {"a": 0.0}}), 60, 200, 0.85)
    assert reasons == ["1 acknowledged write(s) lost"]


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"rto": {"worst": 75.0, "p95": 75.0, "per_tenant": {"a": 75.0}}}, "over the 60 s objective"),
        ({"rto": {"worst": None, "p95": None, "per_tenant": {"a": None}}}, "RTO unknown"),
        ({"lost": None}, "lost writes unknown"),
        ({"latency_ms": {"p50": 1, "p99": 212.0, "max": 300}}, "p99 latency 212 ms over the 200 ms limit"),
        ({"latency_ms": {"p50": None, "p99": None, "max": None}}, "p99 write latency unknown"),
        ({"efficiency": 0.6}, "efficiency 0.60 under the 0.85 minimum"),
        ({"efficiency": None}, "efficiency unknown"),
        ({"run_verdict": "NO-GO", "run_violations": ["measurement gap"]}, "NO-GO (measurement gap"),
        ({"run_verdict": None}, "NO-GO"),
        ({"load_cpu_per_tenant": 0.5}, "cannot tell: the load generator used 1.00 cores"),
    ],
)
def test_each_failing_criterion_is_named(over: dict[str, Any], words: str) -> None:
    reasons = judge(_record(**over), 60, 200, 0.85)
    assert any(words in r for r in reasons), reasons


def test_a_step_record_reads_a_run_folder_and_keeps_unknowns_unknown(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    summary = {
        "verdict": "GO",
        "violations": [],
        "faults": [
            {
                "results": [
                    {"tenant": "a", "recovered": True, "rto_seconds": 1.5},
                    {"tenant": "b", "recovered": False, "rto_seconds": None},
                ]
            }
        ],
        "totals": {"a": {"lost": 0}, "b": {"lost": None}},
        "latency": {"all": {"p50_ms": 2.0, "p99_ms": 9.0, "max_ms": 30.0, "late_starts": 4}},
        "efficiency": {"efficiency": 0.9, "acked_per_second": 36.0, "offered_per_second": 40.0},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "run.json").write_text(
        json.dumps({"load": {"cpu_seconds": 3.25, "started_at": 100.0, "ended_at": 110.0}})
    )
    (run / "observations.jsonl").write_text(
        json.dumps({"name": "recovery", "value": {"instances_ready_seconds": 2.5}}) + "\n"
    )
    record = step_record(run, ["a", "b"])
    assert record["rto"] == {"worst": None, "p95": None, "per_tenant": {"a": 1.5, "b": None}}
    assert record["lost"] is None
    assert record["latency_ms"] == {"p50": 2.0, "p99": 9.0, "max": 30.0}
    assert record["late_starts"] == 4 and record["efficiency"] == 0.9
    assert record["ready_again_seconds"] == {"all instances": 2.5}
    assert record["load_cpu_seconds"] == 3.25
    assert record["load_cpu_per_tenant"] == pytest.approx(3.25 / 10 / 2)
    missing = step_record(None, ["a"])
    assert missing["run_verdict"] is None and missing["lost"] is None
    assert judge(missing, 60, 200, 0.85)


@pytest.mark.parametrize(
    ("knobs", "words"),
    [
        ({"tenants_from": 10, "tenants_to": 5}, "tenants_from (10) is above tenants_to (5)"),
        ({"tenants_step": 0}, "tenants_step must be a whole number of at least 1"),
        ({"tenants_step": -2}, "tenants_step must be"),
        ({"trials": 0}, "trials must be"),
        ({"write_rates": (0.0,)}, "write rates must be positive"),
        ({"min_efficiency": 1.5}, "min_efficiency must be above 0 and at most 1"),
        ({"latency_limit_ms": -1.0}, "latency_limit_ms must be a positive number"),
    ],
)
def test_bad_knobs_are_one_line_each(knobs: dict[str, Any], words: str) -> None:
    with pytest.raises(OrchestrationError) as err:
        Settings(**knobs).check()
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_template_that_is_not_an_mssql_instance_is_refused(tmp_path: Path) -> None:
    coords = CrdCoordinates()
    pod = tmp_path / "pod.yaml"
    pod.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {}\n")
    with pytest.raises(OrchestrationError, match="is v1 Pod, not an MSSQLInstance"):
        load_template(pod, coords)
    two = tmp_path / "two.yaml"
    two.write_text("kind: MSSQLInstance\n---\nkind: MSSQLInstance\n")
    with pytest.raises(OrchestrationError, match="exactly one object"):
        load_template(two, coords)
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [unclosed\n")
    with pytest.raises(OrchestrationError, match="not YAML or JSON"):
        load_template(broken, coords)
    good = tmp_path / "good.yaml"
    good.write_text(
        f"apiVersion: {coords.group}/{coords.version}\nkind: MSSQLInstance\nspec: {{version: '15'}}\n"
    )
    assert load_template(good, coords)["spec"] == {"version": "15"}


def test_var_files_and_fault_experiments_are_checked(tmp_path: Path) -> None:
    bad = tmp_path / "vars.json"
    bad.write_text("[1, 2]")
    with pytest.raises(OrchestrationError, match="must be a mapping"):
        read_var_files((bad,))
    with pytest.raises(OrchestrationError, match="does not exist"):
        check_experiment(tmp_path / "nope.json")
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"title": "x", "method": []}))
    with pytest.raises(OrchestrationError, match="does not run under the load control"):
        check_experiment(plain)
    assert check_experiment(Path("experiments/pod-eviction.json"))


def test_the_ledger_lists_each_instance_once_per_namespace(tmp_path: Path) -> None:
    ledger = tmp_path / "created.jsonl"
    lines = [
        {"namespace": "t", "name": "cap-1-0"},
        {"namespace": "t", "name": "cap-1-0"},
        {"namespace": "u", "name": "x"},
    ]
    ledger.write_text("\n".join(json.dumps(line) for line in lines) + "\n{torn")
    assert ledger_entries(ledger) == [("t", "cap-1-0"), ("u", "x")]


@pytest.mark.parametrize("entry", ["orchestration", "probes"])
def test_both_entry_points_refuse_bad_knobs_in_one_line_before_reaching_any_target(entry: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", entry, "capacity", "--from", "6", "--to", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "KUBECONFIG": "/nonexistent"},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr == "capacity: tenants_from (6) is above tenants_to (2): swap them\n"


def test_tenants_per_node_counts_only_the_nodes_that_take_tenants() -> None:
    def node(name: str, *, taints: list[str] = (), cordoned: bool = False) -> Any:  # type: ignore[assignment]
        spec = SimpleNamespace(unschedulable=cordoned, taints=[SimpleNamespace(effect=e) for e in taints])
        return SimpleNamespace(name=name, spec=spec)

    nodes = [node("cp", taints=["NoSchedule"]), node("w1"), node("w2", taints=["PreferNoSchedule"]),
             node("w3", cordoned=True), node("w4", taints=["NoExecute"])]  # fmt: skip
    assert [n.name for n in worker_nodes(nodes)] == ["w1", "w2"]


@settings(max_examples=400, deadline=None)
@given(
    start=st.integers(1, 10),
    span=st.integers(0, 40),
    step=st.integers(1, 12),
    precision=st.integers(1, 5),
    trials=st.integers(1, 3),
    outcomes=st.lists(st.booleans(), min_size=1, max_size=64),
)
def test_the_search_keeps_its_promises_whatever_the_steps_say(
    start: int, span: int, step: int, precision: int, trials: int, outcomes: list[bool]
) -> None:
    """Any pass/fail sequence (flaky included): it ends, runs no count more than ``trials``
    times, and its boundary is a count that passed every trial and one that failed."""
    answers = iter(outcomes * 50)
    found = search(start, start + span, step, precision, trials, lambda n, trial, phase: next(answers))
    for runs in found.results.values():
        assert 1 <= len(runs) <= trials
    low, high = found.largest_passing, found.first_failing
    if low is not None:
        assert found.results[low] == [True] * trials
    if high is not None:
        assert False in found.results[high] and len(found.results[high]) == trials
    if low is not None and high is not None:
        assert 0 < high - low <= precision
        assert not [n for n in found.results if low < n < high]
