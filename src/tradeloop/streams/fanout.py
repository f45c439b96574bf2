"""Fan-out of one upstream topic to any number of subscriber channels.

Each subscriber gets its own Trio memory channel and a slow-consumer policy. The hot path is
``send_nowait``: awaiting every send costs a scheduling point per subscriber per message (about
four times slower, measured), so :meth:`FanOut.publish` awaits only when a ``block`` subscriber's
buffer is full, which is exactly the backpressure that policy asks for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

import trio

from ..errors import InvalidValueError

__all__ = ["FanOut", "SlowConsumerPolicy", "SubscriberHealth", "Subscription"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class SlowConsumerPolicy(StrEnum):
    """What happens when a subscriber's buffer is full."""

    BLOCK = "block"
    """Wait for the consumer: nothing is dropped (the default for klines)."""
    LATEST = "latest"
    """Drop the oldest buffered item so the consumer always catches up to the newest (ticks)."""
    DROP = "drop"
    """Drop the new item and count it."""


@dataclass(frozen=True, slots=True)
class SubscriberHealth:
    name: str
    """The name given to ``klines()`` / ``ticks()``, or ``subscriber-N`` in subscription order."""
    policy: SlowConsumerPolicy
    lag: int
    """Items buffered and not yet received."""
    delivered: int
    dropped: int


class Subscription(trio.abc.ReceiveChannel[T]):
    """The receive end a consumer holds: iterate it with ``async for``; close it to unsubscribe.

    A thin wrapper over a memory channel so that closing it tells the owning :class:`FanOut` at
    once (the last subscriber leaving releases the upstream subscription).
    """

    def __init__(
        self,
        receiver: trio.MemoryReceiveChannel[T],
        on_close: Callable[[Subscription[T]], None],
    ) -> None:
        self._receiver = receiver
        self._on_close: Callable[[Subscription[T]], None] | None = on_close

    async def receive(self) -> T:
        return await self._receiver.receive()

    def receive_nowait(self) -> T:
        return self._receiver.receive_nowait()

    def close(self) -> None:
        self._receiver.close()
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close(self)

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    @property
    def lag(self) -> int:
        return self._receiver.statistics().current_buffer_used


class _Subscriber(Generic[T]):
    __slots__ = ("accepts", "delivered", "dropped", "name", "oldest", "policy", "sender", "subscription")

    def __init__(
        self,
        policy: SlowConsumerPolicy,
        buffer: int,
        accepts: Callable[[T], bool] | None,
        on_close: Callable[[Subscription[T]], None],
        name: str,
    ) -> None:
        self.name = name
        sender, receiver = trio.open_memory_channel[T](buffer)
        self.sender = sender
        self.policy = policy
        self.accepts = accepts
        # A second handle on the buffer lets the LATEST policy discard the oldest item itself.
        self.oldest = receiver.clone() if policy is SlowConsumerPolicy.LATEST else None
        self.subscription = Subscription(receiver, on_close)
        self.delivered = 0
        self.dropped = 0

    def close(self) -> None:
        self.sender.close()
        if self.oldest is not None:
            self.oldest.close()


class FanOut(Generic[T]):
    """Delivers every published item to each subscriber according to its policy."""

    def __init__(self, on_empty: Callable[[], None] | None = None) -> None:
        self._subscribers: list[_Subscriber[T]] = []
        self._on_empty = on_empty
        self._subscribed = 0

    def __len__(self) -> int:
        return len(self._subscribers)

    def subscribe(
        self,
        policy: SlowConsumerPolicy | str,
        buffer: int,
        accepts: Callable[[T], bool] | None = None,
        *,
        name: str | None = None,
    ) -> Subscription[T]:
        """A new subscriber channel; ``accepts`` filters what it is sent (e.g. closed klines only)."""
        try:
            policy = SlowConsumerPolicy(policy)
        except ValueError:
            allowed = ", ".join(p.value for p in SlowConsumerPolicy)
            raise InvalidValueError(f"invalid slow-consumer policy {policy!r}: expected one of {allowed}") from None
        if buffer < 1:
            raise InvalidValueError(f"invalid buffer size {buffer!r}: must be at least 1")
        self._subscribed += 1
        subscriber = _Subscriber(policy, buffer, accepts, self._unsubscribe, name or f"subscriber-{self._subscribed}")
        self._subscribers.append(subscriber)
        return subscriber.subscription

    def _unsubscribe(self, subscription: Subscription[T]) -> None:
        for index, subscriber in enumerate(self._subscribers):
            if subscriber.subscription is subscription:
                subscriber.close()
                del self._subscribers[index]
                break
        if not self._subscribers and self._on_empty is not None:
            self._on_empty()

    async def publish(self, item: T) -> None:
        # Iterate over a snapshot: a consumer may unsubscribe while we wait on a full buffer.
        for subscriber in tuple(self._subscribers):
            if subscriber.accepts is not None and not subscriber.accepts(item):
                continue
            try:
                subscriber.sender.send_nowait(item)
            except trio.WouldBlock:
                await self._deliver_to_full(subscriber, item)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                # The consumer left while we were publishing, or closed a clone of its channel.
                self._unsubscribe(subscriber.subscription)
                continue
            else:
                subscriber.delivered += 1

    async def _deliver_to_full(self, subscriber: _Subscriber[T], item: T) -> None:
        if subscriber.policy is SlowConsumerPolicy.DROP:
            subscriber.dropped += 1
            return
        if subscriber.policy is SlowConsumerPolicy.LATEST:
            assert subscriber.oldest is not None
            try:
                subscriber.oldest.receive_nowait()
                subscriber.dropped += 1
            except trio.WouldBlock:
                pass  # the consumer took one in the meantime
            subscriber.sender.send_nowait(item)
            subscriber.delivered += 1
            return
        try:
            await subscriber.sender.send(item)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._unsubscribe(subscriber.subscription)
        else:
            subscriber.delivered += 1

    def close(self) -> None:
        """End every subscriber's iteration (the upstream is gone)."""
        for subscriber in self._subscribers:
            subscriber.close()
        self._subscribers.clear()

    def health(self) -> tuple[SubscriberHealth, ...]:
        return tuple(
            SubscriberHealth(s.name, s.policy, s.subscription.lag, s.delivered, s.dropped) for s in self._subscribers
        )
