"""Journal collection cost: the master's Collector against today's JournalWriter.

Run from the project root (``make bench`` runs it with the defaults)::

    .venv/bin/python -m tests.benchmarks.bench_collect [--records 200000] [--batch 200]
        [--rate 5000] [--seconds 10] [--skip-master] [--out FILE]

(a) **One core.** ``--records`` realistic journal lines (a ``JournalWriter`` line per
attempt, 50 tenants) are written by today's :class:`~loadgen.journal.JournalWriter`
(the peer: what a local load process does per record), then the same lines are taken
by one :class:`~loadgen.collector.Collector` in batches of ``--batch`` lines (what the
master does per record: validate, count, append with the marker in one ``os.write``).
Printed: records/s and CPU µs per record of each, and Collector / JournalWriter.

(b) **Through a real Locust master.** A Locust master process runs the harness's
locustfile with ``--load-workers 1`` on free loopback ports; this program plays one
worker over Locust's own zmq rpc (``client_ready``, heartbeats, ``harness_batch``,
waiting for ``harness_ack``): first paced, ``--rate`` records/s in batches every 0.2 s
(as a worker ships) for ``--seconds``, each record's ``end`` spread over the 0.2 s
before its batch left; then flat out (8 batches of 5000 lines in flight). Printed: the
records/s the master acknowledged, and from its file the delay from each record's
``end`` to its batch marker's ``at`` (p50, p99, max, nearest rank; most of it is the
worker's 0.2 s poll, so the p99 of the batch's own send -> marker time is printed too). The master is
stopped by its pid and the temporary folder removed on exit.

(c) **Real workers.** One local PostgreSQL server holds ``--tenants`` tenant databases;
a real Locust master and first 1, then 2 real workers (local processes on free loopback
ports, as the distributed tests start them) write to them with ``--write-rate 0`` (as
fast as possible). From the moment every worker is connected and running, for
``--seconds``: the ``ok`` records in the master's journal whose ``end`` falls in that
window per second, and the CPU seconds the workers, the master and the server used in
it. Printed: both rates, their ratio and the machine's core count. (c) runs before (b)
(which loads Locust into this process); every process is stopped by its pid.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from lab.engine import DATABASE, ROLE, Engine
from loadgen.collector import Collector
from loadgen.journal import JournalWriter, Write, read_journal
from loadgen.runner import LOCUSTFILE
from loadgen.shipping import Shipper
from tests.benchmarks.measure import machine_facts, tree_cpu

__all__ = ["main"]

WORKER = "bench-worker_0"


def _records(n: int, tenants: int = 50) -> list[Write]:
    base = time.time()
    return [
        Write(
            f"tenant-{i % tenants}",
            i % tenants,
            i // tenants,
            base + i * 1e-4,
            base + i * 1e-4 + 0.002,
            0.002,
            "ok",
            base + i * 1e-4 + 0.001,
            None,
            base + i * 1e-4,
        )
        for i in range(n)
    ]


def _timed(work: Any) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def one_core(folder: Path, n: int, batch: int) -> dict[str, float]:
    """(a): records/s and CPU per record of JournalWriter and of the Collector."""
    records = _records(n)
    journal = JournalWriter(folder / "spool", "bench")

    def write_all() -> None:
        for record in records:
            journal.write(record)

    jw_wall, jw_cpu = _timed(write_all)
    journal.close()
    shipper = Shipper(journal.path, max_lines=batch)
    batches = [b.message(WORKER, 0) for b in iter(lambda: shipper.poll(now=0.0), None)]
    collector = Collector(folder / "master")
    c_wall, c_cpu = _timed(lambda: [collector.receive(m) for m in batches])
    assert collector.status({0: [0]})["workers"][0]["records"] == n
    return {
        "journalwriter_records_per_s": n / jw_wall,
        "journalwriter_cpu_us": jw_cpu / n * 1e6,
        "collector_records_per_s": n / c_wall,
        "collector_cpu_us": c_cpu / n * 1e6,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _line(tenant: int, seq: int, end: float) -> str:
    return (
        f'{{"kind":"write","tenant":"tenant-{tenant}","writer":{tenant},"seq":{seq},"start":{end - 0.002!r},'
        f'"end":{end!r},"latency":0.002,"outcome":"ok","server_ts":{end - 0.001!r},"error":null,'
        f'"due":{end - 0.002!r}}}'
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")


def through_master(folder: Path, rate: float, seconds: float) -> dict[str, float]:
    """(b): a real master fed by one synthetic worker over Locust's rpc."""
    import gevent  # only this part needs Locust's patched world
    from locust import __version__
    from locust.rpc import Message, rpc

    port, web = _free_port(), _free_port()
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--master",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        str(port),
        "--web-host",
        "127.0.0.1",
        "--web-port",
        str(web),
        "--expect-workers",
        "1",
        "--load-workers",
        "1",
        "--tenant-count",
        "1",
        "--run-dir",
        str(folder / "master-run"),
        "--run-id",
        "bench",
    ]
    folder.mkdir(parents=True, exist_ok=True)
    log = (folder / "master.log").open("wb")
    master = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    acked: set[int] = set()
    sent_at: dict[int, float] = {}
    try:
        client = rpc.Client("127.0.0.1", port, WORKER)
        deadline = time.monotonic() + 30
        connected = False
        while not connected and time.monotonic() < deadline:
            client.send(Message("client_ready", __version__, WORKER))
            with gevent.Timeout(1, False):
                connected = client.recv().type == "ack"
        if not connected:
            raise SystemExit(f"the master did not answer within 30 s; see {folder / 'master.log'}")

        def receive() -> None:
            while True:
                msg = client.recv()
                if msg.type == "harness_ack":
                    acked.add(msg.data["batch"])

        def heartbeat() -> None:
            while True:
                client.send(
                    Message(
                        "heartbeat",
                        {"state": "ready", "current_cpu_usage": 0, "current_memory_usage": 0},
                        WORKER,
                    )
                )
                gevent.sleep(1)

        gevent.spawn(receive)
        gevent.spawn(heartbeat)
        number, seq = 0, 0

        def send(lines: list[str]) -> None:
            nonlocal number
            sent_at[number] = time.time()
            client.send(
                Message(
                    "harness_batch",
                    {"worker": WORKER, "index": 0, "batch": number, "lines": lines, "records": len(lines)},
                    WORKER,
                )
            )
            number += 1

        per_batch = max(1, round(rate * 0.2))
        start = time.monotonic()
        while time.monotonic() - start < seconds:  # paced, as a worker ships
            now = time.time()
            send([_line(0, seq + i, now - 0.2 + 0.2 * i / per_batch) for i in range(per_batch)])
            seq += per_batch
            gevent.sleep(0.2)
        paced = number
        while len(acked) < paced and time.monotonic() - start < seconds + 30:
            gevent.sleep(0.05)
        flat_start, flat_first = time.monotonic(), number
        flat_batches = 40
        while number < flat_first + flat_batches:
            if number - len(acked) < 8:
                now = time.time()
                send([_line(0, seq + i, now) for i in range(5000)])
                seq += 5000
            else:
                gevent.sleep(0.001)
        while len(acked) < number and time.monotonic() - flat_start < 60:
            gevent.sleep(0.001)
        flat_seconds = time.monotonic() - flat_start
    finally:
        master.send_signal(signal.SIGTERM)
        try:
            master.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(master.pid, signal.SIGKILL)
            master.wait()
    delays: list[float] = []
    hops: list[float] = []
    ends: list[float] = []
    for path in (folder / "master-run" / "journal").glob("*.jsonl"):
        for text in path.read_text().splitlines():
            rec = json.loads(text)
            if rec["kind"] == "write":
                ends.append(rec["end"])
            elif rec["kind"] == "batch":
                if rec["batch"] < paced:
                    delays += [rec["at"] - end for end in ends]
                    hops.append(rec["at"] - sent_at[rec["batch"]])
                ends = []
    return {
        "paced_records_per_s": rate,
        "paced_batches_acked": float(len([b for b in acked if b < paced])),
        "paced_batches_sent": float(paced),
        "delay_p50_s": _percentile(delays, 0.5),
        "delay_p99_s": _percentile(delays, 0.99),
        "delay_max_s": max(delays) if delays else float("nan"),
        "send_to_marker_p99_s": _percentile(hops, 0.99),
        "flat_records_per_s": flat_batches * 5000 / flat_seconds,
    }


def _locust(folder: Path, name: str, args: list[str]) -> subprocess.Popen[bytes]:
    # A run id of its own: rows are unique per (run id, writer, seq) and the server is shared.
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--run-dir", str(folder / name)]
    argv += ["--run-id", f"bench-{folder.name}", "--write-rate", "0", *args]
    with (folder / f"{name}.log").open("wb") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=folder)


def _status(web: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/harness/status", timeout=2) as answer:
            body: dict[str, Any] = json.load(answer)
            return body
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _wait_status(web: int, what: str, check: Any, timeout: float, folder: Path) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _status(web)
        if status is not None and check(status):
            return status
        time.sleep(0.1)
    raise SystemExit(f"{what} not reached within {timeout:.0f} s; see the logs under {folder}")


def _cpu(procs: list[subprocess.Popen[bytes]]) -> list[float]:
    out = []
    for proc in procs:
        times = psutil.Process(proc.pid).cpu_times()
        out.append(times.user + times.system)
    return out


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def one_run(folder: Path, tenants: Path, n_tenants: int, workers: int, seconds: float) -> dict[str, float]:
    """One master and ``workers`` workers writing flat out; ok records/s over ``seconds``."""
    folder.mkdir(parents=True)
    port, web = _free_port(), _free_port()
    users = workers * -(-n_tenants // workers)
    master = _locust(
        folder,
        "master",
        f"--master --master-bind-host 127.0.0.1 --master-bind-port {port} --web-host 127.0.0.1 "
        f"--web-port {web} --autostart --expect-workers {workers} --users {users} --spawn-rate {users} "
        f"--load-workers {workers} --tenant-count {n_tenants} --exit-code-on-error 0".split(),
    )
    procs = [master]
    try:
        for i in range(workers):
            args = f"--worker --master-host 127.0.0.1 --master-port {port} --tenants-file {tenants}"
            procs.append(_locust(folder, f"worker-{i}", args.split()))
        _wait_status(
            web,
            f"{workers} workers running",
            lambda s: s["connected"] == workers and s["state"] == "running",
            60,
            folder,
        )
        before, start = _cpu(procs), time.time()
        time.sleep(seconds)
        after, end = _cpu(procs), time.time()
        request = urllib.request.Request(f"http://127.0.0.1:{web}/harness/stop", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=5):
            pass
        _wait_status(web, "complete collection", lambda s: s["complete"], 40, folder)
    finally:
        _stop(procs)
    writes, _ = read_journal(folder / "master" / "journal")
    ok = sum(1 for w in writes if w.outcome == "ok" and start <= w.end < end)
    if not ok:
        outcomes = collections.Counter(w.outcome for w in writes)
        raise SystemExit(f"no ok write in the {workers}-worker window (outcomes: {dict(outcomes)})")
    used = [b - a for a, b in zip(before, after, strict=True)]
    return {
        "ok_records": float(ok),
        "seconds": end - start,
        "ok_per_s": ok / (end - start),
        "master_cpu_s": used[0],
        "workers_cpu_s": sum(used[1:]),
    }


def _tenants_file(engine: Engine, path: Path, count: int) -> Path:
    """``count`` tenants, each its own database, all in ONE PostgreSQL server."""
    inst = engine.create("bench-pg")
    entries = []
    for i in range(count):
        database = DATABASE if i == 0 else f"{DATABASE}_{i}"
        if i:
            engine._psql(inst, f"CREATE DATABASE {database} OWNER {ROLE}")
        entries.append({**inst.tenant(), "name": f"tenant-{i}", "database": database})
    path.write_text(json.dumps({"tenants": entries}))
    return path


def workers_scaling(folder: Path, n_tenants: int, seconds: float) -> dict[str, Any]:
    """(c): ok writes/s with 1 and with 2 real workers, one PostgreSQL server."""
    folder.mkdir(parents=True)
    folder.chmod(0o755)  # the server runs as another user and must reach its data folder
    with Engine(folder / "engine") as engine:
        tenants = _tenants_file(engine, folder / "tenants.json", n_tenants)
        pid = engine.pid("bench-pg")
        runs: dict[str, Any] = {}
        for workers in (1, 2):
            server_before = tree_cpu(pid) if pid else float("nan")
            runs[str(workers)] = one_run(folder / f"k{workers}", tenants, n_tenants, workers, seconds)
            runs[str(workers)]["server_cpu_s"] = (tree_cpu(pid) if pid else float("nan")) - server_before
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=200, help="lines per batch in (a)")
    parser.add_argument("--rate", type=float, default=5000.0, help="records/s offered in (b)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--skip-master", action="store_true", help="only (a)")
    parser.add_argument("--skip-workers", action="store_true", help="leave out (c)")
    parser.add_argument("--tenants", type=int, default=4, help="tenants in (c), one PostgreSQL server")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bench-collect-"))
    folder.chmod(0o755)  # (c)'s server runs as another user and must reach its data folder
    try:
        results: dict[str, Any] = {"machine": machine_facts()}
        a = results["one_core"] = one_core(folder / "a", args.records, args.batch)
        print(f"(a) one core, {args.records} records, batches of {args.batch}:")
        print(
            f"    JournalWriter {a['journalwriter_records_per_s']:10.0f} records/s "
            f"{a['journalwriter_cpu_us']:6.2f} µs CPU/record"
        )
        print(
            f"    Collector     {a['collector_records_per_s']:10.0f} records/s "
            f"{a['collector_cpu_us']:6.2f} µs CPU/record"
        )
        ratio = a["collector_records_per_s"] / a["journalwriter_records_per_s"]
        print(f"    Collector / JournalWriter: {ratio:.2f}x the records/s")
        if not args.skip_workers:  # before (b): Locust's monkey-patching stays out of it
            results["workers"] = workers_scaling(folder / "c", args.tenants, args.seconds)
        if not args.skip_master:
            b = results["master"] = through_master(folder / "b", args.rate, args.seconds)
            print("(b) a real Locust master, one synthetic worker over zmq:")
            print(
                f"    paced {args.rate:.0f} records/s for {args.seconds:g} s: "
                f"{b['paced_batches_acked']:.0f}/{b['paced_batches_sent']:.0f} batches acknowledged; "
                f"end -> marker delay p50 {b['delay_p50_s'] * 1000:.0f} ms, "
                f"p99 {b['delay_p99_s'] * 1000:.0f} ms, max {b['delay_max_s'] * 1000:.0f} ms "
                f"(of which send -> marker p99 {b['send_to_marker_p99_s'] * 1000:.1f} ms; "
                f"the rest is the worker's 0.2 s poll)"
            )
            flat = b["flat_records_per_s"]
            peer = flat / a["journalwriter_records_per_s"]
            print(f"    flat out: {flat:.0f} records/s acknowledged ({peer:.2f}x JournalWriter)")
        if not args.skip_workers:
            c = results["workers"]
            print(
                f"(c) real Locust master + 1 or 2 workers, {args.tenants} tenants in one PostgreSQL, "
                f"--write-rate 0, {args.seconds:g} s after all workers connected:"
            )
            for k in ("1", "2"):
                r = c[k]
                print(
                    f"    {k} worker{'s' if k != '1' else ' '}: {r['ok_per_s']:8.1f} ok writes/s "
                    f"({r['ok_records']:.0f} in {r['seconds']:.1f} s); "
                    f"CPU s: workers {r['workers_cpu_s']:.2f}, "
                    f"master {r['master_cpu_s']:.2f}, PostgreSQL {r['server_cpu_s']:.2f}"
                )
            print(f"    2 workers / 1 worker: {c['2']['ok_per_s'] / c['1']['ok_per_s']:.2f}x the ok writes/s")
            print(f"    cores: {os.cpu_count()} (this process may use {len(os.sched_getaffinity(0))})")
        for key, value in results["machine"].items():
            print(f"    {key}: {value}")
        if args.out:
            args.out.write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
