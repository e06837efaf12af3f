"""The thread that abandons calls past their deadline, for every writer of a process.

A writer's lane blocks in its ODBC call; nothing inside that thread can notice the
deadline passing. One OS thread per process wakes every ``poll`` seconds (10 ms) and asks
each registered writer to check its lane (:meth:`loadgen.writer.TenantWriter.check_deadline`),
so a timeout is journaled at most ``poll`` after it is due. The thread starts with the
first writer and ends once none is left.
"""

from __future__ import annotations

import time
from typing import Protocol

from loadgen import native

__all__ = ["DEADLINES", "Deadlines"]


class _Checked(Protocol):
    def check_deadline(self, now: float) -> None: ...


class Deadlines:
    """Checks every registered writer's deadline every ``poll`` seconds, from one OS thread."""

    def __init__(self, poll: float = 0.01) -> None:
        self.poll = poll
        self._lock = native.allocate_lock()
        self._writers: dict[int, _Checked] = {}
        self._running = False
        #: The last exception a check raised (the thread goes on).
        self.error: BaseException | None = None

    def add(self, writer: _Checked) -> None:
        with self._lock:
            self._writers[id(writer)] = writer
            start, self._running = not self._running, True
        if start:
            native.start_thread(self._run)

    def remove(self, writer: _Checked) -> None:
        with self._lock:
            self._writers.pop(id(writer), None)

    def _run(self) -> None:
        while True:
            native.sleep(self.poll)
            with self._lock:
                writers = tuple(self._writers.values())
                if not writers:
                    self._running = False
                    return
            now = time.monotonic()
            for writer in writers:
                try:
                    writer.check_deadline(now)
                except Exception as exc:  # one writer's bug must not stop the others' deadlines
                    self.error = exc


#: The process's deadline thread, shared by every writer unless one is given.
DEADLINES = Deadlines()
