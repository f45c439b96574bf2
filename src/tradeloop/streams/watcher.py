"""Topics fed by an exchange client that watches (ccxt.pro through its adapter) instead of a codec.

Such a client owns its socket: the stream layer gets items, not frames. One task per topic runs
the client's watch loop and feeds the topic exactly as a socket's reader would, so every guarantee
sits on top unchanged: kline pushes go through the candle closer (closed when a newer candle opens,
confirmed over REST), ticks go to the subscribers' buffers. A failed watch (a dropped socket, an
exchange error) is counted in the topic's health as a watch error (a stream error, not a REST one:
``TopicHealth.watch_errors``), marks the kline feed interrupted (the closer backfills what the gap
lost) and is retried with backoff.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn, Protocol, runtime_checkable

from ..exchanges.base import Topic
from ..models import Kline, Tick
from .backoff import Backoff
from .topic import KlineTopic, TickTopic

__all__ = ["WatchingExchange", "watch_topic", "watching"]


@runtime_checkable
class WatchingExchange(Protocol):
    """An exchange client that pushes items itself (e.g. :class:`~tradeloop.exchanges.ccxt.CcxtExchange`)."""

    def watches(self, topic: Topic) -> bool:
        """Whether ``topic`` is pushed by :meth:`watch` (else it is polled)."""
        ...

    async def watch(self, topic: Topic, deliver: Callable[[list[Kline] | Tick], None]) -> NoReturn:
        """Call ``deliver`` with each update (klines unclosed) until cancelled; raise on failure."""
        ...


def watching(exchange: object, topic: Topic) -> WatchingExchange | None:
    """``exchange`` if it watches ``topic``, else None."""
    if isinstance(exchange, WatchingExchange) and exchange.watches(topic):
        return exchange
    return None


async def watch_topic(stream: KlineTopic | TickTopic, exchange: WatchingExchange) -> NoReturn:
    """Feed ``stream`` from ``exchange.watch`` for as long as the topic lives (run it in its scope)."""
    config = stream.config
    backoff = Backoff(config.reconnect_delay, config.reconnect_delay_max)

    def deliver(item: list[Kline] | Tick) -> None:
        backoff.reset()
        if isinstance(item, Tick):
            assert isinstance(stream, TickTopic)
            stream.publish(item)
        else:
            assert isinstance(stream, KlineTopic)
            stream.offer(item)

    stream.mode = "watch"
    while True:
        try:
            await exchange.watch(stream.topic, deliver)
        except Exception as exc:  # a foreign client may raise anything; it is one failed watch
            stream.count_watch_error(exc)
            stream.interrupted()
        await backoff.sleep_after_failure()
