"""Where ccxt's asyncio code runs: in the caller's own loop on asyncio, on a thread of its own on Trio.

ccxt's async clients (and every ccxt.pro socket) are asyncio code. An asyncio program already runs
the loop they need, so there they are awaited directly (:class:`SameLoop`): no thread, no hop per
message. Under Trio they run on an asyncio loop in a thread (:class:`~._bridge.AsyncioThread`).
:func:`current_runner` picks one for the running backend; both offer the operations of :class:`Runner`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

import anyio
import sniffio

from ._bridge import AsyncioThread

__all__ = ["Runner", "SameLoop", "current_runner"]

T = TypeVar("T")

_CLOSE_TIMEOUT = 5.0
"""Seconds :meth:`SameLoop.aclose` gives ccxt to close its sockets and HTTP session."""


class Runner(Protocol):
    """Runs ccxt coroutines for the calling event loop."""

    def serves_current_loop(self) -> bool:
        """Whether the running event loop may call this runner."""
        ...

    async def run(self, coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """``await coroutine()`` where ccxt runs; cancelling the caller cancels it."""
        ...

    def poster(self, deliver: Callable[[T], None]) -> Callable[[T], None]:
        """A callable for ccxt's side that runs ``deliver(item)`` in the caller's loop, in order."""
        ...

    async def aclose(self, before_stop: Callable[[], Coroutine[Any, Any, object]]) -> None:
        """Run ``before_stop()`` (closing the client), then release what the runner holds; shielded, bounded."""
        ...


class SameLoop:
    """ccxt in the running asyncio loop (the asyncio backend), bound to the loop it was made in."""

    def __init__(self, on_start: Callable[[], object]) -> None:
        self._loop = asyncio.get_running_loop()
        on_start()

    def serves_current_loop(self) -> bool:
        return sniffio.current_async_library() == "asyncio" and asyncio.get_running_loop() is self._loop

    async def run(self, coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return await coroutine()

    def poster(self, deliver: Callable[[T], None]) -> Callable[[T], None]:
        return deliver

    async def aclose(self, before_stop: Callable[[], Coroutine[Any, Any, object]]) -> None:
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await before_stop()


def current_runner(name: str, on_start: Callable[[], object]) -> Runner:
    """A runner for the running backend: :class:`SameLoop` on asyncio, a thread named ``name`` on
    Trio. ``on_start()`` runs first, in ccxt's loop. Call it inside the event loop."""
    if sniffio.current_async_library() == "asyncio":
        return SameLoop(on_start)
    return AsyncioThread(name, on_start)
