"""Prometheus metrics of the load process (prometheus-client).

Counters only go up and restart from zero with the process; scrape each load
process's endpoint (its URL is written to ``<run>/metrics/<pid>.url``). These are
for dashboards during a run; RTO and RPO come from the journal, not from here.

**Discovery by Prometheus.** When ``HARNESS_PROMETHEUS_SD_DIR`` names a folder (the
embedded lab's ``.lab/monitoring/targets``), :meth:`LoadMetrics.serve` also writes a
Prometheus file_sd target file ``<folder>/load-<pid>.json`` (``[{"targets":
["127.0.0.1:<port>"], "labels": {"run_id": ...}}]``, ``run_id`` when known; written to a
temporary file and renamed, so Prometheus never reads half of it) and removes it when the
process exits normally (``atexit``); a killed process leaves it behind and the target
reads down.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from common.files import replace_text

__all__ = ["SD_DIR_ENV", "LoadMetrics", "remove_target_file", "write_target_file"]

SD_DIR_ENV = "HARNESS_PROMETHEUS_SD_DIR"

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LoadMetrics:
    """The load's metrics in their own registry (so tests can make many)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.attempts = Counter(
            "harness_write_attempts_total",
            "Write attempts by tenant and outcome (ok, fail, info).",
            ["tenant", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "harness_write_latency_seconds",
            "Latency of acknowledged writes, monotonic clock.",
            ["tenant"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.last_ack = Gauge(
            "harness_last_ack_timestamp_seconds",
            "Wall-clock time (UTC epoch) of the last acknowledged write.",
            ["tenant"],
            registry=self.registry,
        )

        # labels() looks the child up under a lock on every call: keep the children instead.
        self._attempts: dict[tuple[str, str], Counter] = {}
        self._acked: dict[str, tuple[Histogram, Gauge]] = {}

    def observe(self, tenant: str, outcome: str, latency: float, end: float) -> None:
        """Count one attempt; acknowledged ones also feed the latency and last-ack series."""
        counter = self._attempts.get((tenant, outcome))
        if counter is None:
            counter = self._attempts[tenant, outcome] = self.attempts.labels(tenant=tenant, outcome=outcome)
        counter.inc()
        if outcome == "ok":
            acked = self._acked.get(tenant)
            if acked is None:
                acked = self._acked[tenant] = (
                    self.latency.labels(tenant=tenant),
                    self.last_ack.labels(tenant=tenant),
                )
            acked[0].observe(latency)
            acked[1].set(end)

    def serve(self, port: int, folder: Path | None, name: str, run_id: str | None = None) -> int:
        """Serve ``/metrics`` on 127.0.0.1:``port`` (0 = any free port); returns the port.

        When ``folder`` is given, the URL is written to ``folder/<name>.url`` for scrapers.
        With ``$HARNESS_PROMETHEUS_SD_DIR`` set, the file_sd target file is written too (see
        the module docstring), labelled with ``run_id`` (default ``$HARNESS_RUN_ID``) when known.
        """
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        bound = int(server.server_port)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}.url").write_text(f"http://127.0.0.1:{bound}/metrics\n")
        sd_dir = os.environ.get(SD_DIR_ENV)
        if sd_dir:
            try:
                written = write_target_file(Path(sd_dir), bound, run_id or os.environ.get("HARNESS_RUN_ID"))
                atexit.register(remove_target_file, written, written.read_text())
            except OSError as exc:  # dashboards only: the load goes on, Prometheus just cannot find it
                log.warning("cannot write the Prometheus target file in %s=%s: %s", SD_DIR_ENV, sd_dir, exc)
        return bound


def write_target_file(folder: Path, port: int, run_id: str | None) -> Path:
    """Write ``folder/load-<pid>.json`` (file_sd, atomically) for 127.0.0.1:``port``; its path."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = {"run_id": run_id} if run_id else {}
    body = json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": labels}], indent=2) + "\n"
    return replace_text(folder / f"load-{os.getpid()}.json", body)


def remove_target_file(path: Path, content: str) -> bool:
    """Remove ``path`` if it still holds ``content`` (never a file another process rewrote).

    True if it was removed.
    """
    try:
        if path.read_text() != content:
            return False
        path.unlink()
    except OSError:
        return False
    return True
