"""``python -m orchestration release``: the whole checklist against a target, for a release pipeline.

One command a CI job runs for each release tag (``make release VARS=...``; ``make demo``
runs it on the embedded lab):

1. **Preflight** (:mod:`orchestration.release_preflight`): var files, configuration types,
   the API server, the blast radius, the MSSQL CRD and the operator's RBAC. A failure
   stops the command at once, before any fault: one line, exit 2.
2. **Experiments**, one ``chaos run`` each, in order: the fault experiments, the backup
   experiments and the alerting drill: every experiment of ``experiments/*.json``, the
   loop the README shows, in :data:`RUN_ORDER` (or ``--experiments``); the opt-in capacity
   sweep (``experiments/opt-in/``) only with ``--capacity``, the soak (24 h unless the var
   file says otherwise) only with ``--soak``. Each gets the var files,
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
from loadgen.tenants import redact
from orchestration.errors import OrchestrationError
from orchestration.experiment_tree import experiment_files, find_experiment
from orchestration.release_preflight import release_preflight
from reports.errors import ReportError
from reports.gonogo import write_gonogo
from reports.gonogo_folders import is_result
from reports.gonogo_runs import CAPACITY_NAME, load_run
from reports.html import write_html
from reports.junit import worst_rto, write_junit

__all__ = [
    "RUN_ORDER",
    "EXIT_CODES",
    "EXIT_CANNOT_RUN",
    "EXIT_GO",
    "EXIT_INTERRUPTED",
    "EXIT_NO_GO",
    "ReleaseSettings",
    "run_release",
]

#: The order a release runs the matrix in (``experiments/*.json``: the fault experiments, the
#: backup experiments, the alerting drill); an experiment not named here runs after these.
RUN_ORDER = (
    "operator-restart",
    "operator-rollout-restart",
    "pod-eviction",
    "node-drain",
    "node-restart",
    "node-loss",
    "pitr-restore",
    "backup-under-chaos",
    "alert-drill",
)
CAPACITY = "capacity"
SOAK = "soak"
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
    experiments: tuple[str, ...] = ()  # empty: every experiment of the matrix (matrix_names)
    capacity: bool = False
    soak: bool = False
    signoffs: Path | None = None
    checklist: Path | None = None
    out: Path | None = None
    kubeconfig: Path | None = None
    experiments_dir: Path = field(default_factory=lambda: project_root() / "experiments")
    chaos: Path = field(default_factory=lambda: Path(sys.executable).with_name("chaos"))

    def matrix_names(self) -> list[str]:
        """Every experiment of ``experiments/*.json`` (not opt-in), in :data:`RUN_ORDER`."""
        found = [p.stem for p in experiment_files(self.experiments_dir) if p.parent == self.experiments_dir]
        rank = {name: i for i, name in enumerate(RUN_ORDER)}
        return sorted(found, key=lambda name: (rank.get(name, len(rank)), name))

    def experiment_paths(self) -> list[Path]:
        names = list(self.experiments) or self.matrix_names()
        if self.capacity and CAPACITY not in names:
            names.append(CAPACITY)
        if self.soak and SOAK not in names:
            names.append(SOAK)
        paths = []
        for name in names:
            path = Path(name) if name.endswith(".json") else find_experiment(self.experiments_dir, name)
            if path is None or not path.is_file():
                known = [p.stem for p in experiment_files(self.experiments_dir)]
                raise OrchestrationError(f"no experiment {path or name}: pass one of {', '.join(known)}")
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
    """SIGINT/SIGTERM/SIGHUP while running: remember the first, pass SIGINT to the running ``chaos run``.

    Only the first signal is passed on: a second SIGINT makes Chaos Toolkit abandon the
    rollbacks it is running (CI systems often send SIGINT, then SIGTERM seconds later).
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self.child: subprocess.Popen[bytes] | None = None
        self._forwarded = False

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signal is None:
            self.signal = signum
        self.forward()

    def forward(self) -> None:
        """Pass SIGINT to the running child once, if a signal came."""
        child = self.child
        if self.signal is None or self._forwarded or child is None or child.poll() is not None:
            return
        self._forwarded = True
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGINT)  # chaos run rolls back on SIGINT

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Interrupts]:
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {s: signal.signal(s, self._handle) for s in handled}
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
        raise OrchestrationError("no var file: pass --var-file FILE (lab: experiments/vars/lab.vars.json)")
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
            argv,
            stdout=console,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # SIGINT: caught here, so the child starts with the default
        )
        interrupts.child = child
        interrupts.forward()  # a signal that came while it was starting
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
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)  # its own session: the whole group
                return child.wait()


def _worst(run_dir: Path) -> str:
    """One line on a run folder: its verdict, worst RTO and lost writes."""
    if (run_dir / CAPACITY_NAME).is_file():
        return "capacity sweep"
    try:
        run = load_run(run_dir)
    except ReportError:
        return "no summary: it proves nothing"
    lost, worst = run.lost(), worst_rto(run)
    rto = f"worst RTO {worst} s" if worst[:1].isdigit() else f"RTO: {worst}"
    lost_text = "cannot tell how many" if lost is None else str(lost)
    return f"{run.summary.get('verdict', 'no verdict')}, {rto}, {lost_text} lost"


def run_release(settings: ReleaseSettings, say: Callable[[str], object] = print) -> int:
    """Run the release (see the module doc); the exit code. Bad input: one line, exit 2."""
    try:
        experiments = _check_input(settings)
        out = _out_folder(settings)
    except OrchestrationError as exc:
        say(f"release: {exc}")
        return EXIT_CANNOT_RUN
    record: dict[str, Any] = {}
    try:
        return _release(settings, experiments, out, record, say)
    except Exception as exc:  # never a traceback and exit 1, which would read as NO-GO
        say(f"release: stopped by an unexpected error: {type(exc).__name__}: {exc}")
        return _finish(out, record, EXIT_CANNOT_RUN, say, failure=f"{type(exc).__name__}: {exc}")


def _release(
    settings: ReleaseSettings,
    experiments: list[Path],
    out: Path,
    record: dict[str, Any],
    say: Callable[[str], object],
) -> int:
    env = dict(os.environ)
    if settings.kubeconfig is not None:
        env["KUBECONFIG"] = os.environ["KUBECONFIG"] = str(settings.kubeconfig.resolve())
    # Every run folder goes under the release folder (the experiments' runs_dir); the
    # preflight refuses a var file that would send them elsewhere.
    env["HARNESS_RUNS_DIR"] = os.environ["HARNESS_RUNS_DIR"] = str(out)
    record.update(
        started_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        experiments=[p.stem for p in experiments],
        var_files=[str(p) for p in settings.var_files],
    )
    interrupts = _Interrupts()
    with interrupts.installed():
        say(f"release: preflight ({len(experiments)} experiment(s), folder {out})")
        try:
            found = release_preflight(experiments, settings.var_files, out)
        except OrchestrationError as exc:
            if interrupts.signal is not None:  # e.g. kubectl killed by the same Ctrl-C: not a finding
                record["interrupted"] = True
                return _finish(out, record, EXIT_INTERRUPTED, say)
            say(f"release: preflight failed: {exc}")
            return _finish(out, record, EXIT_CANNOT_RUN, say, failure=f"preflight: {exc}")
        if interrupts.signal is not None:
            record["interrupted"] = True
            return _finish(out, record, EXIT_INTERRUPTED, say)
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
    folders = [out / d for r in ran for d in r.run_dirs if is_result(out / d)]
    # An experiment that proves nothing (no run folder, or one without its summary) cannot
    # be left out silently: it is an error case in junit.xml and the verdict cannot be GO.
    unproven = [r for r in ran if not any(is_result(out / d) for d in r.run_dirs)]
    not_started = [name for name in record["experiments"] if name not in {r.name for r in ran}]
    if not folders:
        say("release: no experiment left a run folder with its summary: nothing to judge (see chaos-*.out)")
        return _finish(out, record, EXIT_INTERRUPTED if interrupted else EXIT_CANNOT_RUN, say)
    document = out / DOCUMENT
    try:
        decision = write_gonogo(folders, document, settings.checklist, settings.signoffs)
        if interrupted or unproven:
            _note_gaps(document, unproven, not_started)
        junit = write_junit(decision, out / "junit.xml", checklist_path=settings.checklist)
        _add_missing_runs(junit, unproven, not_started)
    except ReportError as exc:
        say(f"release: the document could not be written: {exc}")
        return _finish(out, record, EXIT_CANNOT_RUN, say, failure=str(exc))
    verdict = decision.verdict if not unproven else "NO-GO"
    record.update(verdict=verdict, unproven=[r.name for r in unproven], not_started=not_started)
    say(f"report: {document}")
    say(f"report (HTML): {document.with_suffix('.html')}")
    say(f"junit: {junit}")
    if unproven:
        say(f"release: {', '.join(r.name for r in unproven)} left no evidence: the verdict cannot be GO")
    say(f"verdict: {verdict}")
    code = EXIT_INTERRUPTED if interrupted else EXIT_GO if verdict == "GO" else EXIT_NO_GO
    return _finish(out, record, code, say)


def _note_gaps(document: Path, unproven: Sequence[_Ran], not_started: Sequence[str]) -> None:
    """Say at the top of the document what the release could not prove, and re-render its HTML."""
    parts = []
    if not_started:
        parts.append(f"**Incomplete: the release was interrupted.** Not run: {', '.join(not_started)}.")
    if unproven:
        names = ", ".join(r.name for r in unproven)
        parts.append(f"**No evidence from {names}** (no run folder with a summary): it cannot be GO.")
    if not parts:
        parts.append("**Incomplete: the release was interrupted** while its last experiment ran.")
    lines = document.read_text(encoding="utf-8").splitlines()
    at = next((i + 1 for i, line in enumerate(lines) if line.startswith("# ")), 0)
    note = ["", *(f"> {p}" for p in parts)]
    replace_text(document, "\n".join([*lines[:at], *note, *lines[at:]]) + "\n")
    write_html(document)


def _add_missing_runs(junit: Path, unproven: Sequence[_Ran], not_started: Sequence[str]) -> None:
    """Experiments without evidence are error cases in ``junit.xml``; those never started, skipped."""
    if not unproven and not not_started:
        return
    from junitparser import Error, JUnitXml, Skipped, TestCase, TestSuite

    xml = JUnitXml.fromfile(str(junit))
    suite = next((s for s in xml if s.name == "experiments"), None)
    if suite is None:
        suite = TestSuite("experiments")
        xml.add_testsuite(suite)
    for one in unproven:
        case = TestCase(one.name, classname="experiments")
        reason = "interrupted before it left a summary" if one.interrupted else "no run folder with a summary"
        case.result = [Error(f"{reason}: see chaos-{one.name}.out", "NoEvidence")]
        suite.add_testcase(case)
    for name in not_started:
        case = TestCase(name, classname="experiments")
        case.result = [Skipped("not run: the release was interrupted first")]
        suite.add_testcase(case)
    suite.update_statistics()
    xml.update_statistics()
    partial = junit.with_name(junit.name + ".part")
    xml.write(str(partial))
    os.replace(partial, junit)


def _finish(
    out: Path, record: dict[str, Any], code: int, say: Callable[[str], object], failure: str | None = None
) -> int:
    record.update(
        exit_code=code,
        meaning=EXIT_CODES[code],
        ended_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    )
    if failure is not None:
        record["failure"] = redact(failure)
    replace_text(out / "release.json", json.dumps(record, indent=2, default=str) + "\n")
    say(f"release: exit {code} ({EXIT_CODES[code]})")
    return code
