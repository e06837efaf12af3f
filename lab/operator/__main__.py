"""``python -m lab.operator``: run the lab operator until SIGTERM/SIGINT.

The API server comes from ``--server``, else the pod's in-cluster configuration
(``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT`` over HTTPS with the
service-account token and CA the kubelet projected, :func:`client_from`), else
``--kubeconfig``. A pass runs every ``--interval``
seconds (default 1) and at once when an MSSQLInstance, one of its pods, an
MSSQLBackup, MSSQLBackupPolicy, MSSQLRestore or one of the operator's Jobs changes
(watches). Logs go to stderr, one line per change; passwords never appear.
``--once`` runs a single pass and exits (0, or 1 if the pass failed). What it does about
a lost node under an instance is ``LAB_OPERATOR_NODE_LOSS`` (:mod:`lab.operator.node_loss`).

Its Prometheus metrics (:mod:`lab.operator.metrics`) are served on
``127.0.0.1:--metrics-port`` (default 0: any free port; -1: none). When
``HARNESS_PROMETHEUS_SD_DIR`` names a folder, the operator announces that address there
(``mssql-operator.json``, Prometheus file_sd) at start and removes it on a clean exit.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from prometheus_client import disable_created_metrics

from lab.controllers.loop import Loop, Watcher
from lab.errors import LabError
from lab.kubeclient import SERVICEACCOUNT_DIR_ENV, ApiError, Kind, KubeClient, user_agent
from lab.kubeclient_tls import service_account_dir
from lab.operator.metrics import SD_DIR_ENV, OperatorMetrics, remove_target, write_target
from lab.operator.node_loss import ENV, NodeLossHandler, policy_from
from lab.operator.objects import INSTANCES, MANAGED_BY
from lab.operator.protection import BACKUPS, POLICIES, RESTORES
from lab.operator.reconcile import Reconciler

__all__ = ["WATCHES", "client_from", "main"]

WATCHES: tuple[tuple[Kind | str, str | None], ...] = (
    (INSTANCES, None),
    ("pods", "app=mssql"),
    (BACKUPS, None),
    (POLICIES, None),
    (RESTORES, None),
    (Kind("batch", "v1", "jobs"), ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())),
)

log = logging.getLogger("lab.operator")
_AGENT = user_agent("mssql-lab-operator")  # the field manager of what the operator writes


def client_from(server: str | None, kubeconfig: Path | None, environ: dict[str, str]) -> KubeClient:
    """The API client: ``server``, else the pod's in-cluster configuration, else ``kubeconfig``.

    In a pod (``KUBERNETES_SERVICE_HOST``/``PORT`` set) it is
    :meth:`~lab.kubeclient.KubeClient.in_cluster`: HTTPS, trusting the ``ca.crt`` of the
    service-account folder the kubelet projected (``LAB_SERVICEACCOUNT_DIR``) and sending its
    ``token``, re-read when the kubelet refreshes it; a pod without a token fails (LabError),
    it never falls back to anonymous plain HTTP. ``--server`` names the address itself (a
    bare test server): with the pod's token and CA when a service-account folder is named,
    else without credentials.
    """
    if server:
        folder = environ.get(SERVICEACCOUNT_DIR_ENV)
        if folder:
            account = service_account_dir(folder)
            return KubeClient(
                server, user_agent=_AGENT, token_file=account.token_file, ca_file=account.ca_file
            )
        return KubeClient(server, user_agent=_AGENT)
    if environ.get("KUBERNETES_SERVICE_HOST") and environ.get("KUBERNETES_SERVICE_PORT"):
        return KubeClient.in_cluster(environ, user_agent=_AGENT)
    if kubeconfig is not None:
        return KubeClient.from_kubeconfig(kubeconfig, user_agent=_AGENT)
    raise LabError("no API server: set KUBERNETES_SERVICE_HOST/PORT, or pass --server or --kubeconfig")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.operator", description=__doc__.split("\n")[0])
    parser.add_argument("--server", default=None, help="API server URL (default: in-cluster variables)")
    parser.add_argument("--kubeconfig", type=Path, default=None, help="kubeconfig when not in a cluster")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between full passes")
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    parser.add_argument(
        "--metrics-port", type=int, default=0, help="port of /metrics on 127.0.0.1 (0: any free, -1: none)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        client = client_from(args.server, args.kubeconfig, dict(os.environ))
        node_loss = NodeLossHandler(client, policy_from(os.environ))
    except LabError as exc:
        print(f"lab operator: {exc}", file=sys.stderr)
        return 2
    disable_created_metrics()  # no *_created series: nothing here needs them
    metrics = OperatorMetrics()
    reconciler = Reconciler(client, metrics=metrics)

    def one_pass() -> None:
        reconciler.reconcile_all()
        node_loss.handle()

    if args.once:
        try:
            one_pass()
        except ApiError as exc:
            print(f"lab operator: {exc}", file=sys.stderr)
            return 1
        return 0
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    loop = Loop("operator", one_pass, args.interval, stop)
    watchers = [Watcher(client, kind, [loop], stop, labels) for kind, labels in WATCHES]
    log.info(
        "reconciling MSSQLInstances through %s (lost nodes: %s, %s)", client.server, node_loss.policy, ENV
    )
    announced = _serve_metrics(metrics, args.metrics_port)
    for watcher in watchers:
        watcher.start()
    loop.start()
    while not stop.wait(0.5):
        pass
    loop.wake()
    loop.join(5.0)
    if announced is not None:
        remove_target(*announced)
    log.info("stopped after %d passes", reconciler.passes)
    return 0


def _serve_metrics(metrics: OperatorMetrics, port: int) -> tuple[Path, int, dict[str, str]] | None:
    """Serve /metrics and announce it in $HARNESS_PROMETHEUS_SD_DIR; what to remove at exit, if anything."""
    if port < 0:
        return None
    try:
        bound = metrics.serve(port)
    except OSError as exc:
        log.warning("cannot serve metrics on 127.0.0.1:%d: %s", port, exc)
        return None
    log.info("metrics on http://127.0.0.1:%d/metrics", bound)
    folder = os.environ.get(SD_DIR_ENV)
    if not folder:
        return None
    labels = {"pod": os.environ["LAB_POD_NAME"]} if os.environ.get("LAB_POD_NAME") else {}
    try:
        path = write_target(Path(folder), bound, labels)
    except OSError as exc:
        log.warning("cannot announce metrics in %s: %s", folder, exc)
        return None
    log.info("metrics announced in %s", path)
    return Path(folder), bound, labels


if __name__ == "__main__":
    sys.exit(main())
