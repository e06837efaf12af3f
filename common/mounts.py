"""Container paths to host paths: the one rule for the lab's ``LAB_MOUNTS``.

The embedded lab runs a pod's containers as host processes, so a volume mounted at
``/var/run/harness`` is really a host folder. The lab's kubelet publishes each container's
mounts as ``LAB_MOUNTS``, JSON ``{mountPath: hostFolder}``. A program that takes container
paths on its command line (as it would in a real container) passes them through
:func:`host_path`: under a mount (the longest mount path that is the path or one of its
parents) it becomes the matching path in the host folder; anywhere else, or without
``LAB_MOUNTS`` (a real cluster), the path is left as it is. The kubelet maps a container's
``workingDir`` with :func:`mapped`, the same rule.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import PurePosixPath

from common.config import ConfigurationError

__all__ = ["ENV", "host_path", "mapped", "mounts_from"]

#: The variable the lab's kubelet sets: JSON ``{mountPath: hostFolder}``.
ENV = "LAB_MOUNTS"


def mapped(path: str, mounts: Mapping[str, str]) -> str | None:
    """The host path of container ``path`` under the longest matching mount, or None when no
    mount holds it (``mounts``: ``{mountPath: hostFolder}``). A path with a ``..`` segment is
    under no mount: it could climb out of the folder."""
    if ".." in path.split("/"):
        return None
    best: tuple[int, str] | None = None
    for mount_path, folder in mounts.items():
        prefix = mount_path.rstrip("/")
        if path in (prefix, mount_path) or path.startswith(prefix + "/"):
            if best is not None and len(prefix) <= best[0]:
                continue
            rest = path[len(prefix) :].strip("/")
            best = (len(prefix), str(PurePosixPath(folder) / rest) if rest else folder)
    return best[1] if best else None


def mounts_from(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``LAB_MOUNTS`` mapping of ``environ`` (default: this process's); empty when unset.

    A value that is not a JSON object of strings raises ConfigurationError naming it."""
    raw = (os.environ if environ is None else environ).get(ENV, "")
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigurationError(
            f"{ENV} is not a JSON object of mount paths to folders ({raw[:60]!r}): "
            f'unset it or give e.g. {{"/data": "/srv/data"}}'
        )
    return value


def host_path(path: str, environ: Mapping[str, str] | None = None) -> str:
    """The host path for container ``path`` under one of ``LAB_MOUNTS``'s mounts (longest
    prefix), else ``path`` unchanged (also without ``LAB_MOUNTS``, as on a real cluster)."""
    found = mapped(path, mounts_from(environ))
    return path if found is None else found
