"""``python -m lab``: run the embedded lab cluster.

    python -m lab up [--tenants N] [--nodes 3] [--port P] [--timeout S]
                     [--node-cpu CORES|off] [--commit-cpu-ms MS|off]
                     [--no-monitoring] [--alert-rules FILE]
    python -m lab status [--json]
    python -m lab down [--wipe]
    python -m lab restart-node NAME --down SECONDS [--no-wait] [--json]

``up`` starts the control plane and one kubelet per node (detached, pidfiles under
``.lab/cluster/pids``), applies the operator, creates MSSQLInstances ``tenant-0..N-1``
in namespace ``tenants``, waits until they are Ready and writes ``.lab/kubeconfig`` and
``.lab/tenants.json``. Any failure is one line on stderr and exit status 2.

``up`` also starts Prometheus and Alertmanager (:mod:`lab.monitoring`) once the control
plane is ready, with the alert rules of ``deploy/alerts/mssql-harness.rules.yaml`` (or
``--alert-rules FILE``, or ``$HARNESS_ALERT_RULES``), and returns when both are ready
and the rules are loaded; their URLs are in ``.lab/monitoring/endpoints.json``.
``--no-monitoring`` skips them (and stops them if they run); without it, missing
programs or rules fail ``up``.

``--node-cpu`` and ``--commit-cpu-ms`` are the capacity knobs (:mod:`lab.capacity`): a
CPU quota per node and a server CPU cost per committed insert, so one node carries at
most ``node_cpu / (commit_cpu_ms / 1000 * rate)`` tenants writing ``rate`` rows/s. Off by
default; once given they are kept (``restart-node``, the next ``up``) until ``off``.

``restart-node --json`` prints its result as one JSON object on one line instead of the
sentence, for programs that run it: ``signalled_at`` (UTC epoch seconds, read just
before the first signal reached the node) is when the node really went down, later
than when the caller started this command by the command's own start-up time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lab import cluster, timing
from lab.capacity import NodeKnobs
from lab.errors import LabError

__all__ = ["main"]


def _say(message: str) -> None:
    print(message, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab", description="Run the embedded lab cluster.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start the lab (or complete a running one) and wait for the tenants")
    p_up.add_argument("--tenants", type=int, default=1, help="MSSQLInstances tenant-0..N-1 (default 1)")
    p_up.add_argument("--nodes", type=int, default=3, help="nodes lab-node-1..N (default 3)")
    p_up.add_argument(
        "--port", type=int, default=None, help="API server port (default: a free one, then kept)"
    )
    p_up.add_argument(
        "--timeout", type=float, default=180.0, help="seconds to wait for the tenants to be Ready"
    )
    p_up.add_argument(
        "--node-cpu",
        default=None,
        metavar="CORES",
        help="CPU quota of every node, in cores (cgroups); 'off' removes a kept one (default: off)",
    )
    p_up.add_argument(
        "--commit-cpu-ms",
        default=None,
        metavar="MS",
        help="server CPU every committed insert costs; 'off' removes a kept one (default: off)",
    )
    p_up.add_argument(
        "--no-monitoring",
        action="store_true",
        help="do not start Prometheus and Alertmanager (and stop them if they run)",
    )
    p_up.add_argument(
        "--alert-rules",
        type=Path,
        default=None,
        metavar="FILE",
        help="Prometheus rules file (default: $HARNESS_ALERT_RULES, else the repository's "
        "deploy/alerts/mssql-harness.rules.yaml)",
    )
    p_up.add_argument(
        "--timing",
        default=None,
        metavar="PROFILE",
        help=f"timing profile: {' or '.join(timing.PROFILES)} (default: ${timing.ENV}, else the "
        f"lab's kept one, else {timing.DEFAULT}); fast shortens every wait, for tests (lab.timing)",
    )
    p_status = sub.add_parser("status", help="processes, nodes and instances")
    p_status.add_argument("--json", action="store_true", help="print JSON")
    p_down = sub.add_parser("down", help="stop every lab process (data is kept)")
    p_down.add_argument("--wipe", action="store_true", help="also delete all lab state")
    p_restart = sub.add_parser(
        "restart-node", help="crash a node (SIGKILL everything of it), then start it again"
    )
    p_restart.add_argument("node", help="node name, e.g. lab-node-1")
    p_restart.add_argument(
        "--down", type=float, required=True, metavar="SECONDS", help="how long the node stays down"
    )
    p_restart.add_argument(
        "--no-wait", action="store_true", help="do not wait for the node to be Ready again"
    )
    p_restart.add_argument(
        "--json", action="store_true", help="print the result (signalled_at, ...) as one JSON object"
    )
    p_stop = sub.add_parser(
        "stop-node", help="lose a node: SIGKILL everything of it and leave it down (start-node ends it)"
    )
    p_stop.add_argument("node", help="node name, e.g. lab-node-1")
    p_stop.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p_start = sub.add_parser("start-node", help="start a stopped node's kubelet again")
    p_start.add_argument("node", help="node name, e.g. lab-node-1")
    p_start.add_argument("--no-wait", action="store_true", help="do not wait for the node to be Ready again")
    p_start.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return parser


def _print_status(info: dict[str, object]) -> None:
    print(f"lab: {info['lab_dir']}  api: {info['url'] or '-'} ({info['api']})")
    print(f"  knobs: {info['knobs']}")
    print(f"  timing: {info['timing']}")
    for proc in [*info["processes"], *info["monitoring_processes"]]:  # type: ignore[misc]
        print(f"  {proc['name']:<24} pid {proc['pid'] or '-':<8} {'alive' if proc['alive'] else 'stopped'}")
    for node in info["nodes"]:  # type: ignore[attr-defined]
        cordon = "  SchedulingDisabled" if node["unschedulable"] else ""
        print(f"  node {node['name']:<19} Ready={node['ready']}{cordon}")
    for inst in info["instances"]:  # type: ignore[attr-defined]
        print(
            f"  instance {inst['namespace']}/{inst['name']:<12} {inst['phase'] or '-':<12} {inst['endpoint']}"
        )
    _print_monitoring(info.get("monitoring"))


def _print_monitoring(monitoring: object) -> None:
    if isinstance(monitoring, dict):
        print(f"  prometheus {monitoring['prometheus']}  alertmanager {monitoring['alertmanager']}")
        print(f"  alert rules {monitoring['rules_file']}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "up":
            result = cluster.up(
                args.tenants,
                args.nodes,
                port=args.port,
                node_cpu=args.node_cpu,
                commit_cpu_ms=args.commit_cpu_ms,
                timeout=args.timeout,
                monitoring=not args.no_monitoring,
                alert_rules=args.alert_rules,
                timing=args.timing,
                say=_say,
            )
            print(
                f"lab up at {result['url']}: {len(result['nodes'])} nodes, {len(result['tenants'])} tenants "
                f"ready in {result['ready_after']:.1f}s"
            )
            knobs = NodeKnobs(result["node_cpu"], result["commit_cpu_ms"])
            if knobs != NodeKnobs():
                print(f"  knobs: {knobs.describe()}")
            print(f"  timing: {timing.profile(result['timing']['name']).describe()}")
            print(f"  export KUBECONFIG={result['kubeconfig']}")
            print("  kubectl get nodes; kubectl get mssqlinstances -n tenants; kubectl get pods -A")
            print(f"  tenants file for the load generator: {result['tenants_file']}")
            _print_monitoring(result["monitoring"])
        elif args.command == "status":
            info = cluster.status()
            if args.json:
                print(json.dumps(info, indent=2))
            else:
                _print_status(info)
        elif args.command == "down":
            result = cluster.down(wipe=args.wipe, say=_say)
            stopped = ", ".join(result["stopped"]) or "nothing was running"
            print(f"lab down: {stopped}{'; state wiped' if args.wipe else '; data kept'}")
        elif args.command == "restart-node":
            result = cluster.restart_node(args.node, args.down, wait=not args.no_wait)
            if args.json:
                print(json.dumps(result, separators=(",", ":")), flush=True)
                return 0
            after = (
                f", Ready {result['ready_after']:.2f}s after its kubelet started"
                if result["ready_after"]
                else ""
            )
            print(f"node {args.node}: killed {result['killed']} processes, down {args.down:g}s{after}")
        elif args.command == "stop-node":
            result = cluster.stop_node(args.node)
            if args.json:
                print(json.dumps(result, separators=(",", ":")), flush=True)
                return 0
            print(f"node {args.node}: killed {result['killed']} processes; it stays down (`lab start-node`)")
        elif args.command == "start-node":
            result = cluster.start_node(args.node, wait=not args.no_wait)
            if args.json:
                print(json.dumps(result, separators=(",", ":")), flush=True)
                return 0
            if not result["started"]:
                print(f"node {args.node}: its kubelet already runs (pid {result['kubelet_pid']})")
            else:
                after = f", Ready after {result['ready_after']:.2f}s" if result["ready_after"] else ""
                print(f"node {args.node}: kubelet started{after}")
    except LabError as exc:
        print(f"lab {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
