"""The soak runner's schedule and files, with the target's measurements replaced (no cluster here).

What the rounds measure is tested against real processes and API responses in
``tests/test_soak_checks.py``; the whole soak on a real lab in ``tests/test_soak_lab.py``.
Here: rounds every ``check_seconds``, drills and faults when due, ``plan.json`` first,
``end.json`` only at the planned end, the policies put back in every case, and the
progress line a person reads.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from orchestration import soak as soak_module
from orchestration.errors import OrchestrationError
from orchestration.soak import SoakRunner
from orchestration.soak_progress import clock
from orchestration.soak_settings import SoakSettings


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()

    def check_round(tenants: list[str], *_args: Any, started_at: float, now: float, elapsed: float) -> dict:
        rec.events.append(("round", round(elapsed, 1)))
        return {
            "kind": "check",
            "at": now,
            "elapsed": round(elapsed, 3),
            "backups": {
                t: {"last_log_end": now - 1, "last_full_end": started_at, "age": 1.0, "error": None}
                for t in tenants
            },
            "failed_jobs": [],
            "pods": {},
            "errors": [],
            "limits": [],
        }

    class Policies:
        def __init__(self, *_args: Any) -> None:
            pass

        def apply(self) -> None:
            rec.events.append(("policies", "applied"))

        def restore(self) -> None:
            rec.events.append(("policies", "restored"))

    class Drill:
        def __init__(self, folder: Path, *_args: Any) -> None:
            self.folder = folder
            self.count = 0

        def run(self, tenant: str, moment: float | None) -> dict:
            self.count += 1
            rec.events.append(("drill", tenant))
            return {}

    monkeypatch.setattr(soak_module, "check_round", check_round)
    monkeypatch.setattr(soak_module, "BackupPolicies", Policies)
    monkeypatch.setattr(soak_module, "Drill", Drill)
    monkeypatch.setattr(soak_module, "compact", lambda folder: rec.events.append(("compact", None)))
    monkeypatch.setattr(
        SoakRunner, "_fault", lambda self: rec.events.append(("fault", round(self.elapsed(), 1)))
    )
    return rec


def settings(**values: Any) -> SoakSettings:
    base = {"seconds": 1.2, "check_seconds": 0.3, "log_interval_seconds": 1, "rpo_budget_seconds": 5,
            "drill_seconds": 0.5, "metrics_port": -1}  # fmt: skip
    return SoakSettings(**{**base, **values})


def test_rounds_drills_and_faults_come_when_due_and_end_json_only_at_the_end(
    recorder: Recorder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runner = SoakRunner(
        settings(fault="operator-restart", fault_every_seconds=0.7),
        tmp_path,
        ["t-0", "t-1"],
        {"namespace": "tenants"},
    )
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="chaostoolkit"):
        summary = runner.run()
    took = time.monotonic() - started
    assert 1.2 <= took < 3.0
    kinds = [kind for kind, _ in recorder.events]
    assert kinds[0] == "policies" and recorder.events[-1] == ("policies", "restored")
    rounds = [at for kind, at in recorder.events if kind == "round"]
    assert len(rounds) == 5 and rounds[0] < 0.1 and rounds[-1] >= 1.2  # at once, 0.3, 0.6, 0.9, the end
    assert [e for e in recorder.events if e[0] == "drill"] == [("drill", "t-0"), ("drill", "t-1")]  # 0.5, 1.0
    faults = [at for kind, at in recorder.events if kind == "fault"]
    assert len(faults) == 1 and 0.7 <= faults[0] < 1.2
    plan = json.loads((tmp_path / "soak" / "plan.json").read_text())
    assert plan["drills"] == [0.5, 1.0] and plan["tenants"] == ["t-0", "t-1"]
    assert [f["at"] for f in plan["faults"]] == [0.7] and plan["faults"][0]["action"] == "restart_operator"
    lines = (tmp_path / "soak" / "checks.jsonl").read_text().splitlines()
    assert len(lines) == 5 and all(json.loads(line)["load"].keys() == {"t-0", "t-1"} for line in lines)
    end = json.loads((tmp_path / "soak" / "end.json").read_text())
    assert end["covered_seconds"] >= 1.2
    assert summary["complete"] is True
    progress = json.loads((tmp_path / "soak" / "progress.json").read_text())
    assert progress["line"].startswith("soak 0:00:01/0:00:01 (100.0 %)")
    assert any(r.getMessage().startswith("soak 0:00:00/0:00:01") for r in caplog.records)


def test_an_interrupted_soak_puts_the_policies_back_and_writes_no_end(
    recorder: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(self: SoakRunner) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(SoakRunner, "_drill", lambda self, drill: interrupt(self))
    runner = SoakRunner(settings(), tmp_path, ["t-0"], {})
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    assert recorder.events[-1] == ("policies", "restored")
    assert not (tmp_path / "soak" / "end.json").exists()
    assert (tmp_path / "soak" / "checks.jsonl").read_text().count("\n") == 2  # the rounds at 0 and 0.3 s


def test_the_clock_reads_hours_minutes_seconds() -> None:
    assert clock(86400) == "24:00:00" and clock(61.4) == "0:01:01" and clock(None) == "-"


def test_a_first_round_that_cannot_measure_stops_the_soak_in_one_line(
    recorder: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = soak_module.check_round

    def failing(*args: Any, **kwargs: Any) -> dict:
        line = real(*args, **kwargs)
        line["errors"] = ["pod memory in tenants: metrics.k8s.io is not served (404): install metrics-server"]
        return line

    monkeypatch.setattr(soak_module, "check_round", failing)
    with pytest.raises(OrchestrationError) as caught:
        SoakRunner(settings(), tmp_path, ["t-0"], {}).run()
    assert "first check round could not measure: pod memory in tenants" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert recorder.events[-1] == ("policies", "restored")
    assert not (tmp_path / "soak" / "end.json").exists()


def test_putting_a_policy_back_removes_what_the_soak_added() -> None:
    from orchestration.soak_policies import undo

    before = {"instance": "t-0", "fullSchedule": "0 0 * * *", "retention": {"days": 7}}
    now = {"instance": "t-0", "fullSchedule": "0 * * * *", "logIntervalSeconds": 20,
           "retention": {"days": 7, "fullBackups": 7}}  # fmt: skip
    patch = undo(now, before)
    assert patch == {"instance": "t-0", "fullSchedule": "0 0 * * *", "logIntervalSeconds": None,
                     "retention": {"days": 7, "fullBackups": None}}  # fmt: skip
