"""``python -m lab.api``: run the lab's Kubernetes-compatible API server.

Binds 127.0.0.1, prints ``listening on https://127.0.0.1:<port>`` (``http://`` without
TLS) as the first line on stdout (port 0 picks a free one, also written to
``<data>/apiserver.port``), logs to stderr, stops cleanly on SIGTERM/SIGINT. It must be
told how to authenticate, with kube-apiserver's flags (``--token-auth-file``,
``--service-account-key-file``, ``--client-ca-file``; ``--tls-cert-file`` and
``--tls-private-key-file`` for HTTPS), or be started with ``--insecure-allow-all`` (every
request is the admin: tests only). Neither, a taken port, a locked or unreadable data
folder, or an unreadable certificate, key or token file is one line on stderr and exit
status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import signal
import sys
from pathlib import Path

from lab.api.sa_tokens import DEFAULT_ISSUER
from lab.api.server import bound_url, serve
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
    _security_flags(parser)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    settings = Settings(
        port=args.port,
        data_dir=args.data.resolve() if args.data else None,
        policy_file=args.policy.resolve() if args.policy else None,
        logs_dir=args.logs.resolve() if args.logs else None,
        pod_removal_grace=args.pod_removal_grace,
        watch_history=args.watch_history,
        tls_cert_file=_resolved(args.tls_cert_file),
        tls_key_file=_resolved(args.tls_private_key_file),
        client_ca_file=_resolved(args.client_ca_file),
        token_auth_file=_resolved(args.token_auth_file),
        service_account_key_file=_resolved(args.service_account_key_file),
        service_account_issuer=args.service_account_issuer,
        api_audiences=tuple(a.strip() for a in args.api_audiences.split(",") if a.strip()),
        insecure_allow_all=args.insecure_allow_all,
    )
    return settings, args.verbose


def _resolved(path: Path | None) -> Path | None:
    return path.resolve() if path is not None else None


def _security_flags(parser: argparse.ArgumentParser) -> None:
    """kube-apiserver's flags of the same names."""
    parser.add_argument("--tls-cert-file", type=Path, default=None, help="serving certificate (PEM): HTTPS")
    parser.add_argument("--tls-private-key-file", type=Path, default=None, help="its private key (PEM)")
    parser.add_argument(
        "--client-ca-file", type=Path, default=None, help="CA whose client certificates authenticate (CN, O)"
    )
    parser.add_argument(
        "--token-auth-file", type=Path, default=None, help='static tokens: CSV token,user,uid,"group1,group2"'
    )
    parser.add_argument(
        "--service-account-key-file",
        type=Path,
        default=None,
        help="EC P-256 key (PEM) that signs and verifies service-account tokens",
    )
    parser.add_argument(
        "--service-account-issuer", default=DEFAULT_ISSUER, help=f"the tokens' iss (default {DEFAULT_ISSUER})"
    )
    parser.add_argument(
        "--api-audiences", default="", help="comma-separated audiences tokens must name (default: the issuer)"
    )
    parser.add_argument(
        "--insecure-allow-all",
        action="store_true",
        help="no authentication: every request is lab-admin in system:masters (tests only)",
    )


async def _run(settings: Settings, verbose: bool) -> int:
    try:
        runner = await serve(settings, access_log=verbose, require_auth=True)
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
    print(f"listening on {bound_url(runner)}", flush=True)
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
