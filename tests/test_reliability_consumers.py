"""A consumer that stops reading, or reads slowly: with the ``block`` policy it loses nothing once
it resumes (what outgrew its buffer is fetched again over REST), its lag shows in health, and every
other consumer, on the same socket too, carries on meanwhile: the socket never waits on a consumer."""

from __future__ import annotations

import itertools

import pytest
import trio
from streams_helpers import FAST, SWAP, Collector, assert_matches_history, simulated_streams
from trio.testing import MockClock

from tradeloop.models import Kline
from tradeloop.streams import SlowConsumerPolicy, Subscription
from tradeloop.symbols import candle_open_time

ETH = "ETH/USDT:USDT"
PAUSE = 10 * 60.0


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock(autojump_threshold=0.002)


async def closed_until(channel: Subscription[Kline], count: int) -> list[Kline]:
    """Read ``channel`` until ``count`` closed candles came (bounded in simulated time)."""
    closed: list[Kline] = []
    with trio.fail_after(PAUSE):
        async for kline in channel:
            if kline.closed:
                closed.append(kline)
                if len(closed) == count:
                    break
    return closed


async def test_a_stuck_block_consumer_harms_no_other_topic_on_its_socket(mock_clock: MockClock) -> None:
    # Both topics on one socket; the stuck consumer's buffer holds 4 closed candles of the 10 that
    # close while it sleeps, so the rest must come back over REST when it resumes.
    async with simulated_streams(FAST) as (sim, streams), trio.open_nursery() as nursery:
        stuck = streams.klines("bingx", SWAP, "1m", buffer=4, name="stuck")
        other = Collector(streams.klines("bingx", ETH, "1m", name="other"))
        ticks = streams.ticks("bingx", ETH, name="eth-ticks")
        tick_times: list[float] = []

        async def read_ticks() -> None:
            async for _ in ticks:
                tick_times.append(trio.current_time())

        nursery.start_soon(other.run)
        nursery.start_soon(read_ticks)
        before = await closed_until(stuck, 2)
        others_before = len(other.closed)
        paused_at = trio.current_time()

        await trio.sleep(PAUSE)  # not reading
        health = streams.health()
        topics = {(t.topic.kind, t.topic.symbol): t for t in health.topics}

        # Resume: every candle since, each once, in order, the evicted ones included.
        due = candle_open_time("1m", sim.now_ms()) - 60_000
        after = await closed_until(stuck, (due - before[-1].open_time) // 60_000)
        nursery.cancel_scope.cancel()

    (socket,) = health.connections
    assert socket.reconnects == 0, "the socket never waited on the stuck consumer"
    stopped = topics[("kline", SWAP)]
    (subscriber,) = stopped.subscribers
    assert (subscriber.name, subscriber.policy) == ("stuck", SlowConsumerPolicy.BLOCK)
    assert subscriber.lag >= PAUSE // 60 - 1, "health shows the consumer's backlog"
    assert stuck.refetched > 0 and stuck.dropped == 0, "evicted candles were fetched again, none lost"
    during = [b - a for a, b in itertools.pairwise([paused_at, *[t for t in tick_times if t >= paused_at]])]
    assert during and max(during) <= 5.0, "ticks of the same socket kept flowing"
    assert len(other.closed) - others_before >= PAUSE // 60 - 1, "the other topic kept closing candles"
    assert_matches_history(sim, other.closed, "ETH-USDT")
    assert_matches_history(sim, before + after, "BTC-USDT")
    assert after[-1].open_time == due


async def test_a_slow_block_consumer_does_not_slow_the_others(mock_clock: MockClock) -> None:
    async with simulated_streams(FAST) as (sim, streams), trio.open_nursery() as nursery:
        slow = streams.klines("bingx", SWAP, "1m", buffer=2, name="slow")
        fast = Collector(streams.klines("bingx", SWAP, "1m", name="fast"))
        nursery.start_soon(fast.run)
        slow_closed: list[Kline] = []

        async def read_slowly() -> None:
            async for kline in slow:
                if kline.closed:
                    slow_closed.append(kline)
                await trio.sleep(150.0)  # two and a half candles per item

        nursery.start_soon(read_slowly)
        await fast.wait_for_closed(10)
        fast_done = trio.current_time()
        with trio.fail_after(2 * 3600):
            while len(slow_closed) < 10:  # noqa: ASYNC110 - polling simulated time is free
                await trio.sleep(60)
        nursery.cancel_scope.cancel()
    assert fast_done < 12 * 60, "the fast consumer saw each candle as it closed"
    assert_matches_history(sim, fast.closed, "BTC-USDT")
    assert_matches_history(sim, slow_closed[:10], "BTC-USDT")
