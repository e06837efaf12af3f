"""The watch event history: a ring of recent changes and live subscriptions.

Each change is an :class:`Event` carrying the new object and, for modifications,
the previous one (so a watch with a selector can turn a change that leaves its
selection into DELETED and one that enters it into ADDED). Events are kept for
``window`` seconds (etcd's history, which kube-apiserver compacts every 5 minutes),
and at most ``size`` of them (a memory cap). ``floor`` is the newest resourceVersion
whose successors may be missing from the ring: a watch asking to resume from a
version below it gets 410 Expired ``too old resource version`` and must list again.
A subscriber that falls more than ``max_pending`` events behind is cut off the
same way, so a stuck client cannot grow the server's memory without bound.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Event", "History", "Subscription"]


@dataclass(frozen=True)
class Event:
    rv: int
    type: str
    key: str
    obj: dict[str, Any]
    old: dict[str, Any] | None = None


class Subscription:
    """A live feed of events for one storage key; ``expired`` once it fell too far behind."""

    def __init__(self, key: str, max_pending: int) -> None:
        self.key = key
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self.max_pending = max_pending
        self.expired = False

    def push(self, event: Event | None) -> None:
        if self.expired:
            return
        if event is not None and self.queue.qsize() >= self.max_pending:
            self.expired = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(event)

    def close(self) -> None:
        self.queue.put_nowait(None)


#: How long events are kept by default (kube-apiserver's etcd compaction interval).
DEFAULT_WINDOW = 300.0


class History:
    """The ring of recent events (see the module doc); ``window`` None keeps them by count only."""

    def __init__(
        self,
        size: int,
        floor: int = 0,
        window: float | None = DEFAULT_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ring: deque[tuple[float, Event]] = deque()
        self._size = max(1, size)
        self.floor = floor
        self.window = window
        self._clock = clock
        self._subs: set[Subscription] = set()

    def _compact(self) -> None:
        while len(self._ring) > self._size:
            self.floor = self._ring.popleft()[1].rv
        if self.window is None:
            return
        oldest = self._clock() - self.window
        while self._ring and self._ring[0][0] < oldest:
            self.floor = self._ring.popleft()[1].rv

    def append(self, event: Event) -> None:
        self._ring.append((self._clock(), event))
        self._compact()
        for sub in list(self._subs):
            if sub.key == event.key:
                sub.push(event)

    def since(self, rv: int, key: str) -> list[Event] | None:
        """Events of ``key`` after ``rv``, or None when some of them are no longer kept."""
        self._compact()
        if rv < self.floor:
            return None
        return [e for _, e in self._ring if e.rv > rv and e.key == key]

    def subscribe(self, key: str, max_pending: int = 10_000) -> Subscription:
        sub = Subscription(key, max_pending)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def close_all(self) -> None:
        """End every live watch (server shutdown)."""
        for sub in list(self._subs):
            sub.close()
        self._subs.clear()
