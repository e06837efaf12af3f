"""The fault log: append-only JSON lines, read back into Faults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from probes.errors import ProbeError
from probes.faultlog import mark_ended, mark_observed, mark_signalled, read_faults, record_fault
from probes.model import Fault


def test_round_trip_sorted_by_injection_time(tmp_path: Path) -> None:
    log = tmp_path / "run" / "faults.jsonl"
    late = Fault("node-drain", "node-drain", 200.5, None, None, {"node": "node-2", "pods": ["a", "b"]})
    early = Fault("pod-kill", "pod-kill", 100.25, "tenant-1")
    record_fault(log, late)
    record_fault(log, early)
    assert read_faults(log) == [early, late]


def test_missing_file_means_no_faults(tmp_path: Path) -> None:
    assert read_faults(tmp_path / "faults.jsonl") == []


def test_ended_is_folded_into_latest_fault_of_that_name(tmp_path: Path) -> None:
    log = tmp_path / "faults.jsonl"
    record_fault(log, Fault("freeze", "sigstop", 100.0, "tenant-1"))
    record_fault(log, Fault("other", "pod-kill", 110.0))
    mark_ended(log, "freeze", 105.0)
    record_fault(log, Fault("freeze", "sigstop", 200.0, "tenant-1"))
    mark_ended(log, "freeze", 203.0)
    faults = read_faults(log)
    assert [(f.name, f.injected_at, f.ended_at) for f in faults] == [
        ("freeze", 100.0, 105.0),
        ("other", 110.0, None),
        ("freeze", 200.0, 203.0),
    ]


def test_signalled_moves_the_injection_time_and_keeps_the_recorded_one(tmp_path: Path) -> None:
    log = tmp_path / "faults.jsonl"
    record_fault(log, Fault("restart lab-node-1", "node-restart", 100.0, "tenant-0", details={"node": "n1"}))
    record_fault(log, Fault("other", "pod-kill", 100.2))
    mark_signalled(log, "restart lab-node-1", 100.42, 0.03)
    mark_ended(log, "restart lab-node-1", 106.0)
    faults = read_faults(log)
    assert [(f.name, f.injected_at) for f in faults] == [("other", 100.2), ("restart lab-node-1", 100.42)]
    restart = faults[1]
    assert restart.ended_at == 106.0 and restart.target == "tenant-0"
    assert restart.details == {"node": "n1", "recorded_at": 100.0, "injection_uncertainty_seconds": 0.03}


def test_signalled_applies_to_the_latest_fault_of_that_name(tmp_path: Path) -> None:
    log = tmp_path / "faults.jsonl"
    record_fault(log, Fault("restart n1", "node-restart", 100.0))
    mark_signalled(log, "restart n1", 100.5)  # uncertainty not known: no detail for it
    record_fault(log, Fault("restart n1", "node-restart", 200.0))
    mark_signalled(log, "restart n1", 200.4, 0.0)
    first, second = read_faults(log)
    assert (first.injected_at, first.details) == (100.5, {"recorded_at": 100.0})
    assert (second.injected_at, second.details) == (
        200.4,
        {"recorded_at": 200.0, "injection_uncertainty_seconds": 0.0},
    )
    line = log.read_text(encoding="utf-8").splitlines()[1]
    assert json.loads(line) == {
        "event": "signalled",
        "name": "restart n1",
        "injected_at": 100.5,
        "uncertainty_seconds": None,
    }


def test_append_never_truncates(tmp_path: Path) -> None:
    log = tmp_path / "faults.jsonl"
    log.write_text('{"name":"earlier","kind":"pod-kill","injected_at":1.0}\n', encoding="utf-8")
    record_fault(log, Fault("later", "pod-kill", 2.0))
    mark_ended(log, "later", 3.0)
    assert log.read_text(encoding="utf-8").count("\n") == 3
    assert [f.name for f in read_faults(log)] == ["earlier", "later"]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"name": "x", "kind": "k"}', "missing field 'injected_at'"),
        ('{"name": "x", "kind": "k", "injected_at": "soon"}', "'injected_at' must be a number"),
        ('{"name": "x", "kind": "k", "injected_at": 1, "colour": "red"}', "unknown field(s) colour"),
        ('{"event": "ended", "name": "nobody", "ended_at": 5}', "no earlier line recorded"),
        ('{"event": "paused", "name": "x"}', "unknown event"),
        ('{"event": "signalled", "name": "nobody", "injected_at": 5}', "no earlier line recorded"),
        ('{"event": "signalled", "name": "ok"}', "needs a string 'name' and a number 'injected_at'"),
        ('{"event": "signalled", "name": "ok", "injected_at": "soon"}', "a number 'injected_at'"),
        ('{"event": "signalled", "name": 3, "injected_at": 5}', "needs a string 'name'"),
        (
            '{"event": "signalled", "name": "ok", "injected_at": 5, "uncertainty_seconds": -1}',
            "'uncertainty_seconds' must be",
        ),
        (
            '{"event": "signalled", "name": "ok", "injected_at": 5, "uncertainty_seconds": "a bit"}',
            "'uncertainty_seconds' must be",
        ),
        ('{"event": "signalled", "name": "ok", "injected_at": 5, "by": "me"}', "unknown field(s) by"),
    ],
)
def test_malformed_line_names_file_line_and_fix(tmp_path: Path, line: str, problem: str) -> None:
    log = tmp_path / "faults.jsonl"
    record_fault(log, Fault("ok", "pod-kill", 1.0))
    with log.open("a", encoding="utf-8") as handle:
        handle.write("\n" + line + "\n")  # a blank line is fine; the bad one is line 3
    with pytest.raises(ProbeError) as err:
        read_faults(log)
    message = str(err.value)
    assert f"{log}:3:" in message
    assert problem in message
    assert "fix or delete that line" in message


def test_non_finite_signal_time_is_refused_without_writing(tmp_path: Path) -> None:
    log = tmp_path / "faults.jsonl"
    with pytest.raises(ProbeError, match="injection time of fault 'x'"):
        mark_signalled(log, "x", float("nan"))
    assert not log.exists()


def test_unserialisable_details_are_refused_without_writing(tmp_path: Path) -> None:
    log = tmp_path / "faults.jsonl"
    with pytest.raises(ProbeError, match="pod-kill"):
        record_fault(log, Fault("pod-kill", "pod-kill", 1.0, details={"when": object()}))
    assert not log.exists()


def test_observed_details_join_the_latest_fault_of_that_name(tmp_path: Path) -> None:
    log = tmp_path / "faults.jsonl"
    record_fault(log, Fault("lose n2", "node-loss", 100.0, "tenant-0", details={"node": "n2"}))
    mark_ended(log, "lose n2", 100.3)
    mark_observed(log, "lose n2", {"handling": "none", "explanation": "node n2 was lost"})
    (fault,) = read_faults(log)
    assert fault.details == {"node": "n2", "handling": "none", "explanation": "node n2 was lost"}
    assert fault.ended_at == 100.3


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ({"event": "observed", "name": "lose n2", "details": "x"}, "an object 'details'"),
        ({"event": "observed", "name": "nobody", "details": {}}, "nobody"),
    ],
)
def test_a_bad_observed_line_is_named(tmp_path: Path, line: dict, needle: str) -> None:
    log = tmp_path / "faults.jsonl"
    record_fault(log, Fault("lose n2", "node-loss", 100.0))
    with log.open("a") as handle:
        handle.write(json.dumps(line) + "\n")
    with pytest.raises(ProbeError, match=needle):
        read_faults(log)
