"""Backups and point-in-time restore in a real lab: time and size against the database size.

Run from the project root::

    .venv/bin/python -m tests.benchmarks.bench_backup [--rows 10000,100000,1000000]
        [--quiet-wait 60] [--out FILE]

One lab (``python -m lab up --tenants 1 --nodes 2``) under a temporary folder in
``/var/tmp`` (mode 0755, so the ``postgres`` user reaches the tenant's data); the
project's own ``.lab/`` is never used. For each row count N, in increasing order, on the
tenant's database:

1. rows are added (one ``INSERT ... SELECT generate_series`` through ``psql``) until the
   table ``bench_rows`` holds N rows of ~100 bytes of payload (three hex digests), then
   ``pg_database_size`` is read;
2. **full backup**: an MSSQLBackup ``type: full`` is created; timed from the create call to
   the object's phase ``Completed`` (polled every 50 ms). The executor's own share is the
   status's ``endTime - startTime`` (written by the executor around ``pg_basebackup``).
   The backup folder ``full/<id>/`` is measured with ``du``-like summing of file sizes;
3. a target time is taken from the server clock (after every insert), then **log
   backup**: an MSSQLBackup ``type: log`` (``pg_switch_wal()`` and the segment archived),
   timed the same way;
4. **PITR restore**: an MSSQLRestore with ``createTarget: true`` onto a fresh target
   ``bench-restored-<i>``, timed from the create call until the restore is ``Completed``
   *and* the target MSSQLInstance is ``Ready``. The executor's share comes from the
   store's ``restores/<name>.json`` (``end - start``). The time is also given as a
   fraction of the 60 s RTO objective (the *peer* of this benchmark: < 1 fits);
5. the target's ``count(*)`` must be N (every insert committed before the target time);
   then the target instance, its restore object and its backups volume are deleted and
   the benchmark waits until its pod is gone.

Before each size it waits (up to ``--quiet-wait`` seconds) for the machine to be idle,
and reports the other work's CPU during the size's measurements. Everything started
here is stopped: the lab by ``lab down --wipe`` (after which no process naming the
folder may remain), then the folder is removed. Results and their analysis live in
``docs/BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests

from lab.errors import LabError
from lab.executor.store import parse_ts
from lab.kubeclient import Kind, KubeClient
from lab.paths import project_root
from tests.benchmarks.bench_lab import BenchError, _down, _free_port, _machine, _Quiet, _Window

__all__ = ["RTO_OBJECTIVE_SECONDS", "SizeResult", "format_report", "main", "measure_size"]

RTO_OBJECTIVE_SECONDS = 60.0
NS = "tenants"
BACKUPS = Kind("mssql.example.com", "v1alpha1", "mssqlbackups")
RESTORES = Kind("mssql.example.com", "v1alpha1", "mssqlrestores")
INSTANCES = Kind("mssql.example.com", "v1alpha1", "mssqlinstances")
_API = "mssql.example.com/v1alpha1"
_POLL = 0.05


@dataclass(frozen=True)
class SizeResult:
    """Every measurement for one row count."""

    rows: int
    insert_s: float
    """Adding the rows up to ``rows`` (one statement; only the new rows)."""
    db_bytes: int
    """``pg_database_size`` of the tenant's database."""
    full_s: float
    """MSSQLBackup (full) created -> phase Completed."""
    full_executor_s: float
    """The executor's own share: status ``endTime - startTime``."""
    full_bytes: int
    """Files in ``full/<backupId>/``."""
    log_s: float
    log_executor_s: float
    log_bytes: int
    """The WAL segments that log backup lists."""
    wal_bytes: int
    """The whole ``wal/`` archive after the log backup."""
    restore_s: float
    """MSSQLRestore created -> Completed and the target instance Ready."""
    restore_completed_s: float
    """MSSQLRestore created -> phase Completed."""
    restore_executor_s: float
    """The restore Job's executor, from the store's ``restores/<name>.json``."""
    target_rows: int
    restore_timeline: dict[str, float]
    """Seconds from creating the MSSQLRestore to each moment first seen (polled)."""
    other_cores: float
    steal_cores: float

    @property
    def rto_fraction(self) -> float:
        return self.restore_s / RTO_OBJECTIVE_SECONDS

    @property
    def rows_ok(self) -> bool:
        return self.target_rows == self.rows


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


class _Lab:
    """The running lab: API client, the tenant's credentials, SQL through ``psql``."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.client = KubeClient.from_kubeconfig(home / "kubeconfig")
        self.tenant: dict[str, Any] = json.loads((home / "tenants.json").read_text())["tenants"][0]
        self.name = str(self.tenant["name"])
        self.store = home / "cluster" / "volumes" / NS / f"{self.name}-backups"

    def sql(self, sql: str, instance: str | None = None, timeout: float = 600) -> str:
        port, password = self.tenant["port"], Path(self.tenant["password_file"]).read_text()
        if instance is not None:
            port = self.status(INSTANCES, instance)["port"]
            secret = self.client.get("secrets", f"{instance}-credentials", NS)
            password = base64.b64decode(secret["data"]["password"]).decode()
        proc = subprocess.run(
            [
                *("psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"),
                *("-p", str(port), "-U", self.tenant["user"]),
                *("-d", self.tenant["database"], "-c", sql),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PGPASSWORD": password},
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise BenchError(f"psql failed: {proc.stderr.strip()[-300:]}")
        return proc.stdout.strip()

    def wait(self, what: str, check: Callable[[], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise BenchError(f"{what}: not done within {timeout:g}s")
            time.sleep(_POLL)

    def status(self, kind: Kind, name: str) -> dict[str, Any]:
        return dict(self.client.get(kind, name, NS).get("status") or {})

    def finished(self, kind: Kind, name: str, timeout: float) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            status = self.status(kind, name)
            return status if status.get("phase") in ("Completed", "Failed") else None

        status: dict[str, Any] = self.wait(f"{kind.plural}/{name}", done, timeout)
        if status["phase"] != "Completed":
            raise BenchError(f"{kind.plural}/{name} failed: {status.get('reason')}")
        return status

    def backup(self, name: str, kind: str, timeout: float) -> tuple[float, dict[str, Any]]:
        body = {
            "apiVersion": _API,
            "kind": "MSSQLBackup",
            "metadata": {"name": name},
            "spec": {"instance": self.name, "type": kind},
        }
        began = time.monotonic()
        self.client.create(BACKUPS, body, NS)
        status = self.finished(BACKUPS, name, timeout)
        return time.monotonic() - began, status


def _span(status: dict[str, Any], start: str = "startTime", end: str = "endTime") -> float:
    return parse_ts(str(status[end])) - parse_ts(str(status[start]))


def measure_size(lab: _Lab, index: int, rows: int, have: int, timeout: float) -> SizeResult:
    """Grow ``bench_rows`` from ``have`` to ``rows`` rows, back it up and restore it (module doc)."""
    window = _Window((str(lab.home),))
    window.start()
    began = time.monotonic()
    lab.sql(
        "INSERT INTO bench_rows (id, payload) SELECT g, md5(g::text) || md5((g * 7)::text) "
        f"|| left(md5((g * 13)::text), 36) FROM generate_series({have + 1}, {rows}) g"
    )
    insert_s = time.monotonic() - began
    db_bytes = int(lab.sql("SELECT pg_database_size(current_database())"))

    full_s, full = lab.backup(f"bench-full-{index}", "full", timeout)
    full_bytes = _folder_bytes(lab.store / "full" / str(full["backupId"]))
    time.sleep(0.2)  # the target time strictly after the full backup's end and every insert
    target_time = lab.sql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    )
    time.sleep(0.2)
    log_s, logged = lab.backup(f"bench-log-{index}", "log", timeout)
    meta = json.loads((lab.store / "log" / f"{logged['backupId']}.json").read_text())
    log_bytes = sum((lab.store / "wal" / s).stat().st_size for s in meta.get("segments") or [])
    wal_bytes = _folder_bytes(lab.store / "wal")

    restore, target = f"bench-pitr-{index}", f"bench-restored-{index}"
    body = {
        "apiVersion": _API,
        "kind": "MSSQLRestore",
        "metadata": {"name": restore},
        "spec": {"source": lab.name, "target": target, "targetTime": target_time, "createTarget": True},
    }
    began = time.monotonic()
    lab.client.create(RESTORES, body, NS)
    milestones: dict[str, float] = {}

    def restored() -> bool:
        now = time.monotonic() - began
        status = lab.status(RESTORES, restore)
        if status.get("phase") == "Failed":
            raise BenchError(f"restore {restore} failed: {status.get('reason')}")
        job = lab.client.get_or_none("jobs", f"{restore}-restore", NS)
        pod = lab.client.get_or_none("pods", f"{target}-0", NS)
        seen = {
            "target instance created": lab.client.get_or_none(INSTANCES, target, NS) is not None,
            "first target pod created": pod is not None,
            "restore Job created": job is not None,
            "restore Job complete": bool(((job or {}).get("status") or {}).get("completionTime")),
            "target pod recreated": pod is not None and "restore Job complete" in milestones,
        }
        for label, now_true in seen.items():
            if now_true:
                milestones.setdefault(label, now)
        return status.get("phase") == "Completed"

    lab.wait(f"restore {restore}", restored, timeout)
    completed_s = time.monotonic() - began
    milestones["restore Completed"] = completed_s
    lab.wait(f"target {target} Ready", lambda: lab.status(INSTANCES, target).get("phase") == "Ready", timeout)
    restore_s = time.monotonic() - began
    window.stop()
    result = json.loads((lab.store / "restores" / f"{restore}.json").read_text())
    target_rows = int(lab.sql("SELECT count(*) FROM bench_rows", instance=target))
    _remove_target(lab, restore, target, timeout)
    return SizeResult(
        rows=rows,
        insert_s=insert_s,
        db_bytes=db_bytes,
        full_s=full_s,
        full_executor_s=_span(full),
        full_bytes=full_bytes,
        log_s=log_s,
        log_executor_s=_span(logged),
        log_bytes=log_bytes,
        wal_bytes=wal_bytes,
        restore_s=restore_s,
        restore_completed_s=completed_s,
        restore_executor_s=_span(result, "start", "end"),
        target_rows=target_rows,
        restore_timeline=dict(sorted(milestones.items(), key=lambda kv: kv[1])),
        other_cores=window.other_cores,
        steal_cores=window.steal_cores,
    )


def _remove_target(lab: _Lab, restore: str, target: str, timeout: float) -> None:
    """Delete the restored instance (its pod and data go with it), its restore and backups volume."""
    lab.client.delete(INSTANCES, target, NS)
    lab.client.delete(RESTORES, restore, NS)
    lab.wait(
        f"target {target} gone",
        lambda: (
            lab.client.get_or_none(INSTANCES, target, NS) is None
            and lab.client.get_or_none("pods", f"{target}-0", NS) is None
        ),
        timeout,
    )
    lab.client.delete("persistentvolumeclaims", f"{target}-backups", NS)


# -- report ---------------------------------------------------------------------------------------


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f}"


def format_report(results: list[SizeResult], machine: dict[str, str], up_s: float) -> str:
    """The whole result as text with a markdown table."""
    out = [
        "",
        "# Backup and PITR benchmark (1 tenant, 2 nodes)",
        "",
        f"`lab up`: {up_s:.1f} s",
        "",
        "| rows | insert s | DB MiB | full backup s (executor) | full folder MiB | log backup s (executor) "
        "| log MiB (wal/ MiB) | PITR restore s (Completed / +Ready) | restore executor s "
        "| restore / 60 s RTO | target rows | other / steal cores |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        ready_s = r.restore_s - r.restore_completed_s
        out.append(
            f"| {r.rows:,} | {r.insert_s:.1f} | {_mb(r.db_bytes)} "
            f"| **{r.full_s:.1f}** ({r.full_executor_s:.1f}) "
            f"| {_mb(r.full_bytes)} | **{r.log_s:.1f}** ({r.log_executor_s:.1f}) "
            f"| {_mb(r.log_bytes)} ({_mb(r.wal_bytes)}) "
            f"| **{r.restore_s:.1f}** ({r.restore_completed_s:.1f} / {ready_s:.1f}) "
            f"| {r.restore_executor_s:.1f} | {r.rto_fraction:.2f} "
            f"| {r.target_rows:,} {'ok' if r.rows_ok else 'MISSING ROWS'} "
            f"| {r.other_cores:.2f} / {r.steal_cores:.2f} |"
        )
    out += ["", "PITR restore timeline, seconds from creating the MSSQLRestore (polled every 50 ms):", ""]
    for r in results:
        moments = ", ".join(f"{k} {v:.1f}" for k, v in r.restore_timeline.items())
        out.append(f"- {r.rows:,} rows: {moments}")
    out += ["", "Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()), ""]
    out += [f"WARNING: {r.rows} rows: the target holds {r.target_rows}" for r in results if not r.rows_ok]
    out += [
        f"WARNING: {r.rows} rows: other work used {r.other_cores:.2f} cores: that measurement is disturbed"
        for r in results
        if r.other_cores > 0.5
    ]
    return "\n".join(out)


# -- command line ---------------------------------------------------------------------------------


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _rows(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rows takes comma-separated integers; got {text!r}") from None
    if not values or any(v < 1 for v in values) or values != sorted(set(values)):
        raise argparse.ArgumentTypeError(f"--rows must be increasing positive integers; got {text!r}")
    return values


def _up(home: Path) -> float:
    env = {**os.environ, "HARNESS_LAB_DIR": str(home), "PYTHONPATH": str(project_root())}
    env.pop("KUBECONFIG", None)
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "lab", "up", "--tenants", "1", "--nodes", "2", "--port", str(_free_port())],
        cwd=project_root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"lab up failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
    return time.monotonic() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.bench_backup",
        description="Full backup, log backup and PITR restore times against the database size.",
    )
    parser.add_argument(
        "--rows",
        type=_rows,
        default=[10_000, 100_000, 1_000_000],
        help="row counts, increasing (default 10000,100000,1000000)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="seconds to wait for the machine to be idle before the lab and each size (default 60)",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds allowed for each backup or restore"
    )
    parser.add_argument("--out", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="bench-backup-", dir="/var/tmp"))
    workdir.chmod(0o755)
    home = workdir / "lab"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    quiet = _Quiet(workdir, args.quiet_wait, _say)
    results: list[SizeResult] = []
    failed = False
    up_s = 0.0
    try:
        quiet.wait(ports=True)
        _say("lab up --tenants 1 --nodes 2 ...")
        up_s = _up(home)
        lab = _Lab(home)
        lab.sql("CREATE TABLE bench_rows (id int PRIMARY KEY, payload text NOT NULL)")
        have = 0
        for index, rows in enumerate(args.rows):
            quiet.wait()
            _say(f"{rows} rows: insert, full backup, log backup, PITR restore ...")
            results.append(measure_size(lab, index, rows, have, args.timeout))
            have = rows
            _say(f"{rows} rows: restore {results[-1].restore_s:.1f}s")
        machine = _machine()
    except (BenchError, LabError, requests.RequestException, subprocess.TimeoutExpired) as exc:
        _say(f"failed: {exc}")
        failed = True
    finally:
        try:
            if (home / "cluster").exists():
                _say(f"lab down --wipe ({_down(home):.1f}s)")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    if failed:
        return 1
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "settings": {
                k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"
            },
            "machine": machine,
            "lab_up_s": up_s,
            "rto_objective_s": RTO_OBJECTIVE_SECONDS,
            "sizes": [{**asdict(r), "rto_fraction": r.rto_fraction, "rows_ok": r.rows_ok} for r in results],
        }
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(format_report(results, machine, up_s))
    return 0 if all(r.rows_ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
