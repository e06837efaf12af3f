"""Live progress of a soak: one log line per check round, ``soak/progress.json`` and Prometheus gauges.

The line reads ``soak 1:00:00/24:00:00 (4.2 %) · acks/s min 19.8 (tenant-3) · failures
last round 0 · log backup age max 41 s (tenant-1) · drills 1 validated, 0 failed · next
drill in 3:00:00 · violations 0``. The same numbers are gauges on ``/metrics`` (port
``soak_metrics_port``: 0 any free port, -1 off; the URL is written to
``soak/metrics.url``, and with ``$HARNESS_PROMETHEUS_SD_DIR`` set, a file_sd target so
the lab's Prometheus scrapes it), so the user's dashboards show the soak as it runs.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from common.files import replace_text
from loadgen.metrics import SD_DIR_ENV, remove_target_file, write_target_file
from orchestration.soak_settings import SoakSettings

__all__ = ["Progress", "clock"]

log = logging.getLogger("chaostoolkit")


def clock(seconds: float | None) -> str:
    """``H:MM:SS`` (``-`` for None)."""
    if seconds is None:
        return "-"
    whole = max(0, round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class Progress:
    """Publishes each check round; :meth:`close` stops the metrics server."""

    def __init__(self, folder: Path, settings: SoakSettings, tenants: list[str], run_id: str) -> None:
        self.folder = folder
        self.settings = settings
        self.tenants = tenants
        self.run_id = run_id
        self.registry = CollectorRegistry()
        labels = ["tenant"]
        self.elapsed = Gauge(
            "harness_soak_elapsed_seconds", "Seconds the soak has run", registry=self.registry
        )
        self.planned = Gauge(
            "harness_soak_planned_seconds", "Seconds the soak is planned to run", registry=self.registry
        )
        self.ack_rate = Gauge(
            "harness_soak_ack_rate",
            "Acknowledged writes per second in the last round",
            labels,
            registry=self.registry,
        )
        self.failures = Gauge(
            "harness_soak_failed_writes_last_round",
            "Failed or unknown-outcome writes in the last round",
            labels,
            registry=self.registry,
        )
        self.backup_age = Gauge(
            "harness_soak_log_backup_age_seconds",
            "Age of the newest completed log backup (unknown: -1)",
            labels,
            registry=self.registry,
        )
        self.next_drill = Gauge(
            "harness_soak_next_drill_seconds",
            "Seconds until the next restore drill (none: -1)",
            registry=self.registry,
        )
        self.drills = Gauge(
            "harness_soak_drills", "Restore drills by result", ["result"], registry=self.registry
        )
        self.violations = Gauge("harness_soak_violations", "Violations found so far", registry=self.registry)
        self.planned.set(settings.seconds)
        self._server: Any = None
        self._target: tuple[Path, str] | None = None

    def serve(self, port: int) -> int | None:
        """Serve the gauges on 127.0.0.1:``port`` (-1: not at all); the bound port."""
        if port < 0:
            return None
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        self._server = server
        bound = int(server.server_port)
        (self.folder / "metrics.url").write_text(f"http://127.0.0.1:{bound}/metrics\n")
        sd_dir = os.environ.get(SD_DIR_ENV)
        if sd_dir:
            try:
                written = write_target_file(Path(sd_dir), bound, self.run_id)
                self._target = (written, written.read_text())
            except OSError as exc:
                log.warning(f"soak: cannot write the Prometheus target file in {sd_dir}: {exc}")
        log.info(f"soak: metrics on http://127.0.0.1:{bound}/metrics")
        return bound

    def update(
        self,
        line: Mapping[str, Any],
        elapsed: float,
        next_drill: float | None,
        summary: Mapping[str, Any] | None,
        interval: float | None = None,
    ) -> str:
        """Publish one check round (``checks.jsonl`` line); the progress line.

        ``interval`` is the time since the previous round (rates are per second of it);
        None for the first round, whose window started with the load.
        """
        interval = interval if interval and interval > 0 else self.settings.check_seconds
        load: Mapping[str, Any] = line.get("load") or {}
        rates = {t: float((load.get(t) or {}).get("acks", 0)) / interval for t in self.tenants}
        fails = {
            t: int((load.get(t) or {}).get("fails", 0)) + int((load.get(t) or {}).get("infos", 0))
            for t in self.tenants
        }
        backups: Mapping[str, Any] = line.get("backups") or {}
        ages = {t: (backups.get(t) or {}).get("age") for t in self.tenants}
        for tenant in self.tenants:
            self.ack_rate.labels(tenant).set(rates[tenant])
            self.failures.labels(tenant).set(fails[tenant])
            age = ages[tenant]
            self.backup_age.labels(tenant).set(-1 if age is None else float(age))
        self.elapsed.set(elapsed)
        until = None if next_drill is None else max(0.0, next_drill - elapsed)
        self.next_drill.set(-1 if until is None else until)
        drills = (summary or {}).get("drills") or {}
        self.drills.labels("validated").set(int(drills.get("validated", 0)))
        self.drills.labels("failed").set(int(drills.get("failed", 0)))
        violations = len((summary or {}).get("violations") or [])
        self.violations.set(violations)
        slowest = min(rates, key=lambda t: rates[t]) if rates else None
        known = {t: a for t, a in ages.items() if a is not None}
        oldest = max(known, key=lambda t: known[t]) if known else None
        share = 100.0 * min(elapsed, self.settings.seconds) / self.settings.seconds
        text = " · ".join(
            [
                f"soak {clock(elapsed)}/{clock(self.settings.seconds)} ({share:.1f} %)",
                f"acks/s min {rates[slowest]:.1f} ({slowest})" if slowest else "no tenants",
                f"failures last round {sum(fails.values())}",
                f"log backup age max {known[oldest]:.0f} s ({oldest})" if oldest else "no log backup yet",
                f"drills {int(drills.get('validated', 0))} validated, {int(drills.get('failed', 0))} failed",
                f"next drill in {clock(until)}" if until is not None else "no drill left",
                f"violations {violations}",
            ]
        )
        log.info(text)
        progress = {
            "at": line.get("at"),
            "elapsed_seconds": round(elapsed, 3),
            "planned_seconds": self.settings.seconds,
            "ack_rate": rates,
            "failures_last_round": fails,
            "log_backup_age": ages,
            "next_drill_seconds": until,
            "drills": drills,
            "violations": violations,
            "line": text,
        }
        replace_text(self.folder / "progress.json", json.dumps(progress, indent=2))
        return text

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._target is not None:
            remove_target_file(*self._target)
            self._target = None
