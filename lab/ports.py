"""Which engine ports each lab of this machine may use: a machine-wide registry of port blocks.

Every lab's operator hands out tenant ports from one block of :data:`RANGE_SIZE` ports
(20000-20199, 20200-20399, ...), never from another lab's, so two labs on one machine
(two checkouts, or a CI run beside a developer's lab) cannot fight over a port, and a
tenant restarting in one lab cannot have its port taken by the other.

The blocks are recorded in one file every lab of the machine shares, whoever runs it
(:mod:`lab.ports_registry`: where it is, its lock, its permissions). Anyone on the
machine can edit it, as anyone can bind a port: the registry keeps honest labs apart,
and the harness's identity check (the lab id each tenant database holds, see
:func:`lab.engine.identity_sql`) refuses a server of the wrong lab whatever happened.

Each lab claims its block with :func:`claim_range` at ``up`` and records its control
plane's pid with :func:`mark_running`; ``down`` calls :func:`mark_down`, ``down --wipe``
:func:`release_range`. The claim also writes :data:`MARKER` (``port-range.json``) into
the lab's folder, naming the lab id and its block.

**The stale-owner rule.** A block is, for the others:

- *live* while the recorded pid (the control plane, or the ``up`` that claimed it until
  the control plane runs) is alive and is still the process that was recorded (its
  start time matches, so a recycled pid does not count): never taken;
- *gone* when, with no live pid, the lab's folder or its marker is missing, or the
  marker names another lab (the folder was deleted, wiped by ``down --wipe``, or reused
  by a new lab): dropped from the registry at the next claim, free at once;
- *idle* otherwise: the lab was stopped (``down`` without ``--wipe``, which keeps the
  tenants' data) or crashed. Its block is kept for it, so it comes back with the same
  ports, but only while others have room: when no free block is left, idle blocks are
  taken, crashed labs' before stopped labs', the longest idle first. A marker another
  user's folder hides from us counts as present (we cannot tell it is gone).

So a stopped lab keeps its ports whenever possible, and a crashed or deleted lab never
blocks another. A lab that lost its block gets another at its next ``up``; its operator
then moves each tenant whose recorded port lies outside the new block
(:mod:`lab.operator.reconcile`), and its data stays.

:func:`lab_identity` is the lab's random id (``lab-`` and 12 hex digits), made at the
first ``up`` and kept in ``cluster.json``; :func:`format_range` / :func:`parse_range`
write and read a block as ``"20000-20199"`` (both ends included), the form the
ConfigMap ``kube-system/lab-identity`` publishes; in code a block is ``(low, high)``
with ``high`` excluded, like :data:`lab.operator.reconcile.PORT_RANGE`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

from common.times import parse_time
from lab.errors import LabError
from lab.ports_registry import (
    DEFAULT_REGISTRY,
    MARKER,
    REGISTRY_ENV,
    Holding,
    locked,
    now_text,
    registry_dir,
    started,
)

__all__ = [
    "DEFAULT_REGISTRY",
    "HIGH",
    "LAB_ID_KEY",
    "LOW",
    "MARKER",
    "RANGE_SIZE",
    "REGISTRY_ENV",
    "Holding",
    "claim_range",
    "format_range",
    "holdings",
    "is_lab_id",
    "lab_identity",
    "mark_down",
    "mark_running",
    "parse_range",
    "registry_dir",
    "release_range",
]

RANGE_SIZE = 200
LOW, HIGH = 20000, 32000
LAB_ID_KEY = "lab_id"
_LAB_ID = re.compile(r"^lab-[0-9a-f]{12}$")
_ANY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_RANGE = re.compile(r"^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$")


# -- the lab id and the written form of a block ----------------------------------------------------


def lab_identity(config: dict[str, Any]) -> str:
    """The lab id kept in ``config`` (``cluster.json``) under ``lab_id``; made (random) when missing.

    LabError when the kept value is not an id this module makes: the tenants' databases
    hold the id, so a changed one would make the harness refuse every tenant.
    """
    value = config.get(LAB_ID_KEY)
    if value is None:
        value = f"lab-{secrets.token_hex(6)}"
        config[LAB_ID_KEY] = value
        return value
    if not isinstance(value, str) or not _LAB_ID.match(value):
        raise LabError(
            f"cluster.json has lab_id {value!r}, not a lab id (lab- and 12 hex digits): put the old "
            "value back, or remove the key and `python -m lab down --wipe` (the tenants hold the old id)"
        )
    return value


def is_lab_id(value: object) -> bool:
    """True for a plausible lab id (letters, digits, ``.-_``, at most 63): what a consumer accepts."""
    return isinstance(value, str) and bool(_ANY_ID.match(value))


def format_range(block: tuple[int, int]) -> str:
    """``(20000, 20200)`` -> ``"20000-20199"`` (both ends included)."""
    low, high = block
    return f"{low}-{high - 1}"


def parse_range(text: object) -> tuple[int, int]:
    """``"20000-20199"`` -> ``(20000, 20200)``; LabError naming the value when it is not a port range."""
    match = _RANGE.match(text) if isinstance(text, str) else None
    if match is None:
        raise LabError(f"port range {text!r} is not LOW-HIGH (e.g. 20000-20199)")
    low, last = int(match.group(1)), int(match.group(2))
    if not 1024 <= low <= last <= 65535:
        raise LabError(f"port range {text!r} must be LOW-HIGH with 1024 <= LOW <= HIGH <= 65535")
    return low, last + 1


# -- the operations --------------------------------------------------------------------------------


def _first_fit(held: list[Holding], size: int, low: int, high: int) -> int | None:
    starts = sorted({low} | {h.high for h in held if low < h.high < high})
    for start in starts:
        if start + size <= high and not any(h.overlaps(start, start + size) for h in held):
            return start
    return None


def _holder(pid: int) -> tuple[int | None, float | None]:
    """``pid`` and its start time; ``(None, None)`` when it is gone already (nothing to record)."""
    began = started(pid)
    return (pid, began) if began is not None else (None, None)


def _write_marker(owner: Path, lab_id: str, block: tuple[int, int], registry: Path) -> None:
    owner.mkdir(parents=True, exist_ok=True)
    marker = owner / MARKER
    tmp = owner / f".{MARKER}.{os.getpid()}"
    doc = {"lab_id": lab_id, "ports": format_range(block), "registry": str(registry)}
    tmp.write_text(json.dumps(doc) + "\n")
    tmp.chmod(0o644)
    tmp.replace(marker)


def claim_range(
    lab_id: str,
    owner_dir: Path | str,
    size: int = RANGE_SIZE,
    low: int = LOW,
    high: int = HIGH,
    *,
    pid: int | None = None,
    registry: Path | None = None,
) -> tuple[int, int]:
    """The block ``(first, last + 1)`` of ``size`` ports in ``[low, high)`` that lab ``lab_id`` holds.

    The block this lab already holds when it fits the request, else the first free one
    (gone owners dropped, then idle ones taken as the module explains). Records ``pid``
    (default: this process) as the block's holder unless a live holder is recorded,
    marks the lab up, and writes :data:`MARKER` into ``owner_dir`` (the lab's own folder,
    made if missing). LabError (one line) when no block is free or the registry is unusable.
    """
    if not is_lab_id(lab_id):
        raise LabError(f"lab id {lab_id!r} is not an id (letters, digits, .-_): pass the lab's own id")
    if size < 1 or low < 1024 or high > 65536 or low + size > high:
        raise LabError(f"cannot claim {size} ports in {low}-{high - 1}: use 1 <= size <= high - low")
    owner = Path(owner_dir).resolve()
    holder = pid or os.getpid()
    folder = registry or registry_dir()
    with locked(folder) as book:
        mine = book.find(lab_id)
        if mine is not None and low <= mine.low and mine.high <= high and mine.high - mine.low == size:
            if not mine.live():
                mine.pid, mine.pid_started = _holder(holder)
            mine.owner_dir, mine.state, mine.changed_at = str(owner), "up", now_text()
            book.changed = True
            _write_marker(owner, lab_id, (mine.low, mine.high), folder)
            return mine.low, mine.high
        if mine is not None:
            book.drop(mine)  # a block of another size or place was asked for
        verdicts = {h.lab_id: h.verdict() for h in book.entries}
        for gone in [h for h in book.entries if verdicts[h.lab_id] == "gone"]:
            book.drop(gone)
        start = _first_fit(book.entries, size, low, high)
        idle = sorted(
            (h for h in book.entries if verdicts[h.lab_id] in ("crashed", "down")),
            key=lambda h: (verdicts[h.lab_id] == "down", parse_time(h.changed_at) or 0.0),
        )
        while start is None and idle:
            book.drop(idle.pop(0))
            start = _first_fit(book.entries, size, low, high)
        if start is None:
            inside = [h.describe() for h in book.entries if h.overlaps(low, high)]
            held = "; ".join(inside) or "nothing recorded"
            raise LabError(
                f"no free block of {size} engine ports in {low}-{high - 1}: running labs hold them "
                f"({held}): stop one of them with `python -m lab down`, or ask for fewer ports"
            )
        now = now_text()
        holder_pid, holder_started = _holder(holder)
        book.entries.append(
            Holding(
                lab_id=lab_id,
                low=start,
                high=start + size,
                owner_dir=str(owner),
                uid=os.getuid(),
                pid=holder_pid,
                pid_started=holder_started,
                state="up",
                claimed_at=now,
                changed_at=now,
            )
        )
        book.changed = True
        _write_marker(owner, lab_id, (start, start + size), folder)
        return start, start + size


def release_range(lab_id: str, *, registry: Path | None = None) -> bool:
    """Give lab ``lab_id``'s block back (``down --wipe``); True if it held one. Its marker goes too."""
    with locked(registry) as book:
        mine = book.find(lab_id)
        if mine is None:
            return False
        book.drop(mine)
    with contextlib.suppress(OSError, ValueError):
        marker = Path(mine.owner_dir) / MARKER
        if json.loads(marker.read_text()).get("lab_id") == lab_id:
            marker.unlink()
    return True


def mark_running(lab_id: str, pid: int, *, registry: Path | None = None) -> None:
    """Record ``pid`` (the lab's control plane) as the holder of the lab's block; LabError if it has none."""
    with locked(registry) as book:
        mine = book.find(lab_id)
        if mine is None:
            raise LabError(f"lab {lab_id} holds no port block: claim one first (claim_range at `up`)")
        mine.pid, mine.pid_started = _holder(pid)
        mine.state, mine.changed_at = "up", now_text()
        book.changed = True


def mark_down(lab_id: str, *, registry: Path | None = None) -> bool:
    """The lab was stopped and keeps its data (``down`` without ``--wipe``); True if it held a block."""
    with locked(registry) as book:
        mine = book.find(lab_id)
        if mine is None:
            return False
        mine.pid, mine.pid_started, mine.state, mine.changed_at = None, None, "down", now_text()
        book.changed = True
        return True


def holdings(*, registry: Path | None = None) -> list[tuple[Holding, str]]:
    """Every recorded block with its verdict (``live``, ``gone``, ``crashed``, ``down``), lowest first."""
    with locked(registry) as book:
        return [(h, h.verdict()) for h in sorted(book.entries, key=lambda h: h.low)]
