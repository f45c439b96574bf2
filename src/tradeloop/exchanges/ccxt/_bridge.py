"""An asyncio event loop in a thread of its own, awaited from Trio.

ccxt's async clients (and every ccxt.pro socket) are asyncio code. They run here, on one loop per
adapter, rather than under trio-asyncio: that keeps ccxt on the stock asyncio loop it is tested on
and adds no dependency. The cost is a thread hop. A call (:meth:`AsyncioThread.run`) makes two hops
(schedule on the loop, wake Trio), a watch loop only one per message: it runs entirely on the
asyncio side and posts each converted item to Trio with ``TrioToken.run_sync_soon``
(:meth:`AsyncioThread.poster`); ``benchmarks/bench_ccxt_adapter.py`` measures it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import sniffio
import trio

__all__ = ["AsyncioThread"]

T = TypeVar("T")

_CLOSE_TIMEOUT = 5.0
"""Seconds :meth:`AsyncioThread.aclose` waits for the loop's thread to end."""


class AsyncioThread:
    """One asyncio loop in a daemon thread, started on first use (``on_start()`` is the first thing
    it runs), stopped by :meth:`aclose`.

    Daemon, so a process that never closes its adapter still exits; :meth:`aclose` is the orderly way.
    """

    def __init__(self, name: str, on_start: Callable[[], object] = lambda: None) -> None:
        self._name = name
        self._on_start = on_start
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def serves_current_loop(self) -> bool:
        """Any Trio run may call it (each call finds its own); nothing else."""
        return sniffio.current_async_library() == "trio"

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            loop.call_soon(self._on_start)  # in the loop, before anything a caller schedules
            thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    async def run(self, coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``coroutine()`` on the loop and return its result (or raise its exception).

        Cancelling the Trio caller cancels the asyncio task; Trio does not wait for it to unwind.
        """
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def wake(_: object) -> None:
            with contextlib.suppress(trio.RunFinishedError):  # the Trio caller is gone: nobody waits
                token.run_sync_soon(done.set)

        future = asyncio.run_coroutine_threadsafe(coroutine(), self._running_loop())
        future.add_done_callback(wake)
        try:
            await done.wait()
        finally:
            future.cancel()  # no-op once done; else the asyncio task is cancelled with its caller
        return future.result()

    @staticmethod
    def poster(deliver: Callable[[T], None]) -> Callable[[T], None]:
        """A callable for the asyncio side that runs ``deliver(item)`` in the calling Trio run.

        Call it from Trio (it captures the current run); items are delivered in order. Waking
        Trio is the cost of a message (a write to its wakeup socket, a GIL hand-over), so items
        posted while a wake-up is pending ride along with it: one wake-up per burst, not per item.
        """
        token = trio.lowlevel.current_trio_token()
        pending: deque[T] = deque()
        scheduled = False

        def drain() -> None:  # in Trio
            nonlocal scheduled
            scheduled = False  # before draining: an item posted from now on schedules a new drain
            while pending:
                deliver(pending.popleft())

        def post(item: T) -> None:  # in the asyncio thread
            nonlocal scheduled
            pending.append(item)
            if not scheduled:
                scheduled = True
                token.run_sync_soon(drain)

        return post

    async def aclose(self, before_stop: Callable[[], Coroutine[Any, Any, object]] | None = None) -> None:
        """Run ``before_stop()`` on the loop (closing the client), then stop the loop and its thread.

        Shielded and bounded: at most a few seconds, even when the caller is being cancelled.
        """
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            try:
                if before_stop is not None:
                    await self.run(before_stop)
            finally:
                self._loop = self._thread = None
                loop.call_soon_threadsafe(loop.stop)
                await trio.to_thread.run_sync(thread.join, _CLOSE_TIMEOUT)
                if not thread.is_alive():
                    loop.close()
