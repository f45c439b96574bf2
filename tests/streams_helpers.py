"""Shared pieces of the stream tests: a simulator with a fixed start, and the no-loss check."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from tradeloop.models import Kline
from tradeloop.sim import SimConfig, Simulator, open_simulator
from tradeloop.streams import StreamConfig, StreamManager, Subscription
from tradeloop.testing import TEST_STREAM_CONFIG, assert_candles_match

START_MS = 1_760_000_040_000  # a minute boundary
SWAP = "BTC/USDT:USDT"

FAST = TEST_STREAM_CONFIG


@asynccontextmanager
async def simulated_streams(
    config: StreamConfig = FAST, **sim_options: object
) -> AsyncIterator[tuple[Simulator, StreamManager]]:
    options: dict[str, object] = {"symbols": ("BTC-USDT", "ETH-USDT"), "start_ms": START_MS, "seed": 7}
    options.update(sim_options)
    async with (
        open_simulator(SimConfig(**options)) as sim,  # type: ignore[arg-type]
        StreamManager.open({sim.config.exchange: sim.exchange()}, config) as streams,
    ):
        yield sim, streams


class Collector:
    """Drains a kline subscription in the background, keeping the closed candles."""

    def __init__(self, channel: Subscription[Kline]) -> None:
        self.channel = channel
        self.closed: list[Kline] = []
        self.updates = 0
        self._scope = anyio.CancelScope()

    async def run(self) -> None:
        with self._scope:
            async with self.channel:
                async for kline in self.channel:
                    if kline.closed:
                        self.closed.append(kline)
                    else:
                        self.updates += 1

    def stop(self) -> None:
        """Stop consuming and close the channel (unsubscribing, if it was the last one)."""
        self._scope.cancel()

    async def wait_for_closed(self, count: int) -> None:
        """Wait (simulated time, bounded to an hour) until ``count`` candles have closed."""
        with anyio.fail_after(3600):
            while len(self.closed) < count:  # noqa: ASYNC110 - polling simulated time is free
                await anyio.sleep(1)


assert_matches_history = assert_candles_match  # each candle once, in order, no gap, the exchange's final values
