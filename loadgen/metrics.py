"""Prometheus metrics of the load process (prometheus-client).

Counters only go up and restart from zero with the process; scrape each load
process's endpoint (its URL is written to ``<run>/metrics/<pid>.url``). These are
for dashboards during a run; RTO and RPO come from the journal, not from here.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["LoadMetrics"]

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

    def observe(self, tenant: str, outcome: str, latency: float, end: float) -> None:
        """Count one attempt; acknowledged ones also feed the latency and last-ack series."""
        self.attempts.labels(tenant=tenant, outcome=outcome).inc()
        if outcome == "ok":
            self.latency.labels(tenant=tenant).observe(latency)
            self.last_ack.labels(tenant=tenant).set(end)

    def serve(self, port: int, folder: Path | None, name: str) -> int:
        """Serve ``/metrics`` on 127.0.0.1:``port`` (0 = any free port); returns the port.

        When ``folder`` is given, the URL is written to ``folder/<name>.url`` for scrapers.
        """
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        bound = int(server.server_port)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}.url").write_text(f"http://127.0.0.1:{bound}/metrics\n")
        return bound
