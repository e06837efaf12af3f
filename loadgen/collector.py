"""The master's side of journal shipping: every worker's batches on disk, each batch once.

Moved here from :mod:`loadgen.shipping`, which keeps the worker's side (the
:class:`~loadgen.shipping.Shipper`, :class:`~loadgen.shipping.Batch`, the message shapes and
the user/tenant assignment rules). Pure bookkeeping like it (no gevent, no Locust): the
Locust glue in :mod:`loadgen.distributed` moves the messages.

**Master side** (:class:`Collector`). Each batch is appended to ``<worker id>.jsonl``
together with one ``batch`` marker line, in ONE ``os.write`` of an ``O_APPEND`` file, so
a file never holds half a batch, even when the master is killed. A batch already held
is dropped (and acknowledged again: its acknowledgement may have been lost). The final
message is appended as a ``final`` line, once. :meth:`Collector.recover` rebuilds what a
restarted master holds from those lines. Journal readers skip both kinds.

**Guarantees.** The master acknowledges a batch only after its ``os.write`` returned, so

- SIGKILL of a worker loses nothing the master acknowledged; what the worker had not
  shipped yet (its spool's tail) is missing, and the worker then has no final message:
  :meth:`Collector.status` reports it incomplete (never complete by default);
- SIGKILL of the master loses nothing it acknowledged (the data is in the kernel's page
  cache and on disk under the pod's volume); unacknowledged batches are resent;
- a worker is complete only when its final message is in, every batch number below the
  final's total is held, and the ``write`` records held equal the final's count.

Worker ids become file names only when they match ``[A-Za-z0-9_.-]+`` (at most 200
characters); anything else is refused with :class:`~loadgen.shipping.ShippingError`.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadgen.shipping import WRITE_PREFIX, ShippingError

__all__ = ["Collector"]

_WORKER_ID = re.compile(r"[A-Za-z0-9_.-]{1,200}")


def _list(value: Any) -> list[Any]:
    """A message field that should be a list; anything else counts as empty."""
    return value if isinstance(value, list) else []


def _worker_id(value: object) -> str:
    if not isinstance(value, str) or not _WORKER_ID.fullmatch(value):
        raise ShippingError(
            f"worker id {str(value)[:80]!r} refused: it must match [A-Za-z0-9_.-]+ (at most 200 characters)"
        )
    return value


def _count(msg: dict[str, Any], key: str) -> int:
    value = msg.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ShippingError(f"message field {key!r} must be a non-negative integer, got {value!r}")
    return value


def _ranges(numbers: list[int]) -> list[list[int]]:
    """Sorted numbers as inclusive ``[lo, hi]`` ranges."""
    out: list[list[int]] = []
    for n in numbers:
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return out


@dataclass
class _Worker:
    index: int
    batches: set[int]
    records: int = 0
    final: dict[str, Any] | None = None


class Collector:
    """Appends every worker's batches to ``<folder>/<worker id>.jsonl``, each batch once.

    Single-threaded by design (Locust's greenlets: nothing here yields), one instance per
    folder and process.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.workers: dict[str, _Worker] = {}

    def path(self, name: str) -> Path | None:
        """The file called ``name`` if this collector wrote it (no other name is ever served)."""
        for worker in self.workers:
            if name == f"{worker}.jsonl":
                return self.folder / name
        return None

    def files(self) -> dict[str, int]:
        """Each file this collector wrote, with its size in bytes."""
        sizes: dict[str, int] = {}
        for worker in self.workers:
            path = self.folder / f"{worker}.jsonl"
            if path.exists():
                sizes[path.name] = path.stat().st_size
        return sizes

    def _append(self, worker: str, data: bytes) -> None:
        fd = os.open(self.folder / f"{worker}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
        if written != len(data):
            raise ShippingError(
                f"short write to {worker}.jsonl ({written} of {len(data)} bytes): is the disk full?"
            )

    def _worker(self, worker: str, index: int) -> _Worker:
        state = self.workers.get(worker)
        if state is None:
            state = self.workers[worker] = _Worker(index, set())
        return state

    def receive(self, msg: dict[str, Any]) -> bool:
        """Append one ``harness_batch``; False when it is a duplicate (dropped; ack it anyway)."""
        worker = _worker_id(msg.get("worker"))
        index, number, records = _count(msg, "index"), _count(msg, "batch"), _count(msg, "records")
        lines = msg.get("lines")
        if not isinstance(lines, list) or not all(
            isinstance(line, str) and "\n" not in line for line in lines
        ):
            raise ShippingError(f"batch {number} of {worker}: 'lines' must be a list of single-line strings")
        counted = sum(1 for line in lines if line.startswith(WRITE_PREFIX))
        if counted != records:
            raise ShippingError(f"batch {number} of {worker} says {records} records but holds {counted}")
        state = self.workers.get(worker)
        if state is not None and number in state.batches:
            return False
        marker = {"kind": "batch", "worker": worker, "index": index, "batch": number, "records": records}
        marker["at"] = time.time()
        text = "".join(line + "\n" for line in lines) + json.dumps(marker, separators=(",", ":")) + "\n"
        self._append(worker, text.encode("utf-8"))
        state = self._worker(worker, index)
        state.batches.add(number)
        state.records += records
        return True

    def final(self, msg: dict[str, Any]) -> bool:
        """Record a worker's ``harness_final`` (appended once); False when it was already held."""
        worker = _worker_id(msg.get("worker"))
        index, batches, records = _count(msg, "index"), _count(msg, "batches"), _count(msg, "records")
        state = self._worker(worker, index)
        if state.final is not None:
            return False
        final = {
            "batches": batches,
            "records": records,
            "writers": [w for w in _list(msg.get("writers")) if isinstance(w, int)],
            "tenants": [t for t in _list(msg.get("tenants")) if isinstance(t, str)],
        }
        line = {"kind": "final", "worker": worker, "index": index, **final, "at": time.time()}
        self._append(worker, (json.dumps(line, separators=(",", ":")) + "\n").encode("utf-8"))
        state.final = final
        return True

    def recover(self) -> None:
        """Rebuild what is held from the ``batch`` and ``final`` lines of existing files."""
        for path in sorted(self.folder.glob("*.jsonl")):
            worker = path.stem
            if not _WORKER_ID.fullmatch(worker):
                continue
            with path.open(encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    if not line.endswith("\n") or not line.startswith('{"kind":"'):
                        continue
                    if not (line.startswith('{"kind":"batch"') or line.startswith('{"kind":"final"')):
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if rec.get("worker") != worker:
                        continue
                    index, number, records = rec.get("index", -1), rec.get("batch"), rec.get("records")
                    typed = all(isinstance(v, int) for v in (index, number, records))
                    if rec["kind"] == "batch" and not typed:
                        continue  # a marker this collector did not write: ignore it, never guess
                    state = self._worker(worker, index if isinstance(index, int) else -1)
                    if rec["kind"] == "batch" and number not in state.batches:
                        state.batches.add(number)
                        state.records += records
                    elif rec["kind"] == "final" and state.final is None:
                        state.final = {k: rec.get(k) for k in ("batches", "records", "writers", "tenants")}

    def _entry(self, worker: str | None, index: int, tenants: list[int]) -> dict[str, Any]:
        state = self.workers.get(worker) if worker is not None else None
        if state is None:
            return {
                "worker": None, "index": index, "tenants": tenants, "batches": 0, "contiguous": True,
                "missing": [], "records": 0, "final": None, "complete": False,
                "reason": "it never shipped anything (it never connected, or died first)",
            }  # fmt: skip
        held = sorted(state.batches)
        top = state.final["batches"] if state.final is not None else (held[-1] + 1 if held else 0)
        missing = _ranges(sorted(set(range(top)) - state.batches))
        reason: str | None = None
        if state.final is None:
            reason = "it sent no final message: it stopped before shipping everything"
        elif missing:
            spans = ", ".join(f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in missing)
            reason = f"batches {spans} of {top} never arrived"
        elif len(held) != top:
            reason = f"{len(held)} batches held, its final says {top}"
        elif state.records != state.final["records"]:
            said = state.final["records"]
            reason = f"{state.records} records held, its final says {said}"
        return {
            "worker": worker,
            "index": index,
            "tenants": tenants,
            "batches": len(held),
            "contiguous": held == list(range(len(held))),
            "missing": missing,
            "records": state.records,
            "final": state.final,
            "complete": reason is None,
            "reason": reason,
        }

    def status(self, expected: dict[int, list[int]]) -> dict[str, Any]:
        """Completeness: ``{"expected_workers", "complete", "workers": [entry, ...]}``.

        ``expected`` maps each worker index to its tenant indexes (:func:`assignment`). Every
        worker seen has an entry, and so has every expected index no worker shipped under.
        The whole is complete only when every entry is and ``expected`` is not empty.
        """
        entries = [
            self._entry(worker, state.index, expected.get(state.index, []))
            for worker, state in sorted(self.workers.items(), key=lambda item: (item[1].index, item[0]))
        ]
        seen = {state.index for state in self.workers.values()}
        entries += [
            self._entry(None, index, tenants) for index, tenants in expected.items() if index not in seen
        ]
        entries.sort(key=lambda e: (e["index"], e["worker"] or ""))
        return {
            "expected_workers": len(expected),
            "complete": bool(expected) and all(e["complete"] for e in entries),
            "workers": entries,
        }
