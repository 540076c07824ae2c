"""Worker threads that run real-time streams' compute before bulk streams'."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading

log = logging.getLogger(__name__)


class PriorityPool:
    """Worker threads that take real-time work first: jobs of priority 0 (streams at about real
    time) always run before jobs of priority 1 (streams sending in bulk, faster than real time);
    within a priority, first come first served. With frames cut into slices, a real-time hop
    waits at most for the slices already running."""

    REALTIME, BULK = 0, 1

    def __init__(self, workers: int, name: str = "edgeamp-hop") -> None:
        import queue

        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._seq = itertools.count()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    def _work(self) -> None:
        while True:
            _, _, job = self._queue.get()
            if job is None:
                return
            fn, args, fut, loop = job
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the awaiting coroutine
                loop.call_soon_threadsafe(_settle, fut, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, fut, result, None)

    def run(self, priority: int, fn, *args) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put((priority, next(self._seq), (fn, args, fut, loop)))
        return fut

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put((2, next(self._seq), None))
        for t in self._threads:
            t.join()


def in_daemon_thread(fn, *args, orphan=None) -> asyncio.Future:
    """``fn(*args)`` on a thread of its own that never holds up the process's exit (an executor's
    threads are joined at exit: a /swap still compiling would hold SIGTERM up until its load ends).
    ``orphan(result)`` is called on the result nobody awaits any more (the request was cancelled)."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def done(result, exc) -> None:
        if fut.cancelled():
            if exc is None and orphan is not None:
                orphan(result)
            return
        _settle(fut, result, exc)

    def work() -> None:
        try:
            result, exc = fn(*args), None
        except BaseException as e:  # handed to the awaiting coroutine
            result, exc = None, e
        try:
            loop.call_soon_threadsafe(done, result, exc)
        except RuntimeError:  # the loop has closed: the process is exiting
            if exc is None and orphan is not None:
                orphan(result)

    threading.Thread(target=work, name="edgeamp-load", daemon=True).start()
    return fut


def _settle(fut: asyncio.Future, result, exc) -> None:
    if fut.cancelled():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
