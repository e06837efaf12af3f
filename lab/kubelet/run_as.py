"""Which user a container runs as, and what an unprivileged container's environment is.

Host-command containers (:func:`lab.kubelet.images.is_host_command`) run as the user their
``securityContext`` names, the container's ``runAsUser``/``runAsGroup`` over the pod's,
else as ``nobody`` (65534) in ``nogroup`` (65534). An explicit ``runAsUser`` without a
``runAsGroup`` gets that user's primary group from the host's ``/etc/passwd`` (the lab's
stand-in for the image's), else ``nogroup``: a container runtime would use 0, but the lab
shares the host's files, so it never hands out root's group unasked. The pod's
``supplementalGroups`` and ``fsGroup`` become the process's supplementary groups.
``runAsNonRoot: true`` with an effective uid 0 is refused with the kubelet's own error
(``CreateContainerConfigError``, "container has runAsNonRoot and image will run as root").

The lab's own images (engine, operator, executor and harness: the containers
:func:`lab.kubelet.images.is_host_command` does not count as host commands) run as the
kubelet's user (see :mod:`lab.kubelet.images`); one of them asked to run as any other user
is refused (``CreateContainerConfigError`` naming the fix), never silently run as root. A
kubelet that is not root cannot switch users: every container then runs as the kubelet's
user (the kubelet says so once in its log).

An unprivileged container (one not running as the kubelet's user) gets an environment
like an image's rather than the kubelet's: ``PATH`` is the container default
(:data:`CONTAINER_PATH`), ``HOME`` its own folder, and this checkout's Python
(``VIRTUAL_ENV``, ``PYTHONPATH``) and ``TMPDIR`` are left out; see
:func:`unprivileged_env`. Its working folder and HOME is a folder of its own in the pod's
folder (:func:`home_for`), 0700 and owned by its uid. Containers of the pod that share a uid
share that folder; pods that share a uid (every pod left to the default ``nobody``) can read
each other's files, as containers sharing a uid on a host without user namespaces could.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.kubelet.podspec import TRAVERSE_ONLY, ConfigError, make_dir

__all__ = [
    "CONTAINER_PATH",
    "NOBODY",
    "NOGROUP",
    "RunAs",
    "can_switch_users",
    "home_for",
    "kubelet_user",
    "run_as_for",
    "unprivileged_env",
]

Obj = dict[str, Any]

NOBODY = 65534
NOGROUP = 65534
#: The PATH of a container whose image sets none (Docker's and containerd's default).
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_DROPPED = ("VIRTUAL_ENV", "PYTHONPATH", "TMPDIR")


@dataclass(frozen=True)
class RunAs:
    """The user, group and supplementary groups of a container's processes."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    #: Switch to them (False: the kubelet's own user, nothing to switch).
    switch: bool = True

    @property
    def as_kubelet(self) -> bool:
        """The container runs as the kubelet's own uid (this checkout's programs work for it)."""
        return not self.switch or self.uid == os.geteuid()

    def popen_kwargs(self) -> dict[str, Any]:
        """``subprocess.Popen`` arguments that start a process as this user (none when not switching)."""
        if not self.switch:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}


def kubelet_user() -> RunAs:
    """The kubelet's own user: nothing is switched."""
    return RunAs(os.geteuid(), os.getegid(), (), switch=False)


def can_switch_users() -> bool:
    """Only root can start processes as other users."""
    return os.geteuid() == 0


def _context(obj: Obj | None) -> Obj:
    sc = (obj or {}).get("securityContext")
    return sc if isinstance(sc, dict) else {}


def _id(value: Any, field: str, container: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**31 - 1:
        raise ConfigError(
            "CreateContainerConfigError",
            f"container {container!r}: {field} {value!r} is not a user or group id: give a whole number >= 0",
        )
    return value


def _primary_group(uid: int) -> int:
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return NOGROUP


def _non_root_check(pod: Obj, container: Obj, uid: int) -> None:
    pod_sc, sc = _context(pod.get("spec")), _context(container)
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True and uid == 0:
        md = pod.get("metadata") or {}
        where = f"{md.get('name')}_{md.get('namespace')}({md.get('uid')})"
        raise ConfigError(
            "CreateContainerConfigError",
            f'container has runAsNonRoot and image will run as root (pod: "{where}", '
            f"container: {container.get('name')})",
        )


def run_as_for(pod: Obj, container: Obj, host_command: bool, switch: bool) -> RunAs:
    """The user ``container`` of ``pod`` runs as (see the module doc); ConfigError when it cannot run."""
    name = str(container.get("name", ""))
    pod_sc, sc = _context(pod.get("spec")), _context(container)
    uid = _id(sc.get("runAsUser", pod_sc.get("runAsUser")), "runAsUser", name)
    gid = _id(sc.get("runAsGroup", pod_sc.get("runAsGroup")), "runAsGroup", name)
    if not switch:
        me = kubelet_user()
        _non_root_check(pod, container, me.uid)
        return me
    if not host_command:
        me = kubelet_user()
        if (uid is not None and uid != me.uid) or (gid is not None and gid != me.gid):
            raise ConfigError(
                "CreateContainerConfigError",
                f"container {name!r}: image {container.get('image')} runs as the kubelet's user "
                f"(uid {me.uid}) in the lab and cannot take securityContext.runAsUser/runAsGroup: "
                "remove them, or give the container a command to run it as a host command",
            )
        _non_root_check(pod, container, me.uid)
        return me
    groups: list[int] = []
    for value in pod_sc.get("supplementalGroups") or []:
        group = _id(value, "supplementalGroups", name)
        if group is not None and group not in groups:
            groups.append(group)
    fs_group = _id(pod_sc.get("fsGroup"), "fsGroup", name)
    if fs_group is not None and fs_group not in groups:
        groups.append(fs_group)
    if uid is None:
        uid = NOBODY
        gid = NOGROUP if gid is None else gid
    elif gid is None:
        gid = _primary_group(uid)
    _non_root_check(pod, container, uid)
    return RunAs(uid, gid, tuple(groups))


def unprivileged_env(env: dict[str, str], home: str) -> dict[str, str]:
    """``env`` (the kubelet's pass-through environment) as an unprivileged container gets it."""
    out = {k: v for k, v in env.items() if k not in _DROPPED}
    out["PATH"] = CONTAINER_PATH
    out["HOME"] = home
    return out


def home_for(pod_dir: Path, run_as: RunAs) -> Path:
    """The working folder and HOME of a container running as ``run_as``: the pod's folder for the
    kubelet's own uid (as before), else ``<pod folder>/home/<uid>``, 0700 and owned by that uid."""
    if run_as.as_kubelet:
        return make_dir(pod_dir, 0o755)
    make_dir(pod_dir, 0o755)
    folder = make_dir(pod_dir / "home", TRAVERSE_ONLY) / str(run_as.uid)
    if not folder.exists():
        folder.mkdir(mode=0o700)
        os.chown(folder, run_as.uid, run_as.gid)
        folder.chmod(0o700)
    return folder
