"""End to end: the demo's command, shortened, leaves a complete run folder with a verdict."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from lab.paths import lab_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def local_run(runs: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """``python -m probes local-run ARGS --runs RUNS`` with a lab state folder of its own, removed
    afterwards; the finished process and the engine passwords the folder held."""
    state = Path(tempfile.mkdtemp(prefix="test-local-run-", dir=lab_dir()))
    state.chmod(0o755)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "probes", "local-run", *args, "--runs", str(runs)],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
            env={**os.environ, "HARNESS_LAB_DIR": str(state)},
        )
        secrets = [p.read_text() for p in state.glob("engine/*/password")]
    finally:
        shutil.rmtree(state, ignore_errors=True)
    return done, secrets


def test_local_run_writes_the_whole_run_folder(tmp_path: Path) -> None:
    done, secrets = local_run(
        tmp_path,
        *("--tenants", "3", "--duration", "16", "--freeze-at", "3", "--freeze-seconds", "2"),
        *("--kill-at", "8", "--stability", "2"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = Path(done.stdout.strip().splitlines()[-1].removeprefix("report: "))
    run = report.parent
    for name in (
        "summary.json",
        "metrics.prom",
        "rto-rpo.png",
        "readback.json",
        "faults.jsonl",
        "run.json",
        "timeline-tenant-0.png",
        "timeline-tenant-1.png",
        "timeline-tenant-2.png",
    ):
        assert (run / name).stat().st_size > 0, name
    assert list((run / "journal").glob("*.jsonl"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["verdict"] == "GO", summary["violations"]
    assert summary["objective"] == {"rto_seconds": 60.0, "rpo_seconds": 0.0}
    assert [f["kind"] for f in summary["faults"]] == ["freeze", "kill"]
    freeze = {r["tenant"]: r for r in summary["faults"][0]["results"]}
    assert freeze["tenant-1"]["affected"] and 1.5 <= freeze["tenant-1"]["rto_seconds"] <= 2.5
    kill = {r["tenant"]: r for r in summary["faults"][1]["results"]}
    assert kill["tenant-2"]["affected"] and kill["tenant-2"]["lost_acked_writes"] == 0
    text = report.read_text()
    assert text.splitlines()[0].endswith(": GO") and "rto-rpo.png" in text
    assert "**Verdict: GO**" in text and "NO-GO" not in text
    assert summary["target"]["kind"] == "local"
    # No secret leaves the lab: the passwords are nowhere in the run folder or the output.
    assert len(secrets) == 3
    for path in run.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(secret.encode() in data for secret in secrets), path
    assert not any(secret in done.stdout + done.stderr for secret in secrets)
