"""Command line: ``python -m reports build RUN_DIR [--rto SECONDS] [--stability SECONDS]``,
``python -m reports gonogo RUN_DIR... --out PATH [--checklist PATH] [--signoffs FILE] [--junit FILE]``,
``python -m reports gonogo --signoffs-template [--out FILE]`` and
``python -m reports capacity SWEEP_DIR``.

``build`` prints the path of the report it wrote; ``gonogo`` prints the verdict and the
path of the go/no-go document (its exit status does not depend on the verdict; a folder
holding ``capacity.json`` among its folders is a capacity sweep, and a folder holding run
and sweep folders, such as ``make demo``'s ``runs/demo-<time>/``, stands for them), and
with ``--junit FILE`` also writes the decision as JUnit XML (``reports.junit``; the path is
checked before anything is written) and prints its path on a second line;
``gonogo --signoffs-template`` writes a sign-off file to fill in (``signoffs.yaml``
unless ``--out``; never over an existing file) and prints its path; ``capacity`` renders a
sweep's ``capacity.md`` and plots again from its ``capacity.json`` and prints the report's
path. Errors a user can fix (a missing run folder, ``run.json``, ``summary.json``,
``capacity.json`` or journal, an unreadable fault log or read-back, a malformed
``capacity.json``) print one line, ``reports: <message>``, on stderr and exit with status
2, without a traceback.

``html`` renders each markdown file as ``<stem>.html`` beside it (``reports.html``) and prints
the paths; ``--screenshot`` / ``--pdf`` add ``<stem>-page.png`` / ``<stem>.pdf`` from headless
Chromium (``reports.browser``), and fail with one line when Chromium is not installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from loadgen.errors import LoadgenError
from probes.errors import ProbeError
from reports.browser import require_chromium, snapshot_pages
from reports.build import build, read_run_meta
from reports.capacity import render_sweep
from reports.checklist import default_checklist_path
from reports.errors import ReportError
from reports.gonogo import write_gonogo
from reports.html import write_html
from reports.junit import check_junit_path, write_junit
from reports.signoffs import TEMPLATE_NAME, write_signoffs_template

__all__ = ["main"]

EXIT_USAGE = 2


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number of seconds >= 0")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reports", description="Reports of chaos runs.")
    commands = parser.add_subparsers(dest="command", required=True)
    build_cmd = commands.add_parser(
        "build", help="analyse a run folder and write summary.json, report.md, plots and metrics.prom"
    )
    build_cmd.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run folder (runs/<run-id>/)")
    build_cmd.add_argument(
        "--rto",
        type=_seconds,
        metavar="SECONDS",
        help="RTO objective in seconds (default: run.json's, else 60)",
    )
    build_cmd.add_argument(
        "--stability",
        type=_seconds,
        metavar="SECONDS",
        help="stability period in seconds (default: run.json's, else 5)",
    )
    gonogo_cmd = commands.add_parser(
        "gonogo", help="judge the production-gates checklist from run folders and write the go/no-go document"
    )
    gonogo_cmd.add_argument(
        "run_dirs",
        type=Path,
        nargs="*",
        metavar="RUN_DIR",
        help="run folders to judge, capacity sweep folders (holding capacity.json), or a folder of them",
    )
    gonogo_cmd.add_argument(
        "--out",
        type=Path,
        metavar="PATH",
        help="the document to write (its RTO plot goes next to it); with --signoffs-template, the "
        f"template to write (default {TEMPLATE_NAME})",
    )
    gonogo_cmd.add_argument(
        "--checklist",
        type=Path,
        metavar="PATH",
        help="the checklist (default: the project's reports/checklist.md)",
    )
    gonogo_cmd.add_argument(
        "--signoffs",
        type=Path,
        metavar="FILE",
        help="YAML sign-offs by people for the gates only a person can judge (see --signoffs-template)",
    )
    gonogo_cmd.add_argument(
        "--junit",
        type=Path,
        metavar="FILE",
        help="also write the decision as JUnit XML for a CI test view (suites gates, experiments, verdict)",
    )
    gonogo_cmd.add_argument(
        "--signoffs-template",
        action="store_true",
        help="write a sign-off file to fill in, one entry per gate a person signs, and print its path",
    )
    capacity_cmd = commands.add_parser(
        "capacity", help="render a capacity sweep's capacity.md and plots again from its capacity.json"
    )
    capacity_cmd.add_argument(
        "sweep_dir", type=Path, metavar="SWEEP_DIR", help="the sweep folder (the one holding capacity.json)"
    )
    html_cmd = commands.add_parser(
        "html", help="render report markdown (report.md, capacity.md, the go/no-go document) as one HTML file"
    )
    html_cmd.add_argument("markdown", type=Path, nargs="+", metavar="FILE.md", help="the markdown to render")
    html_cmd.add_argument(
        "--screenshot", action="store_true", help="also write <stem>-page.png with headless Chromium"
    )
    html_cmd.add_argument("--pdf", action="store_true", help="also print <stem>.pdf with headless Chromium")
    return parser


def _gonogo(args: argparse.Namespace) -> str:
    if args.signoffs_template:
        if args.run_dirs or args.signoffs or args.checklist or args.junit:
            raise ReportError(
                "--signoffs-template writes a template only; drop the run folders, --signoffs, --checklist "
                "and --junit"
            )
        path = write_signoffs_template(args.out or Path(TEMPLATE_NAME))
        return (
            f"wrote the sign-off template {path}: replace every placeholder (it fails validation until "
            f"then), delete the entries nobody signed, and pass --signoffs {path}"
        )
    if not args.run_dirs or args.out is None:
        raise ReportError(
            "gonogo needs run folders and --out PATH (the document to write); "
            "or --signoffs-template for a sign-off file to fill in"
        )
    if args.junit is not None:
        check_junit_path(args.junit, document=args.out)  # before anything is written
    result = write_gonogo(args.run_dirs, args.out, args.checklist, args.signoffs)
    if args.junit is None:
        return f"{result.verdict} {args.out}"
    checklist = args.checklist if args.checklist is not None else default_checklist_path()
    junit = write_junit(result, args.junit, checklist_path=checklist)
    return f"{result.verdict} {args.out}\n{junit}"


def _build(args: argparse.Namespace) -> Path:
    objective = None
    if args.rto is not None:
        objective = replace(read_run_meta(args.run_dir).objective, rto_seconds=args.rto)
    return build(args.run_dir, objective=objective, stability=args.stability)


def _html(args: argparse.Namespace) -> str:
    if args.screenshot or args.pdf:
        require_chromium()  # before writing anything
    pages = [write_html(path) for path in args.markdown]
    extra = snapshot_pages(pages, shots=args.screenshot, pdfs=args.pdf) if args.screenshot or args.pdf else []
    return "\n".join(str(p) for p in [*pages, *extra])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "build":
            report: object = _build(args)
        elif args.command == "html":
            report = _html(args)
        elif args.command == "capacity":
            report = render_sweep(args.sweep_dir)
        else:
            report = _gonogo(args)
    except (ReportError, ProbeError, LoadgenError) as exc:
        message = " ".join(str(exc).split())
        print(f"reports: {message}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"reports: {exc}; check the run folder's permissions and free space", file=sys.stderr)
        return EXIT_USAGE
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
