"""A trading engine fed from Redis: the source, and strategies that report what they processed.

The engine hands candles to its strategies through channels the source cannot see into, so the
source learns that a candle was processed from the strategy itself: :meth:`RedisFeed.engine`
wraps each strategy so that, after ``on_kline`` returns, the feed counts the candle as processed
by that strategy, and once every strategy reading the stream has processed it, its entry is
acknowledged in Redis. A candle this engine handed over to another engine of the group is not
given to the strategy at all (the other engine processes it): the engine asks the source's
``should_process`` first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import anyio.abc

from ..exchanges import Exchange
from ..models import Kline, Signal, Tick
from ..streams import MarketData
from ..trading import EngineConfig, Strategy, TradingEngine
from .consumer import RedisMarketData, RedisSourceSettings

__all__ = ["RedisFeed"]

_StreamId = tuple[str, str, str]


class _Acknowledging:
    """A strategy that tells the feed which candles it has processed (a transparent wrapper)."""

    def __init__(self, strategy: Strategy, feed: RedisFeed) -> None:
        self.strategy = strategy
        self._feed = feed
        self.exchange: str | None = getattr(strategy, "exchange", None)

    @property
    def name(self) -> str:
        return self.strategy.name

    @property
    def symbols(self) -> Sequence[str]:
        return self.strategy.symbols

    @property
    def timeframe(self) -> str | None:
        return self.strategy.timeframe

    @property
    def warmup(self) -> int:
        return self.strategy.warmup

    def on_kline(self, kline: Kline) -> Iterable[Signal]:
        # The engine asked the source's should_process before handing the candle on.
        signals = list(self.strategy.on_kline(kline))
        self._feed.processed(kline)
        return signals

    def on_tick(self, tick: Tick) -> Iterable[Signal]:
        return self.strategy.on_tick(tick)


class RedisFeed:
    """Engines reading market data from Redis: ``RedisFeed(settings).engine(config)``.

    ``exchanges`` (clients by name, e.g. ``config.clients``) let the source fill a trimmed gap
    over the exchange's REST. Each run closes the ones that hold resources of their own (a ccxt
    client's HTTP session), as the engine's default market data does; they reopen when next used.
    """

    def __init__(self, settings: RedisSourceSettings, exchanges: Mapping[str, Exchange] | None = None) -> None:
        self.settings = settings
        self.exchanges = dict(exchanges or {})
        self.source: RedisMarketData | None = None
        self._readers: dict[_StreamId, int] = {}
        self._processed: dict[tuple[_StreamId, int], int] = {}

    @asynccontextmanager
    async def open(self) -> AsyncIterator[MarketData]:
        """The engine's market-data factory."""
        async with AsyncExitStack() as stack:
            for client in self.exchanges.values():
                if isinstance(client, anyio.abc.AsyncResource):
                    await stack.enter_async_context(client)
            source = await stack.enter_async_context(RedisMarketData.open(self.settings, self.exchanges))
            self.source = source
            try:
                yield source
            finally:
                self.source = None

    def engine_config(self, config: EngineConfig) -> EngineConfig:
        """``config`` with its strategies wrapped to report processed candles to this feed."""
        for strategy in config.strategies:
            if strategy.timeframe is None:
                continue
            exchange = config.strategy_exchange(strategy)
            for symbol in strategy.symbols:
                stream = (exchange, symbol, strategy.timeframe)
                self._readers[stream] = self._readers.get(stream, 0) + 1
        return dataclasses.replace(config, strategies=[_Acknowledging(s, self) for s in config.strategies])

    def engine(self, config: EngineConfig) -> TradingEngine:
        return TradingEngine(self.engine_config(config), market_data=self.open)

    def processed(self, kline: Kline) -> None:
        stream = (kline.exchange, kline.symbol, kline.timeframe)
        key = (stream, kline.open_time)
        count = self._processed.pop(key, 0) + 1
        if count < self._readers.get(stream, 1):
            self._processed[key] = count
        elif self.source is not None:
            self.source.mark_processed(kline)
