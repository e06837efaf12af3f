"""The lab's capacity knobs: a CPU quota per node and a server CPU cost per commit.

Together they make a lab whose capacity is known in advance, so a capacity search can
be checked against it: with ``--node-cpu CORES`` (every node's containers share a CPU
cgroup of that many cores, :mod:`lab.cgroups`) and ``--commit-cpu-ms MS`` (every
committed insert costs that much CPU in the database server,
:mod:`lab.kubelet.commit_cost`), one node carries at most

    tenants_max = node_cpu / (commit_cpu_seconds * rate)

tenants writing ``rate`` rows per second each (plus what the servers spend besides the
knob: small next to a cost of a few milliseconds). Both are test instruments, off by
default; ``python -m lab up`` stores them in ``cluster.json`` so a node restart or another
``up`` keeps them, and ``off`` turns one off again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.cgroups import MIN_CORES, CpuGroup, cpu_quota_supported, group_name
from lab.errors import LabError
from lab.kubelet.commit_cost import MAX_COMMIT_CPU_MS

__all__ = ["OFF", "Knob", "NodeKnobs", "remove_node_groups", "resolve_knobs"]

#: The value that turns a stored knob off (``--node-cpu off``).
OFF = "off"
#: What a caller passes for one knob: a number, a number as text, ``OFF``, or None to keep the lab's.
Knob = float | str | None


@dataclass(frozen=True)
class NodeKnobs:
    """A lab's knobs (None: off)."""

    node_cpu: float | None = None
    commit_cpu_ms: float | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> NodeKnobs:
        """The knobs stored in a lab's ``cluster.json``."""

        def number(key: str) -> float | None:
            value = config.get(key)
            return float(value) if isinstance(value, int | float) and value > 0 else None

        return cls(number("node_cpu"), number("commit_cpu_ms"))

    def store(self, config: dict[str, Any]) -> None:
        """Write the knobs into ``config`` (null when off)."""
        config["node_cpu"] = self.node_cpu
        config["commit_cpu_ms"] = self.commit_cpu_ms

    def kubelet_args(self) -> list[str]:
        """The kubelet arguments that apply them (none when off)."""
        args = []
        if self.node_cpu is not None:
            args += ["--node-cpu", f"{self.node_cpu:g}"]
        if self.commit_cpu_ms is not None:
            args += ["--commit-cpu-ms", f"{self.commit_cpu_ms:g}"]
        return args

    def commits_per_second(self) -> float | None:
        """Commits per second one node's CPU quota pays for, when both knobs are on."""
        if self.node_cpu is None or self.commit_cpu_ms is None:
            return None
        return self.node_cpu / (self.commit_cpu_ms / 1000)

    def tenants_max(self, rate: float) -> float | None:
        """Tenants one node carries at ``rate`` writes per second each, when both knobs are on."""
        per_node = self.commits_per_second()
        return None if per_node is None or rate <= 0 else per_node / rate

    def describe(self) -> str:
        """One line for ``lab status``."""
        cpu = f"{self.node_cpu:g} cores per node" if self.node_cpu is not None else "unlimited"
        cost = f"{self.commit_cpu_ms:g} ms per insert" if self.commit_cpu_ms is not None else "off"
        line = f"node CPU quota {cpu}, commit CPU cost {cost}"
        per_node = self.commits_per_second()
        if per_node is not None:
            line += f": a node pays for {per_node:g} commits/s (tenants_max = {per_node:g} / rate)"
        return line


def _parse(flag: str, value: Knob, current: float | None, low: float, high: float) -> float | None:
    if value is None:
        return current
    if isinstance(value, str) and value.strip().lower() == OFF:
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not low <= number <= high:
        raise LabError(
            f"{flag} {value} is not usable: give a number from {low:g} to {high:g}, or {OFF} to turn it off"
        )
    return number


def resolve_knobs(stored: NodeKnobs, node_cpu: Knob = None, commit_cpu_ms: Knob = None) -> NodeKnobs:
    """The knobs to run with: each given one replaces the stored one; LabError (one line) when bad.

    ``--node-cpu`` also needs CPU cgroups on this machine (:func:`lab.cgroups.cpu_quota_supported`).
    """
    knobs = NodeKnobs(
        _parse("--node-cpu", node_cpu, stored.node_cpu, MIN_CORES, 4096.0),
        _parse("--commit-cpu-ms", commit_cpu_ms, stored.commit_cpu_ms, 0.001, MAX_COMMIT_CPU_MS),
    )
    if knobs.node_cpu is not None:
        reason = cpu_quota_supported()
        if reason is not None:
            raise LabError(f"--node-cpu {knobs.node_cpu:g}: {reason}")
    return knobs


def remove_node_groups(folder: Path, nodes: list[str]) -> list[str]:
    """Remove the CPU cgroups of the lab in ``folder``'s ``nodes``; the names removed."""
    removed = []
    for node in nodes:
        group = CpuGroup.open(group_name(folder, node))
        if group is not None:
            group.remove()
            removed.append(group.name)
    return removed
