"""``python -m loadgen``: check tenants, or run the N-tenant load for a while.

``check --tenants-file F`` connects to every tenant once (driver, address, password,
table) and says which one is wrong and how to fix it. ``run`` does the same checks,
then runs Locust headless.

Exit codes (``run``): 0 the load ran its duration (failed writes during a fault are
data, not an error); 2 bad input or an unreachable tenant, one line on stderr, nothing
started; 3 the load process died or ended badly (one line naming how; the journal up
to that moment is kept); 130 interrupted (Ctrl-C), after stopping the load.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loadgen.errors import LoadgenError
from loadgen.runner import LoadRun, default_run_id, preflight
from loadgen.tenants import load_tenants, redact

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "EXIT_LOAD_DIED", "EXIT_OK", "main"]

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_LOAD_DIED = 3
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadgen", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="connect to every tenant once")
    check.add_argument("--tenants-file", type=Path, required=True)
    run = sub.add_parser("run", help="run the write load headless")
    run.add_argument("--tenants-file", type=Path, required=True)
    run.add_argument("--duration", type=float, required=True, help="seconds")
    run.add_argument(
        "--rate", type=float, default=20.0, help="writes per second per tenant (0 = unthrottled)"
    )
    run.add_argument("--users", type=int, default=0, help="Locust users (default: one per tenant)")
    run.add_argument("--processes", type=int, default=0, help="Locust worker processes (0 = one process)")
    run.add_argument("--run-dir", type=Path, default=None, help="default runs/<run-id>")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            if args.duration <= 0:
                raise LoadgenError(f"--duration must be positive, got {args.duration:g}")
            if args.rate < 0:
                raise LoadgenError(f"--rate must be 0 or more, got {args.rate:g}")
            if args.users < 0:
                raise LoadgenError(f"--users must be positive, got {args.users}")
        tenants = load_tenants(args.tenants_file)
        preflight(tenants)
        if args.command == "check":
            for tenant in tenants:
                print(f"ok  {tenant.describe()}")
            return 0
        run_id = default_run_id()
        run_dir = args.run_dir or Path("runs") / run_id
        load = LoadRun(
            args.tenants_file,
            run_dir,
            run_id,
            users=args.users or len(tenants),
            rate=args.rate,
            processes=args.processes,
            duration=args.duration,
        )
        load.start()
        try:
            load.wait()
        except KeyboardInterrupt:
            load.stop()
            print(f"journal: {run_dir / 'journal'}")
            return EXIT_INTERRUPTED
        print(f"journal: {run_dir / 'journal'}")
        problem = load.problem()
        if problem is not None:
            sys.stderr.write(f"loadgen: {redact(problem)}\n")
            return EXIT_LOAD_DIED
        return EXIT_OK
    except LoadgenError as exc:
        sys.stderr.write(f"loadgen: {redact(str(exc))}\n")
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
