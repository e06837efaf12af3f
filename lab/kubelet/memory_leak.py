"""Lab knob: a memory leak planted in a running pod, for a soak's slope check to find.

**The knob.** A pod annotated ``lab.mssql.example.com/memory-leak: "<bytes per second>"``
(an integer, or a Kubernetes quantity such as ``1Mi`` or ``500k``, optionally ending in
``/s``) gets, from its kubelet, one more process in its process tree: a leak that grows
its resident memory at that rate (every page it reserves is written, so it is really
resident) up to :data:`CAP_BYTES` (512 MiB), then holds it. Annotating a running pod
does not restart it: the kubelet's pod worker sees the new annotation on its next tick
and only starts the leak. Changing the value starts a new leak at the new rate (the old
one's memory is freed); removing the annotation stops it. The leak runs while any of the
pod's containers runs and stops with the pod (deleted, finished, its node's kubelet
stopped); a kubelet that crashed has it killed by the next one, like a container.

**How it is counted.** The leak is recorded like a container, in
``<node state>/containers/<uid>_lab.memory-leak.json`` (:mod:`lab.kubelet.runtime`: the
pod's namespace, name and uid, and its pid with its creation time; no real container has
a dot in its name), so :class:`probes.pod_sources.LabPods` counts its memory in the pod
and :func:`lab.kubelet.runtime.kill_leftovers` kills it after a crash. It is a child of
the kubelet, so the node's memory (:mod:`probes.node_sources`) counts it too. Its own
output goes to ``<node state>/memory-leaks/<uid>.log``, removed when it stops.

**A malformed value** (not a positive rate) starts nothing: the pod gets one Warning
Event ``MemoryLeakRefused`` naming the value and the fix (once per distinct value), and
the kubelet logs it. A leak started is a Normal Event ``MemoryLeakStarted``.

A test instrument for the soak's memory-leak check, not a model of anything SQL Server does.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import mmap
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.errors import LabError

__all__ = ["ANNOTATION", "CAP_BYTES", "CONTAINER", "PodLeak", "leak", "main", "parse_rate"]

log = logging.getLogger(__name__)

ANNOTATION = "lab.mssql.example.com/memory-leak"
#: The most a planted leak holds.
CAP_BYTES = 512 * 1024 * 1024
#: The leak's name in the container records (a dot: never a real container's name).
CONTAINER = "lab.memory-leak"
#: How often the leak touches the pages that came due.
TICK = 0.05

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s*(Ki|Mi|Gi|Ti|k|K|M|G|T)?(?:\s*/\s*s)?$")
_UNITS = {
    None: 1,
    "k": 1000,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}

#: ``(reason, message, type)``: an Event on the pod.
EventSink = Callable[[str, str, str], None]


def parse_rate(text: Any) -> int:
    """Bytes per second from the annotation's value; LabError (one line, with the fix) otherwise."""
    raw = str(text).strip()
    found = _QUANTITY.match(raw)
    value = float(found.group(1)) * _UNITS[found.group(2)] if found else math.nan
    if not math.isfinite(value) or value < 1:
        raise LabError(
            f'annotation {ANNOTATION}="{text}" is not a rate in bytes per second: give a positive number '
            'such as "1048576" or "1Mi", or remove the annotation; no leak was started'
        )
    return int(value)


class PodLeak:
    """The planted leak of one pod, kept in step with its annotation by the pod worker.

    ``containers_dir`` is the kubelet's record folder; ``event`` records an Event on the pod.
    """

    def __init__(
        self, spawner: Any, containers_dir: Path, namespace: str, pod: str, uid: str, event: EventSink
    ) -> None:
        self.spawner = spawner
        self.containers_dir = containers_dir
        self.meta = {"namespace": namespace, "pod": pod, "uid": uid, "container": CONTAINER}
        self.uid = uid
        self.event = event
        self.rate: int | None = None
        self.proc: Any = None  # a lab.kubelet.runtime.ContainerProcess while it runs
        self._refused: str | None = None

    @property
    def log_path(self) -> Path:
        return self.containers_dir.parent / "memory-leaks" / f"{self.uid}.log"

    def wanted(self, pod: dict[str, Any]) -> int | None:
        """The rate the pod's annotation asks for; None when absent or malformed (refused once)."""
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        if ANNOTATION not in annotations:
            self._refused = None
            return None
        raw = str(annotations[ANNOTATION])
        try:
            return parse_rate(raw)
        except LabError as exc:
            if raw != self._refused:
                self._refused = raw
                log.warning("%s/%s: %s", self.meta["namespace"], self.meta["pod"], exc)
                self.event("MemoryLeakRefused", str(exc), "Warning")
            return None

    def sync(self, pod: dict[str, Any], running: bool) -> None:
        """Start, restart or stop the leak as the annotation says (only while ``running``)."""
        rate = self.wanted(pod) if running else None
        if self.proc is not None and self.proc.poll() is not None:
            log.warning("%s/%s: the planted memory leak exited", self.meta["namespace"], self.meta["pod"])
            self._clean()  # not started again until the rate changes or the pod runs again
        if rate == self.rate:
            return
        was = self.rate
        self.stop()
        if rate is not None:
            self._start(rate)
        elif was is not None and running:
            self.event("MemoryLeakStopped", f"The planted memory leak ({was} B/s) was stopped", "Normal")

    def _start(self, rate: int) -> None:
        from lab.kubelet.runtime import ContainerProcess
        from lab.paths import project_root

        argv = [sys.executable, "-m", "lab.kubelet.memory_leak", "--bytes-per-second", str(rate)]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(project_root())}
        proc = ContainerProcess(
            self.spawner,
            [*argv, "--cap", str(CAP_BYTES)],
            env=env,
            cwd=self.log_path.parent,
            log_path=self.log_path,
            record_path=self.containers_dir / f"{self.uid}_{CONTAINER}.json",
            record_meta=dict(self.meta),
        )
        self.rate = rate
        try:
            proc.start()
        except OSError as exc:
            message = f"the planted memory leak did not start: {exc.strerror or exc}"
            log.warning("%s/%s: %s", self.meta["namespace"], self.meta["pod"], message)
            self.event("MemoryLeakRefused", message, "Warning")
            return  # rate kept: not retried until it changes
        self.proc = proc
        log.info("%s/%s: planted a memory leak of %d B/s", self.meta["namespace"], self.meta["pod"], rate)
        self.event(
            "MemoryLeakStarted",
            f"Leaking {rate} B/s up to {CAP_BYTES} B (lab knob {ANNOTATION}), pid {proc.pid}",
            "Normal",
        )

    def stop(self) -> None:
        """Kill the leak now (its memory is freed); nothing to do when none runs."""
        if self.proc is not None:
            self.proc.kill()
        self._clean()
        self.rate = None

    def _clean(self) -> None:
        self.proc = None
        with contextlib.suppress(OSError):
            self.log_path.unlink()


# -- the leak process ---------------------------------------------------------------------------


def leak(rate: int, cap: int, tick: float = TICK, clock: Callable[[], float] = time.monotonic) -> None:
    """Grow resident memory by ``rate`` bytes per second up to ``cap``, then hold it (never returns).

    One private anonymous mapping of ``cap`` bytes; each page is written (one byte) when it
    comes due, which makes the kernel back it with a real page.
    """
    page = mmap.PAGESIZE
    size = max(page, cap - cap % page)
    area = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    print(f"leaking {rate} bytes per second up to {size} bytes", flush=True)
    start = clock()
    touched = 0
    while touched < size:
        due = min(size, int(rate * (clock() - start)))
        while touched < due:
            area[touched] = 1
            touched += page
        time.sleep(tick)
    print(f"reached {size} bytes; holding them", flush=True)
    while True:
        time.sleep(3600)


def main(argv: list[str] | None = None) -> int:
    """``python -m lab.kubelet.memory_leak --bytes-per-second N [--cap BYTES]`` (what the kubelet runs)."""
    parser = argparse.ArgumentParser(prog="python -m lab.kubelet.memory_leak", description=__doc__)
    parser.add_argument("--bytes-per-second", required=True, help="the rate (e.g. 1048576 or 1Mi)")
    parser.add_argument("--cap", type=int, default=CAP_BYTES, help="the most it holds, in bytes")
    args = parser.parse_args(argv)
    try:
        rate = parse_rate(args.bytes_per_second)
    except LabError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.cap < 1:
        print(f"--cap {args.cap} is not a size in bytes: give a positive number", file=sys.stderr)
        return 2
    leak(rate, args.cap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
