"""Operating-system threads, locks and sleeps, even in a process gevent has patched.

Locust patches ``threading``, ``_thread`` and ``time.sleep`` at import so that they yield
to gevent's loop. The write loops (:mod:`loadgen.writer`) run in real OS threads instead,
one per writer, so that a blocking ODBC call holds only its own thread and nothing is
handed to the event loop per write. Those threads must use the unpatched primitives:
a patched lock or sleep called from a thread that is not the loop's would start a second
gevent hub there. ``gevent.monkey.get_original`` returns the unpatched object whether or
not the process was patched, so this module works the same under Locust and outside it
(tools, tests).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from gevent import monkey

__all__ = ["Wakeup", "allocate_lock", "sleep", "start_thread"]

allocate_lock: Callable[[], Any] = monkey.get_original("_thread", "allocate_lock")
sleep: Callable[[float], None] = monkey.get_original("time", "sleep")
_start_new_thread: Callable[..., int] = monkey.get_original("_thread", "start_new_thread")


def start_thread(target: Callable[[], None]) -> int:
    """Run ``target`` in a new OS thread; its identifier.

    ``target`` must catch its own exceptions: there is no ``threading.Thread`` around it to
    report them, and the interpreter does not wait for it at exit.
    """
    return _start_new_thread(target, ())


class Wakeup:
    """A binary semaphore on an OS lock: :meth:`wait` returns early once :meth:`wake` was called.

    Wakes do not queue: several before a wait count as one. A waiter always re-checks
    what it was waiting for, so a wake left over from an earlier moment is harmless.
    """

    def __init__(self) -> None:
        self._lock = allocate_lock()
        self._lock.acquire()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True if woken before then."""
        if timeout <= 0:
            return bool(self._lock.acquire(False))
        return bool(self._lock.acquire(True, timeout))

    def wake(self) -> None:
        """Wake the waiter (or the next one to wait)."""
        with contextlib.suppress(RuntimeError):  # already woken: wakes do not queue
            self._lock.release()
