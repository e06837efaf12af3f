"""Run blocking pyodbc calls off the event loop, with a deadline.

pyodbc releases the GIL but not gevent's hub: one blocking call in a Locust process
freezes every user in it (measured: one tenant's 3 s freeze gave the others zero
acks). So every database call runs in a real OS thread and the caller waits at most
``timeout`` seconds. A call that overruns is *abandoned*, not interrupted (ODBC has
no safe way to do that from another thread): its ``cleanup`` runs in the pool once
it returns, typically closing the connection it was using.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol, TypeVar

__all__ = ["CallTimeout", "GeventOffload", "Offload", "ThreadOffload"]

T = TypeVar("T")
Cleanup = Callable[[Any], None]


class CallTimeout(Exception):
    """The call did not return within its deadline; it may still be running."""


class Offload(Protocol):
    def run(self, fn: Callable[[], T], timeout: float, cleanup: Cleanup | None = None) -> T:
        """Run ``fn`` in a worker thread; CallTimeout after ``timeout`` seconds."""
        ...


class GeventOffload:
    """Offload to gevent's hub threadpool, sized so every user has its own threads."""

    def __init__(self, size: int) -> None:
        import gevent

        self._pool = gevent.get_hub().threadpool
        self._pool.maxsize = max(self._pool.maxsize, size)
        self._timeout = gevent.Timeout

    def resize(self, size: int) -> None:
        """Grow the pool to at least ``size`` threads (never shrinks it)."""
        self._pool.maxsize = max(self._pool.maxsize, size)

    def run(self, fn: Callable[[], T], timeout: float, cleanup: Cleanup | None = None) -> T:
        result = self._pool.spawn(fn)
        try:
            return result.get(timeout=timeout)
        except self._timeout:
            if cleanup is not None:
                result.rawlink(
                    lambda done: self._pool.spawn(cleanup, done.value if done.successful() else None)
                )
            raise CallTimeout(f"no answer within {timeout:g}s") from None


class ThreadOffload:
    """Offload to a plain thread pool, for callers outside gevent (tools, tests)."""

    def __init__(self, size: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="offload")

    def run(self, fn: Callable[[], T], timeout: float, cleanup: Cleanup | None = None) -> T:
        future = self._pool.submit(fn)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            if cleanup is not None:

                def _done(done: Future[T]) -> None:
                    cleanup(None if done.exception() else done.result())

                future.add_done_callback(_done)
            raise CallTimeout(f"no answer within {timeout:g}s") from None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
