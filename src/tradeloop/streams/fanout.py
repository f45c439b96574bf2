"""Fan-out of one upstream topic to any number of subscribers, none of which can hold up the others.

:meth:`FanOut.publish` never waits: each :class:`Subscription` keeps its own bounded buffer and
applies its own slow-consumer policy when it is full. So the socket's reader, which publishes
inline, answers heartbeats and serves every other topic on time whatever one consumer does, and a
slow consumer costs only its own buffer (and, for ``block`` klines, a REST re-fetch in its own task
when it resumes; see :mod:`tradeloop.streams.backlog`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel
import trio

from .._backend import HotPath, WakeupEvent
from ..errors import InvalidValueError

__all__ = [
    "FanOut",
    "SlowConsumerPolicy",
    "SubscriberHealth",
    "Subscription",
    "SubscriptionClosedError",
    "SubscriptionEnded",
    "SubscriptionWouldBlock",
    "check_buffer",
    "parse_policy",
]


# A subscription runs on Trio and on asyncio (through anyio), and code written for either catches
# its own library's exceptions: so each of ours subclasses both, and is raised the same on every
# backend. On Trio nothing changes for existing code (``except trio.EndOfChannel`` still works).
class SubscriptionEnded(trio.EndOfChannel, anyio.EndOfStream):
    """The stream is over and the buffer drained: ``trio.EndOfChannel`` and ``anyio.EndOfStream``."""


class SubscriptionClosedError(trio.ClosedResourceError, anyio.ClosedResourceError):
    """``receive()`` on a subscription its consumer closed."""


class SubscriptionWouldBlock(trio.WouldBlock, anyio.WouldBlock):
    """``receive_nowait()`` with nothing buffered."""


T = TypeVar("T")


class SlowConsumerPolicy(StrEnum):
    """What a subscriber's buffer does when its consumer falls behind. The socket never waits."""

    BLOCK = "block"
    """Lose nothing a strategy needs (the default for klines): every closed candle exactly once, in
    order (re-fetched over REST if the backlog outgrew the buffer), open-candle updates coalesced
    to the newest. For ticks, which cannot be re-fetched: a bounded buffer dropping the oldest."""
    LATEST = "latest"
    """Drop the oldest buffered item so the consumer always catches up to the newest (ticks' default)."""
    DROP = "drop"
    """Drop the new item and count it."""


def parse_policy(policy: SlowConsumerPolicy | str) -> SlowConsumerPolicy:
    """The policy named ``policy``; InvalidValueError naming the allowed ones."""
    try:
        return SlowConsumerPolicy(policy)
    except ValueError:
        allowed = ", ".join(p.value for p in SlowConsumerPolicy)
        raise InvalidValueError(f"invalid slow-consumer policy {policy!r}: expected one of {allowed}") from None


def check_buffer(buffer: object) -> int:
    """``buffer`` as a subscriber's buffer size; InvalidValueError unless a whole number >= 1."""
    if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
        raise InvalidValueError(f"invalid buffer size {buffer!r}: must be a whole number of at least 1")
    return buffer


@dataclass(frozen=True, slots=True)
class SubscriberHealth:
    name: str
    """The name given to ``klines()`` / ``ticks()``, or ``subscriber-N`` in subscription order."""
    policy: SlowConsumerPolicy
    lag: int
    """Items buffered and not yet received."""
    delivered: int
    """Items the consumer received."""
    dropped: int
    """Items this subscriber will never see (``latest``, ``drop``, ``block`` ticks)."""
    refetched: int = 0
    """Closed candles evicted from a ``block`` backlog and fetched again over REST."""


class Subscription(trio.abc.ReceiveChannel[T]):
    """The receive end a consumer holds: iterate it with ``async for``; close it to unsubscribe.

    ``receive()`` raises :class:`~tradeloop.errors.SubscriptionError` if the exchange rejected the
    subscription, and :class:`SubscriptionEnded` (which ``async for`` turns into the loop's end)
    once the stream is over and the buffer drained: on every backend it is both
    ``trio.EndOfChannel`` and ``anyio.EndOfStream``. Its counters stay readable after it closed.
    It works in Trio and asyncio programs alike (a waiting ``receive()`` sleeps on an
    ``anyio.Event``, which is a ``trio.Event`` on Trio); it keeps ``trio.abc.ReceiveChannel`` as
    its base (a pure ABC, no Trio call) so code typed against it on Trio keeps working, and its
    ``async for`` ends on :class:`SubscriptionEnded` on either backend.
    """

    def __init__(self, name: str, policy: SlowConsumerPolicy, buffer: int, accepts: Callable[[T], bool] | None) -> None:
        self.name = name
        self.policy = policy
        self.buffer = check_buffer(buffer)
        self.accepts = accepts
        """Filter of what this subscriber is sent (e.g. closed klines only)."""
        self.delivered = 0
        self.dropped = 0
        self._items: deque[T] = deque()
        self._wakeup: WakeupEvent | None = None
        """Set when an item arrives or the stream ends; exists only while a receive() waits."""
        self._room: anyio.Event | None = None
        """Set when the consumer takes an item; exists only while a pausable publisher (Redis, a
        replay) waits for room in a full ``block`` buffer."""
        self._ended = False
        self._closed = False
        self._error: BaseException | None = None
        self._on_close: Callable[[Subscription[T]], None] | None = None
        self._hot_path: HotPath | None = None
        """Bound at the first ``receive()`` (a subscription may be made outside any event loop)."""

    # -- the publisher's side: never waits --------------------------------------------------------

    def offer(self, item: T) -> None:
        """Buffer ``item`` by this subscriber's policy."""
        items = self._items
        if len(items) >= self.buffer:
            self.dropped += 1
            if self.policy is SlowConsumerPolicy.DROP:
                return
            items.popleft()
        items.append(item)
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup.set()

    def _wake(self) -> None:
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None:
            wakeup.set()

    def end(self, error: BaseException | None = None) -> None:
        """The stream is over: the consumer drains what is buffered, then iteration ends.

        With ``error`` the consumer's next ``receive()`` raises it at once instead.
        """
        self._ended = True
        self._error = error
        if error is not None:
            self._items.clear()
        self._on_close = None
        self._wake()
        self._free_room()

    # -- the consumer's side ----------------------------------------------------------------------

    def _take(self) -> T:
        """The next item, or raise SubscriptionWouldBlock / SubscriptionEnded / the stream's error."""
        if self._closed:
            raise SubscriptionClosedError("this subscription was closed")
        if self._error is not None:
            raise self._error
        if self._items:
            self.delivered += 1
            if self._room is not None:
                self._free_room()
            return self._items.popleft()
        if self._ended:
            raise SubscriptionEnded
        raise SubscriptionWouldBlock

    def _ready(self) -> bool:
        """Whether ``_take()`` has something to return or raise (anything but would-block)."""
        return bool(self._items) or self._ended or self._error is not None

    def _refetch_due(self) -> bool:
        """Whether items this subscriber lost from its buffer must be fetched again first."""
        return False

    async def _refetch(self) -> None:
        """Fetch them (in the consumer's own task): see :class:`~tradeloop.streams.backlog.KlineBacklog`."""
        raise NotImplementedError

    def receive_nowait(self) -> T:
        return self._take()

    async def receive(self) -> T:
        hot_path = self._hot_path
        if hot_path is None:
            hot_path = self._hot_path = HotPath()
        if self._ready():
            await hot_path.checkpoint_if_cancelled()
            item = self._take()
            await hot_path.cancel_shielded_checkpoint()
            return item
        # Waiting (or fetching) is the checkpoint: once woken with an item, return it at once
        # (another checkpoint here costs a scheduler pass per message at live rates).
        # Asking _ready() rather than catching a would-block from _take() spares an exception
        # per wake-up.
        while True:
            if self._refetch_due():
                await self._refetch()
            elif self._ready():
                return self._take()
            else:
                wakeup = self._wakeup
                if wakeup is None:
                    wakeup = self._wakeup = hot_path.new_event()
                await wakeup.wait()

    def close(self) -> None:
        """Unsubscribe; the last subscriber leaving releases the upstream subscription."""
        self._closed = self._ended = True
        self._items.clear()
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close(self)
        self._wake()
        self._free_room()

    def _free_room(self) -> None:
        room, self._room = self._room, None
        if room is not None:
            room.set()

    async def wait_for_room(self) -> None:
        """Wait until a ``block`` subscriber's buffer has room (at once for other policies, or
        once the subscription ended): the backpressure a pausable source gives its consumers."""
        while self.policy is SlowConsumerPolicy.BLOCK and len(self._items) >= self.buffer and not self._ended:
            if self._room is None:
                self._room = anyio.Event()
            await self._room.wait()

    async def aclose(self) -> None:
        self.close()
        await anyio.lowlevel.checkpoint()

    @property
    def lag(self) -> int:
        """Items buffered and not yet received."""
        return len(self._items)

    def health(self) -> SubscriberHealth:
        return SubscriberHealth(self.name, self.policy, self.lag, self.delivered, self.dropped)


class FanOut(Generic[T]):
    """Delivers every published item to each subscriber according to its policy, without waiting."""

    def __init__(self, on_empty: Callable[[], None] | None = None) -> None:
        self._subscribers: list[Subscription[T]] = []
        self._on_empty = on_empty
        self._count = 0

    def __len__(self) -> int:
        return len(self._subscribers)

    def next_name(self, name: str | None) -> str:
        """``name``, or ``subscriber-N`` numbering this fan-out's subscribers."""
        self._count += 1
        return name or f"subscriber-{self._count}"

    def subscribe(
        self,
        policy: SlowConsumerPolicy | str,
        buffer: int,
        accepts: Callable[[T], bool] | None = None,
        *,
        name: str | None = None,
    ) -> Subscription[T]:
        """A new subscriber with its own ``buffer``; ``accepts`` filters what it is sent."""
        return self.add(Subscription(self.next_name(name), parse_policy(policy), buffer, accepts))

    def add(self, subscription: Subscription[T]) -> Subscription[T]:
        """Start publishing to ``subscription`` (any subclass: its ``offer`` decides what it keeps)."""
        subscription._on_close = self._unsubscribe
        self._subscribers.append(subscription)
        return subscription

    def _unsubscribe(self, subscription: Subscription[T]) -> None:
        self._subscribers.remove(subscription)
        if not self._subscribers and self._on_empty is not None:
            self._on_empty()

    def publish(self, item: T) -> None:
        for subscriber in self._subscribers:
            accepts = subscriber.accepts
            if accepts is None or accepts(item):
                subscriber.offer(item)

    async def publish_when_room(self, item: T) -> None:
        """Wait until every ``block`` subscriber has room, then publish.

        For a source that can pause without harming anyone (a Redis consumer, a historical
        replay): there ``block`` means backpressure, and nothing is dropped. Never call it from a
        socket's reader, which must not wait on a consumer (use :meth:`publish`).
        """
        for subscriber in tuple(self._subscribers):
            if subscriber.accepts is None or subscriber.accepts(item):
                await subscriber.wait_for_room()
        self.publish(item)

    def close(self, error: BaseException | None = None) -> None:
        """End every subscriber's stream (the upstream is gone), with ``error`` if it failed."""
        subscribers, self._subscribers = self._subscribers, []
        for subscriber in subscribers:
            subscriber.end(error)

    def health(self) -> tuple[SubscriberHealth, ...]:
        return tuple(s.health() for s in self._subscribers)
