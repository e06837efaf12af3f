"""``python -m lab.kubelet``: run one node's kubelet until SIGTERM/SIGINT.

``--node NAME --state DIR`` and one of ``--kubeconfig FILE`` (the kubelet's own
credential and the CA: how ``python -m lab up`` starts it) or ``--server URL`` (with an
optional ``--token``: bare test servers) are required; ``--logs`` and ``--volumes``
default from the cluster layout (see :mod:`lab.kubelet.config`). Pods get service-account
tokens when the kubelet has a credential (``--[no-]service-account-tokens`` decides
otherwise, :mod:`lab.kubelet.sa_token`). Logs go to stderr.
SIGTERM stops every pod of the node (grace capped by ``--stop-grace``) and exits 0;
a bad argument is one line on stderr and exit status 2.

``--node-cpu CORES`` puts every container of the node under one CPU quota (a cgroup,
:mod:`lab.cgroups`, removed on a clean exit); ``--commit-cpu-ms MS`` gives engine
containers ``LAB_COMMIT_CPU_MS`` (:mod:`lab.kubelet.commit_cost`). Both are off by default.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from lab.cgroups import MIN_CORES
from lab.errors import LabError
from lab.kubelet.commit_cost import MAX_COMMIT_CPU_MS
from lab.kubelet.config import KubeletConfig
from lab.kubelet.kubelet import Kubelet

__all__ = ["main", "parse_args"]


def parse_args(argv: list[str] | None = None) -> tuple[KubeletConfig, bool]:
    parser = argparse.ArgumentParser(prog="python -m lab.kubelet", description=__doc__.split("\n")[0])
    parser.add_argument("--node", required=True, help="node name, e.g. lab-node-1")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--kubeconfig", type=Path, default=None, help="the kubelet's kubeconfig (server, token, CA)"
    )
    where.add_argument(
        "--server", default=None, help="API server URL without a kubeconfig, e.g. http://127.0.0.1:6443"
    )
    parser.add_argument("--state", required=True, type=Path, help="this node's state folder")
    parser.add_argument("--logs", type=Path, default=None, help="pod log folder (the API server's --logs)")
    parser.add_argument("--volumes", type=Path, default=None, help="PVC folders root")
    parser.add_argument("--token", default="", help="bearer token for --server")
    parser.add_argument(
        "--service-account-tokens",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="project service-account tokens into pods (default: when the kubelet has a credential)",
    )
    parser.add_argument("--heartbeat", type=float, default=1.0, help="node heartbeat period, seconds")
    parser.add_argument("--backoff-base", type=float, default=1.0, help="first crash-loop back-off, seconds")
    parser.add_argument(
        "--backoff-max", type=float, default=10.0, help="largest crash-loop back-off, seconds"
    )
    parser.add_argument(
        "--stop-grace",
        type=float,
        default=10.0,
        help="longest grace period for pods when the kubelet itself stops, seconds",
    )
    parser.add_argument(
        "--node-cpu", type=float, default=None, metavar="CORES", help="CPU quota of the node (default none)"
    )
    parser.add_argument(
        "--commit-cpu-ms",
        type=float,
        default=None,
        metavar="MS",
        help="server CPU every committed insert costs in engine containers (default none)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every container event")
    args = parser.parse_args(argv)
    if not args.node.strip():
        parser.error("--node must not be empty")
    if args.token and args.kubeconfig is not None:
        parser.error("--token goes with --server; the kubeconfig carries the kubelet's token")
    if args.node_cpu is not None and not args.node_cpu >= MIN_CORES:
        parser.error(f"--node-cpu must be at least {MIN_CORES} cores, got {args.node_cpu:g}")
    if args.commit_cpu_ms is not None and not 0 < args.commit_cpu_ms <= MAX_COMMIT_CPU_MS:
        parser.error(
            f"--commit-cpu-ms must be above 0 and at most {MAX_COMMIT_CPU_MS:g}, got {args.commit_cpu_ms:g}"
        )
    try:
        cfg = _config(args)
    except LabError as exc:
        parser.error(str(exc))
    return cfg, args.verbose


def _config(args: argparse.Namespace) -> KubeletConfig:
    return KubeletConfig(
        node=args.node,
        server=args.server or "",
        state_dir=args.state,
        logs_dir=args.logs,
        volumes_dir=args.volumes,
        token=args.token,
        kubeconfig=args.kubeconfig,
        service_account_tokens=args.service_account_tokens,
        heartbeat=args.heartbeat,
        backoff_base=args.backoff_base,
        backoff_max=args.backoff_max,
        stop_grace_cap=args.stop_grace,
        node_cpu=args.node_cpu,
        commit_cpu_ms=args.commit_cpu_ms,
    )


def main(argv: list[str] | None = None) -> int:
    cfg, verbose = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s kubelet[{cfg.node}] %(name)s: %(message)s",
    )
    try:
        kubelet = Kubelet(cfg)
    except LabError as exc:
        print(f"lab kubelet: {exc}", file=sys.stderr)
        return 2

    def _stop(signum: int, frame: FrameType | None) -> None:
        kubelet.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        return kubelet.run()
    except LabError as exc:
        print(f"lab kubelet: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
