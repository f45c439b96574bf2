"""The one seam between tradeloop's hot paths and the running event loop.

Everything else runs on anyio, which maps its primitives to Trio's or asyncio's. But anyio's
module-level functions (``anyio.current_time``, ``anyio.lowlevel.checkpoint_if_cancelled``...) look
the backend up on every call: 0.6 µs against 0.17 µs for Trio's own (measured here), and the hot
path calls them for every push and every received item, which cost tradeloop 15-20% of its burst
rate on Trio (``python -m benchmarks --quick --baseline 2f90a29``). So the few functions called per
item are bound once, when the object using them is made inside the loop: Trio's own on Trio,
anyio's anywhere else. The same goes for the event a waiting consumer sleeps on: ``anyio.Event()``
looks the backend up and wraps a ``trio.Event`` (about 2 µs of a push's CPU at live rates, where
every push wakes a consumer), so on Trio the hot path makes ``trio.Event`` itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
import anyio.lowlevel
import sniffio
import trio

__all__ = ["HotPath", "WakeupEvent"]


class WakeupEvent(Protocol):
    """What the hot path needs of an event: ``trio.Event`` and ``anyio.Event`` both are one."""

    def set(self) -> None: ...

    async def wait(self) -> None: ...


class HotPath:
    """The running backend's clock and checkpoints (make it inside the event loop's thread)."""

    __slots__ = ("cancel_shielded_checkpoint", "checkpoint_if_cancelled", "current_time", "new_event")

    def __init__(self) -> None:
        self.current_time: Callable[[], float]
        self.checkpoint_if_cancelled: Callable[[], Awaitable[None]]
        self.cancel_shielded_checkpoint: Callable[[], Awaitable[None]]
        self.new_event: Callable[[], WakeupEvent]
        if sniffio.current_async_library() == "trio":
            self.current_time = trio.current_time
            self.checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
            self.cancel_shielded_checkpoint = trio.lowlevel.cancel_shielded_checkpoint
            self.new_event = trio.Event
        else:
            self.current_time = anyio.current_time
            self.checkpoint_if_cancelled = anyio.lowlevel.checkpoint_if_cancelled
            self.cancel_shielded_checkpoint = anyio.lowlevel.cancel_shielded_checkpoint
            self.new_event = anyio.Event
