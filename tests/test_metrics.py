"""The load's Prometheus endpoint serves conventional, correct series."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from loadgen.metrics import LoadMetrics


def test_metrics_are_served_and_counted(tmp_path: Path) -> None:
    metrics = LoadMetrics()
    port = metrics.serve(0, tmp_path, "123")
    assert (tmp_path / "123.url").read_text().strip() == f"http://127.0.0.1:{port}/metrics"
    metrics.observe("t0", "ok", 0.004, 1_800_000_000.5)
    metrics.observe("t0", "ok", 0.2, 1_800_000_001.0)
    metrics.observe("t0", "info", 0.5, 1_800_000_002.0)
    metrics.observe("t1", "fail", 0.001, 1_800_000_002.0)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    attempts = {
        (s.labels["tenant"], s.labels["outcome"]): s.value
        for s in families["harness_write_attempts"].samples
        if s.name.endswith("_total")
    }
    assert attempts == {("t0", "ok"): 2, ("t0", "info"): 1, ("t1", "fail"): 1}
    latency = {
        s.name: s.value for s in families["harness_write_latency_seconds"].samples if not s.labels.get("le")
    }
    assert latency["harness_write_latency_seconds_count"] == 2  # only acknowledged writes
    assert abs(latency["harness_write_latency_seconds_sum"] - 0.204) < 1e-9
    last = {s.labels["tenant"]: s.value for s in families["harness_last_ack_timestamp_seconds"].samples}
    assert last == {"t0": 1_800_000_001.0}
