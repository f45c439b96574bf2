"""The seam between the trading engine and wherever its market data comes from.

The engine consumes exactly this: subscriptions to klines and ticks, a REST-like history call for
warm-up, and a health snapshot. :class:`~tradeloop.streams.StreamManager` is the live
implementation; a Redis consumer or a historical replay provides the same four calls, and the
engine cannot tell them apart. A source is opened by a :data:`MarketDataFactory`, an async context
manager whose exit ends every subscription it handed out.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Literal, Protocol

from ..models import Kline, Tick
from .fanout import SlowConsumerPolicy, Subscription
from .health import StreamHealth

__all__ = ["MARK_PROCESSED", "SHOULD_PROCESS", "MarketData", "MarketDataFactory", "TickKind"]

TickKind = Literal["ticker", "last_price", "mark_price", "book_ticker"]


class MarketData(Protocol):
    """What the engine needs of a market-data source."""

    def klines(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        *,
        policy: SlowConsumerPolicy | str = ...,
        closed_only: bool = ...,
        buffer: int | None = ...,
        name: str | None = ...,
    ) -> Subscription[Kline]:
        """Each candle's updates, then exactly one ``closed=True`` kline per candle, in order."""
        ...

    def ticks(
        self,
        exchange: str,
        symbol: str,
        *,
        kind: TickKind = ...,
        policy: SlowConsumerPolicy | str = ...,
        buffer: int | None = ...,
        name: str | None = ...,
    ) -> Subscription[Tick]:
        """Ticks of ``symbol``."""
        ...

    async def fetch_klines(self, exchange: str, symbol: str, timeframe: str, *, limit: int = ...) -> list[Kline]:
        """The newest ``limit`` closed candles, oldest first (strategy warm-up)."""
        ...

    def health(self) -> StreamHealth:
        """A typed snapshot of the source's streams."""
        ...


SHOULD_PROCESS = "should_process"
"""An optional method of a :class:`MarketData` shared by several engines (Redis):
``should_process(kline) -> bool``, asked before the engine's strategies take a closed candle; a
refused copy is skipped before it counts as seen, so a fresh copy of it still gets through. A
source without it (one's own) hands every candle to the strategies."""


MARK_PROCESSED = "mark_processed"
"""Its companion: ``mark_processed(kline)``, called once every strategy reading a closed candle it
admitted has handled it (a strategy that failed on it included: it is disabled and reads no
more), so the source can acknowledge it."""


MarketDataFactory = Callable[[], AbstractAsyncContextManager[MarketData]]
"""Opens a source; leaving the context ends every subscription and task of the source."""
