"""The ``block`` kline subscriber: bounded memory however long it is stuck, and still every closed
candle exactly once, in order, the evicted ones fetched again in the consumer's own task."""

from __future__ import annotations

from decimal import Decimal

import trio
import trio.testing

from tradeloop.models import Kline
from tradeloop.streams.backlog import KlineBacklog

MINUTE = 60_000
T0 = 1_760_000_040_000


def candle(minute: int, *, closed: bool = True, volume: int = 1) -> Kline:
    price = Decimal(100 + minute)
    open_time = T0 + minute * MINUTE
    return Kline("bingx", "BTC/USDT:USDT", "1m", open_time, price, price, price, price, Decimal(volume), closed)


class Exchange:
    """The REST side: the final candles, and a log of what was asked."""

    def __init__(self) -> None:
        self.requests: list[tuple[int, int]] = []

    async def fetch(self, start: int, until: int) -> list[Kline]:
        self.requests.append(((start - T0) // MINUTE, (until - T0) // MINUTE))
        await trio.lowlevel.checkpoint()
        return [candle(m) for m in range((start - T0) // MINUTE, (until - T0) // MINUTE)]


async def test_a_stuck_subscriber_holds_at_most_its_buffer_and_loses_nothing() -> None:
    exchange = Exchange()
    backlog = KlineBacklog("stuck", 8, None, "1m", exchange.fetch)
    for minute in range(1000):
        backlog.offer(candle(minute, closed=False, volume=1))
        backlog.offer(candle(minute, closed=False, volume=2))
        backlog.offer(candle(minute))
    assert len(backlog._items) == 8, "memory stays bounded by the buffer"
    assert backlog.lag == 1000 and backlog.coalesced > 0
    received = [await backlog.receive() for _ in range(1000)]
    assert [k.open_time for k in received] == [T0 + m * MINUTE for m in range(1000)]
    assert all(k.closed for k in received) and received[5] == candle(5)
    assert exchange.requests == [(0, 992)] and backlog.refetched == 992 and backlog.dropped == 0


async def test_evictions_during_the_refetch_are_fetched_next_in_order() -> None:
    exchange = Exchange()
    backlog = KlineBacklog("stuck", 2, None, "1m", exchange.fetch)
    for minute in range(5):
        backlog.offer(candle(minute))
    first = await backlog.receive()  # candles 0-2 were evicted: this fetches them, 3 and 4 stay buffered
    for minute in range(5, 9):  # more candles close while the consumer works through the rows
        backlog.offer(candle(minute))
    rest = [await backlog.receive() for _ in range(8)]
    assert [k.open_time for k in [first, *rest]] == [T0 + m * MINUTE for m in range(9)]


async def test_updates_of_the_open_candle_are_coalesced_and_come_after_its_predecessors() -> None:
    backlog = KlineBacklog("slow", 4, None, "1m", Exchange().fetch)
    backlog.offer(candle(0))
    backlog.offer(candle(1, closed=False, volume=1))
    backlog.offer(candle(1, closed=False, volume=5))
    got = [backlog.receive_nowait(), backlog.receive_nowait()]
    assert [(k.open_time, k.closed, k.volume) for k in got] == [(T0, True, 1), (T0 + MINUTE, False, 5)]
    assert backlog.coalesced == 1


async def test_a_closed_only_subscriber_is_never_sent_updates() -> None:
    backlog = KlineBacklog("closed", 4, lambda k: k.closed, "1m", Exchange().fetch)
    assert backlog.accepts is not None and not backlog.accepts(candle(0, closed=False))


async def test_candles_evicted_while_the_consumer_waits_are_fetched_when_it_wakes() -> None:
    # With a buffer of one, two closes before the waiting consumer runs evict the first: the wake-up
    # must lead to the re-fetch, not back to sleep (which would stall the consumer for good).
    exchange = Exchange()
    backlog = KlineBacklog("waiting", 1, None, "1m", exchange.fetch)
    received: list[Kline] = []

    async def consume() -> None:
        for _ in range(3):
            received.append(await backlog.receive())

    with trio.fail_after(5):  # the stalled consumer of old waited for good
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()
            for minute in range(3):
                backlog.offer(candle(minute))
    assert [k.open_time for k in received] == [T0 + m * MINUTE for m in range(3)]
    assert exchange.requests == [(0, 2)] and backlog.refetched == 2
