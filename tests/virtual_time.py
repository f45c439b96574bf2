"""An asyncio event loop on virtual time, for asyncio what ``trio.testing.MockClock(autojump_threshold=0)``
is for Trio: when no callback is ready and no socket has anything to read, the clock jumps to the
next timer, so ten simulated minutes over loopback take a fraction of a second.

Not looptime (PyPI), though it does the same: its pytest plugin is loaded into every pytest run of
the environment and errors every test where pytest-asyncio is absent (the testing plugin's tests run
pytest in fresh directories), and it rounds each jump to the nearest microsecond, so a timer due
less than half a microsecond ahead is never reached and the loop spins at one instant.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["VirtualTimeLoop"]

T = TypeVar("T")

PAST_THE_TIMER = 1e-6
"""How far past a timer the clock jumps. asyncio runs a timer up to its clock resolution (1 ns)
early; landing exactly on it would leave code that sleeps until a deadline and then checks
``now >= deadline`` (heartbeats, backoffs) an ulp short, sleeping again at the same instant forever."""


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """The clock starts at 0 and moves only by jumps to the next timer, when the loop is idle.

    While a thread of the loop's executor (``getaddrinfo``, ``to_thread``) is running, the loop
    waits for it in real time instead, without moving the clock: the thread is work in progress,
    not idleness, and a jump would run out timeouts around it.
    """

    def __init__(self) -> None:
        self._now = 0.0
        self._threads: set[asyncio.Future[Any]] = set()
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self._now

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        future = super().run_in_executor(executor, func, *args)
        self._threads.add(future)
        future.add_done_callback(self._threads.discard)
        return future

    def idle_wait(self, timeout: float) -> float | None:
        """Nothing to run and no I/O: how long to really wait (None: just jump to the timer)."""
        if self._threads:
            return min(timeout, 0.01)
        self._now += timeout + PAST_THE_TIMER
        return None


class _JumpingSelector(selectors.DefaultSelector):
    """The loop's selector: I/O first; when there is none, the loop's clock jumps (or waits for a thread)."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None:  # no timer at all: only I/O can wake the loop
            return super().select(None)
        wait = self._loop.idle_wait(timeout)
        return [] if wait is None else super().select(wait)
