"""Engines' side of Redis: consumer groups, topic leases, acknowledgements, gaps, against a real
redis-server and the simulator, in simulated time; and the exactly-once test on Trio and asyncio.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest
import trio
from coredis.tokens import PureToken
from disconnect_scenario import REAL_TIME
from redis_server import SIMULATED_TIMEOUTS, RedisServer, persistent_redis, redis_server  # noqa: F401 (fixtures)
from streams_helpers import START_MS, SWAP, assert_matches_history, simulated_streams
from trio.testing import MockClock

from tradeloop.distributed import RedisError, StreamKey, open_redis
from tradeloop.distributed.client import RedisGroupLost
from tradeloop.distributed.consumer import (
    MarketDataGapError,
    RedisMarketData,
    RedisSourceSettings,
    _KlineStream,
    rendezvous_owner,
)
from tradeloop.distributed.keys import consumer_key
from tradeloop.distributed.publisher import Publisher, PublishSettings, PublishTopics
from tradeloop.exchanges import Exchange
from tradeloop.models import Kline
from tradeloop.sim import SimConfig, Simulator, open_simulator
from tradeloop.streams import StreamManager

ETH = "ETH/USDT:USDT"
TOPICS = [PublishTopics("bingx", [SWAP, ETH], ["1m"], ticks=True)]


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock(autojump_threshold=0.002)


def settings(server: RedisServer, consumer: str = "engine-a", **options: object) -> RedisSourceSettings:
    values: dict[str, object] = {
        "read_wait": 0,
        "poll_interval": 2.0,
        "lease_ttl": 6.0,
        "command_timeout": 3600.0,  # simulated: see SIMULATED_TIMEOUTS
        "connect_timeout": 3600.0,
    }
    values.update(options)
    return RedisSourceSettings(server.url, consumer=consumer, **values)  # type: ignore[arg-type]


@asynccontextmanager
async def collector(server: RedisServer, backfill: int = 3) -> AsyncIterator[Simulator]:
    """The simulator with a collector publishing its candles and ticks to ``server``."""
    async with (
        simulated_streams(push_interval=5.0) as (sim, streams),
        open_redis(server.url, timeouts=SIMULATED_TIMEOUTS) as redis,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(Publisher(redis, streams, PublishSettings(backfill=backfill)).run, TOPICS)
        yield sim
        nursery.cancel_scope.cancel()


class Processor:
    """A consumer that processes candles (records them, taking ``seconds_each``) and reports each
    one processed; it skips, as the engine's strategies do, candles its source handed over.
    """

    def __init__(self, seconds_each: float = 0.0) -> None:
        self.processed: dict[str, list[Kline]] = {SWAP: [], ETH: []}
        self.seconds_each = seconds_each
        self.skipped = 0

    async def run(self, source: RedisMarketData, symbol: str, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with source.klines("bingx", symbol, "1m") as candles:
            task_status.started()
            async for kline in candles:
                await anyio.sleep(self.seconds_each)
                # Check, process, report in one step (no await between), as the engine's strategies do.
                if not source.should_process(kline):
                    self.skipped += 1
                    continue
                self.processed[symbol].append(kline)
                source.mark_processed(kline)


async def consume_for(
    seconds: float,
    processor: Processor,
    options: RedisSourceSettings,
    symbols: tuple[str, ...] = (SWAP, ETH),
    exchanges: Mapping[str, Exchange] | None = None,
) -> None:
    """An engine reading ``symbols`` for ``seconds``; with ``exchanges``, gaps are filled over REST."""
    async with RedisMarketData.open(options, exchanges) as source, anyio.create_task_group() as tasks:
        for symbol in symbols:
            await tasks.start(processor.run, source, symbol)
        await anyio.sleep(seconds)
        tasks.cancel_scope.cancel()


async def test_a_consumer_killed_mid_batch_resumes_after_its_last_ack(
    mock_clock: MockClock,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    processor = Processor()
    async with collector(redis_server) as sim:
        await trio.sleep(5 * 60)  # five candles wait in Redis before the first engine starts
        for run in range(4):
            await consume_for(97 + run * 31, processor, settings(redis_server))
            await trio.sleep(45)  # the engine is down; the collector keeps publishing
        await consume_for(120, processor, settings(redis_server))
    for symbol, symbol_id in ((SWAP, "BTC-USDT"), (ETH, "ETH-USDT")):
        assert_matches_history(sim, processor.processed[symbol], symbol_id)
        assert len(processor.processed[symbol]) >= 12


async def test_rendezvous_spreads_streams_and_moves_only_a_leavers() -> None:
    streams = [f"stream-{n}" for n in range(200)]
    members = ["a", "b", "c"]
    owners = {stream: rendezvous_owner(members, stream) for stream in streams}
    assert all(sum(owner == member for owner in owners.values()) > 40 for member in members)
    after = {stream: rendezvous_owner(["a", "b"], stream) for stream in streams}
    assert all(after[s] == owners[s] for s in streams if owners[s] != "c")
    assert rendezvous_owner([], "stream") is None


async def test_an_engine_that_loses_and_retakes_its_lease_processes_each_candle_once(
    mock_clock: MockClock,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    # Found by an outside audit: candles read but unprocessed when the lease was lost waited in
    # the subscription; retaking the stream delivered them again, and both copies were processed.
    slow = Processor(seconds_each=100.0)  # falls behind: read candles wait in the subscription
    lease = str(StreamKey.kline("bingx", SWAP, "1m").derived("lease", "tradeloop"))
    async with (
        collector(redis_server) as sim,
        open_redis(redis_server.url, timeouts=SIMULATED_TIMEOUTS) as redis,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(consume_for, 30 * 60, slow, settings(redis_server, "a"), (SWAP,))
        await trio.sleep(12 * 60)
        await redis.delete([lease])  # what expiry does (a stalled engine, Redis away past lease_ttl)
        await trio.sleep(20 * 60)
    assert_matches_history(sim, slow.processed[SWAP])
    assert slow.skipped > 0  # the stale copies were there, and refused


async def test_a_collectors_start_backfill_is_history_to_a_group_that_began_at_an_empty_stream(
    mock_clock: MockClock,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    # Found by an outside audit: an engine started before any collector traded the collector's
    # start backfill (with the default 1000 candles, 16 hours of 1m prices) as live candles.
    processor = Processor()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume_for, 10 * 60, processor, settings(redis_server), (SWAP,))
        await trio.sleep(30)  # the engine's group exists; its stream is still empty
        async with collector(redis_server, backfill=50) as sim:
            joined_ms = sim.now_ms()
            await trio.sleep(5 * 60)
    candles = processor.processed[SWAP]
    assert_matches_history(sim, candles)  # consecutive, the exchange's values
    assert 4 <= len(candles) <= 6 and candles[0].open_time >= joined_ms - 60_000, [k.open_time for k in candles]
    # The 50 skipped entries are acknowledged a read batch at a time, not one round trip each
    # (with a Redis 1 ms away, a default backfill of 1000 took a second to skip).
    async with open_redis(redis_server.url, timeouts=SIMULATED_TIMEOUTS) as redis:
        stats = await redis.info("commandstats")
    assert stats["cmdstat_xack"]["calls"] <= len(candles) + 5, stats["cmdstat_xack"]


async def test_an_engine_stopped_while_skipping_history_skips_the_rest_when_it_returns(
    mock_clock: MockClock,
    redis_server: RedisServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found by an outside audit of the history rule: stopped part-way through the backfill, the
    # engine came back with a position (pending entries, or the last delivered one) and traded
    # the rest of the backfill as live.
    processor = Processor()
    await consume_for(5, Processor(), settings(redis_server), (SWAP,))  # the group exists; its stream is empty
    async with collector(redis_server, backfill=50) as sim:
        joined_ms = sim.now_ms()
        await trio.sleep(1)
        acknowledge = _KlineStream._ack_ids
        async with RedisMarketData.open(settings(redis_server, batch=10)) as source, anyio.create_task_group() as tasks:

            async def stop_after_15(stream: _KlineStream, ids: Sequence[bytes]) -> None:
                await acknowledge(stream, ids)
                if stream.counters.history >= 15:
                    tasks.cancel_scope.cancel()  # the engine stops where it stands, mid-backfill
                    await anyio.sleep(1)

            monkeypatch.setattr(_KlineStream, "_ack_ids", stop_after_15)
            await tasks.start(processor.run, source, SWAP)
            await anyio.sleep(60)
        monkeypatch.setattr(_KlineStream, "_ack_ids", acknowledge)
        await consume_for(3 * 60, processor, settings(redis_server, batch=10), (SWAP,))
    candles = processor.processed[SWAP]
    assert_matches_history(sim, candles)
    assert candles and candles[0].open_time >= joined_ms - 60_000, [k.open_time for k in candles]


def loser_and_winner(symbol: str) -> tuple[str, str]:
    """Engines "a" and "b", the one that loses ``symbol``'s 1m stream to the other first."""
    key = str(StreamKey.kline("bingx", symbol, "1m"))
    return ("b", "a") if rendezvous_owner(["a", "b"], key) == "a" else ("a", "b")


async def test_a_candle_is_not_processed_while_its_engine_hands_the_stream_over(
    mock_clock: MockClock,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    # Found by an outside audit: while the hand-over awaited its last acknowledgement (a slow
    # Redis), the strategy went on processing candles the next owner then processed again.
    loser, winner = loser_and_winner(SWAP)
    first, second = Processor(seconds_each=0.5), Processor()

    async def consume_over_slow_redis(seconds: float) -> None:
        async with RedisMarketData.open(settings(redis_server, loser)) as source, anyio.create_task_group() as tasks:
            evaluate = source.redis.eval

            async def slow_eval(*args: Any, **kwargs: Any) -> Any:
                await anyio.sleep(1.0)  # every heartbeat, acknowledgement and release
                return await evaluate(*args, **kwargs)

            source.redis.eval = slow_eval  # type: ignore[method-assign]
            await tasks.start(first.run, source, SWAP)
            await anyio.sleep(seconds)
            tasks.cancel_scope.cancel()

    async with collector(redis_server) as sim, trio.open_nursery() as nursery:
        await consume_for(30, Processor(), settings(redis_server, loser), (SWAP,))  # the group exists
        await trio.sleep(40 * 60)  # 40 candles wait
        nursery.start_soon(consume_over_slow_redis, 10 * 60)
        await trio.sleep(7)  # the first engine works through its backlog, a candle per 0.5 s
        await consume_for(5 * 60, second, settings(redis_server, winner), (SWAP,))  # takes the stream
    by_first = {k.open_time for k in first.processed[SWAP]}
    assert not by_first & {k.open_time for k in second.processed[SWAP]}, "processed by both engines"
    assert_matches_history(sim, sorted(first.processed[SWAP] + second.processed[SWAP], key=lambda k: k.open_time))


async def test_candles_filled_over_rest_count_as_processed_across_a_restart(
    mock_clock: MockClock,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    # Found by an outside audit: REST-filled candles had no entry to acknowledge and did not move
    # the group's progress, so an engine stopped part-way through them filled and traded them again.
    processor = Processor()
    async with collector(redis_server) as sim, open_redis(redis_server.url, timeouts=SIMULATED_TIMEOUTS) as redis:
        await consume_for(3 * 60, processor, settings(redis_server), (SWAP,))
        await trio.sleep(10 * 60)  # the engine is down, and the stream is trimmed meanwhile
        await redis.xtrim(str(StreamKey.kline("bingx", SWAP, "1m")), PureToken.MAXLEN, 2)
        processor.seconds_each = 20.0
        await consume_for(90, processor, settings(redis_server), (SWAP,), {"bingx": sim.exchange()})  # stopped mid-gap
        processor.seconds_each = 0.0
        await consume_for(5 * 60, processor, settings(redis_server), (SWAP,), {"bingx": sim.exchange()})
    assert_matches_history(sim, processor.processed[SWAP])


async def test_a_stream_handed_over_mid_gap_gives_each_rest_candle_to_one_engine(
    mock_clock: MockClock,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    first_name, second_name = loser_and_winner(SWAP)
    first, second = Processor(seconds_each=20.0), Processor()  # the second engine wins the stream
    async with (
        collector(redis_server) as sim,
        open_redis(redis_server.url, timeouts=SIMULATED_TIMEOUTS) as redis,
        trio.open_nursery() as nursery,
    ):
        await consume_for(3 * 60, Processor(), settings(redis_server, first_name), (SWAP,))
        await trio.sleep(10 * 60)
        await redis.xtrim(str(StreamKey.kline("bingx", SWAP, "1m")), PureToken.MAXLEN, 2)
        with_rest = {"bingx": sim.exchange()}
        nursery.start_soon(consume_for, 8 * 60, first, settings(redis_server, first_name), (SWAP,), with_rest)
        await trio.sleep(60)  # the first engine is part-way through the candles filled over REST
        await consume_for(6 * 60, second, settings(redis_server, second_name), (SWAP,), with_rest)
    both = sorted(first.processed[SWAP] + second.processed[SWAP], key=lambda k: k.open_time)
    assert_matches_history(sim, both)


async def test_two_engines_share_streams_and_fail_over(mock_clock: MockClock, redis_server: RedisServer) -> None:  # noqa: F811
    first, second = Processor(), Processor()
    symbols = {rendezvous_owner(["a", "b"], str(StreamKey.kline("bingx", s, "1m"))) for s in (SWAP, ETH)}
    assert symbols == {"a", "b"}, "the two names must split the two streams for this test"
    async with collector(redis_server) as sim, trio.open_nursery() as nursery:
        nursery.start_soon(consume_for, 12 * 60, first, settings(redis_server, "a"))
        await trio.sleep(3 * 60)
        await consume_for(4 * 60, second, settings(redis_server, "b"))  # b joins, then leaves
        await trio.sleep(6 * 60)
    for symbol, symbol_id in ((SWAP, "BTC-USDT"), (ETH, "ETH-USDT")):
        both = sorted(first.processed[symbol] + second.processed[symbol], key=lambda k: k.open_time)
        assert_matches_history(sim, both, symbol_id)
        assert second.processed[symbol] or first.processed[symbol]
    assert any(second.processed.values()), "the second engine took over no stream"


async def test_a_trimmed_gap_is_filled_from_rest_or_raised(mock_clock: MockClock, redis_server: RedisServer) -> None:  # noqa: F811
    processor = Processor()
    key = str(StreamKey.kline("bingx", SWAP, "1m"))
    async with collector(redis_server) as sim, open_redis(redis_server.url, timeouts=SIMULATED_TIMEOUTS) as redis:
        await consume_for(3 * 60, processor, settings(redis_server), (SWAP,))
        await trio.sleep(5 * 60)
        await redis.xtrim(key, PureToken.MAXLEN, 2)
        with pytest.raises(MarketDataGapError, match="missing; configure exchange 'bingx'"):
            await consume_for(3 * 60, Processor(), settings(redis_server), (SWAP,))
        async with RedisMarketData.open(settings(redis_server), {"bingx": sim.exchange()}) as source:
            async with trio.open_nursery() as nursery:
                await nursery.start(processor.run, source, SWAP)
                await trio.sleep(3 * 60)
                nursery.cancel_scope.cancel()
            assert source.health().topics[0].backfilled_candles >= 3
    assert_matches_history(sim, processor.processed[SWAP])


async def test_redis_restarts_lose_and_repeat_nothing(mock_clock: MockClock, persistent_redis: RedisServer) -> None:  # noqa: F811
    processor = Processor()
    async with collector(persistent_redis) as sim, trio.open_nursery() as nursery:
        nursery.start_soon(consume_for, 10 * 60, processor, settings(persistent_redis))
        for _ in range(3):
            await trio.sleep(2 * 60 + 13)
            persistent_redis.restart()  # SIGKILL; the AOF (fsync always) brings streams and groups back
    for symbol, symbol_id in ((SWAP, "BTC-USDT"), (ETH, "ETH-USDT")):
        assert_matches_history(sim, processor.processed[symbol], symbol_id)
        assert len(processor.processed[symbol]) >= 8


async def consume_while_redis_loses_its_data(
    server: RedisServer, processor: Processor, symbols: tuple[str, ...], minutes: float, *, batch: int = 100,
    outage: float = 0.0,
) -> Simulator:
    """An engine reading ``symbols`` for ``minutes`` (gaps filled over REST) while the Redis
    ``server``, which keeps no AOF, goes away 3 min 13 s in for ``outage`` seconds and comes back
    empty: streams, groups, leases and progress gone. Returns the simulator the candles came from."""
    async with collector(server) as sim, trio.open_nursery() as nursery:
        with_rest = {"bingx": sim.exchange()}
        nursery.start_soon(consume_for, minutes * 60, processor, settings(server, batch=batch), symbols, with_rest)
        await trio.sleep(3 * 60 + 13)
        server.stop()
        await trio.sleep(outage)
        server.start()
    return sim


async def two_engines_while_redis_loses_its_data(
    server: RedisServer,
    symbol: str,
    *,
    minutes: tuple[float, float],
    b_joins_after: float,
    lost_after: float,
    outage: float,
) -> tuple[Simulator, list[Kline]]:
    """Engines a and b reading ``symbol`` for ``minutes`` each (gaps filled over REST), b joining
    ``b_joins_after`` seconds after a; ``lost_after`` seconds later the Redis ``server`` (no AOF)
    goes away for ``outage`` seconds and comes back empty. Returns the simulator and the candles
    both processed, by open time."""
    first, second = Processor(), Processor()
    async with collector(server) as sim, trio.open_nursery() as nursery:
        with_rest = {"bingx": sim.exchange()}
        nursery.start_soon(consume_for, minutes[0] * 60, first, settings(server, "a"), (symbol,), with_rest)
        await trio.sleep(b_joins_after)
        nursery.start_soon(consume_for, minutes[1] * 60, second, settings(server, "b"), (symbol,), with_rest)
        await trio.sleep(lost_after)
        server.stop()
        await trio.sleep(outage)
        server.start()
    return sim, sorted(first.processed[symbol] + second.processed[symbol], key=lambda k: k.open_time)


async def test_a_redis_restarted_without_its_data_loses_and_repeats_nothing(
    mock_clock: MockClock,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    # Found by an outside look: with Redis restarted empty, the engine owning the streams ended
    # with NOGROUP. It now recreates the group and goes on after its last candle, filling the
    # candles Redis lost over REST.
    processor = Processor()
    sim = await consume_while_redis_loses_its_data(redis_server, processor, (SWAP, ETH), 8)
    for symbol, symbol_id in ((SWAP, "BTC-USDT"), (ETH, "ETH-USDT")):
        assert_matches_history(sim, processor.processed[symbol], symbol_id)
        assert len(processor.processed[symbol]) >= 7


async def test_candles_in_a_buffer_when_redis_loses_its_data_are_processed(
    mock_clock: MockClock,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    # Found by a review: the group recovered from the last candle handed on, not the last one
    # processed, and the hand-over that follows a lost lease refused the buffered copies.
    processor = Processor(seconds_each=50.0)  # slower than a candle a minute: a backlog builds
    sim = await consume_while_redis_loses_its_data(redis_server, processor, (SWAP,), 14, batch=1)
    assert_matches_history(sim, processor.processed[SWAP])
    assert len(processor.processed[SWAP]) >= 8


def slow_to_notice_a_lost_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """The read loop learns 5 s late that Redis lost the group (busy elsewhere: a full buffer, a
    REST fill), so the lease heartbeat notices first."""
    read_group = _KlineStream._read_group

    async def slow_to_notice(stream: _KlineStream, position: bytes, *, wait: bool) -> list[Any]:
        try:
            return await read_group(stream, position, wait=wait)
        except RedisGroupLost:
            await trio.sleep(5)
            raise

    monkeypatch.setattr(_KlineStream, "_read_group", slow_to_notice)


async def test_a_lost_group_noticed_first_by_the_heartbeat_loses_nothing(
    mock_clock: MockClock,
    redis_server: RedisServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found by a review: when the lease heartbeat noticed the data loss before the read loop did,
    # the next tenure created the group at the stream's end and skipped the outage's candles.
    slow_to_notice_a_lost_group(monkeypatch)
    processor = Processor()
    sim = await consume_while_redis_loses_its_data(redis_server, processor, (SWAP,), 10, outage=150)
    assert_matches_history(sim, processor.processed[SWAP])
    assert len(processor.processed[SWAP]) >= 8


async def test_redis_lost_before_a_restarted_engine_processed_anything_loses_nothing(
    mock_clock: MockClock,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    # Found by a second review: recovery knew only what this process had acknowledged, not the
    # progress the group had when this engine took the stream.
    processor = Processor()
    async with collector(redis_server) as sim, trio.open_nursery() as nursery:
        with_rest = {"bingx": sim.exchange()}
        await consume_for(3 * 60, processor, settings(redis_server), (SWAP,), with_rest)
        await trio.sleep(2 * 60)  # the engine is down: two candles wait in the stream
        processor.seconds_each = 30.0  # the first candle takes 30 s
        nursery.start_soon(consume_for, 6 * 60, processor, settings(redis_server), (SWAP,), with_rest)
        await trio.sleep(10)
        redis_server.restart()  # no AOF
    assert_matches_history(sim, processor.processed[SWAP])


async def test_an_engine_that_handed_a_stream_on_does_not_rewind_it_after_redis_lost_its_data(
    mock_clock: MockClock,
    redis_server: RedisServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found by a second review: engine a remembered the candle it processed before handing the
    # stream to b; after Redis lost its data, a took the stream and wrote that as the group's
    # progress, and b processed six candles a second time.
    slow_to_notice_a_lost_group(monkeypatch)
    sim, both = await two_engines_while_redis_loses_its_data(
        redis_server, ETH, minutes=(20, 17), b_joins_after=3 * 60, lost_after=6 * 60 + 13, outage=30
    )
    assert_matches_history(sim, both, "ETH-USDT")


@pytest.mark.parametrize("offset", [0.3, 1.3])
async def test_a_stream_its_owner_keeps_loses_nothing_when_redis_loses_its_data(
    mock_clock: MockClock,
    redis_server: RedisServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    offset: float,
) -> None:
    # Found by a third review: Redis came back with an empty member set, so the standby engine
    # that heartbeat first took the stream for a moment, starting at the stream's end, and the
    # candle that closed during the outage was lost although the owner never changed. Engines
    # now leave the position they processed as the group's progress when they let a stream go.
    slow_to_notice_a_lost_group(monkeypatch)
    sim, both = await two_engines_while_redis_loses_its_data(
        # b's heartbeats out of phase with a's; a candle closes while Redis is away
        redis_server, SWAP, minutes=(14, 14), b_joins_after=offset, lost_after=4 * 60 + 13, outage=50
    )
    assert_matches_history(sim, both)


async def test_an_engine_by_a_name_another_running_engine_has_is_refused(
    mock_clock: MockClock,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    # Found by an outside look: a copied config (same consumer name, another journal) ran beside
    # the first engine; each processed part of the candles, and both traded on them.
    async with RedisMarketData.open(settings(redis_server)):
        started = trio.current_time()
        with pytest.raises(RedisError, match="consumer name 'engine-a' of group 'tradeloop' is in use by another"):
            async with RedisMarketData.open(settings(redis_server)):
                pytest.fail("two engines by one name")
        assert trio.current_time() - started >= 2 * 6.0  # it waited out what a killed engine leaves
    async with RedisMarketData.open(settings(redis_server)):  # the name was released at once
        pass


async def test_an_engine_restarted_after_a_kill_takes_its_name_once_it_expires(
    mock_clock: MockClock,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    key = consumer_key("tradeloop", "engine-a")
    async with open_redis(redis_server.url, timeouts=SIMULATED_TIMEOUTS) as redis, trio.open_nursery() as nursery:
        await redis.set(key, "the killed engine's token", px=6000)

        async def expire_in_simulated_time() -> None:  # Redis counts the key's 6 s in real time
            await trio.sleep(6.0)
            await redis.delete([key])

        nursery.start_soon(expire_in_simulated_time)
        started = trio.current_time()
        async with RedisMarketData.open(settings(redis_server)):
            assert 6.0 <= trio.current_time() - started < 2 * 6.0


async def test_a_stream_handed_over_with_a_backlog_is_processed_once(
    mock_clock: MockClock,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    slow, fresh = Processor(seconds_each=100.0), Processor()  # slow falls behind by 40 s a candle
    async with collector(redis_server) as sim, trio.open_nursery() as nursery:
        nursery.start_soon(consume_for, 30 * 60, slow, settings(redis_server, "a"))
        await trio.sleep(12 * 60)  # a holds both streams, with a backlog of read, unprocessed candles
        await consume_for(16 * 60, fresh, settings(redis_server, "b"))  # b takes one of them
    assert slow.skipped > 0, "no candle was handed over unprocessed"
    for symbol, symbol_id in ((SWAP, "BTC-USDT"), (ETH, "ETH-USDT")):
        both = sorted(slow.processed[symbol] + fresh.processed[symbol], key=lambda k: k.open_time)
        assert_matches_history(sim, both, symbol_id)
    assert any(fresh.processed.values())


# --- the same guarantees on Trio and asyncio -------------------------------------------------------
# Real time: the simulator in a Trio thread of its own (sim_thread), a fast market (a one-minute
# candle every half second) and short leases, so each run lasts about three seconds.

FAST_MARKET = SimConfig(symbols=("BTC-USDT", "ETH-USDT"), start_ms=START_MS, speed=120.0, push_interval=0.2, seed=7)


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def real_time_settings(server: RedisServer, consumer: str = "engine-a") -> RedisSourceSettings:
    return RedisSourceSettings(
        server.url, consumer=consumer, read_wait=0.05, lease_ttl=0.6, connect_timeout=5.0, command_timeout=5.0
    )


@asynccontextmanager
async def real_time_collector(server: RedisServer, exchange: Exchange) -> AsyncIterator[None]:
    """A collector on the running backend, publishing the simulator's candles and ticks to ``server``."""
    async with (
        StreamManager.open([exchange], REAL_TIME) as streams,
        open_redis(server.url) as redis,
        anyio.create_task_group() as tasks,
    ):
        await tasks.start(Publisher(redis, streams, PublishSettings(backfill=3)).run, TOPICS)
        yield
        tasks.cancel_scope.cancel()


@pytest.mark.anyio
async def test_consumers_killed_in_turn_process_each_candle_once_on_every_backend(
    anyio_backend: str,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    processor = Processor()
    async with open_simulator(FAST_MARKET) as simulator:
        async with real_time_collector(redis_server, simulator.exchange()):
            await anyio.sleep(0.5)  # a candle waits in Redis before the first engine starts
            for run in range(2):
                # Killed wherever it is: between reading and processing, its reads stay pending.
                await consume_for(0.7 + run * 0.2, processor, real_time_settings(redis_server))
                await anyio.sleep(0.5)  # the engine is down; the collector keeps publishing
            await consume_for(0.8, processor, real_time_settings(redis_server))
        for symbol, symbol_id in ((SWAP, "BTC-USDT"), (ETH, "ETH-USDT")):
            candles = processor.processed[symbol]
            assert_matches_history(simulator, candles, symbol_id)
            assert len(candles) >= 4
