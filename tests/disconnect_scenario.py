"""One scenario run on Trio, on asyncio, and by a plain ``asyncio.run`` program in a subprocess:
stream closed candles and ticks from the simulator (in the same event loop), drop every socket,
keep streaming."""

from __future__ import annotations

import anyio

from tradeloop.models import Kline, Tick
from tradeloop.sim import SimConfig, Simulator
from tradeloop.streams import StreamConfig, StreamManager
from tradeloop.testing import assert_candles_match

__all__ = ["FAST_MARKET", "REAL_TIME", "stream_through_a_disconnect"]

REAL_TIME = StreamConfig(
    stall_timeout=5.0,
    reconnect_delay=0.1,
    reconnect_delay_max=0.5,
    rest_poll_interval=0.5,
    rest_retry_delay=0.1,
    rest_retry_delay_max=0.5,
)
"""Recovery within a fraction of a second: the scenario runs on the wall clock."""
FAST_MARKET = SimConfig(symbols=("BTC-USDT",), speed=120.0, push_interval=0.2, seed=3)
"""A one-minute candle closes every half second."""
SYMBOL = "BTC/USDT:USDT"


async def stream_through_a_disconnect(sim: Simulator, before: int = 3, after: int = 3) -> None:
    """Receive ``before`` closed candles, drop every socket, receive ``after`` more, then check
    that each candle arrived exactly once with the simulator's values, ticks arrived, and the
    connection reconnected. Bounded to 60 s. Raises AssertionError on any failure."""
    closed: list[Kline] = []
    ticks: list[Tick] = []
    with anyio.fail_after(60):
        async with StreamManager.open([sim.exchange()], REAL_TIME) as streams, anyio.create_task_group() as tasks:

            async def take_ticks() -> None:
                async for tick in streams.ticks("bingx", SYMBOL):
                    ticks.append(tick)

            tasks.start_soon(take_ticks)
            async with streams.klines("bingx", SYMBOL, "1m", closed_only=True) as klines:
                async for kline in klines:
                    closed.append(kline)
                    if len(closed) == before:
                        assert sim.faults.drop_all() >= 1
                    if len(closed) == before + after:
                        break
            reconnects = sum(c.reconnects for c in streams.health().connections)
            tasks.cancel_scope.cancel()
    assert reconnects >= 1, "every socket was dropped: the connection must have reconnected"
    assert ticks, "no tick received"
    assert_candles_match(sim, closed)
