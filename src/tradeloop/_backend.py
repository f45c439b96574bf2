"""The one seam between tradeloop's hot paths and the running event loop.

Everything else runs on anyio, which maps its primitives to Trio's or asyncio's. But anyio's
module-level functions (``anyio.current_time``, ``anyio.lowlevel.checkpoint_if_cancelled``...) look
the backend up on every call: 0.6 µs against 0.17 µs for Trio's own (measured here), and the hot
path calls them for every push and every received item, which cost tradeloop 15-20% of its burst
rate on Trio (``python -m benchmarks --quick --baseline 2f90a29``). So the few functions called per
item are bound once, when the object using them is made inside the loop: Trio's own on Trio; on
asyncio the loop's own clock and anyio's checkpoints. The same goes for the event a waiting
consumer sleeps on: ``anyio.Event()`` looks the backend up and wraps a ``trio.Event`` (about 2 µs
of a push's CPU at live rates, where every push wakes a consumer), so on Trio the hot path makes
``trio.Event`` itself, and on asyncio a one-future wake-up (:class:`_AsyncioWakeup`). The trading
engine's memory channels are chosen the same way (:func:`open_memory_channel`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Protocol, TypeVar

import anyio
import anyio.lowlevel
import sniffio
import trio

__all__ = ["HotPath", "ReceiveChannel", "SendChannel", "WakeupEvent", "open_memory_channel"]


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
        else:  # asyncio (uvloop too): the only other loop anyio runs on
            # anyio's clock on asyncio is the loop's; its Event wraps asyncio's and looks the
            # backend up when made. Both are per-push costs at live rates.
            self.current_time = asyncio.get_running_loop().time
            self.checkpoint_if_cancelled = anyio.lowlevel.checkpoint_if_cancelled
            self.cancel_shielded_checkpoint = anyio.lowlevel.cancel_shielded_checkpoint
            self.new_event = _AsyncioWakeup


class _AsyncioWakeup:
    """A one-shot wake-up on asyncio: one future, set at most once, awaited by one task.

    What the hot path's waiting consumer needs of an event and no more: ``asyncio.Event`` keeps a
    list of waiters and makes a future per wait. anyio's cancel scopes cancel the waiting task, so
    waiting on it is a cancellation point as any anyio wait is.
    """

    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def set(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    async def wait(self) -> None:
        if self._future.cancelled():  # a wait was cancelled (asyncio cancels the awaited future too)
            self._future = asyncio.get_running_loop().create_future()
        await self._future


T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)
T_co = TypeVar("T_co", covariant=True)


class _Closable(Protocol):
    """Closed by ``close()`` or by leaving a ``with`` block (both backends' ends support both)."""

    def close(self) -> None: ...
    def __enter__(self) -> object: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None, /
    ) -> None: ...


class SendChannel(_Closable, Protocol[T_contra]):
    """The send end of :func:`open_memory_channel`: Trio's memory channel or anyio's memory stream."""

    async def send(self, value: T_contra, /) -> None: ...
    def clone(self) -> SendChannel[T_contra]: ...


class ReceiveChannel(_Closable, Protocol[T_co]):
    """The receive end of :func:`open_memory_channel`."""

    def __aiter__(self) -> AsyncIterator[T_co]: ...


def open_memory_channel(max_buffer_size: int) -> tuple[SendChannel[T], ReceiveChannel[T]]:
    """A memory channel of the running backend: Trio's own on Trio, anyio's memory stream elsewhere.

    anyio's stream costs Trio an extra scheduler round per item (its ``receive`` checkpoints before
    taking a buffered item, and waits on a fresh Event when there is none), where Trio's channel hands
    an item straight to a waiting receiver: the engine's per-candle path (two channels) ran 17% slower
    on anyio's (``python -m benchmarks.bench_backtest --days 3``, side by side). Make it inside the loop.
    """
    if sniffio.current_async_library() == "trio":
        send: trio.MemorySendChannel[T]
        receive: trio.MemoryReceiveChannel[T]
        send, receive = trio.open_memory_channel(max_buffer_size)
        return send, receive
    return anyio.create_memory_object_stream[T](max_buffer_size)
