"""The StreamManager against the embedded exchange, over loopback, in simulated time (MockClock)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import pytest
import trio
from streams_helpers import FAST, START_MS, SWAP, Collector, assert_matches_history, simulated_streams
from trio.testing import MockClock

from tradeloop.exchanges.bingx import BingX
from tradeloop.sim import RestDown, SimConfig, Simulator, open_simulator
from tradeloop.streams import StreamConfig, StreamManager


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock(autojump_threshold=0.002)


async def test_three_consumers_share_one_upstream_subscription(mock_clock: MockClock) -> None:
    async with simulated_streams() as (sim, streams), trio.open_nursery() as nursery:
        collectors = [Collector(streams.klines("BingX", SWAP, "1m")) for _ in range(3)]
        for collector in collectors:
            nursery.start_soon(collector.run)
        await collectors[0].wait_for_closed(3)
        assert sim.stats.subscriptions == 1
        assert sim.stats.connections_open == 1
        for collector in collectors:
            collector.stop()
        await trio.sleep(2)
        assert sim.stats.subscriptions == 0, "the last unsubscribe must release the upstream topic"
        assert sim.stats.connections_open == 0, "a socket with no topic left is closed"
        assert streams.health().topics == ()
    first = collectors[0].closed
    assert all(c.closed[: len(first)] == first[: len(c.closed)] for c in collectors)
    assert_matches_history(sim, first)


async def test_updates_precede_each_close_and_ticks_flow(mock_clock: MockClock) -> None:
    async with simulated_streams() as (_sim, streams):
        klines = streams.klines("bingx", SWAP, "1m")
        ticks = streams.ticks("bingx", "ETH/USDT:USDT")
        seen: list[tuple[int, bool]] = []
        with trio.fail_after(300):
            async for kline in klines:
                seen.append((kline.open_time, kline.closed))
                if sum(closed for _, closed in seen) == 2:
                    break
            tick = await ticks.receive()
    assert tick.symbol == "ETH/USDT:USDT" and tick.bid is not None and tick.ask is not None
    assert tick.bid <= tick.ask
    closes = [i for i, (_, closed) in enumerate(seen) if closed]
    second_open = seen[closes[1]][0]
    assert any(t == second_open and not closed for t, closed in seen[: closes[1]]), "updates before the close"
    assert [t for t, _ in seen] == sorted(t for t, _ in seen)


def _drop(sim: Simulator) -> None:
    sim.faults.drop_all()


FAULTS: dict[str, tuple[Callable[[Simulator], None], Callable[[Simulator], None]]] = {
    "drop mid-candle": (_drop, lambda sim: None),
    "stall, pings flowing": (lambda sim: sim.faults.stall(pings=True), lambda sim: sim.faults.unstall()),
    "stall, pings stopped": (lambda sim: sim.faults.stall(pings=False), lambda sim: sim.faults.unstall()),
    "server stops pinging": (lambda sim: sim.faults.stop_pings(), lambda sim: sim.faults.resume_pings()),
    "pongs ignored by the server": (
        lambda sim: setattr(sim.faults, "ignore_pongs", True),
        lambda sim: setattr(sim.faults, "ignore_pongs", False),
    ),
    "1% malformed frames": (
        lambda sim: setattr(sim.faults, "malformed_rate", 0.01),
        lambda sim: setattr(sim.faults, "malformed_rate", 0.0),
    ),
    "duplicates": (
        lambda sim: setattr(sim.faults, "duplicate_rate", 0.3),
        lambda sim: setattr(sim.faults, "duplicate_rate", 0.0),
    ),
    "out of order": (
        lambda sim: setattr(sim.faults, "reorder_rate", 0.3),
        lambda sim: setattr(sim.faults, "reorder_rate", 0.0),
    ),
    "final update skipped": (
        lambda sim: setattr(sim.faults, "skip_final_update", True),
        lambda sim: setattr(sim.faults, "skip_final_update", False),
    ),
    "multi-element batches": (
        lambda sim: setattr(sim.faults, "batch_klines", True),
        lambda sim: setattr(sim.faults, "batch_klines", False),
    ),
    "REST connection closed during a drop": (
        lambda sim: (setattr(sim.faults, "rest_down", RestDown.CLOSE), sim.faults.drop_all()),
        lambda sim: setattr(sim.faults, "rest_down", None),
    ),
    "REST 429 during a drop": (
        lambda sim: (setattr(sim.faults, "rest_rate_limited", True), sim.faults.drop_all()),
        lambda sim: setattr(sim.faults, "rest_rate_limited", False),
    ),
    "REST down while the socket stalls": (
        lambda sim: (setattr(sim.faults, "rest_down", RestDown.HTTP_503), sim.faults.stall(pings=False)),
        lambda sim: (setattr(sim.faults, "rest_down", None), sim.faults.unstall()),
    ),
}


@pytest.mark.parametrize("exchange", ["bingx", "binance"])
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_every_candle_exactly_once_in_order_through_faults(
    mock_clock: MockClock, fault: str, exchange: str
) -> None:
    """The no-loss guarantee: whatever the fault, closed candles equal the exchange's history,
    in both dialects of the simulator (BingX: no closed flag; Binance: ``"x": true``)."""
    start, stop = FAULTS[fault]
    async with (
        simulated_streams(ping_interval=5.0, pong_timeout=15.0, exchange=exchange) as (sim, streams),
        trio.open_nursery() as nursery,
    ):
        collector = Collector(streams.klines(exchange, SWAP, "1m"))
        nursery.start_soon(collector.run)
        await trio.sleep(75)
        start(sim)
        await trio.sleep(150)
        stop(sim)
        await collector.wait_for_closed(len(collector.closed) + 3)
        health = streams.health()
        nursery.cancel_scope.cancel()
    assert len(collector.closed) >= 4
    assert_matches_history(sim, collector.closed)
    (topic,) = health.topics
    if fault in ("drop mid-candle", "stall, pings stopped", "pongs ignored by the server", "REST 429 during a drop"):
        assert topic.reconnects >= 1
    if fault.startswith("stall"):
        assert any(e.kind == "StallError" for e in health.connections[0].recent_errors)
    if fault == "1% malformed frames":
        assert sum(topic.parse_errors.values()) >= 1
    if fault in ("duplicates", "out of order"):
        assert topic.duplicate_updates + topic.stale_updates >= 1
    if fault.startswith("REST") and (exchange == "bingx" or "stall" in fault):
        # Binance's x:true push of the candle open during a short drop arrives on the new socket,
        # so it may close with no REST call at all; BingX always confirms over REST.
        assert topic.rest_errors >= 1


async def test_a_long_outage_is_backfilled_over_rest(mock_clock: MockClock) -> None:
    config = StreamConfig(stall_timeout=10.0, reconnect_delay=0.5, fallback_after_failures=1000)
    async with simulated_streams(config) as (sim, streams), trio.open_nursery() as nursery:
        collector = Collector(streams.klines("bingx", SWAP, "1m"))
        nursery.start_soon(collector.run)
        await collector.wait_for_closed(1)
        sim.faults.stall(pings=False)
        await trio.sleep(200)
        assert streams.health().topics[0].mode == "ws"
        sim.faults.unstall()
        await collector.wait_for_closed(len(collector.closed) + 4)
        (topic,) = streams.health().topics
        nursery.cancel_scope.cancel()
    assert topic.backfilled_candles >= 2 and topic.reconnects >= 1
    assert_matches_history(sim, collector.closed)


async def test_malformed_stream_falls_back_to_rest_and_back(mock_clock: MockClock) -> None:
    async with simulated_streams() as (sim, streams), trio.open_nursery() as nursery:
        collector = Collector(streams.klines("bingx", SWAP, "1m"))
        nursery.start_soon(collector.run)
        await trio.sleep(30)
        sim.faults.malformed_rate = 1.0
        await trio.sleep(150)
        during = streams.health()
        sim.faults.malformed_rate = 0.0
        await trio.sleep(60)
        after = streams.health()
        nursery.cancel_scope.cancel()
    assert during.topics[0].mode == "rest" and during.connections[0].use_rest_fallback
    assert during.connections[0].parse_errors and during.topics[0].closed_candles >= 2
    assert after.topics[0].mode == "ws" and not after.connections[0].use_rest_fallback
    assert_matches_history(sim, collector.closed)


async def test_unreachable_socket_falls_back_to_rest(mock_clock: MockClock) -> None:
    async with open_simulator(SimConfig(symbols=("BTC-USDT",), start_ms=START_MS)) as sim:
        unreachable = BingX(ws_url="ws://127.0.0.1:9/swap-market", rest_url=sim.rest_url)
        async with StreamManager.open({"bingx": unreachable}, FAST) as streams, trio.open_nursery() as nursery:
            collector = Collector(streams.klines("bingx", SWAP, "1m"))
            nursery.start_soon(collector.run)
            await collector.wait_for_closed(3)
            health = streams.health()
            nursery.cancel_scope.cancel()
    assert health.topics[0].mode == "rest"
    assert health.connections[0].reconnects > FAST.fallback_after_failures
    assert_matches_history(sim, collector.closed)


class FetchOnlyBingX(BingX):
    """A client with no push stream: only its REST calls are usable."""

    supports_push: ClassVar[bool] = False


async def test_fetch_only_client_is_served_by_a_poller(mock_clock: MockClock) -> None:
    async with open_simulator(SimConfig(symbols=("BTC-USDT",), start_ms=START_MS)) as sim:
        client = FetchOnlyBingX(rest_url=sim.rest_url)
        async with StreamManager.open([client], FAST) as streams, trio.open_nursery() as nursery:
            collector = Collector(streams.klines("bingx", SWAP, "1m", closed_only=True))
            nursery.start_soon(collector.run)
            ticks = streams.ticks("bingx", SWAP)
            with trio.fail_after(60):
                tick = await ticks.receive()
            await collector.wait_for_closed(3)
            health = streams.health()
            nursery.cancel_scope.cancel()
    assert tick.last is not None
    assert health.connections == () and {t.mode for t in health.topics} == {"rest"}
    assert sim.stats.connections_total == 0
    assert collector.updates == 0
    assert_matches_history(sim, collector.closed)


async def test_slow_tick_consumer_keeps_only_the_latest(mock_clock: MockClock) -> None:
    async with simulated_streams(push_interval=0.1) as (_sim, streams):
        ticks = streams.ticks("bingx", SWAP, buffer=2)
        blocked_klines = streams.klines("bingx", SWAP, "1m", policy="drop", buffer=1)
        await trio.sleep(30)
        (kline_topic, tick_topic) = sorted(streams.health().topics, key=lambda t: t.topic.kind)
        newest = [ticks.receive_nowait(), ticks.receive_nowait()]
        await ticks.aclose()
        await blocked_klines.aclose()
    assert tick_topic.dropped > 100 and tick_topic.lag == 2
    assert newest[0].time < newest[1].time
    assert kline_topic.dropped >= 20 and kline_topic.lag == 1


async def test_diagnostics_exist_before_anything_happens(mock_clock: MockClock) -> None:
    async with simulated_streams() as (_sim, streams):
        streams.klines("bingx", SWAP, "5m")
        (connection,) = streams.health().connections
        assert (connection.reconnects, connection.last_reconnect_age, connection.use_rest_fallback) == (0, None, False)
        assert connection.parse_errors == {} and connection.recent_errors == ()
        await trio.sleep(10)
        (connection,) = streams.health().connections
        assert connection.state == "open" and connection.messages > 0
        assert connection.last_message_age is not None and connection.last_message_age < 10


async def test_bad_requests_are_value_errors_naming_the_value(mock_clock: MockClock) -> None:
    async with simulated_streams() as (_sim, streams):
        with pytest.raises(ValueError, match="'BTCUSDT'"):
            streams.klines("bingx", "BTCUSDT", "1m")
        with pytest.raises(ValueError, match="'7m'"):
            streams.klines("bingx", SWAP, "7m")
        with pytest.raises(ValueError, match=r"'kraken'.*bingx"):
            streams.ticks("kraken", SWAP)
        with pytest.raises(ValueError, match="'depth'"):
            streams.ticks("bingx", SWAP, kind="depth")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="mark"):
            streams.ticks("bingx", "BTC/USDT", kind="mark_price")
        with pytest.raises(ValueError, match="buffer size 0"):
            streams.klines("bingx", SWAP, "1m", buffer=0)
        with pytest.raises(ValueError, match="policy 'newest'"):
            streams.ticks("bingx", SWAP, policy="newest")
        assert streams.health().topics == ()  # nothing refused left a topic streaming


async def test_cancelling_with_a_thousand_topics_returns_promptly(mock_clock: MockClock) -> None:
    symbols = tuple(f"C{i}-USDT" for i in range(80))
    config = StreamConfig(confirm_closed_candles=False, subscribe_rate=1000.0)
    async with open_simulator(SimConfig(symbols=symbols, start_ms=START_MS, history_seconds=0)) as sim:
        channels = []
        with trio.CancelScope() as scope:
            async with StreamManager.open({"bingx": sim.exchange()}, config) as streams:
                for symbol in symbols:
                    for timeframe in ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d"):
                        channels.append(streams.klines("bingx", f"{symbol.replace('-', '/')}:USDT", timeframe))
                        if len(channels) == 1000:
                            break
                    if len(channels) == 1000:
                        break
                await trio.sleep(20)
                assert sim.stats.subscriptions == 1000
                assert len(streams.health().connections) == 5
                cancelled_at = trio.current_time()
                scope.cancel()
        assert trio.current_time() - cancelled_at < 1.0
        await trio.sleep(1)
        assert sim.stats.connections_open == 0
        for channel in channels:
            with pytest.raises(trio.EndOfChannel):
                while True:
                    channel.receive_nowait()
    tasks = [t for n in trio.lowlevel.current_task().child_nurseries for t in n.child_tasks]
    assert tasks == []


@pytest.mark.parametrize("transport", ["wsproto", "trio-websocket"])
async def test_both_transports_recover_from_drops(mock_clock: MockClock, transport: str) -> None:
    config = StreamConfig(transport=transport, reconnect_delay=0.5)  # type: ignore[arg-type]
    async with simulated_streams(config) as (sim, streams), trio.open_nursery() as nursery:
        collector = Collector(streams.klines("bingx", SWAP, "1m"))
        nursery.start_soon(collector.run)
        for _ in range(3):
            await trio.sleep(50)
            sim.faults.drop_all()
        await collector.wait_for_closed(len(collector.closed) + 2)
        (connection,) = streams.health().connections
        nursery.cancel_scope.cancel()
    assert connection.reconnects >= 3
    assert_matches_history(sim, collector.closed)


def test_unknown_transport_is_named() -> None:
    with pytest.raises(ValueError, match="'aiohttp'"):
        StreamConfig(transport="aiohttp")  # type: ignore[arg-type]


async def test_a_fetch_only_topic_stops_polling_when_its_last_subscriber_leaves(mock_clock: MockClock) -> None:
    async with open_simulator(SimConfig(symbols=("BTC-USDT",), start_ms=START_MS)) as sim:
        client = FetchOnlyBingX(rest_url=sim.rest_url)
        async with StreamManager.open([client], FAST) as streams:
            ticks = streams.ticks("bingx", SWAP)
            with trio.fail_after(60):
                await ticks.receive()
            ticks.close()
            await trio.sleep(5)
            requests = sim.stats.rest_requests
            await trio.sleep(60)
            assert sim.stats.rest_requests == requests, "no poll after the last subscriber left"
            assert streams.health().topics == ()
