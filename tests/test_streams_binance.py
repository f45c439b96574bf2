"""The StreamManager (as it is) streaming Binance from the simulator's Binance dialect, in simulated
time: spot and USDⓈ-M klines and ticks, closed candles equal to the simulator's history.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from streams_helpers import FAST, START_MS, Collector, assert_matches_history
from trio.testing import MockClock

from tradeloop.errors import SubscriptionError
from tradeloop.sim import SimConfig, Simulator, open_simulator
from tradeloop.streams import StreamConfig, StreamManager

SPOT, USDM = "BTC/USDT", "BTC/USDT:USDT"


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock(autojump_threshold=0.002)


@asynccontextmanager
async def binance_streams(
    config: StreamConfig = FAST, **sim_options: object
) -> AsyncIterator[tuple[Simulator, StreamManager]]:
    options: dict[str, object] = {"exchange": "binance", "symbols": ("BTC-USDT", "ETH-USDT"), "start_ms": START_MS}
    options.update(sim_options)
    async with (
        open_simulator(SimConfig(**options)) as sim,  # type: ignore[arg-type]
        StreamManager.open({"binance": sim.exchange()}, config) as streams,
    ):
        yield sim, streams


async def test_spot_and_usdm_klines_and_ticks_match_the_history(mock_clock: MockClock) -> None:
    async with binance_streams() as (sim, streams), trio.open_nursery() as nursery:
        spot, usdm = Collector(streams.klines("binance", SPOT, "1m")), Collector(streams.klines("binance", USDM, "1m"))
        nursery.start_soon(spot.run)
        nursery.start_soon(usdm.run)
        spot_tick = await streams.ticks("binance", "ETH/USDT").receive()
        usdm_tick = await streams.ticks("binance", "ETH/USDT:USDT").receive()
        await spot.wait_for_closed(1)
        await usdm.wait_for_closed(1)
        rest_requests = sim.stats.rest_requests
        await spot.wait_for_closed(4)
        await usdm.wait_for_closed(4)
        # Binance marks final pushes ("x": true): closing a candle needs no REST confirmation.
        assert sim.stats.rest_requests == rest_requests
        nursery.cancel_scope.cancel()
    assert spot.updates > 0 and usdm.updates > 0
    assert_matches_history(sim, spot.closed)
    assert_matches_history(sim, usdm.closed)
    assert {k.symbol for k in spot.closed} == {SPOT} and {k.symbol for k in usdm.closed} == {USDM}
    assert spot_tick.bid is not None and spot_tick.ask is not None and spot_tick.bid < spot_tick.ask
    assert usdm_tick.bid is None and usdm_tick.last is not None and usdm_tick.volume_24h is not None


async def test_drops_and_lost_finals_are_backfilled_from_rest(mock_clock: MockClock) -> None:
    config = StreamConfig(stall_timeout=10.0, reconnect_delay=0.5, reconnect_delay_max=2.0, rest_retry_delay=0.5)
    async with binance_streams(config) as (sim, streams), trio.open_nursery() as nursery:
        collector = Collector(streams.klines("binance", USDM, "1m"))
        nursery.start_soon(collector.run)
        await collector.wait_for_closed(1)
        sim.faults.set("skip_final_update")  # the x:true push never comes: only REST has the final value
        await collector.wait_for_closed(3)
        sim.faults.set("skip_final_update", "off")
        for _ in range(3):
            await trio.sleep(70)
            sim.faults.drop_all()
        await collector.wait_for_closed(len(collector.closed) + 2)
        nursery.cancel_scope.cancel()
    assert_matches_history(sim, collector.closed)


async def test_usdm_book_ticker_flows_on_its_public_socket(mock_clock: MockClock) -> None:
    with trio.fail_after(60):
        async with binance_streams() as (_sim, streams):
            tick = await streams.ticks("binance", USDM, kind="book_ticker").receive()
    assert tick.bid is not None and tick.ask is not None


async def test_an_unknown_symbol_is_a_subscription_error(mock_clock: MockClock) -> None:
    with trio.fail_after(5):  # Binance acknowledges and stays silent: exchangeInfo must say no
        async with binance_streams() as (_sim, streams):
            channel = streams.klines("binance", "DOGE/USDT", "1m")
            with pytest.raises(SubscriptionError, match="DOGE/USDT"):
                await channel.receive()
