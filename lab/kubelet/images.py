"""The image map: which local program a container image stands for.

An image is named without registry prefix ``docker.io/`` and without tag or digest:

=====================  ==========================================================
``mssql-lab/engine``   ``python -m lab.kubelet.engine_image`` (a real PostgreSQL
                       server; needs a container port, see that module)
``mssql-lab/operator`` ``python -m lab.operator``
``mssql-lab/executor`` ``python -m lab.executor``
anything else          ``command`` + ``args`` run as host commands
=====================  ==========================================================

As in Kubernetes, ``args`` are appended to the image's entry point and ``command``
replaces it (then running as a host command). A program named ``python`` or
``python3`` is this project's interpreter, so ``python -m lab...`` works in any pod.
``$(VAR)`` references in ``command`` and ``args`` are expanded from the container's
environment. A non-lab image without ``command`` cannot run: it has no entry point here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from lab.kubelet.podspec import ConfigError, container_ports, expand

__all__ = ["ENGINE", "EXECUTOR", "OPERATOR", "Launch", "engine_port", "image_name", "launch_for"]

ENGINE = "mssql-lab/engine"
OPERATOR = "mssql-lab/operator"
EXECUTOR = "mssql-lab/executor"

_ENTRYPOINTS: dict[str, list[str]] = {
    ENGINE: ["-m", "lab.kubelet.engine_image"],
    OPERATOR: ["-m", "lab.operator"],
    EXECUTOR: ["-m", "lab.executor"],
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
    """``(name, tag)`` of an image reference: registry ``docker.io/`` and digest dropped."""
    ref = image.strip()
    ref, _, _digest = ref.partition("@")
    last = ref.rsplit("/", 1)[-1]
    tag = ""
    if ":" in last:
        ref, tag = ref.rsplit(":", 1)
    for prefix in ("docker.io/library/", "docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
    return ref, tag or "latest"


def host_argv(argv: list[str]) -> list[str]:
    """``python``/``python3`` (any path) become this interpreter."""
    if argv and argv[0].rsplit("/", 1)[-1] in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    return argv


def launch_for(container: dict[str, Any], env: dict[str, str]) -> Launch:
    """The argv for ``container``; ConfigError when there is nothing to run."""
    name, tag = image_name(str(container.get("image", "")))
    command = [expand(str(c), env) for c in container.get("command") or []]
    args = [expand(str(a), env) for a in container.get("args") or []]
    if command:
        return Launch(host_argv(command + args), name, tag)
    entry = _ENTRYPOINTS.get(name)
    if entry is not None:
        return Launch([sys.executable, *entry, *args], name, tag)
    if args:
        return Launch(host_argv(args), name, tag)
    raise ConfigError(
        "CreateContainerConfigError",
        f"image {container.get('image')!r} has no entry point in the lab: give the container a command",
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
