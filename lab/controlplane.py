"""``python -m lab.controlplane``: the lab's whole control plane in one process.

It serves the Kubernetes-compatible API (:mod:`lab.api`, in this process's event
loop), bootstraps the cluster (namespaces ``default``, ``kube-system``,
``kube-node-lease``, ``mssql-operator``; the default StorageClass ``lab-local``; every
CustomResourceDefinition in ``lab/crds/*.yaml``, created or brought up to date), then
runs the controllers (:mod:`lab.controllers`) in threads that talk to the API over
HTTPS like any client, each with its own token. ``--pki DIR`` holds the CA, the serving
certificate, the service-account key and ``tokens.csv`` (made if missing; the lab always
passes it); ``--insecure-allow-all`` is the plain-HTTP test server. With
``--metrics-port`` it also serves the kube-state-metrics stand-in
(:mod:`lab.monitoring.ksm`) on that loopback port (0: any free one), its URL written to
``<data>/kube-state-metrics.url``. Only then does it print ``listening on
https://127.0.0.1:<port>`` as its first stdout line (so a caller that saw it may create
custom resources at once); the port is also in ``<data>/apiserver.port``. Logs go to
stderr. SIGTERM or
SIGINT stops it cleanly (controllers first, then the server, state synced). A taken
port or a locked data folder is one line on stderr and exit status 2.

:func:`start_control_plane` runs it as a child process and waits for that line.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lab.api.identity import AUTHENTICATED, MASTERS
from lab.api.pki import ensure_pki
from lab.api.process import ApiServerProcess, spawn_listening
from lab.api.server import STATE, bound_port, serve
from lab.api.settings import Settings
from lab.api.tokens import ensure_token
from lab.controllers import CONTROLLERS, ControllerManager
from lab.errors import LabError
from lab.kubeclient import ApiError, KubeClient, user_agent
from lab.monitoring.ksm import start_listener
from lab.ports import format_range, parse_range
from lab.timing import DEFAULT as DEFAULT_TIMING
from lab.timing import ENV as TIMING_ENV
from lab.timing import PROFILES, Timing, configmap, profile

__all__ = [
    "CRD_DIR",
    "NAMESPACES",
    "STORAGE_CLASS",
    "ControlPlaneProcess",
    "bootstrap",
    "controller_options",
    "load_crds",
    "main",
    "start_control_plane",
]

log = logging.getLogger("lab.controlplane")

CRD_DIR = Path(__file__).resolve().parent / "crds"
IDENTITY_CONFIGMAP = "lab-identity"
NAMESPACES = ("default", "kube-system", "kube-node-lease", "mssql-operator")
STORAGE_CLASS: dict[str, Any] = {
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {
        "name": "lab-local",
        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
    },
    "provisioner": "lab.mssql.io/local-folder",
    "reclaimPolicy": "Retain",
    "volumeBindingMode": "Immediate",
    "allowVolumeExpansion": True,
}


def load_crds(folder: Path = CRD_DIR) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition document in ``folder/*.yaml`` (other kinds are skipped)."""
    crds: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except (OSError, yaml.YAMLError) as exc:
            raise LabError(f"cannot read {path}: {exc}") from None
        crds.extend(d for d in docs if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition")
    return crds


def _create_missing(client: KubeClient, kind: str, body: dict[str, Any]) -> None:
    try:
        client.create(kind, body)
    except ApiError as exc:
        if exc.code != 409:
            raise


def _put_configmap(client: KubeClient, body: dict[str, Any]) -> None:
    current = client.get_or_none("configmaps", body["metadata"]["name"], "kube-system")
    if current is None:
        client.create("configmaps", body, "kube-system")
    elif current.get("data") != body["data"]:
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        client.replace("configmaps", body, "kube-system")


def identity_configmap(lab_id: str, port_range: str) -> dict[str, Any]:
    """``kube-system/lab-identity``: the lab's id and the engine port range it owns on this machine."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": IDENTITY_CONFIGMAP, "namespace": "kube-system"},
        "data": {"labId": lab_id, "portRange": port_range},
    }


def bootstrap(
    client: KubeClient,
    crd_dir: Path = CRD_DIR,
    timing: Timing | None = None,
    identity: dict[str, Any] | None = None,
) -> None:
    """Namespaces, default StorageClass, CRDs and the timing and identity ConfigMaps; idempotent.

    CRDs whose spec changed are updated; ``timing`` (default: Kubernetes') is written to
    ``kube-system/lab-timing`` so clients can tell which profile the lab runs under;
    ``identity`` (a ConfigMap from :func:`identity_configmap`) to ``kube-system/lab-identity``.
    """
    for name in NAMESPACES:
        _create_missing(
            client, "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )
    _create_missing(client, "storageclasses", STORAGE_CLASS)
    _put_configmap(client, configmap(timing or profile(DEFAULT_TIMING)))
    if identity is not None:
        _put_configmap(client, identity)
    for crd in load_crds(crd_dir):
        name = crd["metadata"]["name"]
        current = client.get_or_none("customresourcedefinitions", name)
        if current is None:
            client.create("customresourcedefinitions", crd)
            log.info("installed CRD %s", name)
        elif current.get("spec") != crd.get("spec"):
            body = {
                **crd,
                "metadata": {**crd["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]},
            }
            client.replace("customresourcedefinitions", body)
            log.info("updated CRD %s", name)


def controller_options(timing: Timing, data_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """The controllers' settings: the timing profile's, and where PVC folders live.

    A lab's claims are folders under ``volumes/``, the sibling of the API's data folder
    (:class:`lab.cluster_layout.Layout`); PersistentVolumes name them by absolute path.
    """
    options: dict[str, dict[str, Any]] = {
        "nodelifecycle": {"timeout": timing.node_monitor_grace, "interval": timing.node_monitor_period},
        "podgc": {"interval": timing.podgc_period, "quarantine": timing.podgc_quarantine},
    }
    if data_dir is not None:
        options["pvc"] = {"volumes_dir": data_dir.parent / "volumes"}
    return options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lab.controlplane", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--data", type=Path, required=True, help="API server state folder")
    parser.add_argument("--policy", type=Path, default=None, help="authorization policy file (YAML or JSON)")
    parser.add_argument("--logs", type=Path, default=None, help="pod log folder (default <data>/logs)")
    parser.add_argument(
        "--pod-removal-grace",
        type=float,
        default=None,
        metavar="SECONDS",
        help="remove terminating pods after at most SECONDS without a kubelet (0: at once)",
    )
    parser.add_argument(
        "--disable",
        default="",
        metavar="NAMES",
        help=f"comma-separated controllers not to run ({', '.join(CONTROLLERS)})",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="also serve the kube-state-metrics stand-in on this loopback port (0: any free port)",
    )
    parser.add_argument(
        "--timing",
        default=os.environ.get(TIMING_ENV) or DEFAULT_TIMING,
        metavar="PROFILE",
        help=f"timing profile ({' or '.join(PROFILES)}, lab.timing): when a node is NotReady, when its "
        f"pods are evicted, crash-loop back-off (default: ${TIMING_ENV}, else {DEFAULT_TIMING})",
    )
    parser.add_argument(
        "--pki",
        type=Path,
        default=None,
        metavar="DIR",
        help="serve HTTPS and authenticate with the CA, keys and tokens.csv in DIR (created if missing)",
    )
    parser.add_argument(
        "--insecure-allow-all",
        action="store_true",
        help="plain HTTP, every request is the admin (tests only; the lab always passes --pki)",
    )
    parser.add_argument("--lab-id", default=None, help="the lab's id, published in kube-system/lab-identity")
    parser.add_argument(
        "--port-range", default=None, metavar="LOW-HIGH", help="the engine ports this lab owns on the machine"
    )
    parser.add_argument("--verbose", action="store_true", help="log every request and controller action")
    return parser.parse_args(argv)


#: The control plane's own identities, minted in the token file at start.
CONTROLLER_MANAGER = "system:kube-controller-manager"
SCHEDULER = "system:kube-scheduler"
LOOPBACK = "system:apiserver"
#: kube-apiserver's static token file, inside the ``--pki`` folder.
TOKEN_FILE = "tokens.csv"  # noqa: S105 - a file name, not a secret


@dataclass(frozen=True)
class Credentials:
    """What the control plane's own clients use: tokens per identity and the CA (None: plain HTTP)."""

    scheme: str
    ca_pem: bytes | None = None
    loopback: str = ""
    controllers: str = ""
    scheduler: str = ""


def security(args: argparse.Namespace, settings: Settings) -> Credentials:
    """Fill ``settings``' TLS and authentication from ``--pki``; LabError when neither flag is given."""
    if args.pki is None:
        if not args.insecure_allow_all:
            raise LabError(
                "no credentials: pass --pki DIR (HTTPS, tokens, RBAC), or --insecure-allow-all in tests"
            )
        settings.insecure_allow_all = True
        return Credentials("http")
    if args.insecure_allow_all:
        raise LabError("--pki and --insecure-allow-all exclude each other: drop one")
    pki = ensure_pki(args.pki.resolve())
    tokens = pki.folder / TOKEN_FILE
    settings.tls_cert_file, settings.tls_key_file = pki.serving_cert, pki.serving_key
    settings.token_auth_file, settings.service_account_key_file = tokens, pki.sa_key
    return Credentials(
        "https",
        pki.ca_pem(),
        ensure_token(tokens, LOOPBACK, LOOPBACK, (MASTERS, AUTHENTICATED)),
        ensure_token(tokens, CONTROLLER_MANAGER, CONTROLLER_MANAGER, (AUTHENTICATED,)),
        ensure_token(tokens, SCHEDULER, SCHEDULER, (AUTHENTICATED,)),
    )


def _port_error(what: str, host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        flag = "--metrics-port" if what == "kube-state-metrics" else "--port"
        return f"lab controlplane: {what} port {port} on {host} is already in use: pick another {flag}"
    return f"lab controlplane: cannot listen on {host}:{port} ({what}): {exc.strerror}"


async def _run(args: argparse.Namespace) -> int:
    try:
        timing = profile(args.timing)
    except LabError as exc:
        print(f"lab controlplane: {exc}", file=sys.stderr)
        return 2
    settings = Settings(
        port=args.port,
        data_dir=args.data.resolve(),
        policy_file=args.policy.resolve() if args.policy else None,
        logs_dir=args.logs.resolve() if args.logs else None,
        pod_removal_grace=args.pod_removal_grace,
        default_toleration_seconds=timing.default_toleration_seconds,
    )
    disable = [d.strip() for d in args.disable.split(",") if d.strip()]
    identity = None
    try:
        creds = security(args, settings)
        if args.lab_id:
            identity = identity_configmap(args.lab_id, format_range(parse_range(args.port_range)))
    except LabError as exc:
        print(f"lab controlplane: {exc}", file=sys.stderr)
        return 2
    try:
        runner = await serve(settings, access_log=args.verbose, require_auth=not settings.insecure_allow_all)
    except OSError as exc:
        print(_port_error("API", settings.host, settings.port, exc), file=sys.stderr)
        return 2
    except LabError as exc:
        print(f"lab controlplane: {exc}", file=sys.stderr)
        return 2
    url = f"{creds.scheme}://{settings.host}:{bound_port(runner)}"
    ksm = None
    if args.metrics_port is not None:
        try:
            ksm, ksm_port = await start_listener(runner.app[STATE].store, settings.host, args.metrics_port)
        except OSError as exc:
            print(_port_error("kube-state-metrics", settings.host, args.metrics_port, exc), file=sys.stderr)
            await runner.cleanup()
            return 2
        if settings.data_dir is not None:
            (settings.data_dir / "kube-state-metrics.url").write_text(
                f"http://{settings.host}:{ksm_port}/metrics\n"
            )
    loop = asyncio.get_running_loop()
    try:
        manager = ControllerManager(
            url,
            disable,
            creds.controllers,
            options=controller_options(timing, settings.data_dir),
            ca_pem=creds.ca_pem,
            tokens={"scheduler": creds.scheduler},
        )
        loopback = KubeClient(
            url, creds.loopback, user_agent=user_agent("lab-controlplane"), ca_pem=creds.ca_pem
        )
        await loop.run_in_executor(None, bootstrap, loopback, CRD_DIR, timing, identity)
    except (LabError, ApiError) as exc:
        print(f"lab controlplane: bootstrap failed: {exc}", file=sys.stderr)
        if ksm is not None:
            await ksm.cleanup()
        await runner.cleanup()
        return 2
    manager.start()
    print(f"listening on {url}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    manager.signal_stop()
    if ksm is not None:
        await ksm.cleanup()
    await runner.cleanup()
    await loop.run_in_executor(None, manager.join, 5.0)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        for name in ("lab.controllers", "lab.controlplane"):
            logging.getLogger(name).setLevel(logging.INFO)
    return asyncio.run(_run(args))


class ControlPlaneProcess(ApiServerProcess):
    """A running ``python -m lab.controlplane`` child: ``url``, ``pid``, ``stop()`` (SIGTERM), ``kill()``."""


def start_control_plane(
    data_dir: Path,
    *,
    port: int = 0,
    policy: Path | None = None,
    pod_removal_grace: float | None = None,
    disable: tuple[str, ...] = (),
    metrics_port: int | None = None,
    timeout: float = 30.0,
    verbose: bool = False,
    timing: str | None = None,
    pki: Path | None = None,
) -> ControlPlaneProcess:
    """Start the control plane as a child (stderr to ``<data>/controlplane.log``); LabError if it fails.

    ``metrics_port`` also serves the kube-state-metrics stand-in (0: any free port; its URL
    is then in ``<data>/kube-state-metrics.url``). ``pki``: serve HTTPS with the credentials
    in that folder (``--pki``); None runs the plain-HTTP test server (``--insecure-allow-all``).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "controlplane.log"
    args = [sys.executable, "-m", "lab.controlplane", "--port", str(port), "--data", str(data_dir)]
    if policy is not None:
        args += ["--policy", str(policy)]
    args += ["--pki", str(pki)] if pki is not None else ["--insecure-allow-all"]
    if pod_removal_grace is not None:
        args += ["--pod-removal-grace", str(pod_removal_grace)]
    if disable:
        args += ["--disable", ",".join(disable)]
    if metrics_port is not None:
        args += ["--metrics-port", str(metrics_port)]
    if timing is not None:
        args += ["--timing", timing]
    if verbose:
        args.append("--verbose")
    proc, url = spawn_listening(args, log_path, timeout, "the lab control plane")
    return ControlPlaneProcess(proc, url, log_path)


if __name__ == "__main__":
    sys.exit(main())
