"""``python -m probes local-run``: a measured run against local engine instances.

``python -m probes capacity ...`` is ``python -m orchestration capacity ...`` (the sweep
drives probes and reports, so it lives in the layer above them; this only hands the
process over to it, without importing it).

Prints the report path on success. Any error a user can fix ends in one line on
stderr and exit code 2, with whatever the run already wrote left in place.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lab.errors import LabError
from loadgen.errors import LoadgenError
from loadgen.tenants import redact
from probes.errors import ProbeError
from probes.finalize import finalize
from probes.local_run import LocalRunPlan, run_local

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m probes", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    local = sub.add_parser(
        "local-run", help="load + freeze + kill on local PostgreSQL tenants, then the report"
    )
    defaults = LocalRunPlan()
    local.add_argument("--tenants", type=int, default=defaults.tenants)
    local.add_argument(
        "--duration", type=float, default=defaults.duration, help="seconds of load after start-up"
    )
    local.add_argument("--rate", type=float, default=defaults.rate, help="writes per second per tenant")
    local.add_argument("--freeze-tenant", type=int, default=defaults.freeze_tenant)
    local.add_argument("--freeze-at", type=float, default=defaults.freeze_at)
    local.add_argument("--freeze-seconds", type=float, default=defaults.freeze_seconds)
    local.add_argument("--kill-tenant", type=int, default=defaults.kill_tenant)
    local.add_argument("--kill-at", type=float, default=defaults.kill_at)
    local.add_argument("--stability", type=float, default=defaults.stability)
    local.add_argument("--runs", type=Path, default=Path("runs"), help="folder for run folders")
    fin = sub.add_parser("finalize", help="evidence, read-back and report for a finished run folder")
    fin.add_argument("run_dir", type=Path)
    fin.add_argument("--kubeconfig", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["capacity"]:
        os.execv(sys.executable, [sys.executable, "-m", "orchestration", *argv])  # noqa: S606
    args = _parser().parse_args(argv)
    if args.command == "finalize":
        try:
            report = finalize(args.run_dir, args.kubeconfig)
        except (ProbeError, LoadgenError) as exc:
            sys.stderr.write(f"probes: {redact(str(exc))}\n")
            return 2
        print(f"report: {report}")
        return 0
    plan = LocalRunPlan(
        tenants=args.tenants,
        duration=args.duration,
        rate=args.rate,
        freeze_tenant=args.freeze_tenant,
        freeze_at=args.freeze_at,
        freeze_seconds=args.freeze_seconds,
        kill_tenant=args.kill_tenant,
        kill_at=args.kill_at,
        stability=args.stability,
    )
    try:
        run_dir = run_local(plan, args.runs)
    except (ProbeError, LoadgenError, LabError) as exc:
        sys.stderr.write(f"probes: {redact(str(exc))}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("probes: interrupted; servers stopped, partial run left in place\n")
        return 130
    print(f"report: {run_dir / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
