"""A consumer that stops reading: with the ``block`` policy it loses nothing once it resumes, its
lag shows in health, and consumers of other topics on other sockets carry on meanwhile."""

from __future__ import annotations

import dataclasses

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


async def test_a_stopped_consumer_loses_nothing_and_stops_no_other_socket(mock_clock: MockClock) -> None:
    # One socket per topic; small buffers, so the stopped consumer backs up to its socket quickly.
    config = dataclasses.replace(FAST, max_topics_per_socket=1, kline_buffer=16)
    async with simulated_streams(config) as (sim, streams), trio.open_nursery() as nursery:
        stopping = streams.klines("bingx", SWAP, "1m", buffer=4)
        other = Collector(streams.klines("bingx", ETH, "1m"))
        nursery.start_soon(other.run)
        before = await closed_until(stopping, 2)
        others_before = len(other.closed)

        await trio.sleep(PAUSE)  # not reading
        health = {t.topic.symbol: t for t in streams.health().topics}
        sockets = {c.connection_id: c for c in streams.health().connections}
        assert len(sockets) == 2

        # Resume: every candle since, each once, in order, the ones of the pause included.
        due = candle_open_time("1m", sim.now_ms()) - 60_000
        after = await closed_until(stopping, (due - before[-1].open_time) // 60_000)
        nursery.cancel_scope.cancel()

    stopped, flowing = health[SWAP], health[ETH]
    assert stopped.subscribers[0].policy is SlowConsumerPolicy.BLOCK
    assert stopped.lag == 4 and stopped.dropped == 0, "health shows the consumer's backlog"
    assert flowing.lag == 0 and flowing.reconnects == 0, "the other socket never noticed"
    assert len(other.closed) - others_before >= PAUSE // 60 - 1, "the other topic kept closing candles"
    assert_matches_history(sim, other.closed, "ETH-USDT")
    assert_matches_history(sim, before + after, "BTC-USDT")
    assert after[-1].open_time == due
