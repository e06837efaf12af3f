"""``python -m orchestration release|capacity``: a release's whole checklist, or a capacity sweep.

``release`` (:mod:`orchestration.release`) runs the preflight, the fault and backup
experiments and the alerting drill, then writes the go/no-go document and ``junit.xml``.
Exit codes: 0 GO, 1 NO-GO, 2 could not run, 130 interrupted.

``capacity`` has the same knobs as ``experiments/opt-in/capacity.json``. Prints one line per step, then the
sweep's answer and where its report is. Exit codes: 0 the sweep completed, 2 bad input
or the sweep stopped on an error (one line says which; nothing was created when the
input was wrong), 130 interrupted (the finished steps are reported, marked incomplete).
``--cleanup DIR`` deletes what a sweep killed with SIGKILL left behind, from its ledger.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from loadgen.tenants import redact
from orchestration.capacity import CAPACITY_NAME, cleanup, run_sweep
from orchestration.capacity_settings import Settings
from orchestration.errors import OrchestrationError
from orchestration.release import EXIT_CODES, ReleaseSettings, run_release
from probes.errors import ProbeError
from reports.capacity import answer

__all__ = ["main"]


def _rates(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(r) for r in text.split(",") if r.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"write rates must be numbers separated by commas, got {text!r}"
        ) from None


def _parser() -> argparse.ArgumentParser:
    d = Settings()
    parser = argparse.ArgumentParser(prog="python -m orchestration", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    codes = "; ".join(f"{code} {text.split(':')[0]}" for code, text in EXIT_CODES.items())
    rel = sub.add_parser(
        "release",
        help="the whole checklist against a target: preflight, experiments, go/no-go, junit.xml",
        description=f"Exit codes: {codes}.",
    )
    rel.add_argument("--var-file", dest="var_files", type=Path, action="append", default=[], required=True,
                     help="Chaos Toolkit var file for every experiment (repeatable)")  # fmt: skip
    rel.add_argument("--kubeconfig", type=Path, default=None,
                     help="kubeconfig of the target (else $KUBECONFIG)")  # fmt: skip
    rel.add_argument("--experiments", type=_names, default=(),
                     help="comma-separated experiments (default: every experiments/*.json)")  # fmt: skip
    rel.add_argument("--capacity", action="store_true",
                     help="also run the capacity sweep (experiments/opt-in/capacity.json)")  # fmt: skip
    rel.add_argument("--soak", action="store_true",
                     help="also run the soak, last (experiments/opt-in/soak.json)")  # fmt: skip
    rel.add_argument("--signoffs", type=Path, default=None, help="sign-offs for the gates a person decides")
    rel.add_argument("--checklist", type=Path, default=None,
                     help="production-gates checklist (default: the project's)")  # fmt: skip
    rel.add_argument("--out", type=Path, default=None,
                     help="release folder (default runs/release-<UTC time>)")  # fmt: skip
    cap = sub.add_parser("capacity", help="how many tenants pass the objective, with a fault at every step")
    cap.add_argument(
        "--from", dest="tenants_from", type=int, default=d.tenants_from, help="smallest tenant count"
    )
    cap.add_argument("--to", dest="tenants_to", type=int, default=d.tenants_to, help="largest tenant count")
    cap.add_argument("--step", dest="tenants_step", type=int, default=d.tenants_step, help="line-search step")
    cap.add_argument("--rate", dest="write_rates", type=_rates, default=d.write_rates,
                     help="writes/s per tenant; a comma-separated list sweeps each rate")  # fmt: skip
    cap.add_argument(
        "--fault", default=d.fault, help="fault experiment at each step (experiments/<fault>.json)"
    )
    cap.add_argument("--trials", type=int, default=d.trials, help="runs of each boundary step")
    cap.add_argument("--objective", dest="objective_seconds", type=float, default=d.objective_seconds,
                     help="RTO objective, seconds")  # fmt: skip
    cap.add_argument("--latency-limit", dest="latency_limit_ms", type=float, default=d.latency_limit_ms,
                     help="p99 write latency limit, ms (from each write's scheduled time)")  # fmt: skip
    cap.add_argument("--min-efficiency", type=float, default=d.min_efficiency,
                     help="acknowledged writes/s ÷ offered writes/s a step needs")  # fmt: skip
    cap.add_argument(
        "--precision", type=int, default=d.precision, help="bisect until the boundary is this close"
    )
    cap.add_argument("--namespace", default=d.namespace, help="namespace of the sweep's instances")
    cap.add_argument(
        "--template", type=Path, default=None, help="MSSQLInstance template (required on a cluster)"
    )
    cap.add_argument("--experiments", dest="experiments_dir", type=Path, default=d.experiments_dir)
    cap.add_argument("--var-file", dest="var_files", type=Path, action="append", default=[],
                     help="Chaos Toolkit var file for every step (repeatable)")  # fmt: skip
    cap.add_argument("--var", dest="extra_vars", action="append", default=[], metavar="KEY=VALUE",
                     help="extra configuration for every step (repeatable)")  # fmt: skip
    cap.add_argument("--out", type=Path, default=d.out, help="folder for the sweep folder")
    cap.add_argument("--observe", dest="observe_seconds", type=float, default=d.observe_seconds,
                     help="seconds each step keeps measuring after recovery")  # fmt: skip
    cap.add_argument("--stability", dest="stability_seconds", type=float, default=d.stability_seconds)
    cap.add_argument("--ready-timeout", type=float, default=d.ready_timeout,
                     help="seconds the sweep's instances may take to be Ready")  # fmt: skip
    cap.add_argument("--cleanup", type=Path, default=None, metavar="DIR",
                     help="delete the instances an interrupted sweep in DIR left, and exit")  # fmt: skip
    return parser


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("name at least one experiment, e.g. pod-eviction,node-drain")
    return names


def _release(args: argparse.Namespace) -> int:
    settings = ReleaseSettings(
        var_files=tuple(args.var_files),
        experiments=tuple(args.experiments),
        capacity=args.capacity,
        soak=args.soak,
        signoffs=args.signoffs,
        checklist=args.checklist,
        out=args.out,
        kubeconfig=args.kubeconfig,
    )
    return run_release(settings, say=lambda line: print(redact(line), flush=True))


def _extra(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise OrchestrationError(f"--var {pair!r}: write KEY=VALUE")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "release":
        return _release(args)
    try:
        settings = Settings(
            tenants_from=args.tenants_from,
            tenants_to=args.tenants_to,
            tenants_step=args.tenants_step,
            write_rates=args.write_rates,
            fault=args.fault,
            trials=args.trials,
            objective_seconds=args.objective_seconds,
            latency_limit_ms=args.latency_limit_ms,
            min_efficiency=args.min_efficiency,
            precision=args.precision,
            namespace=args.namespace,
            template=args.template,
            experiments_dir=args.experiments_dir,
            var_files=tuple(args.var_files),
            out=args.out,
            observe_seconds=args.observe_seconds,
            stability_seconds=args.stability_seconds,
            ready_timeout=args.ready_timeout,
            extra_vars=_extra(args.extra_vars),
        )
        if args.cleanup is not None:
            deleted = cleanup(args.cleanup, settings)
            print(f"capacity: deleted {len(deleted)} instance(s): {', '.join(deleted) or 'none left'}")
            return 0
        folder = run_sweep(settings)
    except (OrchestrationError, ProbeError) as exc:
        sys.stderr.write(f"capacity: {redact(str(exc))}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    doc = json.loads((folder / CAPACITY_NAME).read_text())
    print(answer(doc))
    print(f"report: {folder / 'capacity.md'}")
    return 130 if doc.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
