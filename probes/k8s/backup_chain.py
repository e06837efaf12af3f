"""The backup chain as the harness judges it: the MSSQLBackup statuses, checked against the store.

A backup's status says what it covered when it was taken. The archive can lose a WAL
segment afterwards, and then every restore past that segment fails while the statuses
still promise it. So the chain is built from two sources:

* each completed MSSQLBackup's status: ``coveredFrom``/``coveredTo``, and
  ``coveredRanges`` when the operator reports the stretches a log backup really covers
  (several when WAL was already missing when it was taken);
* when the backup store is readable from here (the lab's volume, or the
  ``backups_folder`` template), each log backup's record in it (the layout of
  :mod:`lab.executor.store`): every segment it holds must still be there with the
  SHA-256 it had. A missing or changed segment is a hole, and the log backup's coverage
  is split there with :func:`lab.executor.wal.covered_ranges` from the commit times it
  recorded. A full backup whose folder is gone restores nothing.

:func:`probes.pitr.analyze_chain` then orders the pieces and finds the gaps: a hole
is a gap with its start and end, and the latest restorable time stops before it. A gap
that ends before the first full backup limits nothing a restore can reach and is left
out (the problem list still names its segment).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probes.k8s import kube
from probes.k8s.crs import custom_resources
from probes.observations import observe
from probes.pitr import (
    BackupChain,
    BackupRecord,
    ChainGap,
    analyze_chain,
    format_time,
    parse_time,
    update_pitr,
)

__all__ = ["ChainReport", "backup_chain", "chain_report", "instance_chain", "store_folder"]

Configuration = Mapping[str, Any] | None
Secrets = Mapping[str, Any] | None

Range = tuple[float, float]
#: as :func:`probes.pitr.analyze_chain`: closer than this, two times meet.
TOLERANCE = 0.001


def store_folder(instance: str, namespace: str, configuration: Configuration) -> Path | None:
    """Where ``instance``'s backups volume is readable from here, if anywhere (never creates it).

    ``backups_folder`` (a template with ``{namespace}`` and ``{instance}``) when set, else
    the lab's volume folder ``<lab>/cluster/volumes/<namespace>/<instance>-backups``.
    """
    template = str((configuration or {}).get("backups_folder") or "")
    if template:
        path = Path(template.format(namespace=namespace, instance=instance))
    else:
        from lab.paths import project_root

        volumes = os.environ.get("LAB_VOLUMES")
        lab = os.environ.get("HARNESS_LAB_DIR")
        base = (
            Path(volumes)
            if volumes
            else (Path(lab) if lab else project_root() / ".lab") / "cluster" / "volumes"
        )
        path = base / namespace / f"{instance}-backups"
    return path if path.is_dir() else None


@dataclass
class ChainReport:
    """The chain, the gaps that limit restores, and what the store check found."""

    chain: BackupChain
    gaps: list[ChainGap]
    fulls: int
    logs: int
    checked: str
    problems: list[str] = field(default_factory=list)

    @property
    def latest_restorable(self) -> float | None:
        return self.chain.latest_restorable

    def brief(self) -> dict[str, Any]:
        """What ``pitr.backup.chain`` records (and the go/no-go gate cites)."""
        doc = self.chain.as_dict()
        return {
            "full": self.fulls,
            "log": self.logs,
            "earliest_restorable": doc["earliest_restorable"],
            "latest_restorable": doc["latest_restorable"],
            "gaps": [g.as_dict() for g in self.gaps],
            "checked": self.checked,
            "problems": list(self.problems),
        }

    def as_dict(self) -> dict[str, Any]:
        return {**self.chain.as_dict(), **self.brief()}


def _status(obj: Mapping[str, Any]) -> dict[str, Any]:
    status = obj.get("status")
    return dict(status) if isinstance(status, Mapping) else {}


def _status_ranges(status: Mapping[str, Any]) -> list[Range]:
    given = status.get("coveredRanges")
    if isinstance(given, list) and given:
        return [
            (parse_time(str(r["from"])), parse_time(str(r["to"]))) for r in given if isinstance(r, Mapping)
        ]
    end = parse_time(str(status["coveredTo"]))
    start = parse_time(str(status["coveredFrom"])) if status.get("coveredFrom") else end
    return [(start, end)]


def _recheck_log(store: Any, name: str, backup_id: str, ranges: list[Range]) -> tuple[list[Range], list[str]]:
    """A log backup's ranges as the store has it now, and what is wrong with it."""
    from lab.executor.wal import covered_ranges, sha256_of

    meta = store.log(backup_id)
    if meta is None:
        return [], [f"log backup {name}: no record in the backup store"]
    missing = [str(s) for s in meta.get("missing") or []]
    problems = [f"log backup {name}: WAL segment {s} was missing when it was taken" for s in missing]
    entries = meta.get("wal")
    if not isinstance(entries, list):  # recorded without per-segment times: whole or nothing
        gone = [s for s in meta.get("segments") or [] if not (store.wal / str(s)).is_file()]
        problems += [f"log backup {name}: WAL segment {s} is missing from the archive" for s in gone]
        return ([] if gone else ranges), problems
    bad = set(missing)
    for entry in entries:
        path = store.wal / str(entry["segment"])
        if not path.is_file():
            problems.append(f"log backup {name}: WAL segment {entry['segment']} is missing from the archive")
        elif sha256_of(path) != entry.get("sha256"):
            problems.append(
                f"log backup {name}: WAL segment {entry['segment']} has changed (checksum mismatch)"
            )
        else:
            continue
        bad.add(str(entry["segment"]))
    if bad == set(missing):
        return ranges, problems
    start = parse_time(str(meta.get("chainStart") or meta["coveredFrom"]))
    every = sorted([*entries, *({"segment": s} for s in missing)], key=lambda e: str(e["segment"]))
    return covered_ranges(start, parse_time(str(meta["coveredTo"])), every, bad), problems


def chain_report(backups: list[dict[str, Any]], folder: Path | None) -> ChainReport:
    """The chain of the completed MSSQLBackups ``backups``, re-checked against the store at ``folder``."""
    from lab.executor.store import BackupStore

    store = BackupStore(folder) if folder is not None else None
    records: list[BackupRecord] = []
    problems: list[str] = []
    fulls = logs = 0
    newest: tuple[float, str, list[Range]] | None = None  # the last log backup: coveredTo, name, pieces
    for backup in backups:
        status = _status(backup)
        name = str(backup["metadata"]["name"])
        backup_id = str(status.get("backupId") or name)
        if str((backup.get("spec") or {}).get("type")) == "full":
            fulls += 1
            if store is not None and store.full(backup_id) is None:
                problems.append(f"full backup {name}: no longer in the backup store")
                continue
            to = parse_time(str(status["coveredTo"]))
            records.append(BackupRecord(name, "full", to, to))
            continue
        logs += 1
        ranges = _status_ranges(status)
        if store is not None:
            ranges, found = _recheck_log(store, name, backup_id, ranges)
            problems += found
        for i, (low, high) in enumerate(ranges):
            part = name if len(ranges) == 1 else f"{name} [{i + 1}/{len(ranges)}]"
            records.append(BackupRecord(part, "log", low, high))
        covered_to = parse_time(str(status["coveredTo"]))
        if newest is None or covered_to > newest[0]:
            newest = (covered_to, name, ranges)
    chain = analyze_chain(records)
    holes = list(chain.gaps)
    if newest is not None:  # a hole at the end of the newest log backup has no later piece to show it
        covered_to, name, ranges = newest
        earlier = [r for r in records if r.type == "log" and r.covered_to < covered_to - TOLERANCE]
        if ranges:
            after = name if len(ranges) == 1 else f"{name} [{len(ranges)}/{len(ranges)}]"
            reach: float | None = ranges[-1][1]
        elif earlier:
            last = max(earlier, key=lambda r: r.covered_to)
            after, reach = last.name, last.covered_to
        else:
            reach = None
        if reach is not None and reach < covered_to - TOLERANCE:
            holes.append(ChainGap(after, f"the end of {name}", reach, covered_to))
    first = chain.earliest_restorable
    gaps = [g for g in holes if first is not None and g.end > first]
    checked = (
        f"WAL re-checked in {folder}" if folder is not None else "backup statuses only (store not readable)"
    )
    report = ChainReport(chain, gaps, fulls, logs, checked, problems)
    for gap in gaps:
        report.problems.append(
            f"gap from {format_time(gap.start)} to {format_time(gap.end)} ({gap.seconds:.3f} s) "
            f"between {gap.after} and {gap.before}"
        )
    return report


def _completed_backups(
    instance: str, namespace: str, configuration: Configuration, secrets: Secrets
) -> list[dict[str, Any]]:
    items = custom_resources(configuration, secrets)["backup"].list(namespace)
    return [
        b
        for b in items
        if (b.get("spec") or {}).get("instance") == instance
        and _status(b).get("phase") == "Completed"
        and _status(b).get("coveredTo")
    ]


def instance_chain(
    instance: str, namespace: str, configuration: Configuration, secrets: Secrets
) -> ChainReport:
    """The chain of ``instance``'s completed backups, re-checked against its store when readable."""
    backups = _completed_backups(instance, namespace, configuration, secrets)
    return chain_report(backups, store_folder(instance, namespace, configuration))


def backup_chain(
    instance: str, namespace: str = "tenants", configuration: Configuration = None, secrets: Secrets = None
) -> dict[str, Any]:
    """The completed full and log backups of ``instance`` in order, the gaps between them, and the
    restorable range (``earliest_restorable``, ``latest_restorable``; None: nothing restorable).

    When the backup store is readable from here, the WAL each log backup holds is checked
    again: a segment lost or changed since is a gap. Records ``pitr.backup.chain``
    (counts, range, each gap with its start and end, the problems found); the go/no-go
    backup gate fails a chain with a gap.
    """
    report = instance_chain(instance, namespace, configuration, secrets)
    brief = report.brief()
    update_pitr(kube.run_dir(), "backup", {"chain": brief})
    observe("backup_chain", brief)
    return report.as_dict()
