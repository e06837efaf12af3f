"""The soak runner: hours of load with periodic log backups, checked every minute.

``chaos run experiments/opt-in/soak.json`` starts the load as every experiment does (the
control), then its one long action (:func:`orchestration.soak_experiment.soak`) hands
over to :class:`SoakRunner`, which for ``seconds``:

- gives every tenant a backup policy with log backups every ``log_interval_seconds``
  (and puts back whatever policy the tenant had when it ends);
- every ``check_seconds`` takes one check round (:mod:`probes.soak_checks`): each
  tenant's newest log backup and its age, failed backup Jobs, the operator's and the
  MSSQL pods' restarts, memory and open connections, and each tenant's acks, failures
  and p99 latency since the previous round (read from the journal as it grows), and
  appends it to ``soak/checks.jsonl``; then compacts the journal's closed segments
  (:func:`loadgen.segments.compact`) and publishes the progress
  (:mod:`orchestration.soak_progress`: a log line, ``soak/progress.json``, Prometheus);
- every ``drill_seconds`` restores one tenant (in turn) to a random acknowledged moment
  of the last round into a new instance, validates it against the journal and deletes
  it (:mod:`orchestration.soak_drill`, ``soak/drills.jsonl``), in a thread of its own so
  the rounds go on meanwhile (one drill at a time);
- every ``fault_every_seconds`` injects ``fault`` (recorded in ``faults.jsonl`` by the
  action itself, so the run's analysis gives its RTO and RPO).

The first round is taken at once: a target the soak cannot measure (no metrics-server,
no right to count sessions) stops it then, in one line, rather than after a day.
``soak/plan.json`` is written first and ``soak/end.json`` only when the planned time is
over, so a soak killed at hour 20 leaves a folder whose report says "incomplete, 20 h of
24" (:mod:`probes.soak_summary`), and a report can be built while the soak runs. Every
line is appended and flushed as it is taken: a SIGKILL loses at most the round in progress.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from loadgen.errors import LoadgenError
from loadgen.journal import JournalTail
from loadgen.segments import compact
from orchestration.errors import OrchestrationError
from orchestration.soak_drill import Drill
from orchestration.soak_policies import BackupPolicies
from orchestration.soak_progress import Progress
from orchestration.soak_settings import FAULTS, SoakSettings
from probes.errors import ProbeError
from probes.live import live_journal
from probes.soak_checks import LoadWindow, check_round
from probes.soak_summary import summarize

__all__ = ["SOAK_DIR", "SoakRunner"]

SOAK_DIR = "soak"
log = logging.getLogger("chaostoolkit")


def _append(path: Path, record: Mapping[str, Any]) -> None:
    """One JSON line, appended and flushed (a reader never sees half of it without the newline)."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")


class SoakRunner:
    """One soak over ``tenants`` in ``run_dir``; :meth:`run` blocks for the planned time."""

    def __init__(
        self,
        settings: SoakSettings,
        run_dir: Path,
        tenants: list[str],
        configuration: Mapping[str, Any],
        secrets: Mapping[str, Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.folder = self.run_dir / SOAK_DIR
        self.tenants = list(tenants)
        self.configuration = dict(configuration)
        self.secrets = secrets
        self.namespace = str(self.configuration.get("namespace") or "tenants")
        self._sleep = sleep
        self._random = random.Random(settings.seed)
        self._tail = JournalTail(self.run_dir / "journal")
        self._window = LoadWindow(self.tenants)
        self._acks: dict[str, list[float]] = {}
        self.started_at = 0.0
        self._start = 0.0
        self._last_round: float | None = None
        self._drill_thread: threading.Thread | None = None
        self._drills_started = 0

    # -- plan -----------------------------------------------------------------------------

    def _times(self, every: float) -> list[float]:
        """Offsets ``every, 2·every, ...`` strictly inside the soak (none when ``every`` is 0)."""
        if every <= 0:
            return []
        count = int(self.settings.seconds // every)
        return [every * k for k in range(1, count + 1) if every * k < self.settings.seconds]

    def plan(self) -> dict[str, Any]:
        """``soak/plan.json``: the settings, the tenants and when each drill and fault is due."""
        action = FAULTS.get(self.settings.fault, "")
        return {
            **self.settings.plan(),
            "started_at": self.started_at,
            "tenants": self.tenants,
            "drills": self._times(self.settings.drill_seconds),
            "faults": [{"at": at, "action": action} for at in self._times(self.settings.fault_every_seconds)],
        }

    # -- the run --------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def run(self) -> dict[str, Any]:
        """Run the soak for its planned time; its summary (``probes.soak_summary``)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.started_at = time.time()
        self._start = time.monotonic()
        plan = self.plan()
        (self.folder / "plan.json").write_text(json.dumps(plan, indent=2))
        progress = Progress(self.folder, self.settings, self.tenants, self.run_dir.name)
        policies = BackupPolicies(
            self.tenants, self.namespace, self.settings, self.configuration, self.secrets
        )
        drill = Drill(self.folder, self.namespace, self.settings, self.configuration, self.secrets)
        try:
            policies.apply()
            progress.serve(self.settings.metrics_port)
            drills = list(plan["drills"])
            faults = [f["at"] for f in plan["faults"]]
            first = self._round(progress, drills[0] if drills else None)
            if first["errors"]:
                raise OrchestrationError(
                    f"the first check round could not measure: {first['errors'][0]} "
                    f"({len(first['errors'])} problem(s), all in {self.folder / 'checks.jsonl'}); "
                    "a soak that cannot measure would only find it out at its end: fix this and run again"
                )
            next_check = self.settings.check_seconds
            while True:
                due = min([next_check, self.settings.seconds, *drills[:1], *faults[:1]])
                self._wait_until(due)
                now = self.elapsed()
                final = now >= self.settings.seconds
                if now >= next_check or final:
                    self._round(progress, drills[0] if drills else None)
                    next_check += self.settings.check_seconds
                    if next_check <= self.elapsed():  # a late round (a slow API): no burst of catch-up rounds
                        next_check = self.elapsed() + self.settings.check_seconds
                if drills and now >= drills[0] and not final:
                    drills.pop(0)
                    self._drill(drill)
                if faults and now >= faults[0] and not final:
                    faults.pop(0)
                    self._fault()
                if final:
                    break
            self._finish_drill()
            (self.folder / "end.json").write_text(
                json.dumps({"ended_at": time.time(), "covered_seconds": round(self.elapsed(), 3)})
            )
        finally:
            progress.close()
            policies.restore()
        return summarize(self.run_dir) or {}

    def _wait_until(self, offset: float) -> None:
        while (left := offset - self.elapsed()) > 0:
            self._sleep(min(left, 1.0))

    def _round(self, progress: Progress, next_drill: float | None) -> dict[str, Any]:
        """One check round, appended to ``checks.jsonl``; the line."""
        now = time.time()
        errors: list[str] = []
        try:
            writes, _clocks = self._tail.poll()
        except (OSError, LoadgenError) as exc:
            writes = []
            errors.append(f"journal: {exc}")
        self._window.feed(writes)
        with contextlib.suppress(OSError, LoadgenError):
            live_journal(self.run_dir).refresh()  # keeps the steady-state probe's reading incremental
        self._acks = {}
        for write in writes:
            if write.outcome == "ok":
                self._acks.setdefault(write.tenant, []).append(write.end)
        line = check_round(
            self.tenants, self.namespace, self.configuration, self.secrets,
            started_at=self.started_at, now=now, elapsed=self.elapsed(),
        )  # fmt: skip
        line["errors"] = errors + line["errors"]
        line["load"] = self._window.take()
        _append(self.folder / "checks.jsonl", line)
        try:
            compact(self.run_dir / "journal")
        except (OSError, LoadgenError) as exc:
            log.warning(
                f"soak: compacting the journal failed this round ({exc}); the segments stay as JSON lines"
            )
        interval = self.elapsed() - self._last_round if self._last_round is not None else None
        self._last_round = self.elapsed()
        progress.update(line, self.elapsed(), next_drill, summarize(self.run_dir), interval)
        return line

    def _drill(self, drill: Drill) -> None:
        """Start the next drill in its own thread, so that check rounds go on meanwhile.

        One drill at a time: one still running when the next is due means the next is not
        run, and the summary counts it as planned and not run.
        """
        if self._drill_thread is not None and self._drill_thread.is_alive():
            log.warning("soak: the previous restore drill is still running; this one is not run")
            return
        tenant = self.tenants[self._drills_started % len(self.tenants)]
        self._drills_started += 1
        acks = self._acks.get(tenant) or []
        moment = self._random.choice(acks) if acks else None
        self._drill_thread = threading.Thread(
            target=drill.run, args=(tenant, moment), name="soak-drill", daemon=True
        )
        self._drill_thread.start()

    def _finish_drill(self) -> None:
        """Wait for a drill still running at the end (its record belongs to this soak)."""
        if self._drill_thread is not None:
            self._drill_thread.join()

    def _fault(self) -> None:
        from probes.k8s import actions

        name = FAULTS[self.settings.fault]
        try:
            if name == "restart_operator":
                actions.restart_operator(
                    namespace=str(self.configuration.get("operator_namespace") or "mssql-operator"),
                    label_selector=str(self.configuration.get("operator_selector") or "app=mssql-operator"),
                    deployment=str(self.configuration.get("operator_deployment") or "mssql-operator"),
                    configuration=self.configuration,
                    secrets=self.secrets,
                )
            else:
                tenant = self._random.choice(self.tenants)
                actions.evict_tenant_pod(
                    tenant, self.namespace, configuration=self.configuration, secrets=self.secrets
                )
        except ProbeError as exc:
            raise OrchestrationError(f"soak: the planned {self.settings.fault} failed: {exc}") from None
