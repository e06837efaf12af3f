"""``python -m lab.api``: run the lab's Kubernetes-compatible API server.

Binds 127.0.0.1, prints ``listening on http://127.0.0.1:<port>`` as the first line
on stdout (port 0 picks a free one, also written to ``<data>/apiserver.port``),
logs to stderr, stops cleanly on SIGTERM/SIGINT. A taken port or a locked or
unreadable data folder is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import signal
import sys
from pathlib import Path

from lab.api.server import bound_port, serve
from lab.api.settings import Settings
from lab.errors import LabError

__all__ = ["main", "parse_args"]


def parse_args(argv: list[str] | None = None) -> tuple[Settings, bool]:
    parser = argparse.ArgumentParser(prog="python -m lab.api", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="state folder (write-ahead log, snapshot); omit to keep state in memory",
    )
    parser.add_argument("--policy", type=Path, default=None, help="authorization policy file (YAML or JSON)")
    parser.add_argument("--logs", type=Path, default=None, help="pod log folder (default <data>/logs)")
    parser.add_argument(
        "--pod-removal-grace",
        type=float,
        default=None,
        metavar="SECONDS",
        help="remove terminating pods after at most SECONDS without a kubelet (0: at once)",
    )
    parser.add_argument("--watch-history", type=int, default=10_000, help="events kept for watch resumption")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    settings = Settings(
        port=args.port,
        data_dir=args.data.resolve() if args.data else None,
        policy_file=args.policy.resolve() if args.policy else None,
        logs_dir=args.logs.resolve() if args.logs else None,
        pod_removal_grace=args.pod_removal_grace,
        watch_history=args.watch_history,
    )
    return settings, args.verbose


async def _run(settings: Settings, verbose: bool) -> int:
    try:
        runner = await serve(settings, access_log=verbose)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(
                f"lab api: port {settings.port} on {settings.host} is already in use: pick another --port",
                file=sys.stderr,
            )
        else:
            print(
                f"lab api: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", file=sys.stderr
            )
        return 2
    except LabError as exc:
        print(f"lab api: {exc}", file=sys.stderr)
        return 2
    print(f"listening on http://{settings.host}:{bound_port(runner)}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    settings, verbose = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(_run(settings, verbose))


if __name__ == "__main__":
    sys.exit(main())
