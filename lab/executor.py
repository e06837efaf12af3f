"""``python -m lab.executor``: the program of the ``mssql-lab/executor`` image (job pods).

Commands (the container's ``args``):

* ``sleep N`` - wait N seconds (a float), then exit 0; SIGTERM ends the wait with 143;
* ``exit N`` - exit with status N (0-255) at once.

Each command prints one line saying what it does, so ``kubectl logs`` shows it. An
unknown command or a bad number is one line on stderr and exit status 2.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

__all__ = ["main"]

USAGE = "usage: python -m lab.executor sleep SECONDS | exit CODE"


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


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
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


if __name__ == "__main__":
    sys.exit(main())
