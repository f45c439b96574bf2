"""Fan-out policies, with real Trio memory channels."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tradeloop.streams import SlowConsumerPolicy
from tradeloop.streams.fanout import FanOut


async def test_every_subscriber_gets_every_item_in_order() -> None:
    fanout: FanOut[int] = FanOut()
    channels = [fanout.subscribe("block", 100) for _ in range(3)]
    for i in range(50):
        await fanout.publish(i)
    for channel in channels:
        assert [channel.receive_nowait() for _ in range(50)] == list(range(50))


async def test_block_policy_waits_for_the_consumer_and_loses_nothing() -> None:
    fanout: FanOut[int] = FanOut()
    channel = fanout.subscribe(SlowConsumerPolicy.BLOCK, 2)
    received: list[int] = []

    async def slow_consumer() -> None:
        async for item in channel:
            received.append(item)
            await trio.sleep(0.01)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow_consumer)
        for i in range(20):
            await fanout.publish(i)
        fanout.close()
    assert received == list(range(20))


async def test_latest_policy_keeps_the_newest_items() -> None:
    fanout: FanOut[int] = FanOut()
    channel = fanout.subscribe("latest", 3)
    for i in range(10):
        await fanout.publish(i)
    assert [channel.receive_nowait() for _ in range(3)] == [7, 8, 9]
    (health,) = fanout.health()
    assert health.dropped == 7
    assert health.lag == 0


async def test_drop_policy_drops_new_items_and_counts_them() -> None:
    fanout: FanOut[int] = FanOut()
    channel = fanout.subscribe("drop", 3)
    for i in range(10):
        await fanout.publish(i)
    (health,) = fanout.health()
    assert (health.lag, health.dropped, health.delivered) == (3, 7, 3)
    assert [channel.receive_nowait() for _ in range(3)] == [0, 1, 2]


async def test_a_slow_latest_consumer_does_not_hold_up_a_fast_one() -> None:
    fanout: FanOut[int] = FanOut()
    fast = fanout.subscribe("block", 1000)
    fanout.subscribe("latest", 1)
    for i in range(500):
        await fanout.publish(i)
    assert fast.receive_nowait() == 0
    assert len(fanout) == 2


async def test_filter_selects_what_a_subscriber_receives() -> None:
    fanout: FanOut[int] = FanOut()
    evens = fanout.subscribe("block", 10, accepts=lambda i: i % 2 == 0)
    for i in range(6):
        await fanout.publish(i)
    assert [evens.receive_nowait() for _ in range(3)] == [0, 2, 4]
    with pytest.raises(trio.WouldBlock):
        evens.receive_nowait()


async def test_last_subscriber_closing_reports_empty_once() -> None:
    emptied: list[bool] = []
    fanout: FanOut[int] = FanOut(on_empty=lambda: emptied.append(True))
    first = fanout.subscribe("block", 1)
    second = fanout.subscribe("block", 1)
    await first.aclose()
    assert emptied == []
    second.close()
    second.close()
    assert emptied == [True]
    assert len(fanout) == 0


async def test_a_consumer_leaving_while_publish_waits_unblocks_it() -> None:
    fanout: FanOut[int] = FanOut()
    stuck = fanout.subscribe("block", 1)
    await fanout.publish(0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fanout.publish, 1)
        await trio.testing.wait_all_tasks_blocked()
        stuck.close()
    assert len(fanout) == 0


async def test_close_ends_consumers_iteration() -> None:
    fanout: FanOut[int] = FanOut()
    channel = fanout.subscribe("block", 10)
    await fanout.publish(1)
    fanout.close()
    assert [item async for item in channel] == [1]


def test_bad_policy_and_buffer_are_named() -> None:
    fanout: FanOut[int] = FanOut()
    with pytest.raises(ValueError, match=r"'fastest'.*block, latest, drop"):
        fanout.subscribe("fastest", 1)
    with pytest.raises(ValueError, match="buffer size 0"):
        fanout.subscribe("block", 0)
