"""``python -m orchestration release``: the whole checklist against a target, for a release pipeline.

One command a CI job runs for each release tag (``make release VARS=...``; ``make demo``
runs it on the embedded lab):

1. **Preflight** (:mod:`orchestration.release_preflight`): var files, configuration types,
   the API server, the blast radius, the MSSQL CRD and the operator's RBAC. A failure
   stops the command at once, before any fault: one line, exit 2.
2. **Experiments**, one ``chaos run`` each, in order: the fault experiments, the backup
   experiments and the alerting drill (:data:`DEFAULT_EXPERIMENTS`, or ``--experiments``);
   the capacity sweep only with ``--capacity``. Each gets the var files,
   ``--rollback-strategy always``, its own Chaos Toolkit log and journal in the release
   folder, and its run folder under it. A failed experiment does not stop the others: the
   document says what it lacked.
3. **The go/no-go document** over every run folder (Markdown and HTML) and
   ``junit.xml`` (one test case per checklist gate, one per experiment), plus
   ``release.json`` (what ran, how each ended, the verdict, the exit code).

Exit codes (:data:`EXIT_CODES`): 0 GO, 1 NO-GO, 2 the release could not run (bad input,
preflight failure, no experiment produced a run folder, the document could not be
written), 130 interrupted. SIGINT or SIGTERM (what CI sends on cancel) is passed to the
running ``chaos run`` as SIGINT, so its rollbacks run and its load stops; no further
experiment starts; the document and the XML are still written for what ran, marked
incomplete.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from common.files import replace_text
from lab.paths import project_root
from orchestration.errors import OrchestrationError
from orchestration.release_preflight import release_preflight
from reports.errors import ReportError
from reports.gonogo import write_gonogo
from reports.html import write_html
from reports.junit import write_junit

__all__ = [
    "DEFAULT_EXPERIMENTS",
    "EXIT_CODES",
    "EXIT_CANNOT_RUN",
    "EXIT_GO",
    "EXIT_INTERRUPTED",
    "EXIT_NO_GO",
    "ReleaseSettings",
    "run_release",
]

#: The fault experiments, the backup experiments and the alerting drill, in the order they run.
DEFAULT_EXPERIMENTS = (
    "operator-restart",
    "pod-eviction",
    "node-drain",
    "node-restart",
    "pitr-restore",
    "backup-under-chaos",
    "alert-drill",
)
CAPACITY = "capacity"
DOCUMENT = "07-metrics-go-no-go.md"

EXIT_GO, EXIT_NO_GO, EXIT_CANNOT_RUN, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_CODES = {
    EXIT_GO: "GO: every mandatory gate passed or was signed off",
    EXIT_NO_GO: "NO-GO: at least one mandatory gate did not pass (the document and junit.xml say which)",
    EXIT_CANNOT_RUN: "could not run: bad input, a preflight failure, or no evidence to judge",
    EXIT_INTERRUPTED: "interrupted (SIGINT/SIGTERM): rollbacks ran; the document covers what ran",
}
_CHAOS_GRACE = 300.0  # seconds a chaos run may take to roll back after SIGINT


@dataclass(frozen=True)
class ReleaseSettings:
    """What one release run is asked to do (the command line, typed)."""

    var_files: tuple[Path, ...]
    experiments: tuple[str, ...] = DEFAULT_EXPERIMENTS
    capacity: bool = False
    signoffs: Path | None = None
    checklist: Path | None = None
    out: Path | None = None
    kubeconfig: Path | None = None
    experiments_dir: Path = field(default_factory=lambda: project_root() / "experiments")
    chaos: Path = field(default_factory=lambda: Path(sys.executable).with_name("chaos"))

    def experiment_paths(self) -> list[Path]:
        names = list(self.experiments)
        if self.capacity and CAPACITY not in names:
            names.append(CAPACITY)
        paths = []
        for name in names:
            path = Path(name) if name.endswith(".json") else self.experiments_dir / f"{name}.json"
            if not path.is_file():
                known = sorted(p.stem for p in self.experiments_dir.glob("*.json") if "vars" not in p.name)
                raise OrchestrationError(f"no experiment {path}: pass one of {', '.join(known)}")
            paths.append(path)
        return paths


@dataclass
class _Ran:
    """One experiment's ``chaos run``: how it ended and the run folder it left."""

    name: str
    exit_code: int | None = None
    run_dirs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False


class _Interrupts:
    """SIGINT/SIGTERM while running: remember it and pass SIGINT to the running ``chaos run``."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.child: subprocess.Popen[bytes] | None = None

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signal = signum
        child = self.child
        if child is not None and child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGINT)  # chaos run rolls back on SIGINT

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Interrupts]:
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _out_folder(settings: ReleaseSettings) -> Path:
    out: Path = settings.out or Path("runs") / f"release-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OrchestrationError(f"{out} already exists and is not empty: pass a new --out folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OrchestrationError(f"cannot create {out}: {exc.strerror}; pass another --out") from None
    return out.resolve()


def _check_input(settings: ReleaseSettings) -> list[Path]:
    if not settings.var_files:
        raise OrchestrationError("no var file: pass --var-file FILE (experiments/lab.vars.json on the lab)")
    for path in settings.var_files:
        if not path.is_file():
            raise OrchestrationError(f"var file {path} does not exist: fix the path")
    for label, given in (("sign-off file", settings.signoffs), ("checklist", settings.checklist)):
        if given is not None and not given.is_file():
            raise OrchestrationError(f"{label} {given} does not exist: fix the path")
    if settings.kubeconfig is not None and not settings.kubeconfig.is_file():
        raise OrchestrationError(f"kubeconfig {settings.kubeconfig} does not exist: fix --kubeconfig")
    if not settings.chaos.is_file():
        raise OrchestrationError(f"{settings.chaos} not found: run `make setup` (it installs chaostoolkit)")
    return settings.experiment_paths()


def _run_folders(out: Path) -> set[str]:
    return {p.name for p in out.iterdir() if p.is_dir() and p.name != "preflight"}


def _chaos(
    settings: ReleaseSettings, experiment: Path, out: Path, interrupts: _Interrupts, env: dict[str, str]
) -> _Ran:
    ran = _Ran(experiment.stem)
    log = out / f"chaostoolkit-{ran.name}.log"
    argv = [str(settings.chaos), "--no-version-check", "--log-file", str(log), "run"]
    argv += ["--rollback-strategy", "always"]
    for path in settings.var_files:
        argv += ["--var-file", str(path.resolve())]
    argv += ["--journal-path", str(out / f"journal-{ran.name}.json"), str(experiment.resolve())]
    before = _run_folders(out)
    started = time.monotonic()
    with (out / f"chaos-{ran.name}.out").open("wb") as console:
        # Its own session: a terminal's Ctrl-C reaches only this process, which passes it on once.
        child = subprocess.Popen(
            argv, stdout=console, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        interrupts.child = child
        try:
            ran.exit_code = _wait(child, interrupts)
        finally:
            interrupts.child = None
    ran.seconds = time.monotonic() - started
    ran.interrupted = interrupts.signal is not None
    ran.run_dirs = sorted(_run_folders(out) - before)
    return ran


def _wait(child: subprocess.Popen[bytes], interrupts: _Interrupts) -> int:
    """Wait for ``child``; after an interrupt, give it the rollback grace, then kill it."""
    while True:
        try:
            return child.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        if interrupts.signal is not None:
            try:
                return child.wait(timeout=_CHAOS_GRACE)
            except subprocess.TimeoutExpired:
                child.kill()
                return child.wait()


def _worst(run_dir: Path) -> str:
    """One line on a run folder: its verdict, worst RTO and lost writes (from summary.json)."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "no summary"
    rtos, lost = [], 0
    for fault in summary.get("faults") or []:
        for result in fault.get("results") or []:
            if isinstance(result.get("rto_seconds"), int | float):
                rtos.append(float(result["rto_seconds"]))
            lost += int(result.get("lost_writes") or 0)
    worst = f"worst RTO {max(rtos):.1f} s" if rtos else "no RTO"
    return f"{summary.get('verdict', '?')}, {worst}, {lost} lost"


def run_release(settings: ReleaseSettings, say: Callable[[str], object] = print) -> int:
    """Run the release (see the module doc); the exit code. Bad input: one line, exit 2."""
    try:
        experiments = _check_input(settings)
        out = _out_folder(settings)
    except OrchestrationError as exc:
        say(f"release: {exc}")
        return EXIT_CANNOT_RUN
    env = dict(os.environ)
    if settings.kubeconfig is not None:
        env["KUBECONFIG"] = os.environ["KUBECONFIG"] = str(settings.kubeconfig.resolve())
    env["HARNESS_RUNS_DIR"] = str(out)
    record: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "experiments": [p.stem for p in experiments],
        "var_files": [str(p) for p in settings.var_files],
    }
    interrupts = _Interrupts()
    with interrupts.installed():
        say(f"release: preflight ({len(experiments)} experiment(s), folder {out})")
        try:
            found = release_preflight(experiments, settings.var_files, out)
        except OrchestrationError as exc:
            say(f"release: preflight failed: {exc}")
            return _finish(out, record, EXIT_CANNOT_RUN, say, preflight=str(exc))
        target = found["target"]
        where = f"{target.get('kind')} {target.get('api_server')}"
        say(f"release: target {where}, {found['instances']} instance(s)")
        record["target"] = target
        ran: list[_Ran] = []
        for index, experiment in enumerate(experiments, 1):
            if interrupts.signal is not None:
                break
            say(f"[{index}/{len(experiments)}] chaos run {experiment.name} ...")
            one = _chaos(settings, experiment, out, interrupts, env)
            ran.append(one)
            folders = ", ".join(f"{d} ({_worst(out / d)})" for d in one.run_dirs) or "no run folder"
            step = f"[{index}/{len(experiments)}] {one.name}"
            say(f"{step}: exit {one.exit_code}, {one.seconds:.0f} s: {folders}")
        record["runs"] = [vars(r) for r in ran]
        interrupted = interrupts.signal is not None
        record["interrupted"] = interrupted
        if interrupted:
            say(f"release: interrupted by {signal.Signals(interrupts.signal or 0).name}; writing what ran")
        return _document(settings, out, ran, record, interrupted, say)


def _document(
    settings: ReleaseSettings,
    out: Path,
    ran: Sequence[_Ran],
    record: dict[str, Any],
    interrupted: bool,
    say: Callable[[str], object],
) -> int:
    folders = [out / d for r in ran for d in r.run_dirs]
    if not folders:
        say("release: no experiment left a run folder: nothing to judge (see the chaos-*.out files)")
        return _finish(out, record, EXIT_INTERRUPTED if interrupted else EXIT_CANNOT_RUN, say)
    document = out / DOCUMENT
    try:
        decision = write_gonogo(folders, document, settings.checklist, settings.signoffs)
        if interrupted:
            _mark_incomplete(document, [r.name for r in ran], record["experiments"])
        junit = write_junit(decision, out / "junit.xml")
        _add_missing_runs(junit, [r for r in ran if not r.run_dirs], out)
    except ReportError as exc:
        say(f"release: the document could not be written: {exc}")
        return _finish(out, record, EXIT_CANNOT_RUN, say)
    record["verdict"] = decision.verdict
    say(f"report: {document}")
    say(f"report (HTML): {document.with_suffix('.html')}")
    say(f"junit: {junit}")
    say(f"verdict: {decision.verdict}")
    code = EXIT_INTERRUPTED if interrupted else EXIT_GO if decision.verdict == "GO" else EXIT_NO_GO
    return _finish(out, record, code, say)


def _mark_incomplete(document: Path, ran: Sequence[str], planned: Sequence[str]) -> None:
    """Say at the top of the document that the release was interrupted, and re-render its HTML."""
    missing = [name for name in planned if name not in ran]
    lines = document.read_text().splitlines()
    note = "> **Incomplete: the release was interrupted.** " + (
        f"Not run: {', '.join(missing)}." if missing else "The last experiment was cut short."
    )
    at = next((i + 1 for i, line in enumerate(lines) if line.startswith("# ")), 0)
    replace_text(document, "\n".join([*lines[:at], "", note, *lines[at:]]) + "\n")
    write_html(document)


def _add_missing_runs(junit: Path, missing: Sequence[_Ran], out: Path) -> None:
    """An experiment that left no run folder is an error case in ``junit.xml`` (it proves nothing)."""
    if not missing:
        return
    from junitparser import Error, JUnitXml, TestCase, TestSuite

    xml = JUnitXml.fromfile(str(junit))
    suites = {s.name: s for s in xml}
    suite = suites.get("experiments")
    if suite is None:
        suite = TestSuite("experiments")
        xml.add_testsuite(suite)
    for one in missing:
        case = TestCase(one.name, classname="experiments")
        reason = "interrupted before it measured anything" if one.interrupted else "it left no run folder"
        case.result = [Error(f"{reason}: see chaos-{one.name}.out", "NoRunFolder")]
        suite.add_testcase(case)
    suite.update_statistics()
    xml.update_statistics()
    xml.write(str(junit))


def _finish(
    out: Path, record: dict[str, Any], code: int, say: Callable[[str], object], preflight: str | None = None
) -> int:
    record.update(
        exit_code=code,
        meaning=EXIT_CODES[code],
        ended_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    )
    if preflight is not None:
        record["preflight_failure"] = preflight
    replace_text(out / "release.json", json.dumps(record, indent=2, default=str) + "\n")
    say(f"release: exit {code} ({EXIT_CODES[code]})")
    return code
