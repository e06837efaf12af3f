"""Harness write throughput against pgbench: same server, same connections, same INSERT.

``make bench`` runs, from the project root::

    .venv/bin/python -m tests.benchmarks.bench_throughput [--seconds 15] [--clients 1,8] [--repeat 2]
        [--out FILE] [--locustfile FILE]

It starts one local PostgreSQL server (:class:`lab.engine.Engine`, default durability:
``fsync`` and ``synchronous_commit`` on) under a temporary folder and, for each client
count C, runs for S seconds each:

- pgbench with C connections (``-n -c C -j C -M extended``) and a script that issues the
  harness's own single-row autocommit ``INSERT ... RETURNING`` (four bound parameters,
  like psqlODBC sends them) into the harness's own table;
- the harness itself, as the real Locust CLI: C users writing as fast as they can
  (``--write-rate 0``) to one tenant, each on its own connection.

Which one goes first alternates (ABBA over ``--repeat`` rounds) to cancel warm-up drift;
the table is truncated and checkpointed before every run, and every run uses its own
``run_id``, so keys never collide. The program prints every run, a summary table
(pgbench tx/s, harness acks/s, their ratio, CPU per write of each client and of the
server) and the machine; ``--out FILE`` also writes all of it as JSON. ``--locustfile``
runs a variant of the harness's locustfile instead, to measure a change before making it.
Results and their analysis live in ``docs/BENCHMARKS.md``.

The machine must be otherwise idle: CPU used by other processes during a run (kernel
threads and interrupts left out) is measured, and runs it disturbed are flagged.

How things are counted:

- pgbench tx/s is pgbench's own ``tps`` (initial connection time excluded);
- harness acks/s counts ``ok`` journal records in the window where all C writers were
  being acknowledged (last writer's first ack to first writer's last ack), so Locust's
  start-up and spawn ramp are left out;
- harness CPU/ack is the Locust process's CPU (user + system, all threads) over that
  window, from samples every 0.2 s; the whole-process figure, start-up included, is in
  the JSON as ``client_cpu_total_us``;
- pgbench CPU/tx is pgbench's whole rusage divided by its transactions;
- server CPU/write is the postmaster tree's CPU (exited backends included) over the run.

Every count is checked against the rows the run left in the table; a mismatch is
reported. Everything started here is stopped and the temporary folder removed on exit.
The server password reaches pgbench through its environment only and is never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import psutil

from lab.engine import Engine, Instance
from lab.errors import LabError
from lab.paths import pg_bindir, project_root, server_user
from loadgen.dialects import TABLE, dialect
from loadgen.journal import read_journal

__all__ = [
    "BenchError",
    "RunResult",
    "Summary",
    "ThroughputBench",
    "format_report",
    "harness_window",
    "main",
    "parse_pgbench",
    "summarize",
]

GOAL_RATIO = 0.7
GOAL_CLIENTS = 8
_SAMPLE_EVERY = 0.2
_DISTURBED = 0.1  # cores used by other processes during a run before the report warns
_BUSY_START = 0.1  # cores busy with other work before the start above which it warns
_TENANT = "bench"
_PGBENCH_SCRIPT = (
    "\\set seq :seq + 1\n"
    f"INSERT INTO {TABLE} (run_id, tenant, writer, seq) VALUES (:run_id, :tenant, :client_id, :seq) "
    "RETURNING extract(epoch FROM written_at)::float8;\n"
)


class BenchError(Exception):
    """The benchmark could not measure something; the message says what and where to look."""


@dataclass(frozen=True)
class RunResult:
    """One timed run of one client program."""

    tool: str
    clients: int
    round: int
    run_id: str
    rate: float
    """Writes per second: pgbench's tps, or harness acks/s in the all-writers window."""
    window: float
    """Seconds the rate is measured over."""
    writes: int
    """Acknowledged writes counted in that window."""
    acked: int
    """All acknowledged writes of the run."""
    failed: int
    """Harness ``fail`` + ``info`` attempts; pgbench failed transactions."""
    rows: int
    """Rows the run left in the table."""
    latency_ms: float
    """Mean latency of acknowledged writes as the client measured it."""
    client_cpu_us: float
    """Client CPU per acknowledged write (harness: steady-state window)."""
    client_cpu_total_us: float
    """Client CPU of the whole process, start-up included, per acknowledged write."""
    server_cpu_us: float
    """PostgreSQL CPU (all its processes) per acknowledged write, over the whole run."""
    other_cores: float = 0.0
    """CPU used by anything else on the machine during the run, in cores (0 = undisturbed)."""
    steal_cores: float = 0.0
    """CPU the hypervisor took from this machine during the run, in cores."""


@dataclass(frozen=True)
class Summary:
    """Both programs at one client count, averaged over rounds."""

    clients: int
    pgbench_tps: float
    harness_acks: float
    ratio: float
    harness_cpu_us: float
    pgbench_cpu_us: float
    server_cpu_us_pgbench: float
    server_cpu_us_harness: float
    harness_latency_ms: float
    pgbench_latency_ms: float
    ratios: list[float] = field(default_factory=list)
    """harness/pgbench of each round."""


# -- pure helpers (no processes) ----------------------------------------------------------


def parse_pgbench(output: str) -> dict[str, float]:
    """``tps``, ``transactions``, ``failed`` and ``latency_ms`` from pgbench's report."""
    found: dict[str, float] = {}
    patterns = {
        "transactions": r"number of transactions actually processed: (\d+)",
        "failed": r"number of failed transactions: (\d+)",
        "latency_ms": r"latency average = ([\d.]+) ms",
        "tps": r"tps = ([\d.]+) \(without initial connection time\)",
    }
    for key, pattern in patterns.items():
        match = re.search(pattern, output)
        if match:
            found[key] = float(match.group(1))
    if "tps" not in found or "transactions" not in found:
        raise BenchError(f"pgbench printed no tps; its output ends with: {output.strip()[-400:]!r}")
    found.setdefault("failed", 0.0)
    return found


def harness_window(ack_ends: dict[int, list[float]]) -> tuple[float, float, int]:
    """``(start, end, acks)``: the span in which every writer was being acknowledged.

    ``ack_ends`` maps each writer to the end times of its acknowledged writes. The span
    runs from the last writer's first ack to the first writer's last ack; ``acks``
    counts the acknowledgements strictly after its start and up to its end, so with one
    writer it is the usual "acks between the first and the last one".
    """
    lists = [sorted(ends) for ends in ack_ends.values() if ends]
    if not lists or len(lists) < len(ack_ends):
        raise BenchError("a writer had no acknowledged write: see the Locust log of the run")
    start = max(ends[0] for ends in lists)
    end = min(ends[-1] for ends in lists)
    if end <= start:
        raise BenchError("the writers were never all acknowledged at the same time: run longer (--seconds)")
    acks = sum(1 for ends in lists for t in ends if start < t <= end)
    return start, end, acks


def _cpu_in_window(
    samples: list[tuple[float, float]], ends: list[float], start: float, end: float
) -> float | None:
    """CPU microseconds per ack between the first and last CPU sample inside [start, end]."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2:
        return None
    (t0, cpu0), (t1, cpu1) = inside[0], inside[-1]
    acks = sum(1 for t in ends if t0 < t <= t1)
    return (cpu1 - cpu0) / acks * 1e6 if acks else None


def summarize(runs: list[RunResult]) -> list[Summary]:
    """One :class:`Summary` per client count, in the order the counts were first run."""

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else float("nan")

    rows: list[Summary] = []
    for clients in dict.fromkeys(r.clients for r in runs):
        pg = [r for r in runs if r.clients == clients and r.tool == "pgbench"]
        hx = [r for r in runs if r.clients == clients and r.tool == "harness"]
        pg_tps = mean([r.rate for r in pg])
        hx_acks = mean([r.rate for r in hx])
        by_round = {r.round: r.rate for r in pg}
        rows.append(
            Summary(
                clients=clients,
                pgbench_tps=pg_tps,
                harness_acks=hx_acks,
                ratio=hx_acks / pg_tps if pg_tps else float("nan"),
                harness_cpu_us=mean([r.client_cpu_us for r in hx]),
                pgbench_cpu_us=mean([r.client_cpu_us for r in pg]),
                server_cpu_us_pgbench=mean([r.server_cpu_us for r in pg]),
                server_cpu_us_harness=mean([r.server_cpu_us for r in hx]),
                harness_latency_ms=mean([r.latency_ms for r in hx]),
                pgbench_latency_ms=mean([r.latency_ms for r in pg]),
                ratios=[r.rate / by_round[r.round] for r in hx if by_round.get(r.round)],
            )
        )
    return rows


def format_report(
    runs: list[RunResult], summary: list[Summary], machine: dict[str, str], seconds: int
) -> str:
    """The text ``main`` prints: every run, the summary table, the goal, the machine."""
    lines = [f"runs ({seconds} s each, in the order they ran):"]
    lines.append(
        f"{'clients':>7} {'round':>5}  {'tool':<8} {'writes/s':>9} {'latency ms':>10} "
        f"{'client CPU us/w':>15} {'server CPU us/w':>15} {'acked':>7} {'failed':>6} {'rows':>7} "
        f"{'other cores':>11}"
    )
    for r in runs:
        lines.append(
            f"{r.clients:>7} {r.round:>5}  {r.tool:<8} {r.rate:>9.1f} {r.latency_ms:>10.2f} "
            f"{r.client_cpu_us:>15.0f} {r.server_cpu_us:>15.0f} {r.acked:>7} {r.failed:>6} {r.rows:>7} "
            f"{r.other_cores:>11.2f}"
        )
    lines += ["", "summary (mean over rounds):"]
    lines.append(
        f"{'clients':>7} {'pgbench tx/s':>12} {'harness acks/s':>14} {'ratio':>6} {'ratio by round':>15} "
        f"{'harness CPU us/ack':>18} {'pgbench CPU us/tx':>17} {'server CPU us/w pgbench/harness':>31}"
    )
    for s in summary:
        by_round = "/".join(f"{x:.2f}" for x in s.ratios)
        server = f"{s.server_cpu_us_pgbench:.0f}/{s.server_cpu_us_harness:.0f}"
        lines.append(
            f"{s.clients:>7} {s.pgbench_tps:>12.1f} {s.harness_acks:>14.1f} {s.ratio:>6.2f} {by_round:>15} "
            f"{s.harness_cpu_us:>18.0f} {s.pgbench_cpu_us:>17.0f} {server:>31}"
        )
    goal = [s for s in summary if s.clients == GOAL_CLIENTS]
    if goal:
        verdict = "met" if goal[0].ratio >= GOAL_RATIO else "NOT met"
        ratio = goal[0].ratio
        lines.append(
            f"goal: harness/pgbench >= {GOAL_RATIO} at {GOAL_CLIENTS} clients: {verdict} ({ratio:.2f})"
        )
    mismatched = [r for r in runs if (r.rows != r.acked if r.tool == "pgbench" else r.rows < r.acked)]
    for r in mismatched:
        lines.append(f"WARNING: {r.tool} run {r.run_id} acknowledged {r.acked} writes but left {r.rows} rows")
    for r in runs:
        if r.other_cores > _DISTURBED or r.steal_cores > _DISTURBED:
            lines.append(
                f"WARNING: during {r.run_id} other processes used {r.other_cores:.2f} cores and the "
                f"hypervisor stole {r.steal_cores:.2f}: that run's numbers are disturbed"
            )
    lines += ["", "machine:"]
    lines += [f"  {key}: {value}" for key, value in machine.items()]
    return "\n".join(lines)


# -- processes ------------------------------------------------------------------------------


@dataclass
class _Exit:
    returncode: int
    cpu: float
    """User + system seconds of the process (and any children it reaped)."""
    samples: list[tuple[float, float]]
    """(wall-clock time, CPU seconds so far) every ``_SAMPLE_EVERY`` seconds."""


def _run_measured(
    argv: list[str], *, env: dict[str, str], cwd: Path, log: Path, timeout: float, sample: bool
) -> _Exit:
    """Run ``argv`` to completion, output to ``log``; its exact CPU comes from ``wait4``."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd
        )
    samples: list[tuple[float, float]] = []
    watched = psutil.Process(proc.pid)
    deadline = time.monotonic() + timeout
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{Path(argv[0]).name} still running after {timeout:.0f}s: see {log}")
            if sample:
                try:
                    times = watched.cpu_times()
                    samples.append((time.time(), times.user + times.system))
                except psutil.Error:
                    pass
            time.sleep(_SAMPLE_EVERY)
    except BaseException:
        proc.kill()
        os.wait4(proc.pid, 0)
        proc.returncode = -9
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    return _Exit(proc.returncode, usage.ru_utime + usage.ru_stime, samples)


def _tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid``, its live descendants and the children it has reaped."""
    root = psutil.Process(pid)
    times = root.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in root.children(recursive=True):
        try:
            ct = child.cpu_times()
            total += ct.user + ct.system
        except psutil.Error:
            continue
    return float(total)


def _user_space_cpu() -> float:
    """Machine-wide CPU seconds of processes, kernel threads (I/O flushing) left out.

    Interrupt time (loopback networking) is not counted either: both are part of the
    work being measured, not interference.
    """
    times = psutil.cpu_times()
    total = times.user + times.nice + times.system
    for proc in psutil.process_iter(["pid", "ppid"]):
        if proc.info["pid"] == 2 or proc.info["ppid"] == 2:
            try:
                kt = proc.cpu_times()
                total -= kt.user + kt.system
            except psutil.Error:
                continue
    return float(total)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class ThroughputBench:
    """One PostgreSQL server under ``workdir`` and the two client programs that load it.

    Call :meth:`close` (or use ``with``) to stop the server; ``workdir`` is the caller's.
    """

    def __init__(self, workdir: Path, seconds: int, locustfile: str = "loadgen/locustfile.py") -> None:
        self.workdir = workdir
        self.seconds = seconds
        self.locustfile = locustfile
        self.engine = Engine(workdir / "engine")
        try:
            self.inst: Instance = self.engine.create(_TENANT)
            entry = self.inst.tenant()
            self.user = str(entry["user"])
            self.database = str(entry["database"])
            self._env = dict(os.environ)
            self._pg_env = {**self._env, "PGPASSWORD": self.inst.password_file.read_text().strip()}
            self._bindir = pg_bindir()
            self.psql(f"SET ROLE {self.user}", dialect("postgresql").create_table)
        except BaseException:
            self.engine.close()
            raise

    def __enter__(self) -> ThroughputBench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.close()

    # -- SQL as the superuser, over the server's Unix socket -----------------------------

    def psql(self, *statements: str) -> str:
        """Run statements in one superuser session; returns unaligned output."""
        argv = [
            str(self._bindir / "psql"),
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.inst.socket_dir),
            "-p",
            str(self.inst.port),
            "-U",
            "postgres",
            "-d",
            self.database,
        ]
        for sql in statements:
            argv += ["-c", sql]
        user = server_user()
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
            user=user,
            group=user,
            extra_groups=[] if user else None,
        )
        if proc.returncode != 0:
            raise BenchError(f"psql failed: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def reset(self) -> None:
        """Empty the table and checkpoint, so every run starts from the same state."""
        self.psql(f"TRUNCATE {TABLE}", "CHECKPOINT")

    def rows(self, run_id: str) -> int:
        return int(self.psql(f"SELECT count(*) FROM {TABLE} WHERE run_id = '{run_id}'"))

    def _server_cpu(self) -> float:
        pid = self.engine.pid(_TENANT)
        if pid is None:
            raise BenchError(f"the PostgreSQL server stopped: see {self.inst.log_file}")
        time.sleep(0.2)  # let exited backends be reaped by the postmaster
        return _tree_cpu(pid)

    # -- the two clients ---------------------------------------------------------------

    def run(self, tool: str, clients: int, round_: int) -> RunResult:
        """Reset the table, then run ``tool`` (``pgbench`` or ``harness``) once."""
        self.reset()
        run_id = f"{tool}-c{clients}-r{round_}-{secrets.token_hex(4)}"
        folder = self.workdir / run_id
        folder.mkdir()
        before = self._server_cpu()
        machine_before = _user_space_cpu()
        steal_before = getattr(psutil.cpu_times(), "steal", 0.0)
        began = time.monotonic()
        if tool == "pgbench":
            result = self._pgbench(clients, round_, run_id, folder)
        elif tool == "harness":
            result = self._harness(clients, round_, run_id, folder)
        else:
            raise BenchError(f"unknown tool {tool!r}")
        wall = time.monotonic() - began
        busy = _user_space_cpu() - machine_before
        steal = getattr(psutil.cpu_times(), "steal", 0.0) - steal_before
        server = self._server_cpu() - before
        client = result.client_cpu_total_us * result.acked / 1e6
        return replace(
            result,
            rows=self.rows(run_id),
            server_cpu_us=server / result.acked * 1e6 if result.acked else 0.0,
            other_cores=max(0.0, busy - client - server) / wall,
            steal_cores=steal / wall,
        )

    def _pgbench(self, clients: int, round_: int, run_id: str, folder: Path) -> RunResult:
        script = folder / "insert.sql"
        script.write_text(_PGBENCH_SCRIPT)
        argv = [
            str(self._bindir / "pgbench"),
            "-n",
            "-c",
            str(clients),
            "-j",
            str(clients),
            "-T",
            str(self.seconds),
            "-M",
            "extended",
            "-f",
            str(script),
            "-D",
            f"run_id={run_id}",
            "-D",
            f"tenant={_TENANT}",
            "-D",
            "seq=0",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.inst.port),
            "-U",
            self.user,
            self.database,
        ]
        log = folder / "pgbench.log"
        done = _run_measured(
            argv, env=self._pg_env, cwd=folder, log=log, timeout=self.seconds + 60, sample=False
        )
        output = log.read_text(errors="replace")
        if done.returncode != 0:
            raise BenchError(f"pgbench exited with {done.returncode}:\n{_tail(log)}")
        stats = parse_pgbench(output)
        acked = int(stats["transactions"])
        cpu = done.cpu / acked * 1e6 if acked else 0.0
        return RunResult(
            tool="pgbench",
            clients=clients,
            round=round_,
            run_id=run_id,
            rate=stats["tps"],
            window=float(self.seconds),
            writes=acked,
            acked=acked,
            failed=int(stats["failed"]),
            rows=0,
            latency_ms=stats.get("latency_ms", float("nan")),
            client_cpu_us=cpu,
            client_cpu_total_us=cpu,
            server_cpu_us=0.0,
        )

    def _harness(self, clients: int, round_: int, run_id: str, folder: Path) -> RunResult:
        tenants = folder / "tenants.json"
        tenants.write_text(json.dumps({"tenants": [self.inst.tenant()]}))
        locust = Path(sys.prefix) / "bin" / "locust"
        argv = [
            str(locust),
            "-f",
            self.locustfile,
            "--headless",
            "-u",
            str(clients),
            "-r",
            str(clients),
            "-t",
            f"{self.seconds}s",
            "--tenants-file",
            str(tenants),
            "--run-dir",
            str(folder),
            "--run-id",
            run_id,
            "--write-rate",
            "0",
            "--metrics-port",
            "-1",
        ]
        log = folder / "locust.log"
        done = _run_measured(
            argv, env=self._env, cwd=project_root(), log=log, timeout=self.seconds + 60, sample=True
        )
        if done.returncode not in (0, 1):  # 1: Locust saw failed requests; the journal tells
            raise BenchError(f"locust exited with {done.returncode}:\n{_tail(log)}")
        writes, _clocks = read_journal(folder / "journal")
        ok = [w for w in writes if w.outcome == "ok"]
        ack_ends: dict[int, list[float]] = {}
        for w in ok:
            ack_ends.setdefault(w.writer, []).append(w.end)
        if len(ack_ends) != clients:
            raise BenchError(
                f"{len(ack_ends)} of {clients} writers were acknowledged: see {log}\n{_tail(log)}"
            )
        start, end, acks = harness_window(ack_ends)
        all_ends = [w.end for w in ok]
        steady = _cpu_in_window(done.samples, all_ends, start, end)
        total = done.cpu / len(ok) * 1e6
        return RunResult(
            tool="harness",
            clients=clients,
            round=round_,
            run_id=run_id,
            rate=acks / (end - start),
            window=end - start,
            writes=acks,
            acked=len(ok),
            failed=len(writes) - len(ok),
            rows=0,
            latency_ms=sum(w.latency for w in ok) / len(ok) * 1000.0,
            client_cpu_us=steady if steady is not None else total,
            client_cpu_total_us=total,
            server_cpu_us=0.0,
        )

    # -- the machine ---------------------------------------------------------------------

    def machine(self) -> dict[str, str]:
        """What the numbers depend on: CPUs, memory, kernel, server and client versions."""
        model = "unknown"
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        versions: dict[str, str] = {}
        for package in ("locust", "gevent", "pyodbc", "psutil"):
            try:
                from importlib.metadata import version

                versions[package] = version(package)
            except Exception:  # best effort: a missing version is not an error
                versions[package] = "?"
        odbc = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "odbc-postgresql"],
            capture_output=True,
            text=True,
            check=False,
        )
        pgbench = subprocess.run(
            [str(self._bindir / "pgbench"), "--version"], capture_output=True, text=True, check=False
        )
        return {
            "nproc": str(len(os.sched_getaffinity(0))),
            "cpu": model,
            "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
            "kernel": f"{platform.system()} {platform.release()}",
            "postgresql": self.psql("SHOW server_version"),
            "pgbench": pgbench.stdout.strip() or "?",
            "durability": (
                f"fsync={self.psql('SHOW fsync')}, synchronous_commit={self.psql('SHOW synchronous_commit')}"
            ),
            "psqlodbc": odbc.stdout.strip() or "?",
            "python": platform.python_version(),
            "clients": ", ".join(f"{k} {v}" for k, v in versions.items()),
        }


# -- command line -----------------------------------------------------------------------------


def _schedule(clients: list[int], repeat: int) -> list[tuple[int, int, str]]:
    """``(clients, round, tool)`` in run order: ABBA, starting with pgbench for the first count."""
    order: list[tuple[int, int, str]] = []
    for i, count in enumerate(clients):
        for round_ in range(repeat):
            pair = ("pgbench", "harness") if (i + round_) % 2 == 0 else ("harness", "pgbench")
            order += [(count, round_, tool) for tool in pair]
    return order


def _client_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--clients wants numbers separated by commas, got {text!r}"
        ) from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"--clients wants positive numbers, got {text!r}")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.bench_throughput",
        description="Harness write throughput against pgbench on the same server and connections.",
    )
    parser.add_argument("--seconds", type=int, default=15, help="length of each run (default 15)")
    parser.add_argument(
        "--clients",
        type=_client_counts,
        default=[1, 8],
        help="connection counts, comma-separated (default 1,8)",
    )
    parser.add_argument(
        "--repeat", type=int, default=2, help="rounds per client count, order alternating ABBA (default 2)"
    )
    parser.add_argument("--out", type=Path, help="also write the results as JSON to this file")
    parser.add_argument(
        "--locustfile",
        default="loadgen/locustfile.py",
        help="locustfile the harness runs, relative to the project root (to measure a variant)",
    )
    args = parser.parse_args(argv)
    if args.seconds < 3 or args.repeat < 1:
        parser.error("--seconds must be at least 3 and --repeat at least 1")

    before = _user_space_cpu()
    time.sleep(1.0)
    busy = _user_space_cpu() - before
    if busy > _BUSY_START:
        print(
            f"bench: {busy:.2f} cores busy with other work before starting: expect disturbed numbers "
            "(the report flags disturbed runs)",
            file=sys.stderr,
        )
    workdir = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    workdir.chmod(0o755)  # the server runs as another user and must reach its data folder
    runs: list[RunResult] = []
    try:
        with ThroughputBench(workdir, args.seconds, args.locustfile) as bench:
            schedule = _schedule(args.clients, args.repeat)
            for step, (clients, round_, tool) in enumerate(schedule, 1):
                print(
                    f"[{step}/{len(schedule)}] {tool} with {clients} connection(s), {args.seconds} s ...",
                    file=sys.stderr,
                    flush=True,
                )
                runs.append(bench.run(tool, clients, round_))
            machine = {
                **bench.machine(),
                "busy before the runs": f"{busy:.2f} cores",
                "harness locustfile": args.locustfile,
            }
    except (BenchError, LabError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    summary = summarize(runs)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "settings": {
                        "seconds": args.seconds,
                        "clients": args.clients,
                        "repeat": args.repeat,
                        "pgbench_protocol": "extended",
                        "harness_write_rate": 0,
                        "locustfile": args.locustfile,
                    },
                    "machine": machine,
                    "runs": [asdict(r) for r in runs],
                    "summary": [asdict(s) for s in summary],
                },
                indent=2,
            )
            + "\n"
        )
    print(format_report(runs, summary, machine, args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
