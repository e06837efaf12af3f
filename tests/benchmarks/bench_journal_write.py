"""The journal at soak scale: writing cost, compaction, bytes per write, and the read-back.

Run from the project root::

    .venv/bin/python -m tests.benchmarks.bench_journal_write [--records 300000] [--rounds 3]
        [--segments 5] [--readback-rows 1000000] [--page 50000] [--rtt-ms 1 20] [--skip-readback]
        [--out FILE]

(a) **Journaling CPU per write.** ``--records`` realistic write records (50 tenants at
20 writes/s each: one minute is 60 000 records) are journaled by three writers in the
same process, ``--rounds`` times each, alternating: the peer is today's writer before
segments (its ``write`` copied here verbatim), then :class:`~loadgen.journal.JournalWriter`
unsegmented and with 60 s segments. Printed: process CPU µs per record (median of the
rounds) and each against the peer.

(b) **Compaction and bytes per write.** ``--segments`` closed one-minute segments (60 000
records each, plus the newest, left alone) are compacted by
:func:`loadgen.segments.compact` in a child process: rows/s, CPU µs per row and the
child's peak RSS (memory bounded per segment), bytes per write as JSON lines and as
Parquet, and both extrapolated to 86.4 M writes (24 h x 50 tenants x 20 writes/s; the
goal is <= 3 GB). Also: parsing one segment with the json module (what compaction uses)
against ``pyarrow.json``, and reading the folder back into records from either form.

(c) **Read-back.** One local PostgreSQL server (:mod:`lab.engine`, a free port, stopped by
its pid at the end) holds ``--readback-rows`` rows of one tenant (50 writers, a gap of
10 rows planted in every tenth writer); :func:`probes.readback.read_back_tenant` reads
them back in pages of ``--page`` rows, folded into ranges (checked against the planted
gaps). The peer is the single query every row at once (``Dialect.read_back``) into a dict,
as before. Printed: rows/s, pages, client RSS growth of each; then 86.4 M rows at the
local rate, and against a remote server at each ``--rtt-ms``: local time + one round trip
per page + the rows on the wire (:data:`WIRE_BYTES_PER_ROW` at :data:`WIRE_BYTES_PER_S`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pyodbc

from lab.engine import Engine
from lab.paths import lab_dir, project_root
from loadgen.dialects import TABLE
from loadgen.journal import JournalWriter, Write, read_journal
from loadgen.runner import preflight
from loadgen.tenants import load_tenants
from probes.readback import PAGE_ROWS
from tests.benchmarks.measure import machine_facts

__all__ = ["main"]

DAY_WRITES = 86_400_000  # 24 h x 50 tenants x 20 writes/s
SEGMENT_ROWS = 60_000  # one minute of 50 tenants x 20 writes/s
WIRE_BYTES_PER_ROW = 40  # a DataRow of two integers with its framing, rounded up
WIRE_BYTES_PER_S = 12.5e6  # an assumed 100 Mbit/s path to the server


def records(n: int, seed: int = 1) -> list[Write]:
    """``n`` write records as a 50-tenant, 20 writes/s load journals them (0.2 % fail or info)."""
    rng = random.Random(seed)
    base = 1_764_000_000.0
    out = []
    for i in range(n):
        tenant = i % 50
        due = base + (i // 50) * 0.05 + tenant * 0.001
        start = due + rng.random() * 0.0005
        latency = rng.lognormvariate(math.log(0.003), 0.5)
        bad = rng.random() < 0.002
        outcome = ("fail" if rng.random() < 0.5 else "info") if bad else "ok"
        out.append(
            Write(
                f"tenant-{tenant:02d}",
                tenant,
                i // 50,
                start,
                start + latency,
                latency,
                outcome,  # type: ignore[arg-type]
                None if bad else start + latency / 2 + 0.0002,
                f'OperationalError "08S01 connection lost ({i})"' if bad else None,
                due,
            )
        )
    return out


class TodaysWriter:
    """The unsegmented writer's ``write`` as it was before segments (the peer)."""

    def __init__(self, folder: Path, run_id: str) -> None:
        from loadgen import native

        folder.mkdir(parents=True, exist_ok=True)
        self._lock = native.allocate_lock()
        self._names: dict[str, str] = {}
        self._file: IO[str] = (folder / "today.jsonl").open("a", buffering=1, encoding="utf-8")
        self._file.write(json.dumps({"kind": "meta", "run_id": run_id, "pid": os.getpid()}) + "\n")

    def write(self, record: Write) -> None:
        tenant = self._names.get(record.tenant)
        if tenant is None:
            tenant = self._names[record.tenant] = json.dumps(record.tenant)
        text = (
            f'{{"kind":"write","tenant":{tenant},"writer":{record.writer:d},"seq":{record.seq:d},'
            f'"start":{_number(record.start)},"end":{_number(record.end)},'
            f'"latency":{_number(record.latency)},"outcome":{json.dumps(record.outcome)},'
            f'"server_ts":{_number(record.server_ts)},'
            f'"error":{"null" if record.error is None else json.dumps(record.error)},'
            f'"due":{_number(record.due)}}}\n'
        )
        with self._lock:
            self._file.write(text)

    def close(self) -> None:
        self._file.close()


def _number(value: float | None) -> str:
    if value is None:
        return "null"
    return repr(float(value)) if math.isfinite(value) else json.dumps(value)


def _cpu(work: Callable[[], Any]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def writing(folder: Path, recs: list[Write], rounds: int) -> dict[str, float]:
    """(a): median process CPU µs per record of each writer."""
    makers: dict[str, Callable[[Path], Any]] = {
        "today": lambda f: TodaysWriter(f, "bench"),
        "unsegmented": lambda f: JournalWriter(f, "bench"),
        "segmented_60s": lambda f: JournalWriter(f, "bench", segment_seconds=60.0),
    }
    cpu: dict[str, list[float]] = {name: [] for name in makers}
    for r in range(rounds):
        for name, make in makers.items():
            target = folder / f"{name}-{r}"
            journal = make(target)

            def write_all(journal: Any = journal) -> None:
                for record in recs:
                    journal.write(record)

            cpu[name].append(_cpu(write_all)[1] / len(recs) * 1e6)
            journal.close()
            shutil.rmtree(target)
    return {name: statistics.median(values) for name, values in cpu.items()}


_COMPACT = """
import json, sys, time
from loadgen.segments import compact
t = time.perf_counter()
stats = compact(sys.argv[1])
out = {**stats.__dict__, "wall": time.perf_counter() - t}
"""
_IMPORT_SEGMENTS = "import loadgen.segments\nout = {}"
# Peak RSS of the child's own memory: ru_maxrss would include the parent's, as it was when forked.
_PEAK = """
import json as _json
with open("/proc/self/status") as _status:
    _hwm = next(line for line in _status if line.startswith("VmHWM:"))
print(_json.dumps({**out, "peak_rss_mib": int(_hwm.split()[1]) / 1024}))
"""


def child(code: str, *argv: str) -> tuple[dict[str, Any], float, float]:
    """Run ``code`` (which leaves a dict in ``out``) in a fresh interpreter: ``out``, CPU s, peak RSS MiB."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code + _PEAK, *argv], cwd=project_root(), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"a measured child process failed (exit {proc.returncode}): {code.strip()[:60]}...")
    result = json.loads(out)
    return result, usage.ru_utime + usage.ru_stime, result.pop("peak_rss_mib")


def compaction(folder: Path, recs: list[Write], segments: int) -> dict[str, float]:
    """(b): compaction in a child process, bytes per write, parsing and reading either form."""
    journal = folder / "journal"
    for s in range(segments + 1):  # the last one is the newest: never compacted
        writer = JournalWriter(journal, "bench", segment_seconds=3600.0)
        for record in recs[s * SEGMENT_ROWS : (s + 1) * SEGMENT_ROWS] if s < segments else recs[:10]:
            writer.write(record)
        writer.close()
    first = sorted(journal.glob("*.jsonl"))[0]
    parse_json = _cpu(lambda: [json.loads(line) for line in first.open("rb")])[1]
    import pyarrow.json as pj

    parse_arrow = _cpu(lambda: pj.read_json(first))[1]
    jsonl_read = _cpu(lambda: read_journal(journal))[0]
    _, _, baseline_rss = child(_IMPORT_SEGMENTS)
    stats, child_cpu, peak_rss = child(_COMPACT, str(journal))
    parquet_read = _cpu(lambda: read_journal(journal))[0]
    rows = stats["rows"]
    return {
        "segments": stats["segments"],
        "rows": rows,
        "refused": len(stats["refused"]),
        "wall_s": stats["wall"],
        "rows_per_s": rows / stats["wall"],
        "cpu_us_per_row": child_cpu / rows * 1e6,
        "child_peak_rss_mib": peak_rss,
        "child_import_rss_mib": baseline_rss,
        "jsonl_bytes_per_write": stats["bytes_before"] / rows,
        "parquet_bytes_per_write": stats["bytes_after"] / rows,
        "parse_json_us_per_row": parse_json / SEGMENT_ROWS * 1e6,
        "parse_pyarrow_json_us_per_row": parse_arrow / SEGMENT_ROWS * 1e6,
        "read_jsonl_rows_per_s": (rows + 10) / jsonl_read,
        "read_parquet_rows_per_s": (rows + 10) / parquet_read,
    }


def _fill(tenant: Any, rows: int, writers: int = 50) -> set[tuple[int, int, int]]:
    """``rows`` rows of run ``bench``; every tenth writer misses seq 100..109. The expected ranges."""
    per = rows // writers
    conn = pyodbc.connect(tenant.connection_string(), autocommit=True, timeout=30)
    try:
        conn.execute(
            f"INSERT INTO {TABLE} (run_id, tenant, writer, seq) SELECT 'bench', ?, w, s "
            f"FROM generate_series(0, {writers - 1}) w, generate_series(0, {per + 9}) s "
            "WHERE NOT (w % 10 = 0 AND s BETWEEN 100 AND 109)",
            (tenant.name,),
        )
        conn.execute(f"VACUUM ANALYZE {TABLE}")
    finally:
        conn.close()
    ranges = set()
    for w in range(writers):
        ranges |= {(w, 0, 99), (w, 110, per + 9)} if w % 10 == 0 else {(w, 0, per + 9)}
    return ranges


_RANGES = """
import json, sys, time
from loadgen.tenants import load_tenants
from probes.readback import read_back_tenant
(tenant,) = load_tenants(sys.argv[1])
wall, cpu = time.perf_counter(), time.process_time()
got = read_back_tenant(tenant, "bench", timeout=30, page_rows=int(sys.argv[2]))
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
out = {"wall": wall, "cpu": cpu, "error": got.error, "ranges": [list(r) for r in got.ranges]}
"""
_SINGLE = """
import json, sys, time
import pyodbc
from loadgen.dialects import dialect
from loadgen.tenants import load_tenants
(tenant,) = load_tenants(sys.argv[1])
wall = time.perf_counter()
conn = pyodbc.connect(tenant.connection_string(), autocommit=True, timeout=30)
rows = conn.execute(dialect("postgresql").read_back, "bench", tenant.name).fetchall()
everything = {(int(w), int(s)): float(ts) for w, s, ts in rows}
out = {"wall": time.perf_counter() - wall, "rows": len(everything)}
"""
_IMPORT_READBACK = "import pyodbc, probes.readback\nout = {}"


def readback(folder: Path, rows: int, page: int, rtts_ms: list[float]) -> dict[str, Any]:
    """(c): the streamed read-back against the single query, one local PostgreSQL, each in a child."""
    with Engine(folder / "engine") as engine:
        inst = engine.create("bench-rb")
        path = folder / "tenants.json"
        path.write_text(json.dumps({"tenants": [inst.tenant()]}))
        (tenant,) = load_tenants(path)
        preflight([tenant])
        expected = _fill(tenant, rows)
        count = sum(last - first + 1 for _, first, last in expected)
        _, _, baseline_rss = child(_IMPORT_READBACK)
        got, _, ranges_rss = child(_RANGES, str(path), str(page))
        if got["error"] or {tuple(r) for r in got["ranges"]} != expected:
            raise SystemExit(
                f"the read-back is wrong: {got['error'] or 'ranges differ from the planted rows'}"
            )
        single, _, single_rss = child(_SINGLE, str(path))
        if single["rows"] != count:
            raise SystemExit(f"the single query read {single['rows']} rows, not {count}")
    wall = got["wall"]
    pages = count // page + 1
    local_day = DAY_WRITES / (count / wall)
    day_pages = DAY_WRITES // page + 1
    remote = {
        str(rtt): local_day + day_pages * rtt / 1000 + DAY_WRITES * WIRE_BYTES_PER_ROW / WIRE_BYTES_PER_S
        for rtt in rtts_ms
    }
    return {
        "rows": count,
        "ranges": len(got["ranges"]),
        "page": page,
        "pages": pages,
        "wall_s": wall,
        "rows_per_s": count / wall,
        "client_cpu_us_per_row": got["cpu"] / count * 1e6,
        "peak_rss_mib": ranges_rss,
        "import_rss_mib": baseline_rss,
        "single_query_rows_per_s": count / single["wall"],
        "single_query_peak_rss_mib": single_rss,
        "day_local_s": local_day,
        "day_remote_s": remote,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--segments", type=int, default=5, help="closed one-minute segments in (b)")
    parser.add_argument("--readback-rows", type=int, default=1_000_000)
    parser.add_argument("--page", type=int, default=PAGE_ROWS)
    parser.add_argument("--rtt-ms", type=float, nargs="+", default=[1.0, 20.0])
    parser.add_argument("--skip-readback", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bench-journal-", dir=lab_dir()))
    folder.chmod(0o755)  # (c)'s server runs as another user and must reach its data folder
    try:
        results: dict[str, Any] = {"machine": machine_facts()}
        recs = records(max(args.records, args.segments * SEGMENT_ROWS))
        a = results["writing"] = writing(folder / "a", recs[: args.records], args.rounds)
        print(f"(a) journaling CPU per write, {args.records} records, median of {args.rounds} rounds:")
        for name, us in a.items():
            print(f"    {name:14s} {us:6.2f} µs CPU/record  ({us / a['today']:.2f}x today's writer)")
        b = results["compaction"] = compaction(folder / "b", recs, args.segments)
        print(f"(b) compaction of {b['segments']:.0f} one-minute segments ({b['rows']:.0f} rows) in a child:")
        print(
            f"    {b['rows_per_s']:,.0f} rows/s, {b['cpu_us_per_row']:.2f} µs CPU/row, "
            f"peak RSS {b['child_peak_rss_mib']:.0f} MiB (importing pyarrow alone: "
            f"{b['child_import_rss_mib']:.0f} MiB), {b['refused']:.0f} refused"
        )
        jb, pb = b["jsonl_bytes_per_write"], b["parquet_bytes_per_write"]
        print(
            f"    bytes per write: JSON lines {jb:.1f}, Parquet {pb:.1f} ({jb / pb:.1f}x smaller); "
            f"86.4 M writes: {jb * DAY_WRITES / 1e9:.1f} GB as JSON lines, {pb * DAY_WRITES / 1e9:.2f} GB "
            f"as Parquet (goal <= 3 GB); compacting them: {DAY_WRITES / b['rows_per_s'] / 60:.0f} CPU-minutes"
        )
        print(
            f"    parsing one segment: json module {b['parse_json_us_per_row']:.2f} µs/row, pyarrow.json "
            f"{b['parse_pyarrow_json_us_per_row']:.2f} µs/row (CPU, all threads)"
        )
        print(
            f"    read_journal into records: JSON lines {b['read_jsonl_rows_per_s']:,.0f} rows/s, Parquet "
            f"{b['read_parquet_rows_per_s']:,.0f} rows/s"
        )
        if not args.skip_readback:
            c = results["readback"] = readback(folder / "c", args.readback_rows, args.page, args.rtt_ms)
            print(f"(c) read-back of {c['rows']:,} rows from one local PostgreSQL, pages of {c['page']:,}:")
            print(
                f"    ranges: {c['rows_per_s']:,.0f} rows/s ({c['wall_s']:.1f} s, {c['pages']} pages, "
                f"{c['ranges']} ranges), {c['client_cpu_us_per_row']:.2f} µs client CPU/row, "
                f"peak RSS {c['peak_rss_mib']:.0f} MiB (the imports alone: {c['import_rss_mib']:.0f} MiB)"
            )
            print(
                f"    single query into a dict (before): {c['single_query_rows_per_s']:,.0f} rows/s, "
                f"peak RSS {c['single_query_peak_rss_mib']:.0f} MiB "
                f"({c['rows_per_s'] / c['single_query_rows_per_s']:.2f}x the rows/s streamed)"
            )
            print(f"    86.4 M rows: {c['day_local_s'] / 60:.1f} min at the local rate")
            for rtt, seconds in c["day_remote_s"].items():
                print(
                    f"    86.4 M rows, remote server at {rtt} ms RTT: {seconds / 60:.1f} min "
                    f"(+1 RTT per {c['page']:,}-row page, {WIRE_BYTES_PER_ROW} B/row at "
                    f"{WIRE_BYTES_PER_S * 8 / 1e6:.0f} Mbit/s)"
                )
        for key, value in results["machine"].items():
            print(f"    {key}: {value}")
        if args.out:
            args.out.write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
