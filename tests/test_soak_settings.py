"""The soak's settings: a plan that cannot work is refused in one line, before any load starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.configuration import check_configuration
from orchestration.errors import OrchestrationError
from orchestration.experiment_tree import find_experiment
from orchestration.soak_settings import SoakSettings, is_soak, soak_settings

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def settings(**values: object) -> SoakSettings:
    return soak_settings(check_configuration({"soak_seconds": 3600, "soak_drill_seconds": 1800, **values}))


def test_the_defaults_are_a_day_with_log_backups_every_five_minutes_and_a_drill_every_four_hours() -> None:
    plain = soak_settings(check_configuration({}))
    assert plain.seconds == 86400 and plain.log_interval_seconds == 300 and plain.drill_seconds == 4 * 3600
    assert plain.log_interval_seconds <= plain.rpo_budget_seconds


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"soak_seconds": 3, "stability_seconds": 5}, "under the stability period"),
        ({"soak_log_interval_seconds": 600, "backup_rpo_budget_seconds": 300}, "not under the RPO budget"),
        ({"soak_drill_seconds": 7200}, "longer than the soak"),
        ({"soak_drill_seconds": 3600}, "longer than the soak"),
        ({"soak_log_interval_seconds": 300, "backup_rpo_budget_seconds": 300}, "not under the RPO budget"),
        (
            {"soak_check_seconds": 900, "backup_rpo_budget_seconds": 900, "soak_log_interval_seconds": 60},
            "check more often",
        ),
        ({"soak_check_seconds": 7200}, "must be positive and fit in the soak"),
        ({"soak_fault": "meteor"}, "is not a fault the soak injects"),
        ({"soak_fault": "operator-restart", "soak_fault_every_seconds": 0}, "soak_fault_every_seconds"),
    ],
)
def test_a_plan_that_cannot_work_is_one_line_naming_the_key_and_the_fix(values: dict, needle: str) -> None:
    with pytest.raises(OrchestrationError) as caught:
        settings(**values)
    message = str(caught.value)
    assert needle in message and "\n" not in message
    assert any(word in message for word in ("HARNESS_", "set ", "lower", "leave", "fix")), message


def test_a_sound_plan_is_read_as_given() -> None:
    got = settings(
        soak_check_seconds="10", soak_log_interval_seconds=20, backup_rpo_budget_seconds=60,
        soak_drill_seconds=90, soak_fault="operator-restart", soak_fault_every_seconds=1800,
    )  # fmt: skip
    assert (got.check_seconds, got.log_interval_seconds, got.rpo_budget_seconds) == (10, 20, 60)
    assert (got.drill_seconds, got.fault, got.fault_every_seconds) == (90, "operator-restart", 1800)
    assert settings().fault_every_seconds == 0  # no fault, no schedule of empty faults


def test_the_soak_experiment_declares_every_knob_and_the_lab_var_file_keeps_it_short() -> None:
    path = find_experiment(EXPERIMENTS, "soak")
    assert path is not None and path.parent.name == "opt-in"
    configuration = json.loads(path.read_text())["configuration"]
    assert is_soak(configuration)
    keys = ("soak_seconds", "soak_check_seconds", "soak_log_interval_seconds", "backup_rpo_budget_seconds")
    for key in (*keys, "soak_drill_seconds", "soak_fault", "journal_segment_seconds"):
        assert key in configuration, key
    assert configuration["soak_seconds"]["default"] == 86400
    lab = json.loads((EXPERIMENTS / "vars" / "lab.vars.json").read_text())["configuration"]
    short = soak_settings(check_configuration(lab))
    assert short.seconds == 180 and short.drill_seconds <= short.seconds


def refused(values: dict, tmp_path: Path) -> str:
    """``chaos run`` of the soak with ``values`` in a var file: it must fail, start nothing, say why."""
    var_file = tmp_path / "bad.vars.json"
    var_file.write_text(json.dumps({"configuration": {**values, "runs_dir": str(tmp_path / "runs")}}))
    experiment = find_experiment(EXPERIMENTS, "soak")
    assert experiment is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_")}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("chaos")), "--no-version-check", "--log-file",
         str(tmp_path / "c.log"), "run", "--var-file", str(var_file), str(experiment)],
        capture_output=True, text=True, timeout=120, env={**env, "KUBECONFIG": str(tmp_path / "none")},
        cwd=tmp_path, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in output
    assert not (tmp_path / "runs").exists()  # no run folder: no load was started
    return output


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"soak_seconds": 2, "stability_seconds": 5}, "under the stability period"),
        ({"soak_log_interval_seconds": 120, "backup_rpo_budget_seconds": 60}, "not under the RPO budget"),
        ({"soak_seconds": 60, "soak_drill_seconds": 90}, "longer than the soak"),
        ({"load_mode": "cluster"}, "run the soak with load_mode local"),
    ],
)
def test_chaos_run_refuses_a_bad_soak_before_any_load_or_run_folder(
    values: dict, needle: str, tmp_path: Path
) -> None:
    assert needle in refused(values, tmp_path)
