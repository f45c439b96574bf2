"""The collector: the simulator's candles and ticks into a real redis-server, in simulated time."""

from __future__ import annotations

import pytest
import trio
from redis_server import RedisServer, persistent_redis, redis_server  # noqa: F401 (fixtures)
from streams_helpers import SWAP, assert_matches_history, simulated_streams
from trio.testing import MockClock

from tradeloop.distributed import StreamKey, open_redis
from tradeloop.distributed.client import RedisClient
from tradeloop.distributed.keys import collector_key, decode_kline, decode_tick
from tradeloop.distributed.publisher import Publisher, PublishSettings, PublishTopics
from tradeloop.models import Kline
from tradeloop.streams import StreamManager

KEY = StreamKey.kline("bingx", SWAP, "1m")
TOPICS = [PublishTopics("bingx", [SWAP], ["1m"], ticks=True)]


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock(autojump_threshold=0.005)


async def published_candles(redis: RedisClient, key: StreamKey = KEY) -> list[Kline]:
    entries = await redis.xrange(str(key))
    candles = [decode_kline(dict(entry.field_values)) for entry in entries]
    assert [entry.identifier for entry in entries] == [f"{k.open_time}-0".encode() for k in candles]
    return candles


async def run_for(seconds: float, *publishers: tuple[Publisher, list[PublishTopics]]) -> None:
    async with trio.open_nursery() as nursery:
        for publisher, topics in publishers:
            await nursery.start(publisher.run, topics)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()


async def test_a_restarted_collector_backfills_its_gap(mock_clock: MockClock, redis_server: RedisServer) -> None:  # noqa: F811
    async with simulated_streams() as (sim, streams), open_redis(redis_server.url) as redis:
        first = Publisher(redis, streams, PublishSettings(backfill=3, collector="c1", health_interval=1.0))
        await run_for(4 * 60, (first, TOPICS))
        health = await redis.hgetall(collector_key("c1"))
        assert int(health[b"klines"]) == first.stats.klines
        before = await published_candles(redis)
        await trio.sleep(3 * 60)  # the collector is down for three candles
        second = Publisher(redis, streams, PublishSettings(backfill=10))
        await run_for(3 * 60, (second, TOPICS))
        candles = await published_candles(redis)
        assert_matches_history(sim, candles)
        assert candles[: len(before)] == before
        assert second.stats.backfilled >= 3
        assert first.stats.klines == len(before) and first.stats.klines + second.stats.klines == len(candles)
        ticks = await redis.xrange(str(StreamKey.tick("bingx", SWAP, "ticker")))
        assert len(ticks) == first.stats.ticks + second.stats.ticks > 0
        assert decode_tick(dict(ticks[-1].field_values)).symbol == SWAP


async def test_two_collectors_publish_each_candle_once(mock_clock: MockClock, redis_server: RedisServer) -> None:  # noqa: F811
    async with simulated_streams() as (sim, streams), open_redis(redis_server.url) as redis:
        # A second manager: two collectors with their own sockets, as for redundancy.
        async with StreamManager.open({"bingx": sim.exchange()}, streams.config) as other:
            one = Publisher(redis, streams, PublishSettings(backfill=2))
            two = Publisher(redis, other, PublishSettings(backfill=2))
            candle_topics = [PublishTopics("bingx", [SWAP], ["1m"])]
            await run_for(5 * 60, (one, candle_topics), (two, candle_topics))
        candles = await published_candles(redis)
        assert_matches_history(sim, candles)
        assert one.stats.klines + two.stats.klines == len(candles)
        assert one.stats.duplicates + two.stats.duplicates >= len(candles) - 2


async def test_redis_restart_loses_no_candle(mock_clock: MockClock, persistent_redis: RedisServer) -> None:  # noqa: F811
    async with simulated_streams() as (sim, streams), open_redis(persistent_redis.url) as redis:
        publisher = Publisher(redis, streams, PublishSettings(backfill=2))
        async with trio.open_nursery() as nursery:
            await nursery.start(publisher.run, TOPICS)
            for _ in range(3):
                await trio.sleep(90)
                persistent_redis.restart()  # SIGKILL; the AOF (fsync always) brings the streams back
            await trio.sleep(90)
            nursery.cancel_scope.cancel()
        candles = await published_candles(redis)
        assert_matches_history(sim, candles)
        assert len(candles) >= 2 + 5
        assert publisher.stats.redis_retries > 0
