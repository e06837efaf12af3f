"""The executor's test commands: ``sleep N`` and ``exit N`` (see :mod:`lab.executor`)."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

__all__ = ["USAGE", "simple"]

USAGE = (
    "usage: python -m lab.executor sleep SECONDS | exit CODE"
    " | backup-full|backup-log --id ID [--store DIR] [--fail REASON]"
    " | restore --name N --target-time T [--store DIR] [--home DIR] | verify INSTANCE BACKUP_ID [-n NS]"
)


def _number(text: str, kind: type[int] | type[float]) -> float | None:
    try:
        value = kind(text)
    except ValueError:
        return None
    return value if value >= 0 else None


def _sleep(seconds: float) -> int:
    stop = threading.Event()
    terminated = []

    def _term(signum: int, frame: FrameType | None) -> None:
        terminated.append(signum)
        stop.set()

    signal.signal(signal.SIGTERM, _term)
    print(f"executor: sleeping {seconds:g}s", flush=True)
    stop.wait(seconds)
    if terminated:
        print("executor: terminated", flush=True)
        return 128 + signal.SIGTERM
    print("executor: done", flush=True)
    return 0


def simple(args: list[str]) -> int:
    """Run ``sleep``/``exit``; 2 with a usage line for anything else."""
    if len(args) == 2 and args[0] == "sleep":
        seconds = _number(args[1], float)
        if seconds is not None:
            return _sleep(seconds)
    elif len(args) == 2 and args[0] == "exit":
        code = _number(args[1], int)
        if code is not None and code <= 255:
            print(f"executor: exiting with {int(code)}", flush=True)
            return int(code)
    print(f"executor: cannot run {' '.join(args) or 'nothing'!r}: {USAGE}", file=sys.stderr, flush=True)
    return 2
