"""Point-in-time restore checks: the backup chain and the restored rows, as pure functions.

**Validation** (:func:`validate_restore`). A restore of source S to time X keeps the
transactions that committed at or before X (``recovery_target_inclusive``; ``STOPAT``),
so every acknowledged write of S committed by X must be present and no row committed
after X. A row is judged by its commit time when the target gives one with the row
(PostgreSQL with ``track_commit_timestamp``, see :mod:`loadgen.dialects`): exact, no
window. Otherwise, and always for a row absent from the target, by its latency window
from the journal: the row is stamped inside its transaction (``server_ts``) and commits
before the client's acknowledgement, so the commit lies in ``[server_ts, server_ts +
latency]``. Both ends are on the server's clock (the latency is a duration), so no
client time and no clock skew enter the bound. Only a write whose window contains X is
*ambiguous*, counted and never guessed: at a few milliseconds of latency, rarely more
than one row per restore. The engine's resolution of the target time widens the band
(1 µs for PostgreSQL, 1/300 s for ``STOPAT``); times are compared in whole
microseconds, so a commit exactly at X is expected. Only rows of this run and tenant
count (earlier runs' rows restored along with them are ignored). A present row never
attempted is *unexpected*, one whose timestamp differs from its acknowledgement's is
*changed*: both are mismatches. A known commit time outside its write's window is
counted (``commit_outside_latency``): the window's premise would not hold there.

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
    "COMMIT_TIMESTAMP",
    "DEFAULT_EPSILON",
    "INTEGRITY_NAME",
    "LATENCY_WINDOW",
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
#: the restore smoke's counting band around its restore point (``verify_backups``), seconds.
DEFAULT_EPSILON = 0.5
SAMPLE = 10
#: a restored timestamp may differ from the acknowledged one by float/µs rounding only.
TS_TOLERANCE = 1e-5
Key = tuple[int, int]


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

#: ``PitrValidation.window``: how present rows were judged.
COMMIT_TIMESTAMP = "commit_timestamp"
LATENCY_WINDOW = "latency_window"


@dataclass(frozen=True)
class TargetRow:
    """One row of the restore target: its stored timestamp and, if the engine says, its commit time."""

    run_id: str
    tenant: str
    writer: int
    seq: int
    server_ts: float
    commit_ts: float | None = None

    @property
    def key(self) -> Key:
        return (self.writer, self.seq)


@dataclass(frozen=True)
class PitrValidation:
    """The restored rows judged against the journal; ``ok`` only when nothing is out of place."""

    ok: bool
    target_time: float
    window: str  # COMMIT_TIMESTAMP when every present row had its commit time, else LATENCY_WINDOW
    commit_times: int  # present rows whose commit time the target gave
    expected: int  # acknowledged writes committed at or before X
    found: int  # rows of this run and tenant in the target
    missing: int  # expected but absent
    extra: int  # present, committed after X
    ambiguous: int  # acknowledged writes whose commit may be on either side of X
    ambiguous_present: int
    window_max_seconds: float  # the widest latency window among the ambiguous writes
    unexpected: int  # present, never attempted
    changed: int  # present, timestamp differs from the acknowledged one
    recovered_unknown: int  # present, outcome unknown to the client (info or fail), not after X
    commit_outside_latency: int  # known commit time outside its write's latency window
    restore_point_error_seconds: float | None  # achieved - target
    missing_sample: list[list[int]] = field(default_factory=list)
    extra_sample: list[list[int]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _us(seconds: float) -> int:
    """Whole microseconds: both engines keep times to the microsecond, and floats must not decide ties."""
    return round(seconds * 1_000_000)


def _span(write: Write) -> tuple[int, int] | None:
    """When ``write``'s commit may have happened, ``[stamp, stamp + latency]`` in µs; None if unknown."""
    if write.server_ts is None or not math.isfinite(write.latency) or write.latency < 0:
        return None
    start = _us(write.server_ts)
    return start, start + math.ceil(write.latency * 1_000_000)


def _differs(acked_ts: float | None, stored_ts: float) -> bool:
    return acked_ts is not None and abs(stored_ts - acked_ts) > TS_TOLERANCE


def validate_restore(
    run_id: str,
    tenant: str,
    writes: Iterable[Write],
    rows: Iterable[TargetRow],
    target_time: float,
    *,
    resolution: float = 1e-6,
    achieved: float | None = None,
) -> PitrValidation:
    """Judge the restored ``rows`` of ``tenant`` (this ``run_id`` only) against its journal ``writes``.

    ``resolution``: how finely the engine places the restore's target time (seconds);
    a commit that close to X may be on either side of it.
    """
    if resolution < 0 or not math.isfinite(resolution):
        raise ProbeError(f"resolution must be a non-negative number of seconds, got {resolution!r}")
    slack = max(0, math.ceil(round(resolution * 1_000_000, 3)) - 1)  # beyond the µs compared in
    low, high = _us(target_time) - slack, _us(target_time) + slack  # commits in (low, high] are unsure

    def side(first: int, last: int) -> int:
        """-1: committed at or before X; 1: after X; 0: cannot tell."""
        return -1 if last <= low else 1 if first > high else 0

    mine = [w for w in writes if w.tenant == tenant]
    attempted = {w.key for w in mine}
    acked = {w.key: w for w in mine if w.outcome == "ok"}
    present = {r.key: r for r in rows if r.run_id == run_id and r.tenant == tenant}
    expected, extra, ambiguous = set[Key](), set[Key](), set[Key]()
    widest, outside = 0.0, 0
    for key, write in acked.items():
        row, span = present.get(key), _span(write)
        commit = None if row is None or row.commit_ts is None else _us(row.commit_ts)
        if commit is not None and span is not None and not span[0] <= commit <= span[1]:
            outside += 1
        verdict = side(commit, commit) if commit is not None else 0 if span is None else side(*span)
        if verdict < 0:
            expected.add(key)
        elif verdict > 0 and row is not None:
            extra.add(key)
        elif verdict == 0:
            ambiguous.add(key)
            widest = max(widest, write.latency if span is not None else 0.0)
    recovered: list[Key] = []
    for key, row in present.items():
        if key in acked:
            continue
        # Not acknowledged: committed when it says, else at its stamp or some unknown time after.
        earliest = _us(row.server_ts if row.commit_ts is None else row.commit_ts)
        if earliest > high:
            extra.add(key)
        elif key in attempted:
            recovered.append(key)
    missing = sorted(expected - present.keys())
    unexpected = [k for k in present if k not in attempted]
    changed = [k for k, r in present.items() if k in acked and _differs(acked[k].server_ts, r.server_ts)]
    known = sum(1 for r in present.values() if r.commit_ts is not None)
    error = None if achieved is None else round(achieved - target_time, 6)
    return PitrValidation(
        ok=not (missing or extra or unexpected or changed),
        target_time=target_time,
        window=COMMIT_TIMESTAMP if present and known == len(present) else LATENCY_WINDOW,
        commit_times=known,
        expected=len(expected),
        found=len(present),
        missing=len(missing),
        extra=len(extra),
        ambiguous=len(ambiguous),
        ambiguous_present=len(ambiguous & present.keys()),
        window_max_seconds=round(widest, 6),
        unexpected=len(unexpected),
        changed=len(changed),
        recovered_unknown=len(recovered),
        commit_outside_latency=outside,
        restore_point_error_seconds=error,
        missing_sample=[list(k) for k in missing[:SAMPLE]],
        extra_sample=[list(k) for k in sorted(extra)[:SAMPLE]],
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

    def as_dict(self) -> dict[str, Any]:
        """The gap as reports show it: who bounds it, from and to (RFC 3339), how long."""
        return {
            "after": self.after,
            "before": self.before,
            "from": format_time(self.start),
            "to": format_time(self.end),
            "seconds": round(self.seconds, 6),
        }


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
            "gaps": [g.as_dict() for g in self.gaps],
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
