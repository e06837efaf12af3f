"""The release command's exit code and signal handling, without a lab.

Run folders are the synthetic ones of ``tests/test_gonogo.py`` (judged GO against a small
checklist they all pass), so the GO path (exit 0), which no lab run can reach, is tested
here; signals go to a real child process that counts the SIGINTs it gets.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from junitparser import Error, JUnitXml, Skipped

from orchestration.release import (
    EXIT_GO,
    EXIT_INTERRUPTED,
    EXIT_NO_GO,
    ReleaseSettings,
    _document,
    _Interrupts,
    _Ran,
)
from tests.test_gonogo import _go_checklist, _passing_fault_runs


def _settings(tmp_path: Path, checklist: Path) -> ReleaseSettings:
    var_file = tmp_path / "vars.json"
    var_file.write_text('{"configuration": {}}')
    return ReleaseSettings(var_files=(var_file,), checklist=checklist)


def _ran(runs: list[Path], out: Path) -> list[_Ran]:
    return [_Ran(run.name, exit_code=0, run_dirs=[str(run.relative_to(out))]) for run in runs]


def test_every_gate_passed_is_go_and_exit_0(tmp_path: Path) -> None:
    out = tmp_path / "release"
    out.mkdir()
    runs = _passing_fault_runs(out)
    record = {"experiments": [r.name for r in runs]}
    lines: list[str] = []
    code = _document(
        _settings(tmp_path, _go_checklist(tmp_path)), out, _ran(runs, out), record, False, lines.append
    )
    assert code == EXIT_GO, lines
    assert "verdict: GO" in lines
    assert json.loads((out / "release.json").read_text())["exit_code"] == 0
    xml = JUnitXml.fromfile(str(out / "junit.xml"))
    assert xml.failures == 0 and xml.errors == 0


def test_an_experiment_without_evidence_makes_it_no_go(tmp_path: Path) -> None:
    out = tmp_path / "release"
    out.mkdir()
    runs = _passing_fault_runs(out)
    (out / "half-done").mkdir()  # a run folder its experiment never finished: no summary.json
    ran = [
        *_ran(runs, out),
        _Ran("node-drain", exit_code=1, run_dirs=["half-done"]),
        _Ran("pitr-restore", exit_code=1),
    ]
    record = {"experiments": [r.name for r in ran]}
    lines: list[str] = []
    code = _document(_settings(tmp_path, _go_checklist(tmp_path)), out, ran, record, False, lines.append)
    assert code == EXIT_NO_GO, lines
    assert any("node-drain, pitr-restore left no evidence" in line for line in lines), lines
    assert "No evidence from node-drain, pitr-restore" in (out / "07-metrics-go-no-go.md").read_text()
    cases = {
        c.name: c for s in JUnitXml.fromfile(str(out / "junit.xml")) if s.name == "experiments" for c in s
    }
    assert all(isinstance(cases[n].result[0], Error) for n in ("node-drain", "pitr-restore"))
    assert json.loads((out / "release.json").read_text())["verdict"] == "NO-GO"


def test_an_interrupted_release_lists_what_did_not_run(tmp_path: Path) -> None:
    out = tmp_path / "release"
    out.mkdir()
    runs = _passing_fault_runs(out)
    record = {"experiments": [*(r.name for r in runs), "alert-drill"]}
    lines: list[str] = []
    code = _document(
        _settings(tmp_path, _go_checklist(tmp_path)), out, _ran(runs, out), record, True, lines.append
    )
    assert code == EXIT_INTERRUPTED
    assert "Not run: alert-drill" in (out / "07-metrics-go-no-go.md").read_text()
    cases = {
        c.name: c for s in JUnitXml.fromfile(str(out / "junit.xml")) if s.name == "experiments" for c in s
    }
    assert isinstance(cases["alert-drill"].result[0], Skipped)


COUNTER = """
import signal, sys, time
count = 0
def got(signum, frame):
    global count
    count += 1
signal.signal(signal.SIGINT, got)
print("ready", flush=True)
time.sleep(1.0)
with open(sys.argv[1], "w") as f:
    f.write(str(count))
"""


def test_only_the_first_signal_reaches_the_experiment(tmp_path: Path) -> None:
    """A second SIGINT would make Chaos Toolkit abandon its rollbacks: it is not passed on."""
    counted = tmp_path / "count"
    interrupts = _Interrupts()
    with interrupts.installed():
        child = subprocess.Popen(
            [sys.executable, "-c", COUNTER, str(counted)], stdout=subprocess.PIPE, start_new_session=True
        )
        assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
        interrupts.child = child
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        assert child.wait(timeout=10) == 0
    assert interrupts.signal == signal.SIGTERM
    assert counted.read_text() == "1"


def test_a_signal_before_the_experiment_started_reaches_it(tmp_path: Path) -> None:
    counted = tmp_path / "count"
    interrupts = _Interrupts()
    with interrupts.installed():
        os.kill(os.getpid(), signal.SIGINT)  # between two experiments, or while one starts
        child = subprocess.Popen(
            [sys.executable, "-c", COUNTER, str(counted)], stdout=subprocess.PIPE, start_new_session=True
        )
        assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
        interrupts.child = child
        interrupts.forward()
        assert child.wait(timeout=10) == 0
    assert counted.read_text() == "1"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_an_unexpected_error_exits_2_never_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash must not read as NO-GO (1), let alone GO: it is "could not run", with a record."""
    from orchestration import release

    def crash(*_args: object) -> dict[str, object]:
        raise RuntimeError("kubectl hung")

    monkeypatch.setattr(release, "release_preflight", crash)
    out = tmp_path / "release"
    settings = _settings(tmp_path, _go_checklist(tmp_path))
    lines: list[str] = []
    code = release.run_release(ReleaseSettings(var_files=settings.var_files, out=out), lines.append)
    assert code == 2, lines
    record = json.loads((out / "release.json").read_text())
    assert record["exit_code"] == 2 and "RuntimeError: kubectl hung" in record["failure"]
    assert any("unexpected error" in line for line in lines)
