"""CPU quotas for process trees, the way a kubelet enforces CPU limits with cgroups.

A :class:`CpuGroup` is one cgroup with a CFS quota of ``cores`` CPUs per 100 ms
period. A process added to it (:meth:`CpuGroup.add`) and every process it forks
afterwards is throttled together: the group never runs more than ``cores`` CPUs' worth
of time per period, however many processes it holds. The lab makes one group per node
(:func:`group_name`: ``mssql-lab-<hash of the lab folder>/<node>``), so a node's pods
share its CPU like pods share a machine.

Both cgroup layouts are handled:

* cgroup v1 (a ``cpu`` hierarchy at ``/sys/fs/cgroup/cpu``): ``cpu.cfs_period_us`` and
  ``cpu.cfs_quota_us``. When ``cpuacct`` is a hierarchy of its own, a twin group is made
  there with the same processes, so :meth:`CpuGroup.usage_seconds` can read
  ``cpuacct.usage``;
* cgroup v2 (``/sys/fs/cgroup`` is cgroup2): ``cpu.max``, after ``+cpu`` is enabled in
  ``cgroup.subtree_control`` of the root and of the lab's group; usage from ``cpu.stat``.

Errors are :class:`~lab.errors.LabError` with one line naming the problem and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError

__all__ = ["CGROUP_ROOT", "MIN_CORES", "PERIOD_US", "CpuGroup", "cpu_quota_supported", "group_name"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
#: The CFS period, as kubelets use it: a quota of ``cores`` is ``cores * PERIOD_US`` per period.
PERIOD_US = 100_000
#: The kernel refuses a quota below 1 ms per period.
MIN_CORES = 0.01
_WITHOUT = "or run without --node-cpu"


@dataclass(frozen=True)
class _Hierarchy:
    """Where CPU groups go on this machine."""

    version: int
    cpu: Path  # root of the hierarchy holding the cpu controller
    cpuacct: Path | None = None  # v1: a separate cpuacct hierarchy, for usage


def _hierarchy(root: Path) -> _Hierarchy | str:
    """The hierarchy to use under ``root``, or why there is none (one line with the fix)."""
    v1 = root / "cpu"
    if (v1 / "cpu.cfs_quota_us").exists():
        acct = root / "cpuacct"
        separate = (
            acct
            if not (v1 / "cpuacct.usage").exists()
            and (acct / "cpuacct.usage").exists()
            and acct.resolve() != v1.resolve()
            else None
        )
        return _Hierarchy(1, v1, separate)
    if (root / "cgroup.controllers").exists():
        controllers = _read(root / "cgroup.controllers").split()
        if "cpu" not in controllers:
            return (
                f"the cgroup v2 cpu controller is not available in {root} (cgroup.controllers): "
                f"enable it for this machine or container {_WITHOUT}"
            )
        return _Hierarchy(2, root)
    if not root.exists():
        return f"no cgroup filesystem at {root}: CPU quotas need Linux with cgroups mounted, {_WITHOUT}"
    return (
        f"no cpu controller under {root} (neither cgroup v1 cpu/ nor cgroup v2): "
        f"mount one (mount -t cgroup -o cpu cgroup {v1}) {_WITHOUT}"
    )


def cpu_quota_supported(root: Path = CGROUP_ROOT) -> str | None:
    """None when CPU quotas can be set here, else a one-line reason with the fix."""
    found = _hierarchy(root)
    if isinstance(found, str):
        return found
    probe = found.cpu / ("cgroup.procs" if found.version == 1 else "cgroup.subtree_control")
    if not os.access(found.cpu, os.W_OK) or not os.access(probe, os.W_OK):
        return (
            f"cannot create cgroups in {found.cpu} (not writable by this user): run the lab as root, "
            f"delegate that cgroup to this user, {_WITHOUT}"
        )
    return None


def group_name(folder: Path, node: str) -> str:
    """The group of ``node`` of the lab kept in ``folder``: ``mssql-lab-<hash>/<node>``."""
    digest = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:10]
    return f"mssql-lab-{digest}/{node}"


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, text: str, fix: str) -> None:
    try:
        with open(path, "w") as out:
            out.write(text)
    except OSError as exc:
        raise LabError(f"cannot write {text.strip()!r} to {path} ({exc.strerror or exc}): {fix}") from exc


def _pids(folder: Path) -> list[int]:
    return [int(word) for word in _read(folder / "cgroup.procs").split() if word.isdigit()]


def _check_name(name: str) -> None:
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") for p in parts) or len(parts) > 2:
        raise LabError(f"bad cgroup name {name!r}: use <group> or <group>/<child>, without '.' or '..'")


@dataclass(frozen=True)
class CpuGroup:
    """One CPU-limited cgroup (see the module doc); make it with :meth:`create`."""

    name: str
    version: int
    root: Path  # the hierarchy root (where :meth:`remove` moves leftover processes)
    twin_root: Path | None = None  # v1: the cpuacct hierarchy root, when separate

    @property
    def path(self) -> Path:
        """The group's folder in the cpu hierarchy."""
        return self.root / self.name

    @property
    def folders(self) -> list[Path]:
        """Every folder of the group: the cpu one and, on v1, the cpuacct twin."""
        return [self.path] + ([self.twin_root / self.name] if self.twin_root else [])

    @classmethod
    def create(cls, name: str, cores: float, *, root: Path = CGROUP_ROOT) -> CpuGroup:
        """Make (or reuse) group ``name`` limited to ``cores`` CPUs; LabError when it cannot."""
        _check_name(name)
        if not cores >= MIN_CORES:
            raise LabError(f"a CPU quota of {cores:g} cores is too small: give at least {MIN_CORES} cores")
        reason = cpu_quota_supported(root)
        found = _hierarchy(root)
        if reason is not None or isinstance(found, str):
            raise LabError(reason or str(found))
        group = cls(name, found.version, found.cpu, found.cpuacct)
        fix = f"check that {found.cpu} is a writable cgroup hierarchy {_WITHOUT}"
        quota = max(1000, round(cores * PERIOD_US))
        try:
            if group.version == 2:
                group._enable_cpu(found.cpu, fix)
                parent = found.cpu / name.split("/", maxsplit=1)[0]
                parent.mkdir(exist_ok=True)
                if parent != group.path:
                    group._enable_cpu(parent, fix)
                    group.path.mkdir(exist_ok=True)
                _write(group.path / "cpu.max", f"{quota} {PERIOD_US}\n", fix)
            else:
                for folder in group.folders:
                    folder.mkdir(parents=True, exist_ok=True)
                _write(group.path / "cpu.cfs_period_us", f"{PERIOD_US}\n", fix)
                _write(group.path / "cpu.cfs_quota_us", f"{quota}\n", fix)
        except OSError as exc:
            raise LabError(
                f"cannot create cgroup {name} in {found.cpu} ({exc.strerror or exc}): {fix}"
            ) from exc
        return group

    @classmethod
    def open(cls, name: str, *, root: Path = CGROUP_ROOT) -> CpuGroup | None:
        """The existing group ``name``, or None (also when this machine has no CPU cgroups)."""
        _check_name(name)
        found = _hierarchy(root)
        if isinstance(found, str) or not (found.cpu / name).is_dir():
            return None
        return cls(name, found.version, found.cpu, found.cpuacct)

    @staticmethod
    def _enable_cpu(folder: Path, fix: str) -> None:
        control = folder / "cgroup.subtree_control"
        if "cpu" not in _read(control).split():
            _write(control, "+cpu\n", f"processes may live in {folder} itself (cgroup v2 forbids it): {fix}")

    def add(self, pid: int) -> bool:
        """Move process ``pid`` into the group (its later children stay there); False if it is gone."""
        for folder in self.folders:
            try:
                with open(folder / "cgroup.procs", "w") as out:
                    out.write(f"{pid}\n")
            except ProcessLookupError:
                return False
            except OSError as exc:
                if exc.errno == errno.ESRCH:
                    return False
                raise LabError(
                    f"cannot move process {pid} into cgroup {folder} ({exc.strerror or exc}): "
                    f"check that the group exists and is writable {_WITHOUT}"
                ) from exc
        return True

    def pids(self) -> list[int]:
        """The processes in the group now."""
        return _pids(self.path)

    def quota_cores(self) -> float | None:
        """The quota in CPUs, None when unlimited or unreadable."""
        if self.version == 2:
            words = _read(self.path / "cpu.max").split()
            if len(words) != 2 or not words[0].isdigit():
                return None
            return int(words[0]) / int(words[1])
        quota, period = _read(self.path / "cpu.cfs_quota_us").strip(), _read(self.path / "cpu.cfs_period_us")
        if not quota.isdigit() or not period.strip().isdigit():
            return None
        return int(quota) / int(period)

    def usage_seconds(self) -> float | None:
        """CPU time the group's processes used since it was made, None when not accounted here."""
        if self.version == 2:
            for line in _read(self.path / "cpu.stat").splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec" and value.strip().isdigit():
                    return int(value) / 1e6
            return None
        for folder in self.folders:
            value = _read(folder / "cpuacct.usage").strip()
            if value.isdigit():
                return int(value) / 1e9
        return None

    def remove(self, timeout: float = 5.0) -> None:
        """Move leftover processes to the root group, delete the group (and the lab's, when empty)."""
        for folder, top in zip(self.folders, [self.root, self.twin_root], strict=False):
            if top is None or not folder.is_dir():
                continue
            deadline = time.monotonic() + timeout
            while True:
                for pid in _pids(folder):
                    with contextlib.suppress(OSError):
                        (top / "cgroup.procs").write_text(f"{pid}\n")
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if time.monotonic() >= deadline:
                        raise LabError(
                            f"cannot remove cgroup {folder} ({exc.strerror or exc}): stop the processes "
                            f"listed in {folder / 'cgroup.procs'} and rmdir it"
                        ) from exc
                    time.sleep(0.05)
            parent = folder.parent
            if parent != top:
                with contextlib.suppress(OSError):
                    parent.rmdir()  # only succeeds once no other node's group is left in it
