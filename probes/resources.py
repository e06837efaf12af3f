"""Node CPU and memory during a run, sampled in a background thread.

::

    with NodeSampler("lab", run_dir / "nodes.jsonl", interval=1.0) as sampler:
        ...  # the run
    usage = sampler.result()          # or summarize(run_dir / "nodes.jsonl") later

The source is the target's kind (``lab`` or ``cluster``, :mod:`probes.k8s.target`) or
a :class:`~probes.node_sources.NodeSource`; how each one measures, and its error, is in
:mod:`probes.node_sources`. A sample is taken when the sampler starts, then every
``interval`` seconds (monotonic), and once more when it stops (unless the previous
sample is less than half an interval old), so lab CPU covers the run.

Samples are JSON lines, one per node per sample::

    {"at": "2026-01-02T03:04:05.678Z", "at_epoch": 1767323045.678, "source": "lab",
     "node": "lab-node-1", "cpu_cores": 0.93, "memory_bytes": 123456789,
     "interval_seconds": 1.0, "processes": 12, "memory": "pss", "note": null}

``cpu_cores`` is null on a node's first sample (no rate yet) and while it is down. A
source that cannot measure writes one line ``{"at", "at_epoch", "source",
"unavailable": reason}`` and the sampler stops; a sample that failed once writes
``{"at", "at_epoch", "source", "error": text}`` and sampling goes on.

:func:`summarize` (and :meth:`NodeSampler.result`) reduce the lines to a JSON-ready
dict::

    {"source": "lab" | "cluster" | ...,
     "nodes": {node: {"cpu_cores_mean", "cpu_cores_max", "memory_bytes_max", "samples"}},
     "unavailable": null | "one line: why, and how to fix it",
     "errors": failed samples, "memory": "pss" | "pss+rss" | "working_set" | null}

``cpu_cores_mean`` is weighted by each sample's interval (CPU time over time),
``samples`` counts lines with a number; when ``unavailable`` is set, ``nodes`` is empty.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from common.times import utc_iso
from probes.errors import ProbeError
from probes.node_sources import NodeReading, NodeSource, SourceUnavailable, node_source

__all__ = ["NodeSampler", "summarize"]


class _NodeAcc:
    def __init__(self) -> None:
        self.cpu_time = 0.0
        self.cpu_weight = 0.0
        self.cpu_max: float | None = None
        self.memory_max: int | None = None
        self.samples = 0

    def add(self, line: Mapping[str, Any]) -> None:
        cpu, memory = line.get("cpu_cores"), line.get("memory_bytes")
        if cpu is None and memory is None:
            return
        self.samples += 1
        if cpu is not None:
            weight = float(line.get("interval_seconds") or 1.0)
            self.cpu_time += float(cpu) * weight
            self.cpu_weight += weight
            self.cpu_max = float(cpu) if self.cpu_max is None else max(self.cpu_max, float(cpu))
        if memory is not None:
            self.memory_max = int(memory) if self.memory_max is None else max(self.memory_max, int(memory))

    def usage(self) -> dict[str, Any]:
        return {
            "cpu_cores_mean": self.cpu_time / self.cpu_weight if self.cpu_weight > 0 else None,
            "cpu_cores_max": self.cpu_max,
            "memory_bytes_max": self.memory_max,
            "samples": self.samples,
        }


def _summarize(lines: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    nodes: dict[str, _NodeAcc] = {}
    source: str | None = None
    unavailable: str | None = None
    errors = 0
    kinds: set[str] = set()
    for line in lines:
        source = source or line.get("source")
        if line.get("unavailable"):
            unavailable = str(line["unavailable"])
        elif line.get("error"):
            errors += 1
        elif line.get("node") is not None:
            nodes.setdefault(str(line["node"]), _NodeAcc()).add(line)
            if line.get("memory"):
                kinds.update(str(line["memory"]).split("+"))
    usage = {} if unavailable is not None else {name: acc.usage() for name, acc in nodes.items()}
    if unavailable is None and errors and not any(u["samples"] for u in usage.values()):
        unavailable = f"no sample succeeded ({errors} failed): see the error lines"
    return {
        "source": source,
        "nodes": usage,
        "unavailable": unavailable,
        "errors": errors,
        "memory": "+".join(sorted(kinds)) or None,
    }


def summarize(path: str | Path) -> dict[str, Any]:
    """Read a sample file back into per-node usage (a torn last line is skipped)."""
    lines: list[dict[str, Any]] = []
    try:
        with Path(path).open(encoding="utf-8") as handle:
            for text in handle:
                if not text.endswith("\n"):
                    break
                try:
                    doc = json.loads(text)
                except json.JSONDecodeError:
                    continue
                if isinstance(doc, dict):
                    lines.append(doc)
    except OSError as exc:
        raise ProbeError(f"cannot read node samples {path}: {exc.strerror or exc}") from None
    return _summarize(lines)


class NodeSampler:
    """Samples node CPU and memory every ``interval`` seconds in a daemon thread.

    ``nodes_source`` is ``"lab"``, ``"cluster"`` or a NodeSource; ``path`` (optional)
    receives the JSON lines as they are taken (the file is created at the first sample).
    Use as a context manager, or :meth:`start` / :meth:`stop`; :meth:`result` summarizes
    what was sampled so far.
    """

    def __init__(
        self, nodes_source: str | NodeSource, path: str | Path | None = None, *, interval: float = 1.0
    ) -> None:
        if isinstance(path, int | float):
            raise TypeError("NodeSampler's second argument is the samples file; pass interval=... by name")
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        self.source = node_source(nodes_source)
        self.interval = interval
        self.path = None if path is None else Path(path)
        self._lines: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._file: IO[str] | None = None
        self._closed = False
        self._sampled_at: float | None = None  # monotonic
        self.unavailable: str | None = None

    def _emit(self, line: dict[str, Any]) -> None:
        with self._lock:
            self._lines.append(line)
            if self._file is None and self.path is not None and not self._closed:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", buffering=1, encoding="utf-8")
            if self._file is not None:
                self._file.write(json.dumps(line, separators=(",", ":"), allow_nan=False) + "\n")

    def sample(self) -> None:
        """Take one sample now and append its lines (the thread calls this every interval)."""
        if self.unavailable is not None:
            return
        self._sampled_at = time.monotonic()
        now = time.time()
        head: dict[str, Any] = {"at": utc_iso(now), "at_epoch": now, "source": self.source.kind}
        try:
            readings: dict[str, NodeReading] = self.source.read()
        except SourceUnavailable as exc:
            self.unavailable = str(exc)
            self._emit({**head, "unavailable": self.unavailable})
            return
        except Exception as exc:  # one failed sample must not end the run's sampling
            self._emit({**head, "error": f"{exc.__class__.__name__}: {exc}"})
            return
        for node, reading in sorted(readings.items()):
            self._emit({**head, "node": node, **asdict(reading)})

    def _loop(self) -> None:
        next_at = time.monotonic()
        while self.unavailable is None:
            next_at += self.interval
            if self._stop.wait(max(0.0, next_at - time.monotonic())):
                return
            self.sample()
            next_at = max(next_at, time.monotonic() - self.interval)  # never burst to catch up

    def start(self) -> NodeSampler:
        """Take the first sample and start the thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("this NodeSampler was already started")
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="node-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        """Stop the thread, take a last sample, close the file; returns :meth:`result`.

        The last sample is skipped when the previous one is less than half an interval
        old: CPU times advance in clock ticks (10 ms), so a rate over a few milliseconds
        would be mostly rounding.
        """
        if self._thread is not None and not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            last = self._sampled_at
            if last is None or time.monotonic() - last >= self.interval / 2:
                self.sample()
        with self._lock:
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None
        return self.result()

    def result(self) -> dict[str, Any]:
        """Per-node usage of the samples taken so far (see :func:`summarize`)."""
        with self._lock:
            lines = list(self._lines)
        usage = _summarize(lines)
        usage["source"] = usage["source"] or self.source.kind
        return usage

    def __enter__(self) -> NodeSampler:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
