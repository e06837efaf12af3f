"""Where the load process spends its CPU: the event loop's thread against the writers' threads.

Run from the project root::

    .venv/bin/python -m tests.benchmarks.thread_cpu [--users 8] [--seconds 5] [--locustfile FILE]

It starts one PostgreSQL server (as :mod:`tests.benchmarks.bench_throughput` does), runs
the real Locust CLI with ``--users`` users on one tenant as fast as they can go, waits 4 s
for the spawn to settle, then reads ``/proc/<pid>/task/*/stat`` of the Locust process twice,
``--seconds`` apart, and counts the acknowledged writes journaled in between. It prints
acks/s and CPU µs per ack (user and system) of the hub (the thread whose id is the
process id: every greenlet, so Locust, its statistics and the Prometheus metrics) and of
every other thread (the writers, the deadline thread). ``--locustfile`` measures a variant,
e.g. one that switches a feature off, against the real one in the same session.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.paths import project_root
from tests.benchmarks.bench_throughput import ThroughputBench

__all__ = ["main", "thread_times"]

_SETTLE = 4.0


def thread_times(pid: int) -> dict[int, tuple[float, float]]:
    """``{tid: (user seconds, system seconds)}`` of every thread of ``pid``."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        out[int(tid)] = (int(fields[11]) / tick, int(fields[12]) / tick)
    return out


def _acks(journal: Path) -> int:
    return sum(p.read_text().count('"outcome":"ok"') for p in journal.glob("*.jsonl"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.thread_cpu", description=__doc__)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--locustfile", default="loadgen/locustfile.py")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-threads-"))
    workdir.chmod(0o755)  # the server runs as another user and must reach its data folder
    try:
        with ThroughputBench(workdir, int(args.seconds + _SETTLE + 3)) as bench:
            run = workdir / "run"
            run.mkdir()
            tenants = run / "tenants.json"
            tenants.write_text(json.dumps({"tenants": [bench.inst.tenant()]}))
            locust = Path(sys.prefix) / "bin" / "locust"
            argv_ = [str(locust), "-f", args.locustfile, "--headless", "-u", str(args.users), "-r",
                     str(args.users), "-t", f"{int(args.seconds + _SETTLE + 3)}s", "--tenants-file",
                     str(tenants), "--run-dir", str(run), "--run-id", "threads", "--write-rate", "0",
                     "--metrics-port", "-1"]  # fmt: skip
            proc = subprocess.Popen(
                argv_, cwd=project_root(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                time.sleep(_SETTLE)
                before, acks_before, t0 = thread_times(proc.pid), _acks(run / "journal"), time.monotonic()
                time.sleep(args.seconds)
                after, acks_after, t1 = thread_times(proc.pid), _acks(run / "journal"), time.monotonic()
            finally:
                proc.terminate()
                proc.wait(timeout=60)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    acks = acks_after - acks_before
    if acks <= 0:
        print("thread_cpu: no write was acknowledged in the window", file=sys.stderr)
        return 1
    print(f"{args.users} users, {args.locustfile}: {acks / (t1 - t0):.0f} acks/s")
    for label, pick in (("hub", lambda tid: tid == proc.pid), ("other threads", lambda tid: tid != proc.pid)):
        user = sum(v[0] - before.get(t, (0.0, 0.0))[0] for t, v in after.items() if pick(t))
        system = sum(v[1] - before.get(t, (0.0, 0.0))[1] for t, v in after.items() if pick(t))
        print(
            f"  {label:14s} {(user + system) / acks * 1e6:6.1f} us/ack "
            f"(user {user / acks * 1e6:.1f}, system {system / acks * 1e6:.1f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
