"""Tenants per load core: can one pinned load process pace many tenants on time?

Run from the project root::

    .venv/bin/python -m tests.benchmarks.bench_tenants [--tenants 200] [--rate 20] [--seconds 30]
        [--servers 4] [--core 1] [--out FILE] [--locustfile FILE]

The goal it checks: one load core sustains at least 200 tenants at 20 writes/s each with
pacing error under 5%. It starts ``--servers`` local PostgreSQL servers
(:class:`lab.engine.Engine`, default durability) under a temporary folder and gives each
tenant its own role and database, tenant *i* on server *i mod servers* (``max_connections``
raised to twice the tenants per server + 10 when that is over the engine's 60). The servers and
this program run on every CPU but ``--core``; the real Locust CLI, with the harness's own
flags (:meth:`loadgen.runner.LoadRun.command`, one user per tenant, ``--metrics-port -1``),
runs under ``taskset -c CORE`` alone on that core.

From the journal, over the steady window (the last tenant's first ack + 2 s to the last
record - 1 s, so the spawn ramp and the stop are left out), it reports:

- offered (tenants x rate) and achieved acks/s, overall and per tenant (min, p5, median);
- pacing: lateness ``start - due`` of the paced attempts due in the window (p50, p99,
  max, and the share later than 5% of the interval) and each tenant's rate error
  ``|achieved / rate - 1|`` (max, p95); latency from ``due`` (``end - due``, p50, p99);
- CPU: the Locust process (user + system, all threads, sampled every 0.2 s) over the
  window, in cores and µs per ack ("load core saturated" above 0.95 of its core); the
  servers' process trees (exited backends included) per acknowledged write over the run;
  anything else on the machine, which marks the numbers as disturbed;
- outcomes (ok, fail, info), and every acknowledged write looked up in its tenant's table.

Verdict, "pacing error under 5%": PASS when the per-tenant rate error p95 is under 5%,
the lateness p99 is under one interval, every tenant was acknowledged in the window and
no acknowledged write is missing from the tables; FAIL when any of these is false;
otherwise CANNOT TELL when the journal carries no ``due``, the load process was not seen
allowed on ``--core`` alone (its affinity, read once it started) or used more than one
core, or its CPU was not sampled. Percentiles are nearest-rank (the arithmetic is in
:mod:`tests.benchmarks.tenants_analysis`). Everything started here is
stopped by pid and the temporary folder removed, also on Ctrl-C, SIGTERM and failure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from lab.engine import Engine, Instance, server_run_kwargs
from lab.errors import LabError
from lab.paths import pg_bindir, project_root
from loadgen.dialects import TABLE, dialect
from loadgen.journal import read_journal
from loadgen.runner import LoadRun
from tests.benchmarks.measure import (
    BenchError,
    machine_facts,
    run_measured,
    tail,
    tree_cpu,
    user_space_cpu,
)
from tests.benchmarks.tenants_analysis import (
    DISTURBED,
    GOAL_RATE,
    GOAL_TENANTS,
    SATURATED,
    Analysis,
    Verdict,
    analyze,
    check_rows,
    cpu_over_window,
    format_report,
    judge,
)

__all__ = ["BenchError", "TenantServers", "main"]


# -- servers and tenants -------------------------------------------------------------------------


def _psql(inst: Instance, script: str) -> str:
    """Run ``script`` as the superuser over the server's Unix socket; unaligned output."""
    argv = [str(pg_bindir() / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", str(inst.socket_dir)]
    argv += ["-p", str(inst.port), "-U", "postgres", "-d", "postgres", "-f", "-"]
    proc = subprocess.run(
        argv, input=script, capture_output=True, text=True, check=False, cwd="/", **server_run_kwargs()
    )
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["exit code " + str(proc.returncode)])[0]
        raise BenchError(f"psql on {inst.name} failed: {first}: see {inst.log_file}")
    return proc.stdout


def _role(i: int) -> str:
    return f"bench_t{i:04d}"


class TenantServers:
    """``servers`` PostgreSQL servers under ``workdir`` holding ``tenants`` role+database pairs."""

    def __init__(self, workdir: Path, servers: int, tenants: int) -> None:
        self.workdir = workdir
        self.engine = Engine(workdir / "engine")
        self.instances: list[Instance] = []
        try:
            per_server = math.ceil(tenants / servers)
            secrets_dir = workdir / "passwords"
            secrets_dir.mkdir(mode=0o700)
            self.entries: list[dict[str, object]] = []
            scripts: list[list[str]] = [[] for _ in range(servers)]
            tables: list[list[str]] = [[] for _ in range(servers)]
            for s in range(servers):
                self.instances.append(self.engine.create(f"srv{s}"))
            for i in range(tenants):
                inst, role = self.instances[i % servers], _role(i)
                password = secrets.token_urlsafe(18)
                path = secrets_dir / role
                path.write_text(password)
                path.chmod(0o600)
                scripts[i % servers].append(
                    f"CREATE ROLE {role} LOGIN PASSWORD '{password}';\n"
                    f"CREATE DATABASE {role} OWNER {role} TEMPLATE template0;\n"
                )
                tables[i % servers].append(
                    f"\\c {role}\nSET ROLE {role};\n{dialect('postgresql').create_table};\n"
                )
                self.entries.append(
                    {
                        **inst.tenant(),
                        "name": role,
                        "database": role,
                        "user": role,
                        "password_file": str(path),
                    }
                )
            connections = 2 * per_server + 10  # a reconnect per tenant while its old call hangs
            for s, inst in enumerate(self.instances):
                if connections > 60:  # lab.engine's setting
                    _psql(inst, f"ALTER SYSTEM SET max_connections = {connections};")
                    self.engine.restart(inst.name)
                _psql(inst, "".join(scripts[s]) + "".join(tables[s]))
        except BaseException:
            self.engine.close()
            raise

    def close(self) -> None:
        self.engine.close()

    def tree_cpu(self) -> float:
        """CPU seconds of every server's process tree (exited backends included)."""
        time.sleep(0.2)  # let exited backends be reaped by their postmaster
        total = 0.0
        for inst in self.instances:
            pid = self.engine.pid(inst.name)
            if pid is None:
                raise BenchError(f"the PostgreSQL server {inst.name} stopped: see {inst.log_file}")
            total += tree_cpu(pid)
        return total

    def rows(self, run_id: str) -> dict[str, set[tuple[int, int]]]:
        """``(writer, seq)`` of every row ``run_id`` left, per tenant."""
        found: dict[str, set[tuple[int, int]]] = {str(e["name"]): set() for e in self.entries}
        for s, inst in enumerate(self.instances):
            script = "".join(
                f"\\c {e['database']}\nSELECT tenant, writer, seq FROM {TABLE} WHERE run_id = '{run_id}';\n"
                for e in self.entries[s :: len(self.instances)]
            )
            for line in _psql(inst, script).splitlines():
                tenant, writer, seq = line.split("|")
                found.setdefault(tenant, set()).add((int(writer), int(seq)))
        return found


# -- the run ---------------------------------------------------------------------------------------


class _AffinityWatch(threading.Thread):
    """Finds the Locust process among this program's children and records its CPU affinity."""

    def __init__(self, timeout: float = 30.0) -> None:
        super().__init__(name="affinity-watch", daemon=True)
        self.timeout = timeout
        self.affinity: list[int] | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not self._stop_event.is_set() and time.monotonic() < deadline:
            for child in psutil.Process().children():
                try:
                    argv = child.cmdline()
                    if argv and Path(argv[0]).name != "taskset" and "locust" in argv:
                        self.affinity = sorted(child.cpu_affinity() or [])
                        return
                except psutil.Error:
                    continue
            self._stop_event.wait(0.05)

    def stop(self) -> list[int] | None:
        self._stop_event.set()
        self.join(timeout=5)
        return self.affinity


def _own_cpu() -> float:
    """CPU seconds of this program itself (sampling, reaping), its children left out."""
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def _measure(
    args: argparse.Namespace, workdir: Path, others: set[int]
) -> tuple[dict[str, Any], Analysis, Verdict]:
    servers = TenantServers(workdir, args.servers, args.tenants)
    try:
        folder = workdir / "run"
        run_id = f"tenants-{args.tenants}-{secrets.token_hex(4)}"
        tenants_file = workdir / "tenants.json"
        tenants_file.write_text(json.dumps({"tenants": servers.entries}))
        load = LoadRun(
            tenants_file,
            folder,
            run_id,
            users=args.tenants,
            rate=args.rate,
            duration=args.seconds,
            extra_args=["--metrics-port", "-1"],
        )
        argv = load.command()
        argv[argv.index("-f") + 1] = str(project_root() / args.locustfile)
        folder.mkdir()
        print(
            f"bench: {args.tenants} tenants ready on {args.servers} servers; load for {args.seconds} s ...",
            file=sys.stderr,
            flush=True,
        )
        server_before, machine_before, own_before = servers.tree_cpu(), user_space_cpu(), _own_cpu()
        began = time.monotonic()
        watch = _AffinityWatch()
        watch.start()
        try:
            done = run_measured(
                ["taskset", "-c", str(args.core), *argv],
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                cwd=project_root(),
                log=folder / "locust.log",
                timeout=args.seconds + 90,
                sample=True,
            )
        finally:
            affinity = watch.stop()
        wall = time.monotonic() - began
        busy = user_space_cpu() - machine_before - (_own_cpu() - own_before)
        server_cpu = servers.tree_cpu() - server_before
        if done.returncode != 0:
            raise BenchError(f"locust exited with {done.returncode}:\n{tail(folder / 'locust.log')}")
        writes, _clocks = read_journal(folder / "journal")
        names = [str(e["name"]) for e in servers.entries]
        analysis = analyze(writes, names, args.rate)
        rows = check_rows(writes, servers.rows(run_id))
    finally:
        servers.close()
    acked = max(1, analysis.outcomes["ok"])
    cpu = cpu_over_window(done.samples, analysis.window)
    cores = None if cpu is None else cpu[0]
    per_ack = None
    if cpu is not None:
        acks = sum(1 for w in writes if w.outcome == "ok" and cpu[2] < w.end <= cpu[3])
        per_ack = cpu[1] / acks * 1e6 if acks else None
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": {
            k: getattr(args, k) for k in ("tenants", "rate", "seconds", "servers", "core", "locustfile")
        },
        "run_id": run_id,
        "command": ["taskset", "-c", str(args.core), *argv],
        "load": {
            "cores": cores,
            "cpu_us_per_ack": per_ack,
            "saturated": cores is not None and cores > SATURATED,
            "affinity": affinity,
            "cpu_seconds_total": done.cpu,
            "cpu_us_per_ack_total": done.cpu / acked * 1e6,
        },
        "servers": {
            "cpus": ",".join(map(str, sorted(others))),
            "ncpus": len(others),
            "cores": server_cpu / wall,
            "cpu_us_per_write": server_cpu / acked * 1e6,
        },
        "rows": rows,
        "other_cores": max(0.0, busy - done.cpu - server_cpu) / wall,
    }
    verdict = judge(
        analysis.rates,
        analysis.pacing,
        missing_acked=rows["missing_acked"],
        load_cores=cores,
        affinity=affinity,
        core=args.core,
    )
    return result, analysis, verdict


def _machine() -> dict[str, str]:
    """What the numbers depend on: CPU, memory, kernel, server and client versions."""
    postgres = subprocess.run(
        [str(pg_bindir() / "postgres"), "--version"], capture_output=True, text=True, check=False
    )
    return machine_facts({"postgresql": postgres.stdout.strip() or "?"})


def _stop_on_sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.bench_tenants",
        description="How many tenants one pinned load core paces on time.",
    )
    parser.add_argument(
        "--tenants", type=int, default=GOAL_TENANTS, help="tenants, one user each (default 200)"
    )
    parser.add_argument("--rate", type=float, default=GOAL_RATE, help="writes/s per tenant (default 20)")
    parser.add_argument("--seconds", type=int, default=30, help="length of the load (default 30)")
    parser.add_argument("--servers", type=int, default=4, help="PostgreSQL servers (default 4)")
    parser.add_argument("--core", type=int, default=1, help="CPU the load process is pinned to (default 1)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON to this file")
    parser.add_argument(
        "--locustfile",
        default="loadgen/locustfile.py",
        help="locustfile to run, relative to the project root",
    )
    args = parser.parse_args(argv)
    allowed = os.sched_getaffinity(0)
    if args.tenants < 1 or args.servers < 1 or args.servers > args.tenants:
        parser.error("--tenants and --servers must be at least 1, and --servers at most --tenants")
    if args.rate <= 0 or args.seconds < 8:
        parser.error("--rate must be positive (paced load) and --seconds at least 8 (ramp + steady window)")
    if args.core not in allowed:
        parser.error(f"--core {args.core} is not a CPU this program may use: pick one of {sorted(allowed)}")
    if not (project_root() / args.locustfile).is_file():
        parser.error(
            f"--locustfile {args.locustfile} not found under {project_root()}: pass a path from there"
        )
    if shutil.which("taskset") is None:
        parser.error("taskset not found: apt-get install util-linux")
    others = (allowed - {args.core}) or allowed
    if others == allowed:
        print("bench: only one CPU: the servers share the load's core", file=sys.stderr)

    before = user_space_cpu()
    time.sleep(1.0)
    busy = user_space_cpu() - before
    if busy > DISTURBED:
        print(
            f"bench: {busy:.2f} cores busy with other work before starting: expect disturbed numbers",
            file=sys.stderr,
        )
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    workdir = Path(tempfile.mkdtemp(prefix="bench-tenants-"))
    workdir.chmod(0o755)  # the servers run as another user and must reach their data folders
    try:
        os.sched_setaffinity(0, others)  # the servers started from here inherit it
        result, analysis, verdict = _measure(args, workdir, others)
    except (BenchError, LabError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; everything started was stopped", file=sys.stderr)
        return 130
    finally:
        os.sched_setaffinity(0, allowed)
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(workdir, ignore_errors=True)
    result.update(
        {
            "busy_before": busy,
            "machine": _machine(),
            "window": {"start": analysis.window[0], "end": analysis.window[1], "ramp_seconds": analysis.ramp},
            "rates": asdict(analysis.rates),
            "pacing": asdict(analysis.pacing),
            "outcomes": analysis.outcomes,
            "window_outcomes": analysis.window_outcomes,
            "errors": analysis.errors,
            "per_tenant": [asdict(t) for t in analysis.per_tenant],
            "verdict": asdict(verdict),
        }
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(format_report(result, analysis, verdict))
    return 0


if __name__ == "__main__":
    sys.exit(main())
