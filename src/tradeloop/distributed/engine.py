"""A trading engine fed from Redis.

The source (:class:`~.consumer.RedisMarketData`) learns from the engine itself which candles its
strategies processed: the engine asks its ``should_process`` before handing a closed candle to
the strategies (a copy handed over to another engine of the group is skipped), and calls its
``mark_processed`` once every strategy reading the candle has handled it; the entry is then
acknowledged in Redis. (The strategies were once wrapped to report each candle themselves: a
strategy disabled after an error stopped reporting, and no candle of its streams was
acknowledged again; a second review.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

import anyio.abc

from ..exchanges import Exchange
from ..streams import MarketData
from ..trading import EngineConfig, TradingEngine
from .consumer import RedisMarketData, RedisSourceSettings

__all__ = ["RedisFeed"]


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

    def engine(self, config: EngineConfig) -> TradingEngine:
        return TradingEngine(config, market_data=self.open)
