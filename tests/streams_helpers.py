"""Shared pieces of the stream tests: a simulator with a fixed start, and the no-loss check."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from tradeloop.models import Kline
from tradeloop.sim import SimConfig, Simulator, open_simulator
from tradeloop.streams import StreamConfig, StreamManager, Subscription
from tradeloop.symbols import next_open_time

START_MS = 1_760_000_040_000  # a minute boundary
SWAP = "BTC/USDT:USDT"

FAST = StreamConfig(
    stall_timeout=10.0,
    reconnect_delay=0.5,
    reconnect_delay_max=2.0,
    rest_poll_interval=1.0,
    rest_retry_delay=0.5,
    rest_retry_delay_max=2.0,
)


@asynccontextmanager
async def simulated_streams(
    config: StreamConfig = FAST, **sim_options: object
) -> AsyncIterator[tuple[Simulator, StreamManager]]:
    options: dict[str, object] = {"symbols": ("BTC-USDT", "ETH-USDT"), "start_ms": START_MS, "seed": 7}
    options.update(sim_options)
    async with (
        open_simulator(SimConfig(**options)) as sim,  # type: ignore[arg-type]
        StreamManager.open({"bingx": sim.exchange()}, config) as streams,
    ):
        yield sim, streams


class Collector:
    """Drains a kline subscription in the background, keeping the closed candles."""

    def __init__(self, channel: Subscription[Kline]) -> None:
        self.channel = channel
        self.closed: list[Kline] = []
        self.updates = 0
        self._scope = trio.CancelScope()

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
        with trio.fail_after(3600):
            while len(self.closed) < count:  # noqa: ASYNC110 - polling simulated time is free
                await trio.sleep(1)


def assert_matches_history(sim: Simulator, closed: list[Kline], symbol_id: str = "BTC-USDT") -> None:
    """Each candle exactly once, in order, no gap, with the exchange's final values."""
    assert closed, "no closed candle received"
    timeframe = closed[0].timeframe
    open_times = [k.open_time for k in closed]
    expected_times = [open_times[0]]
    while len(expected_times) < len(open_times):
        expected_times.append(next_open_time(timeframe, expected_times[-1]))
    assert open_times == expected_times, "missing, duplicated or out-of-order candles"
    truth = sim.candles(symbol_id, timeframe, open_times[0], open_times[-1])
    assert [t.open_time for t in truth] == open_times
    for got, want in zip(closed, truth, strict=True):
        assert want.closed
        assert (got.open, got.high, got.low, got.close, got.volume) == (
            want.open,
            want.high,
            want.low,
            want.close,
            want.volume,
        ), f"candle {got.open_time} differs from the exchange's"
