"""The StreamManager (as it is) streaming Binance from the simulator's Binance dialect, in simulated
time: spot and USDⓈ-M klines and ticks, closed candles equal to the simulator's history.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from streams_helpers import FAST, START_MS, Collector, assert_matches_history
from trio.testing import MockClock

from tradeloop.errors import SubscriptionError
from tradeloop.exchanges.binance import Binance
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


class ShortLived(Binance):
    connection_lifetime = 5.0  # replaced every 4.9 s


@asynccontextmanager
async def short_lived_streams(push_interval: float) -> AsyncIterator[tuple[Simulator, StreamManager]]:
    """The Binance simulator at 6x speed, and a manager whose sockets are replaced every 4.9 s."""
    config = SimConfig(
        exchange="binance", symbols=("BTC-USDT",), start_ms=START_MS, speed=6.0, push_interval=push_interval
    )
    async with (
        open_simulator(config) as sim,
        StreamManager.open({"binance": ShortLived(ws_url=sim.ws_url, rest_url=sim.rest_url)}, FAST) as streams,
    ):
        yield sim, streams


async def test_a_socket_past_its_lifetime_is_handed_over_without_a_gap(mock_clock: MockClock) -> None:
    # Binance cuts a socket after 24 h; the client replaces it a little before, overlapping the
    # new socket with the old. Every push of every topic then arrives once, in order: ticks
    # (which no REST call could recover) with no gap, klines with no interruption to backfill.
    push_ms = 600  # 0.1 s pushes at 6x market speed
    async with short_lived_streams(push_interval=0.1) as (sim, streams), trio.open_nursery() as nursery:
        klines = Collector(streams.klines("binance", USDM, "1m"))
        nursery.start_soon(klines.run)
        tick_times: dict[str, list[int]] = {SPOT: [], USDM: []}

        async def collect(symbol: str) -> None:
            async for tick in streams.ticks("binance", symbol):
                tick_times[symbol].append(tick.time)

        nursery.start_soon(collect, SPOT)
        nursery.start_soon(collect, USDM)
        await klines.wait_for_closed(3)  # 30 s: six handovers per socket
        health = streams.health()
        nursery.cancel_scope.cancel()
    assert health.total_reconnects == 0
    assert all(c.rotations >= 5 for c in health.connections), [c.rotations for c in health.connections]
    for symbol, times in tick_times.items():
        steps = {b - a for a, b in itertools.pairwise(times)}
        assert steps == {push_ms}, f"{symbol}: every tick once, in order, none missing ({sorted(steps)})"
    assert_matches_history(sim, klines.closed)
    assert all(t.backfilled_candles == 0 for t in health.topics), "no interruption for REST to fill"


async def test_a_handed_over_socket_that_fails_is_replaced_by_a_new_one(mock_clock: MockClock) -> None:
    # Found by an outside audit: the connection kept the handed-over socket after its session
    # failed (already closed), so Trio raised ValueError (fd -1) and asyncio looped on it forever.
    async with short_lived_streams(push_interval=0.5) as (sim, streams), trio.open_nursery() as nursery:
        klines = Collector(streams.klines("binance", USDM, "1m"))
        nursery.start_soon(klines.run)
        await klines.wait_for_closed(1)
        assert streams.health().connections[0].rotations >= 1
        connections_before = sim.stats.connections_total
        sim.faults.drop_all()  # the handed-over socket fails, as any socket may
        await klines.wait_for_closed(len(klines.closed) + 3)
        health = streams.health()
        nursery.cancel_scope.cancel()
    assert_matches_history(sim, klines.closed)
    (connection,) = health.connections
    assert connection.reconnects >= 1 and connection.state == "open"
    assert sim.stats.connections_total > connections_before  # a new socket, not the closed one again
    assert all(t.mode == "ws" for t in health.topics)


@pytest.mark.parametrize("grace", [1.0, 0.001], ids=["closed-after-the-overlap", "closed-at-once"])
async def test_an_announced_server_restart_is_a_handover_not_a_failure(mock_clock: MockClock, grace: float) -> None:
    # Spot sockets get serverShutdown, then the server closes them after a grace period. With time
    # to overlap, the ticks go on without a gap; closed at once, the new socket still carries on
    # at once: no reconnect with backoff either way, and every closed candle exactly once.
    push_ms = 600
    async with binance_streams(speed=6.0, push_interval=0.1) as (sim, streams), trio.open_nursery() as nursery:
        klines = Collector(streams.klines("binance", SPOT, "1m"))
        nursery.start_soon(klines.run)
        tick_times: list[int] = []

        async def collect() -> None:
            async for tick in streams.ticks("binance", SPOT):
                tick_times.append(tick.time)

        nursery.start_soon(collect)
        await klines.wait_for_closed(1)
        await sim.server_shutdown(grace)
        await klines.wait_for_closed(3)
        health = streams.health()
        nursery.cancel_scope.cancel()
    (spot_socket,) = [c for c in health.connections if c.market == "spot"]
    assert health.total_reconnects == 0 and spot_socket.rotations == 1
    assert_matches_history(sim, klines.closed)
    steps = {b - a for a, b in itertools.pairwise(tick_times)}
    if grace >= 1.0:
        assert steps == {push_ms}, f"every tick once, in order, none missing ({sorted(steps)})"
    else:
        assert min(steps) > 0, "no tick repeated"
