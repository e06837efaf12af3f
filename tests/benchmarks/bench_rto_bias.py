"""RTO bias: how much later than the real end of an outage the harness reports recovery.

Run from the project root::

    .venv/bin/python -m tests.benchmarks.bench_rto_bias [--tenants 5] [--freezes 5]
        [--seconds 3] [--spread 0] [--rate 20] [--stability 3] [--settle 2]
        [--baseline COMMIT] [--keep] [--out FILE]

The independent observer is the freeze itself. Local PostgreSQL servers (``lab.engine``),
one per tenant, take the real Locust load (``loadgen.runner.LoadRun``, one user per
tenant). ``--freezes`` times, every server is frozen (SIGSTOP of its whole process tree)
for ``--seconds`` and thawed (SIGCONT). Each tenant's fault is recorded with the
wall-clock time taken just before its first SIGSTOP, and its thaw time just before its
first SIGCONT, so the true outage ``D`` is known to within the signals' delivery. The
analysis (``probes.analysis.analyze``, stability ``--stability`` seconds) then gives the
RTO, and ``RTO - D`` is how late the harness saw the end of the outage: the backoff
before the next retry, the reconnect and the first insert.

Printed per freeze and tenant: ``D``, ``RTO - D``, and how many attempts the tenant made
during the outage (its retry rate while the server hangs). The summary gives the mean,
median, minimum and maximum of ``RTO - D``, and the spread of the first acknowledged
write after the thaw across tenants (tenants retrying in step would all come back
together). The load average before and after is printed too: another busy process on
the machine delays the reconnects and shows up as bias.

``--spread S`` lengthens the freezes evenly from ``--seconds`` to ``--seconds + S``: with
equal freezes every tenant's retry cycle meets the thaw at about the same phase, so
one length samples one point of the bias, not its range. ``--baseline COMMIT`` runs
the load package (``loadgen``) of an earlier commit (read with ``git archive``) against the
same servers and analysis, to compare before and after a change of the write path.

Everything started here (the servers, the Locust process) is stopped on exit and the
temporary folder removed. Results and their analysis live in ``docs/BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from lab import processes
from lab.engine import Engine
from lab.paths import lab_dir
from loadgen.journal import read_journal
from loadgen.runner import LoadRun, default_run_id, preflight
from loadgen.tenants import load_tenants
from probes.analysis import analyze
from probes.faultlog import mark_ended, read_faults, record_fault
from probes.model import Fault, RunAnalysis

__all__ = ["Sample", "freeze_servers", "measure", "samples"]


@dataclass(frozen=True)
class Sample:
    """One tenant through one freeze: the true outage, the reported RTO, the difference."""

    freeze: int
    tenant: str
    outage: float
    rto: float | None
    bias: float | None
    attempts_during: int
    recovered_at: float | None


def freeze_servers(
    engine: Engine, names: list[str], seconds: float, fault_log: Path, label: str
) -> list[Fault]:
    """Freeze every server in ``names`` for ``seconds`` and thaw it; one recorded fault per tenant.

    Each fault's ``injected_at`` is taken just before that tenant's first SIGSTOP (its
    process tree is walked before the clock is read) and its ``ended_at`` just before
    its first SIGCONT, so the outage length is ``ended_at - injected_at``.
    """
    trees: dict[str, list[psutil.Process]] = {}
    stopped_at: dict[str, float] = {}
    try:
        for name in names:
            pid = engine.pid(name)
            if pid is None:
                raise RuntimeError(f"{name} is not running")
            tree = processes.process_tree(pid)
            stopped_at[name] = time.time()
            for proc in tree:
                try:
                    proc.send_signal(signal.SIGSTOP)
                except psutil.NoSuchProcess:
                    continue
            # A backend forked while the tree was walked is caught by a second walk.
            trees[name] = tree + [p for p in processes.signal_tree(pid, signal.SIGSTOP) if p not in tree]
        began = min(stopped_at.values())
        time.sleep(max(0.0, began + seconds - time.time()))
    finally:
        thawed_at: dict[str, float] = {}
        for name, tree in trees.items():
            thawed_at[name] = time.time()
            for proc in tree:
                try:
                    proc.send_signal(signal.SIGCONT)
                except psutil.NoSuchProcess:
                    continue
    faults = []
    for name in names:
        fault = Fault(
            name=f"freeze {name} {label}",
            kind="freeze",
            injected_at=stopped_at[name],
            target=name,
            ended_at=thawed_at[name],
            details={"seconds": seconds},
        )
        record_fault(fault_log, fault)
        mark_ended(fault_log, fault.name, thawed_at[name])
        faults.append(fault)
    return faults


def samples(analysis: RunAnalysis, writes: list[Any], faults: list[tuple[int, Fault]]) -> list[Sample]:
    """``RTO - D`` for each (freeze, tenant) from the analysis of the whole run."""
    by_name = {r.fault.name: r for r in analysis.faults}
    out = []
    for index, fault in faults:
        assert fault.ended_at is not None
        result = next(r for r in by_name[fault.name].results if r.tenant == fault.target)
        outage = fault.ended_at - fault.injected_at
        during = sum(
            1 for w in writes if w.tenant == fault.target and fault.injected_at <= w.start < fault.ended_at
        )
        out.append(
            Sample(
                freeze=index,
                tenant=str(fault.target),
                outage=outage,
                rto=result.rto_seconds,
                bias=None if result.rto_seconds is None else result.rto_seconds - outage,
                attempts_during=during,
                recovered_at=result.recovered_at,
            )
        )
    return out


def measure(
    engine: Engine,
    root: Path,
    *,
    tenants: int,
    freezes: int,
    seconds: float,
    rate: float,
    stability: float,
    settle: float,
    spread: float = 0.0,
    locustfile: Path | None = None,
    say: Any = print,
) -> list[Sample]:
    """Run the load against ``tenants`` fresh servers, freeze them ``freezes`` times, analyse.

    ``locustfile`` replaces ``loadgen/locustfile.py`` (see :func:`baseline_locustfile`).
    """
    instances = engine.create_many(tenants)
    run_id = default_run_id()
    run_dir = root / "run"
    run_dir.mkdir()
    tenants_file = run_dir / "tenants.json"
    tenants_file.write_text(json.dumps({"tenants": [i.tenant() for i in instances]}))
    loaded = load_tenants(tenants_file)
    names = [t.name for t in loaded]
    preflight(loaded)
    load = LoadRun(tenants_file, run_dir, run_id, users=len(loaded), rate=rate)
    if locustfile is not None:
        argv = load.command()
        argv[argv.index("-f") + 1] = str(locustfile)
        load.command = lambda: argv  # type: ignore[method-assign]
    load.start()
    faults: list[tuple[int, Fault]] = []
    try:
        load.wait_acks(names, stability=2.0)
        for index in range(1, freezes + 1):
            length = seconds + (spread * (index - 1) / (freezes - 1) if freezes > 1 else 0.0)
            done = freeze_servers(engine, names, length, run_dir / "faults.jsonl", f"#{index}")
            faults.extend((index, f) for f in done)
            say(f"freeze {index}/{freezes} done")
            time.sleep(stability + settle)
    finally:
        load.stop()
    problem = load.problem()
    if problem is not None:
        say(f"WARNING: {problem}; samples after its death are not measurements")
    writes, clocks = read_journal(run_dir / "journal")
    analysis = analyze(
        run_id, writes, clocks, read_faults(run_dir / "faults.jsonl"), {}, names, stability=stability
    )
    return samples(analysis, writes, faults)


def baseline_locustfile(commit: str, folder: Path) -> Path:
    """The write path as it was at ``commit``: its whole ``loadgen`` package, under ``folder``.

    The package is read with ``git archive`` (nothing in the checkout changes) into
    ``folder/tree``; the returned locustfile puts that folder first on ``sys.path``, so
    Locust imports the old ``loadgen`` (writer, its helpers, the journal) and nothing of
    the checkout's. The write path has been split across modules over time
    (``offload.py``, later ``session.py``, ``deadlines.py``, ``native.py``): taking one
    file would mix two versions.
    """
    root = Path(__file__).resolve().parents[2]
    tree = folder / "tree"
    tree.mkdir(parents=True, exist_ok=True)
    argv = ["git", "-C", str(root), "archive", "--format=tar", commit, "loadgen"]
    archive = subprocess.run(argv, capture_output=True, check=False)
    if archive.returncode != 0:
        detail = archive.stderr.decode(errors="replace").strip()
        raise SystemExit(f"bench_rto_bias: cannot read loadgen/ at {commit}: {detail}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    if not (tree / "loadgen" / "locustfile.py").is_file():
        raise SystemExit(f"bench_rto_bias: {commit} has no loadgen/locustfile.py")
    locustfile = folder / "baseline_locustfile.py"
    locustfile.write_text(
        f"# The write path of {commit}, imported instead of the checkout's.\n"
        "import sys\n\n"
        f"sys.path.insert(0, {str(tree)!r})\n"
        "from loadgen.locustfile import *  # noqa: E402,F403\n"
    )
    return locustfile


def _summary(found: list[Sample]) -> dict[str, Any]:
    biases = [s.bias for s in found if s.bias is not None]
    spreads = []
    for index in sorted({s.freeze for s in found}):
        back = [s.recovered_at for s in found if s.freeze == index and s.recovered_at is not None]
        if len(back) > 1:
            spreads.append(max(back) - min(back))
    return {
        "samples": len(found),
        "not_recovered": sum(1 for s in found if s.bias is None),
        "bias_mean": statistics.fmean(biases) if biases else None,
        "bias_median": statistics.median(biases) if biases else None,
        "bias_min": min(biases) if biases else None,
        "bias_max": max(biases) if biases else None,
        "comeback_spread_max": max(spreads) if spreads else None,
        "attempts_during_mean": statistics.fmean(s.attempts_during for s in found) if found else None,
    }


def _commit() -> str:
    """The commit measured, and whether the write path differs from it."""
    git = ["git", "-C", str(Path(__file__).resolve().parents[2])]
    write_path = ["loadgen"]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", *write_path], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + (" (write path modified)" if dirty.stdout.strip() else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=5, help="servers, one Locust user each (default 5)")
    parser.add_argument("--freezes", type=int, default=5, help="freezes of every server (default 5)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each freeze (default 3)")
    parser.add_argument(
        "--spread",
        type=float,
        default=0.0,
        help="lengthen the freezes evenly from --seconds to --seconds + SPREAD (default 0: all equal)",
    )
    parser.add_argument("--rate", type=float, default=20.0, help="writes/s per tenant (default 20)")
    parser.add_argument("--stability", type=float, default=3.0, help="RTO stability period (default 3)")
    parser.add_argument("--settle", type=float, default=2.0, help="extra seconds between freezes (default 2)")
    parser.add_argument(
        "--baseline",
        metavar="COMMIT",
        default=None,
        help="measure the loadgen package of COMMIT instead of the checkout's",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run folder (journal, locust.log)")
    parser.add_argument("--out", type=Path, default=None, help="also write the samples as JSON here")
    args = parser.parse_args()

    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="bench-rto-", dir=lab_dir()))
    root.chmod(0o755)
    try:
        locustfile = baseline_locustfile(args.baseline, root / "baseline") if args.baseline else None
        with Engine(root / "engine") as engine:
            found = measure(
                engine,
                root,
                tenants=args.tenants,
                freezes=args.freezes,
                seconds=args.seconds,
                rate=args.rate,
                stability=args.stability,
                settle=args.settle,
                spread=args.spread,
                locustfile=locustfile,
            )
    finally:
        if args.keep:
            print(f"run folder kept: {root / 'run'}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()

    code = f"baseline {args.baseline} (loadgen)" if args.baseline else _commit()
    print(f"\ncode: {code}  load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(f"{'freeze':>6} {'tenant':<10} {'D s':>7} {'RTO s':>7} {'RTO-D s':>8} {'attempts':>8}")
    for s in found:
        rto = "-" if s.rto is None else f"{s.rto:.3f}"
        bias = "-" if s.bias is None else f"{s.bias:+.3f}"
        print(f"{s.freeze:>6} {s.tenant:<10} {s.outage:>7.3f} {rto:>7} {bias:>8} {s.attempts_during:>8}")
    summary = _summary(found)
    print(
        "RTO - D over {samples} samples ({not_recovered} not recovered): mean {bias_mean:+.3f}s, "
        "median {bias_median:+.3f}s, min {bias_min:+.3f}s, max {bias_max:+.3f}s; "
        "first acks after a thaw spread over at most {comeback_spread_max:.3f}s across tenants; "
        "{attempts_during_mean:.1f} attempts per tenant per outage".format(**summary)
    )
    if args.out:
        args.out.write_text(
            json.dumps({"summary": summary, "samples": [s.__dict__ for s in found]}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
