"""Harness write throughput against pgbench: same server, same connections, same INSERT.

``make bench`` runs, from the project root::

    .venv/bin/python -m tests.benchmarks.bench_throughput [--seconds 15] [--clients 1,8] [--repeat 2]
        [--bare] [--out FILE] [--locustfile FILE]

It starts one local PostgreSQL server (:class:`lab.engine.Engine`, default durability:
``fsync`` and ``synchronous_commit`` on) under a temporary folder and, for each client
count C, runs for S seconds each:

- pgbench with C connections (``-n -c C -j C -M extended``) and a script that issues the
  harness's own single-row autocommit ``INSERT ... RETURNING`` (four bound parameters,
  like psqlODBC sends them) into the harness's own table;
- the harness itself, as the real Locust CLI: C users writing as fast as they can
  (``--write-rate 0``) to one tenant, each on its own connection;
- with ``--bare``, the bare probe (:mod:`tests.benchmarks.bare_probe`): C plain OS threads,
  each with its own pyodbc connection and reused cursor, writing the same INSERT as fast
  as they can and journaling every ack in the harness's format, with no pacing, no
  deadlines, no metrics and no Locust: the floor of a Python/pyodbc client here.

Which one goes first alternates (ABBA over ``--repeat`` rounds; ABCCBA with ``--bare``) to
cancel warm-up drift; the table is truncated and checkpointed before every run, and every
run uses its own ``run_id``, so keys never collide. The program prints every run, a
summary table (pgbench tx/s, harness acks/s, their ratio, CPU per write of each client and
of the server; with ``--bare`` also bare acks/s, bare/pgbench, bare CPU per ack and
harness/bare) and the machine; ``--out FILE`` also writes all of it as JSON.
``--locustfile`` runs a variant of the harness's locustfile instead, to measure a change
before making it. Results and their analysis live in ``docs/BENCHMARKS.md``.

The machine must be otherwise idle: CPU used by other processes during a run (kernel
threads and interrupts left out) is measured, and runs it disturbed are flagged.

How things are counted (:mod:`tests.benchmarks.throughput_analysis`):

- pgbench tx/s is pgbench's own ``tps`` (initial connection time excluded);
- harness (and bare) acks/s counts ``ok`` journal records in the window where all C
  writers were being acknowledged (last writer's first ack to first writer's last ack), so
  start-up and Locust's spawn ramp are left out;
- harness (and bare) CPU/ack is the client process's CPU (user + system, all threads) over
  that window, from samples every 0.2 s; the whole-process figure, start-up included, is
  in the JSON as ``client_cpu_total_us``;
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
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import psutil

from lab.engine import Engine, Instance
from lab.errors import LabError
from lab.paths import pg_bindir, project_root, server_user
from loadgen.dialects import TABLE, dialect
from loadgen.journal import read_journal
from tests.benchmarks.measure import (
    BenchError,
    Exit,
    machine_facts,
    run_measured,
    tail,
    tree_cpu,
    user_space_cpu,
)
from tests.benchmarks.throughput_analysis import (
    RunResult,
    Summary,
    client_counts,
    format_report,
    harness_window,
    journal_result,
    parse_pgbench,
    results_document,
    schedule,
    summarize,
)

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

_BUSY_START = 0.1  # cores busy with other work before the start above which it warns
_TENANT = "bench"
_PGBENCH_SCRIPT = (
    "\\set seq :seq + 1\n"
    f"INSERT INTO {TABLE} (run_id, tenant, writer, seq) VALUES (:run_id, :tenant, :client_id, :seq) "
    "RETURNING extract(epoch FROM written_at)::float8;\n"
)


class ThroughputBench:
    """One PostgreSQL server under ``workdir`` and the client programs that load it.

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
        """Stop the server."""
        self.engine.close()

    # -- SQL as the superuser, over the server's Unix socket -----------------------------

    def psql(self, *statements: str) -> str:
        """Run statements in one superuser session; returns unaligned output."""
        argv = [str(self._bindir / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"]
        argv += ["-h", str(self.inst.socket_dir), "-p", str(self.inst.port), "-U", "postgres"]
        argv += ["-d", self.database]
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
        """Rows ``run_id`` left in the table."""
        return int(self.psql(f"SELECT count(*) FROM {TABLE} WHERE run_id = '{run_id}'"))

    def _server_cpu(self) -> float:
        pid = self.engine.pid(_TENANT)
        if pid is None:
            raise BenchError(f"the PostgreSQL server stopped: see {self.inst.log_file}")
        time.sleep(0.2)  # let exited backends be reaped by the postmaster
        return tree_cpu(pid)

    # -- the clients -------------------------------------------------------------------

    def run(self, tool: str, clients: int, round_: int) -> RunResult:
        """Reset the table, then run ``tool`` (``pgbench``, ``harness`` or ``bare``) once."""
        clients_of = {"pgbench": self._pgbench, "harness": self._harness, "bare": self._bare}
        if tool not in clients_of:
            raise BenchError(f"unknown tool {tool!r}: use one of {', '.join(clients_of)}")
        self.reset()
        run_id = f"{tool}-c{clients}-r{round_}-{secrets.token_hex(4)}"
        folder = self.workdir / run_id
        folder.mkdir()
        before = self._server_cpu()
        machine_before = user_space_cpu()
        steal_before = getattr(psutil.cpu_times(), "steal", 0.0)
        began = time.monotonic()
        result = clients_of[tool](clients, round_, run_id, folder)
        wall = time.monotonic() - began
        busy = user_space_cpu() - machine_before
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
        argv = [str(self._bindir / "pgbench"), "-n", "-c", str(clients), "-j", str(clients)]
        argv += ["-T", str(self.seconds), "-M", "extended", "-f", str(script)]
        argv += ["-D", f"run_id={run_id}", "-D", f"tenant={_TENANT}", "-D", "seq=0"]
        argv += ["-h", "127.0.0.1", "-p", str(self.inst.port), "-U", self.user, self.database]
        log = folder / "pgbench.log"
        done = run_measured(
            argv, env=self._pg_env, cwd=folder, log=log, timeout=self.seconds + 60, sample=False
        )
        output = log.read_text(errors="replace")
        if done.returncode != 0:
            raise BenchError(f"pgbench exited with {done.returncode}:\n{tail(log)}")
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

    def _tenants_file(self, folder: Path) -> Path:
        tenants = folder / "tenants.json"
        tenants.write_text(json.dumps({"tenants": [self.inst.tenant()]}))
        return tenants

    def _harness(self, clients: int, round_: int, run_id: str, folder: Path) -> RunResult:
        locust = Path(sys.prefix) / "bin" / "locust"
        argv = [str(locust), "-f", self.locustfile, "--headless", "-u", str(clients), "-r", str(clients)]
        argv += ["-t", f"{self.seconds}s", "--tenants-file", str(self._tenants_file(folder))]
        argv += ["--run-dir", str(folder), "--run-id", run_id, "--write-rate", "0", "--metrics-port", "-1"]
        log = folder / "locust.log"
        done = run_measured(
            argv, env=self._env, cwd=project_root(), log=log, timeout=self.seconds + 60, sample=True
        )
        if done.returncode not in (0, 1):  # 1: Locust saw failed requests; the journal tells
            raise BenchError(f"locust exited with {done.returncode}:\n{tail(log)}")
        return self._counted("harness", clients, round_, run_id, folder, done, log)

    def _bare(self, clients: int, round_: int, run_id: str, folder: Path) -> RunResult:
        argv = [sys.executable, "-m", "tests.benchmarks.bare_probe"]
        argv += ["--tenants-file", str(self._tenants_file(folder)), "--clients", str(clients)]
        argv += ["--seconds", str(self.seconds), "--run-id", run_id, "--journal-dir", str(folder / "journal")]
        log = folder / "bare.log"
        done = run_measured(
            argv, env=self._env, cwd=project_root(), log=log, timeout=self.seconds + 60, sample=True
        )
        if done.returncode != 0:
            raise BenchError(f"the bare probe exited with {done.returncode}:\n{tail(log)}")
        return self._counted("bare", clients, round_, run_id, folder, done, log)

    @staticmethod
    def _counted(
        tool: str, clients: int, round_: int, run_id: str, folder: Path, done: Exit, log: Path
    ) -> RunResult:
        """A journal tool's run, counted from ``folder/journal`` and its CPU samples."""
        writes, _clocks = read_journal(folder / "journal")
        return journal_result(
            tool, clients, round_, run_id, writes, done.samples, done.cpu, see=f"{log}\n{tail(log)}"
        )

    # -- the machine ---------------------------------------------------------------------

    def machine(self) -> dict[str, str]:
        """What the numbers depend on: CPUs, memory, kernel, server and client versions."""
        odbc = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "odbc-postgresql"],
            capture_output=True,
            text=True,
            check=False,
        )
        pgbench = subprocess.run(
            [str(self._bindir / "pgbench"), "--version"], capture_output=True, text=True, check=False
        )
        durability = (
            f"fsync={self.psql('SHOW fsync')}, synchronous_commit={self.psql('SHOW synchronous_commit')}"
        )
        return machine_facts(
            {
                "postgresql": self.psql("SHOW server_version"),
                "pgbench": pgbench.stdout.strip() or "?",
                "durability": durability,
                "psqlodbc": odbc.stdout.strip() or "?",
            }
        )


# -- command line -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.bench_throughput",
        description="Harness write throughput against pgbench on the same server and connections.",
    )
    parser.add_argument("--seconds", type=int, default=15, help="length of each run (default 15)")
    parser.add_argument(
        "--clients",
        type=client_counts,
        default=[1, 8],
        help="connection counts, comma-separated (default 1,8)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="rounds per client count, order alternating ABBA, ABCCBA with --bare (default 2)",
    )
    parser.add_argument(
        "--bare",
        action="store_true",
        help="also run the bare probe (plain threads + pyodbc, no Locust): the floor of a Python client",
    )
    parser.add_argument("--out", type=Path, help="also write the results as JSON to this file")
    parser.add_argument(
        "--locustfile",
        default="loadgen/locustfile.py",
        help="locustfile the harness runs, relative to the project root (to measure a variant)",
    )
    return parser


def _write_json(path: Path, args: argparse.Namespace, machine: dict[str, str], runs: list[RunResult]) -> None:
    settings = {k: getattr(args, k) for k in ("seconds", "clients", "repeat")}
    settings.update(pgbench_protocol="extended", harness_write_rate=0, locustfile=args.locustfile)
    settings["bare"] = args.bare
    document = results_document(settings, machine, runs, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every run was measured, 1 when one could not be."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.seconds < 3 or args.repeat < 1:
        parser.error("--seconds must be at least 3 and --repeat at least 1")

    before = user_space_cpu()
    time.sleep(1.0)
    busy = user_space_cpu() - before
    if busy > _BUSY_START:
        print(
            f"bench: {busy:.2f} cores busy with other work before starting: expect disturbed numbers "
            "(the report flags disturbed runs)",
            file=sys.stderr,
        )
    tools = ("pgbench", "harness", "bare") if args.bare else ("pgbench", "harness")
    workdir = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    workdir.chmod(0o755)  # the server runs as another user and must reach its data folder
    runs: list[RunResult] = []
    try:
        with ThroughputBench(workdir, args.seconds, args.locustfile) as bench:
            order = schedule(args.clients, args.repeat, tools)
            for step, (clients, round_, tool) in enumerate(order, 1):
                print(
                    f"[{step}/{len(order)}] {tool} with {clients} connection(s), {args.seconds} s ...",
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

    if args.out:
        _write_json(args.out, args, machine, runs)
    print(format_report(runs, summarize(runs), machine, args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
