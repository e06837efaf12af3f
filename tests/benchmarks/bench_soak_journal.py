"""The journal at soak scale: a synthetic 24 h day analysed by the columnar analysis, against today's.

Run from the project root::

    .venv/bin/python -m tests.benchmarks.bench_soak_journal [--writes 86400000] [--out DIR]
        [--tenants 50] [--rate 20] [--processes 1] [--slice 1000000] [--cap-gb 2]
        [--memory-limit 512MB] [--group-rows 16000000] [--reuse] [--keep]

(a) **The day.** ``--writes`` attempts (default 24 h x 50 tenants x 20 writes/s = 86.4 M)
are generated as a soak leaves them (:mod:`tests.benchmarks.soak_journal_data`): one
segment per minute per process, closed ones as Parquet with the compaction's encodings,
the last one JSON lines; one fault every 2 h, each an outage of one tenant (8-28 s), every
other one with 1.5 s of acknowledged writes missing from the read-back (given as ranges).
Generation is numpy and pyarrow, one process per core. Printed: rows, seconds, bytes on
disk (extrapolated to 86.4 M writes when fewer were asked).

Then :func:`probes.columnar.analyze_folder` runs in a fresh process under the memory cap
(``--cap-gb``: its resident set is watched every 50 ms and the process killed above it).
Printed: the analysis's seconds (monotonic clock, imports excluded), the process's peak
resident set (DuckDB included: it runs inside), and whether every planted outage was
found (that tenant affected and recovered, RTO within 0.5 s of the outage, no other
tenant affected) and every planted loss exactly (count and keys per fault and per
tenant, nothing unexpected, no measurement gap, no other violation). The latency
histograms, efficiency and per-minute roll-ups of the same journal are timed after it.

(b) **The peer, same run.** A ``--slice`` of the same shape (1 M attempts) is written as
today's unsegmented JSON lines and as segments; today's path (``read_journal`` +
``analyze``) and the columnar one each run in a fresh process on it. Printed: seconds and
peak resident set of each, today's / columnar, and whether the two analyses are equal.

Goals (issue "24-hour soak"): the day analysed in at most 2 minutes with at most 2 GB
peak, every planted outage and loss found exactly; at most 3 GB on disk. Results also go
to ``<out>/results.json``. Without ``--out`` everything is written under a temporary folder
that is removed at the end; ``--reuse`` keeps an already generated day in ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from tests.benchmarks.soak_journal_data import (
    RTO_TOLERANCE,
    T0,
    Expected,
    Plan,
    expected,
    make_plan,
    write_jsonl,
    write_minute,
)

__all__ = ["check_found", "main"]

DAY_WRITES = 86_400_000
ROOT = Path(__file__).resolve().parents[2]


def _minute(job: tuple[Plan, str, int]) -> tuple[int, int]:
    plan, folder, minute = job
    return write_minute(plan, Path(folder), minute)


def generate(plan: Plan, folder: Path) -> dict[str, float]:
    """The segments of ``plan`` under ``folder``, one process per core; rows, bytes, seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    jobs = [(plan, str(folder), m) for m in range(plan.minutes)]
    with multiprocessing.get_context("fork").Pool(os.cpu_count() or 1) as pool:
        done = pool.map(_minute, jobs, chunksize=8)
    return {
        "rows": sum(r for r, _ in done),
        "bytes": sum(b for _, b in done),
        "seconds": time.monotonic() - began,
    }


def request(plan: Plan, exp: Expected, journal: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Everything a child needs to analyse ``journal`` as a run would."""
    return {
        "journal": str(journal),
        "faults": [
            {
                "name": f.name,
                "kind": "planted",
                "injected_at": f.at,
                "target": plan.tenant_name(f.tenant),
                "ended_at": f.at + 1.0,
            }
            for f in plan.faults
        ],
        "ranges": exp.ranges,
        "read_at": T0 + plan.seconds + 60.0,
        "load": {"started_at": T0 - 1.0, "stop_requested_at": T0 + plan.seconds},
        "write_rate": plan.rate,
        "settings": {
            "memory_limit": args.memory_limit,
            "threads": args.threads,
            "group_rows": args.group_rows,
        },
    }


def child(path: Path, mode: str) -> int:
    """Analyse the request at ``path``: ``python`` today's path, ``columnar``, ``columnar+`` and the rest."""
    from loadgen.journal import read_journal
    from probes.analysis import analyze
    from probes.columnar import ColumnarJournal, EngineSettings
    from probes.latency import outage_windows
    from probes.model import Fault, LoadLife, Objective, ReadBack, RunContext

    req = json.loads(path.read_text())
    faults = [Fault(**f) for f in req["faults"]]
    readbacks = {
        t: ReadBack(t, tuple(tuple(r) for r in ranges), req["read_at"])  # type: ignore[misc]
        for t, ranges in req["ranges"].items()
    }
    context = RunContext(load=LoadLife(**req["load"]), write_rate=req["write_rate"])
    out: dict[str, Any] = {}
    began = time.monotonic()
    if mode == "python":
        writes, clocks = read_journal(req["journal"])
        analysis = analyze("soak-bench", writes, clocks, faults, readbacks, [], Objective(), 5.0, context)
        out["seconds"] = time.monotonic() - began
    else:
        settings = EngineSettings(**req["settings"])
        with ColumnarJournal(req["journal"], settings) as journal:
            analysis = journal.analyze("soak-bench", faults, readbacks, [], Objective(), 5.0, context)
            out["seconds"] = time.monotonic() - began
            if mode == "columnar+":
                outages = outage_windows(analysis)
                for name, ask in (
                    ("latency", lambda: journal.latency(outages, expected_interval=1.0 / context.write_rate)),
                    (
                        "efficiency",
                        lambda: journal.efficiency(
                            len(analysis.tenants), context.write_rate, context.load, outages
                        ),
                    ),
                    ("minute_rollups", journal.minute_rollups),
                ):
                    t = time.monotonic()
                    ask()
                    out[f"{name}_seconds"] = time.monotonic() - t
    out["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out["analysis"] = asdict(analysis)
    path.with_suffix(f".{mode}.json").write_text(json.dumps(out))
    return 0


def run_child(req_path: Path, mode: str, cap: float) -> dict[str, Any]:
    """Run :func:`child` in a fresh interpreter, killed when its resident set passes ``cap`` bytes."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.benchmarks.bench_soak_journal",
            "--child",
            str(req_path),
            "--mode",
            mode,
        ],
        cwd=ROOT,
    )
    watched = psutil.Process(proc.pid)
    highest = 0
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            highest = max(highest, watched.memory_info().rss)
        if highest > cap:
            proc.kill()
            proc.wait()
            return {
                "error": f"killed: resident set {highest / 2**30:.2f} GB passed the {cap / 2**30:.2f} GB cap"
            }
        time.sleep(0.05)
    if proc.returncode:
        return {"error": f"exited with status {proc.returncode}"}
    result: dict[str, Any] = json.loads(req_path.with_suffix(f".{mode}.json").read_text())
    result["peak_rss"] = max(result["peak_rss"], highest)
    return result


def check_found(plan: Plan, exp: Expected, analysis: dict[str, Any]) -> list[str]:
    """Every planted outage and loss the analysis did not find exactly, in words (empty: all found)."""
    misses: list[str] = []
    lost_per_tenant: dict[str, list[list[int]]] = {}
    for i, fault in enumerate(plan.faults):
        target = plan.tenant_name(fault.tenant)
        planted = [list(k) for k in exp.lost.get(i, [])]
        lost_per_tenant.setdefault(target, []).extend(planted)
        for r in analysis["faults"][i]["results"]:
            if r["tenant"] != target:
                if r["affected"] or r["lost_acked_writes"]:
                    misses.append(f"{fault.name}: {r['tenant']} was not hit but reads affected or lost")
                continue
            rto = r["rto_seconds"]
            if not (
                r["recovered"]
                and r["affected"]
                and rto is not None
                and fault.outage <= rto <= fault.outage + RTO_TOLERANCE
            ):
                misses.append(f"{fault.name}: outage of {fault.outage:g}s on {target} read as RTO {rto}")
            if r["lost_acked_writes"] != len(planted):
                misses.append(
                    f"{fault.name}: {len(planted)} lost writes planted, {r['lost_acked_writes']} found"
                )
    for t in analysis["totals"]:
        planted = sorted(lost_per_tenant.get(t["tenant"], []))
        found = [list(k) for k in t["lost_keys"]]
        if t["lost"] != len(planted) or found != planted[:1000]:
            misses.append(
                f"{t['tenant']}: lost {t['lost']} (keys differ: {found != planted[:1000]}), "
                f"planted {len(planted)}"
            )
        if t["unexpected"] or t["misclassified"] or t["measurement_gaps"]:
            misses.append(
                f"{t['tenant']}: unexpected rows, misclassified writes or gaps where none were planted"
            )
        if t["recovered_unknown"] != exp.unknown.get(t["tenant"], 0):
            misses.append(
                f"{t['tenant']}: {t['recovered_unknown']} recovered unknown, "
                f"{exp.unknown.get(t['tenant'], 0)} planted"
            )
    losses = sum(1 for f in plan.faults if f.loss)
    if len(analysis["violations"]) != losses:
        misses.append(
            f"{len(analysis['violations'])} violations, {losses} planted losses: {analysis['violations'][:3]}"
        )
    return misses


def _gb(n: float) -> str:
    return f"{n / 2**30:.2f} GB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=DAY_WRITES)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--rate", type=float, default=20.0, help="writes per second per tenant")
    parser.add_argument("--processes", type=int, default=1, help="load processes (segments per minute)")
    parser.add_argument("--slice", type=int, default=1_000_000, help="attempts of the peer slice; 0 skips it")
    parser.add_argument("--cap-gb", type=float, default=2.0)
    parser.add_argument("--memory-limit", default="512MB", help="DuckDB's memory limit")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--group-rows", type=int, default=16_000_000)
    parser.add_argument("--reuse", action="store_true", help="keep a day already generated in --out")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="columnar", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.mode)
    if args.writes < 60 * args.tenants * args.rate:
        parser.error(
            f"--writes {args.writes} is less than one minute of load; ask for at least "
            f"{int(60 * args.tenants * args.rate)}"
        )

    out = args.out or Path(tempfile.mkdtemp(prefix="bench-soak-journal-"))
    out.mkdir(parents=True, exist_ok=True)
    cap = args.cap_gb * 2**30
    results: dict[str, Any] = {
        "command": " ".join(["python -m tests.benchmarks.bench_soak_journal", *(argv or sys.argv[1:])]),
        "cores": os.cpu_count(),
        "load_average_before": os.getloadavg(),
    }
    try:
        plan = make_plan(args.writes, tenants=args.tenants, rate=args.rate, processes=args.processes)
        day = out / "day" / "journal"
        stamp = out / "day" / "plan.json"
        if (
            args.reuse
            and stamp.exists()
            and json.loads(stamp.read_text()) == json.loads(json.dumps(plan.as_json()))
        ):
            made = {"rows": None, "bytes": sum(p.stat().st_size for p in day.iterdir()), "seconds": None}
        else:
            shutil.rmtree(out / "day", ignore_errors=True)
            made = generate(plan, day)
            stamp.write_text(json.dumps(plan.as_json()))
        exp = expected(plan)
        per_write = made["bytes"] / (plan.tenants * plan.rate * plan.seconds)
        print(
            f"day: {plan.tenants} tenants x {plan.rate:g}/s x {plan.seconds / 3600:.2f} h = "
            f"{int(plan.tenants * plan.rate * plan.seconds):,} writes, {len(plan.faults)} faults; generated "
            f"{made['rows'] or 'earlier'} rows in {made['seconds'] or 0:.1f}s, {_gb(made['bytes'])} on disk "
            f"({per_write:.1f} bytes/write, {_gb(per_write * DAY_WRITES)} for 86.4 M)"
        )
        req = out / "day" / "request.json"
        req.write_text(json.dumps(request(plan, exp, day, args)))
        day_result = run_child(req, "columnar+", cap)
        results["day"] = {"plan": plan.as_json(), "generated": made, "bytes_per_write": per_write}
        if "error" in day_result:
            print(f"columnar analysis of the day: {day_result['error']}")
            results["day"]["error"] = day_result["error"]
        else:
            misses = check_found(plan, exp, day_result.pop("analysis"))
            results["day"].update(day_result, misses=misses)
            print(
                f"columnar analysis of the day: {day_result['seconds']:.1f}s, "
                f"peak {_gb(day_result['peak_rss'])}; "
                f"planted outages and losses found exactly: {'yes' if not misses else 'NO'}"
            )
            for miss in misses[:10]:
                print(f"  missed: {miss}")
            print(
                "  then latency {latency_seconds:.1f}s, efficiency {efficiency_seconds:.1f}s, "
                "per-minute roll-ups {minute_rollups_seconds:.1f}s".format(**day_result)
            )
        if args.slice:
            results["slice"] = peer(args, out / "slice", cap)
        results["load_average_after"] = os.getloadavg()
        (out / "results.json").write_text(json.dumps(results, indent=1))
        print(f"results: {out / 'results.json'}")
    finally:
        if not args.keep and args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    day_ok = "error" not in results.get("day", {}) and not results["day"].get("misses")
    return 0 if day_ok else 1


def peer(args: argparse.Namespace, folder: Path, cap: float) -> dict[str, Any]:
    """Today's analysis against the columnar one on the same ``--slice`` (module docstring, b)."""
    plan = make_plan(args.slice, tenants=args.tenants, rate=args.rate, processes=args.processes)
    exp = expected(plan)
    shutil.rmtree(folder, ignore_errors=True)
    lines = folder / "jsonl" / "journal"
    lines.mkdir(parents=True)
    write_jsonl(plan, lines)
    segments = generate(plan, folder / "segments" / "journal")
    out: dict[str, Any] = {"writes": int(plan.tenants * plan.rate * plan.seconds)}
    analyses = {}
    for name, journal, mode in (
        ("today (read_journal + analyze, JSON lines)", lines, "python"),
        ("columnar, same JSON lines", lines, "columnar"),
        ("columnar, segments", folder / "segments" / "journal", "columnar"),
    ):
        req = journal.parent / "request.json"
        req.write_text(json.dumps(request(plan, exp, journal, args)))
        result = run_child(req, mode, cap)
        analyses[name] = result.pop("analysis", None)
        out[name] = result
        print(
            f"slice of {out['writes']:,} writes, {name}: "
            + (
                result["error"]
                if "error" in result
                else f"{result['seconds']:.2f}s, peak {_gb(result['peak_rss'])}"
            )
        )
    today, same, seg = (out[k].get("seconds") for k in list(out)[1:4])
    if today and same and seg:
        out["ratio_seconds"] = today / same
        print(
            f"slice: today / columnar = {today / same:.1f}x on the same JSON lines, "
            f"{today / seg:.1f}x on segments; "
            f"analyses equal: {len({json.dumps(a, sort_keys=True) for a in analyses.values()}) == 1}; "
            f"segments {_gb(segments['bytes'])} vs JSON lines "
            f"{_gb(sum(p.stat().st_size for p in lines.iterdir()))}"
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
