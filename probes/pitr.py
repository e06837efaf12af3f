"""Point-in-time restore checks: the backup chain and the restored rows, as pure functions.

**Validation** (:func:`validate_restore`). A restore of source S to time X must hold
every acknowledged write of S whose server timestamp is at or before ``X - epsilon``
and no row whose server timestamp is after ``X + epsilon``. A row's server timestamp
is taken inside its transaction, a little before the commit the restore goes by, so
writes in ``(X - epsilon, X + epsilon]`` may be on either side: they are counted as
*ambiguous*, never guessed. ``epsilon`` must exceed the commit latency: the load
abandons a write after 0.5 s, so an acknowledged write committed less than 0.5 s after
its timestamp and 0.5 s is always safe. Exactly ``X - epsilon`` is expected; exactly
``X + epsilon`` is ambiguous. Only rows of this run and this source tenant count
(rows of earlier runs restored along with them are ignored). A present row that was
never attempted is *unexpected*; a present row whose timestamp differs from the one
its acknowledgement returned is *changed*: both are data mismatches.

**Chain** (:func:`analyze_chain`). Completed full and log backups ordered by the end
of what they cover; a log backup must start where the chain reached (within a
tolerance) or there is a *gap*, and logs after a gap restore nothing until the next
full backup. The latest restorable point is where the unbroken chain from a full
backup reaches. :func:`lsn_gaps` is the same continuity check on SQL Server's
``msdb.dbo.backupset`` LSNs.

**Files** in the run folder: ``pitr.json`` (blocks ``backup``, ``restore``,
``validation``, plus ``mark``) and ``integrity.json`` (``{"ok", "detail"}``), read by
``reports.build`` into the summary. Times are epoch seconds UTC internally and
RFC 3339 (``2026-11-27T00:01:02.123456Z``) in CRs and files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from common import times
from loadgen.journal import Write
from probes.errors import ProbeError

__all__ = [
    "DEFAULT_EPSILON",
    "INTEGRITY_NAME",
    "PITR_NAME",
    "BackupChain",
    "BackupRecord",
    "ChainGap",
    "PitrValidation",
    "TargetRow",
    "analyze_chain",
    "format_time",
    "lsn_gaps",
    "parse_time",
    "read_json_block",
    "update_pitr",
    "validate_restore",
    "write_json_block",
]

PITR_NAME = "pitr.json"
INTEGRITY_NAME = "integrity.json"
DEFAULT_EPSILON = 0.5
SAMPLE = 10
#: a restored timestamp may differ from the acknowledged one by float/µs rounding only.
TS_TOLERANCE = 1e-5


def parse_time(text: str) -> float:
    """RFC 3339 (``Z``, an offset or none for UTC; microseconds allowed) -> epoch seconds.

    ProbeError if it is not one. Text only: a CR field or target time is never a number.
    """
    try:
        return times.require_time(str(text))
    except ValueError:
        raise ProbeError(f"{text!r} is not an RFC 3339 time (e.g. 2026-11-27T00:01:02.123456Z)") from None


def format_time(epoch: float) -> str:
    """Epoch seconds -> RFC 3339 UTC with microseconds, ``2026-11-27T00:01:02.123456Z``."""
    return times.format_time(epoch, digits=6)


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class TargetRow:
    """One row read from the restore target (``server_ts``: its stored timestamp, epoch seconds)."""

    run_id: str
    tenant: str
    writer: int
    seq: int
    server_ts: float

    @property
    def key(self) -> tuple[int, int]:
        return (self.writer, self.seq)


@dataclass(frozen=True)
class PitrValidation:
    """The restored rows judged against the journal; ``ok`` only when nothing is out of place."""

    ok: bool
    target_time: float
    epsilon_seconds: float
    expected: int  # acknowledged writes at or before X - epsilon
    found: int  # rows of this run and tenant in the target
    missing: int  # expected but absent
    extra: int  # present with a timestamp after X + epsilon
    ambiguous: int  # acknowledged writes or present rows inside (X - epsilon, X + epsilon]
    ambiguous_present: int
    unexpected: int  # present, never attempted
    changed: int  # present, timestamp differs from the acknowledged one
    recovered_unknown: int  # present, outcome unknown to the client (info), before the window
    restore_point_error_seconds: float | None  # achieved - target
    missing_sample: list[list[int]] = field(default_factory=list)
    extra_sample: list[list[int]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _differs(acked_ts: float | None, stored_ts: float) -> bool:
    return acked_ts is not None and abs(stored_ts - acked_ts) > TS_TOLERANCE


def validate_restore(
    run_id: str,
    tenant: str,
    writes: Iterable[Write],
    rows: Iterable[TargetRow],
    target_time: float,
    *,
    epsilon: float = DEFAULT_EPSILON,
    achieved: float | None = None,
) -> PitrValidation:
    """Judge the restored ``rows`` of ``tenant`` (this ``run_id`` only) against its journal ``writes``."""
    if epsilon < 0 or not math.isfinite(epsilon):
        raise ProbeError(f"epsilon must be a non-negative number of seconds, got {epsilon!r}")
    low, high = target_time - epsilon, target_time + epsilon
    mine = [w for w in writes if w.tenant == tenant]
    attempted = {w.key for w in mine}
    acked: dict[tuple[int, int], float | None] = {w.key: w.server_ts for w in mine if w.outcome == "ok"}
    present = {r.key: r.server_ts for r in rows if r.run_id == run_id and r.tenant == tenant}

    expected = {k for k, ts in acked.items() if ts is not None and ts <= low}
    window = {k for k, ts in acked.items() if ts is None or low < ts <= high}
    window |= {k for k, ts in present.items() if low < ts <= high}
    missing = sorted(expected - present.keys())
    extra = sorted(k for k, ts in present.items() if ts > high)
    unexpected = [k for k in present if k not in attempted]
    changed = [k for k, ts in present.items() if _differs(acked.get(k), ts)]
    recovered = [k for k, ts in present.items() if k in attempted and k not in acked and ts <= low]
    error = None if achieved is None else round(achieved - target_time, 6)
    return PitrValidation(
        ok=not (missing or extra or unexpected or changed),
        target_time=target_time,
        epsilon_seconds=epsilon,
        expected=len(expected),
        found=len(present),
        missing=len(missing),
        extra=len(extra),
        ambiguous=len(window),
        ambiguous_present=len(window & present.keys()),
        unexpected=len(unexpected),
        changed=len(changed),
        recovered_unknown=len(recovered),
        restore_point_error_seconds=error,
        missing_sample=[list(k) for k in missing[:SAMPLE]],
        extra_sample=[list(k) for k in extra[:SAMPLE]],
    )


# --------------------------------------------------------------------------- chain


@dataclass(frozen=True)
class BackupRecord:
    """One completed backup as the chain sees it (times in epoch seconds)."""

    name: str
    type: str  # full | log
    covered_from: float | None
    covered_to: float


@dataclass(frozen=True)
class ChainGap:
    """Nothing covers ``(start, end)``: ``after`` reached ``start``, ``before`` starts at ``end``."""

    after: str
    before: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class BackupChain:
    """The ordered chain, its gaps, and the restorable range (None: nothing restorable)."""

    backups: list[BackupRecord]
    gaps: list[ChainGap]
    earliest_restorable: float | None
    latest_restorable: float | None
    fulls: int
    logs: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "backups": [
                {
                    "name": b.name,
                    "type": b.type,
                    "covered_from": None if b.covered_from is None else format_time(b.covered_from),
                    "covered_to": format_time(b.covered_to),
                }
                for b in self.backups
            ],
            "gaps": [
                {
                    "after": g.after,
                    "before": g.before,
                    "from": format_time(g.start),
                    "to": format_time(g.end),
                    "seconds": round(g.seconds, 6),
                }
                for g in self.gaps
            ],
            "earliest_restorable": None
            if self.earliest_restorable is None
            else format_time(self.earliest_restorable),
            "latest_restorable": None
            if self.latest_restorable is None
            else format_time(self.latest_restorable),
            "full": self.fulls,
            "log": self.logs,
        }


def analyze_chain(backups: Iterable[BackupRecord], tolerance: float = 0.001) -> BackupChain:
    """Order completed backups by what they cover, find gaps, and the restorable range.

    A full backup restores to any time from its ``covered_to`` (the end of the copy,
    when it is consistent) on, as far as the log chain after it reaches. A log backup
    extends the chain if its ``covered_from`` is at most ``tolerance`` seconds after
    where the chain (or the previous log) reached; otherwise that is a gap. Log backups
    before the first full backup restore nothing.
    """
    ordered = sorted(backups, key=lambda b: (b.covered_to, b.type != "full", b.name))
    gaps: list[ChainGap] = []
    reach: float | None = None
    earliest: float | None = None
    previous_log: BackupRecord | None = None
    for backup in ordered:
        if backup.type == "full":
            earliest = backup.covered_to if earliest is None else earliest
            reach = backup.covered_to if reach is None else max(reach, backup.covered_to)
            continue
        start = backup.covered_from if backup.covered_from is not None else backup.covered_to
        if previous_log is not None and start > previous_log.covered_to + tolerance:
            gaps.append(ChainGap(previous_log.name, backup.name, previous_log.covered_to, start))
        previous_log = backup
        if reach is not None and start <= reach + tolerance:
            reach = max(reach, backup.covered_to)
    return BackupChain(
        backups=ordered,
        gaps=gaps,
        earliest_restorable=earliest,
        latest_restorable=reach,
        fulls=sum(1 for b in ordered if b.type == "full"),
        logs=sum(1 for b in ordered if b.type == "log"),
    )


def lsn_gaps(history: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Breaks in a SQL Server log chain: a log's ``first_lsn`` is not the previous log's ``last_lsn``.

    ``history`` rows carry ``type`` (``D`` full, ``L`` log), ``first_lsn``, ``last_lsn``
    and a ``name`` (the file); they are taken in ``first_lsn`` order.
    """
    logs = sorted((h for h in history if str(h.get("type")) == "L"), key=lambda h: int(h["first_lsn"]))
    out = []
    for before, after in pairwise(logs):
        if int(after["first_lsn"]) != int(before["last_lsn"]):
            out.append(
                {
                    "after": before.get("name"),
                    "before": after.get("name"),
                    "last_lsn": int(before["last_lsn"]),
                    "first_lsn": int(after["first_lsn"]),
                }
            )
    return out


# --------------------------------------------------------------------------- files


def read_json_block(path: Path) -> dict[str, Any] | None:
    """A JSON object file (``pitr.json``, ``integrity.json``); None when absent, ProbeError when broken."""
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProbeError(f"{path} cannot be read as JSON ({exc}): delete it and run the step again") from None
    if not isinstance(doc, dict):
        raise ProbeError(f"{path} must hold a JSON object: delete it and run the step again")
    return doc


def write_json_block(path: Path, doc: Mapping[str, Any]) -> None:
    """Write a JSON object atomically (temp file + rename); no NaN allowed."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, allow_nan=False, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def update_pitr(run_dir: Path | None, section: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``values`` into ``pitr.json[section]`` of the run folder; returns the whole document.

    Outside a run (``run_dir`` None) nothing is written and the merged block is returned alone.
    """
    if run_dir is None:
        return {section: dict(values)}
    path = Path(run_dir) / PITR_NAME
    doc = read_json_block(path) or {}
    block = doc.get(section)
    doc[section] = {**(block if isinstance(block, dict) else {}), **values}
    write_json_block(path, doc)
    return doc
