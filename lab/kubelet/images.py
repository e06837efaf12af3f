"""The image map: which local program a container image stands for, and as which user.

An image is named without registry prefix ``docker.io/`` and without tag or digest:

===============================  ================================================
``mssql-lab/engine``             ``python -m lab.kubelet.engine_image`` (a real
                                 PostgreSQL server; needs a container port, see
                                 that module)
``mssql-lab/operator``           ``python -m lab.operator``
``mssql-lab/executor``           ``python -m lab.executor``
``mssql-chaos-harness/harness``  ``python -m locust -f <checkout>/loadgen/locustfile.py``:
                                 the harness image's entry point (its Dockerfile's
                                 ENTRYPOINT), the distributed load's master and
                                 workers; any tag and any registry prefix
                                 (``ghcr.io/org/mssql-chaos-harness/harness:0.1.0``)
anything else                    ``command`` + ``args`` run as host commands
===============================  ================================================

The harness image runs this checkout's ``loadgen/locustfile.py``, found from the lab
package's own location (the lab never imports ``loadgen``).

As in Kubernetes, ``args`` are appended to the image's entry point and ``command``
replaces it (then running as a host command, :func:`is_host_command`). ``$(VAR)``
references in ``command`` and ``args`` are expanded from the container's environment. A
non-lab image without ``command`` cannot run: it has no entry point here.

Users (:mod:`lab.kubelet.run_as`). Host commands run as an unprivileged user: the
``securityContext``'s ``runAsUser``/``runAsGroup``, else ``nobody``/``nogroup``. The lab's
own images keep what they need: the engine runs PostgreSQL as ``postgres`` (its entry point
starts as the kubelet's user, root, to own the data folders and switch); the operator,
executor and harness images run as the kubelet's user, because they are this checkout's code run by
this checkout's interpreter, and the checkout (with its ``.venv``, whose interpreter may
itself live under ``/root``, as pyenv's does) may sit under ``/root`` (mode 0700, as in
CI), where no other user can even execute them. ``runAsUser: 0`` (the admin may grant it,
:mod:`lab.api.pod_security`) runs a host command as root.

``python`` and ``python3`` (any path) as a host command: for a container that runs as the
kubelet's uid they are this project's interpreter (so ``python -m lab...`` works in such a
pod); for any other uid they are the host's own ``python3`` on the container PATH
(``/usr/bin/python3`` on Debian), the image's interpreter as it were, without this
checkout's packages. The rule goes by the container's uid, never by where the checkout
lives: an unprivileged user cannot run ``.venv/bin/python`` under ``/root``, and a rule
that worked in ``/work/main`` but not in a clone under ``/root`` would pass tests locally
and fail in CI. A pod that needs this project's modules uses a lab image or
``runAsUser: 0``. (Nothing in the lab runs ``python`` as a host command today; a test pod
that does asks for root.)
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from typing import Any

from common.mounts import mapped
from lab.kubelet.podspec import ConfigError, container_ports, expand
from lab.kubelet.run_as import CONTAINER_PATH
from lab.paths import project_root

__all__ = [
    "ENGINE",
    "EXECUTOR",
    "HARNESS",
    "HARNESS_FLAGS",
    "HARNESS_OPTIONS",
    "check_harness_args",
    "LOCUSTFILE",
    "OPERATOR",
    "Launch",
    "engine_port",
    "host_argv",
    "image_name",
    "is_host_command",
    "launch_for",
]

ENGINE = "mssql-lab/engine"
OPERATOR = "mssql-lab/operator"
EXECUTOR = "mssql-lab/executor"
#: The harness's own image (the distributed load's Locust master and workers).
HARNESS = "mssql-chaos-harness/harness"
#: What the harness image runs: this checkout's locustfile, found from the lab package's place.
LOCUSTFILE = project_root() / "loadgen" / "locustfile.py"

_ENTRYPOINTS: dict[str, list[str]] = {
    ENGINE: ["-m", "lab.kubelet.engine_image"],
    OPERATOR: ["-m", "lab.operator"],
    EXECUTOR: ["-m", "lab.executor"],
    HARNESS: ["-m", "locust", "-f", str(LOCUSTFILE)],
}


@dataclass(frozen=True)
class Launch:
    """The program for one container: argv and the image it came from."""

    argv: list[str]
    image: str
    tag: str

    @property
    def is_engine(self) -> bool:
        return self.image == ENGINE


def image_name(image: str) -> tuple[str, str]:
    """``(name, tag)`` of an image reference: registry ``docker.io/`` and digest dropped, and
    the harness image's name without whatever registry prefix is in front of it."""
    ref = image.strip()
    ref, _, _digest = ref.partition("@")
    last = ref.rsplit("/", 1)[-1]
    tag = ""
    if ":" in last:
        ref, tag = ref.rsplit(":", 1)
    for prefix in ("docker.io/library/", "docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
    if ref.endswith("/" + HARNESS):
        ref = HARNESS
    return ref, tag or "latest"


def is_host_command(container: dict[str, Any]) -> bool:
    """The container runs a host command (a ``command``, or an image that is not the lab's)."""
    name, _ = image_name(str(container.get("image", "")))
    return bool(container.get("command")) or name not in _ENTRYPOINTS


def host_argv(argv: list[str], own_interpreter: bool = True) -> list[str]:
    """``python``/``python3`` (any path): this interpreter with ``own_interpreter``, else the host's
    ``python3`` on the container PATH (see the module doc); other programs are left as they are."""
    if not argv or argv[0].rsplit("/", 1)[-1] not in ("python", "python3"):
        return argv
    if own_interpreter:
        return [sys.executable, *argv[1:]]
    found = shutil.which("python3", path=CONTAINER_PATH)
    return [found, *argv[1:]] if found else argv


def launch_for(container: dict[str, Any], env: dict[str, str], own_interpreter: bool = True) -> Launch:
    """The argv for ``container``; ConfigError when there is nothing to run.

    ``own_interpreter``: the container runs as the kubelet's uid (see :func:`host_argv`).
    """
    name, tag = image_name(str(container.get("image", "")))
    command = [expand(str(c), env) for c in container.get("command") or []]
    args = [expand(str(a), env) for a in container.get("args") or []]
    if command:
        return Launch(host_argv(command + args, own_interpreter), name, tag)
    entry = _ENTRYPOINTS.get(name)
    if entry is not None:
        if name == HARNESS:
            check_harness_args(container, args)
        return Launch([sys.executable, *entry, *args], name, tag)
    if args:
        return Launch(host_argv(args, own_interpreter), name, tag)
    raise ConfigError(
        "CreateContainerConfigError",
        f"image {container.get('image')!r} has no entry point in the lab: give the container a command",
    )


#: The harness image's options a pod may give (``deploy/load/``). It runs as the kubelet's
#: user, so nothing else: Locust takes the last ``-f`` (any file, even a URL, run as root),
#: and ``--html``/``--csv``/``--logfile`` would write wherever they are told.
HARNESS_FLAGS = frozenset({"--master", "--worker", "--autostart", "--headless", "--only-summary"})
HARNESS_OPTIONS = frozenset(
    {
        "--master-host", "--master-port", "--master-bind-host", "--master-bind-port", "--web-host",
        "--web-port", "--expect-workers", "--users", "-u", "--spawn-rate", "-r", "--run-time", "-t",
        "--stop-timeout", "--exit-code-on-error", "--loglevel", "-L", "--tenants-file", "--run-dir",
        "--run-id", "--write-rate", "--write-timeout", "--connect-timeout", "--metrics-port",
        "--load-workers", "--tenant-count", "--orphan-after",
    }
)  # fmt: skip
#: Options naming files: they must lie under one of the container's own volume mounts.
HARNESS_PATHS = frozenset({"--tenants-file", "--run-dir"})


#: Variables a harness container may not set: they steer the interpreter, Locust, the
#: harness's own options (``HARNESS_RUN_DIR`` ...) or the lab's mount map around the checks below.
HARNESS_ENV_PREFIXES = ("PYTHON", "LOCUST_", "HARNESS_", "LAB_", "LD_")
HARNESS_ENV_NAMES = frozenset({"HOME", "PATH", "TMPDIR"})
HARNESS_ENV_ALLOWED = frozenset({"PYTHONUNBUFFERED"})


def _check_harness_env(container: dict[str, Any]) -> None:
    def refuse(what: str) -> ConfigError:
        return ConfigError(
            "CreateContainerConfigError", f"the harness image may not set {what} in the lab: use deploy/load/"
        )

    if container.get("envFrom"):
        raise refuse("envFrom")
    if container.get("workingDir"):
        raise refuse("workingDir")
    for item in container.get("env") or []:
        name = str((item or {}).get("name", ""))
        if name in HARNESS_ENV_ALLOWED:
            continue
        if name in HARNESS_ENV_NAMES or name.startswith(HARNESS_ENV_PREFIXES):
            raise refuse(f"the variable {name}")


def check_harness_args(container: dict[str, Any], args: list[str]) -> None:
    """ConfigError unless every argument is one of the harness image's known options, and its
    file options name paths under the container's volume mounts (no ``..``)."""
    _check_harness_env(container)
    mounts = [str(m.get("mountPath", "")).rstrip("/") for m in container.get("volumeMounts") or []]
    i = 0
    while i < len(args):
        flag, eq, value = args[i].partition("=")
        if flag in HARNESS_FLAGS and not eq:
            i += 1
            continue
        if flag not in HARNESS_OPTIONS:
            raise ConfigError(
                "CreateContainerConfigError",
                f"the harness image does not take {flag!r} in the lab: use the options of deploy/load/",
            )
        if not eq:
            if i + 1 >= len(args):
                raise ConfigError("CreateContainerConfigError", f"the harness image's {flag} needs a value")
            value = args[i + 1]
            i += 1
        i += 1
        # common.mounts.mapped: the rule the locustfile maps these paths by, ".." under no mount.
        if flag in HARNESS_PATHS and mapped(value, {m: m for m in mounts if m}) is None:
            raise ConfigError(
                "CreateContainerConfigError",
                f"the harness image's {flag} {value!r} is not under one of the container's volume mounts",
            )


def engine_port(container: dict[str, Any]) -> int:
    """The port an engine container listens on: the port named ``mssql``, else the first one."""
    ports = container_ports(container)
    if "mssql" in ports:
        return ports["mssql"]
    for port in container.get("ports") or []:
        try:
            return int(port.get("containerPort"))
        except (TypeError, ValueError):
            continue
    raise ConfigError(
        "CreateContainerConfigError",
        f"container {container.get('name')!r} of image {ENGINE} needs a containerPort (named mssql)",
    )
