"""Fan-out policies: every subscriber's buffer is its own, and publishing never waits."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tradeloop import SubscriptionError
from tradeloop.streams import SlowConsumerPolicy
from tradeloop.streams.fanout import FanOut


async def test_every_subscriber_gets_every_item_in_order() -> None:
    fanout: FanOut[int] = FanOut()
    channels = [fanout.subscribe("block", 100) for _ in range(3)]
    for i in range(50):
        fanout.publish(i)
    for channel in channels:
        assert [channel.receive_nowait() for _ in range(50)] == list(range(50))


async def test_block_ticks_never_hold_up_the_publisher_and_drop_the_oldest() -> None:
    fanout: FanOut[int] = FanOut()
    channel = fanout.subscribe(SlowConsumerPolicy.BLOCK, 4)
    for i in range(20):
        fanout.publish(i)  # never waits, whatever the consumer does
    assert [channel.receive_nowait() for _ in range(4)] == [16, 17, 18, 19]
    (health,) = fanout.health()
    assert (health.dropped, health.delivered, health.lag) == (16, 4, 0)


async def test_a_waiting_consumer_is_woken_by_each_item() -> None:
    fanout: FanOut[int] = FanOut()
    channel = fanout.subscribe("block", 8)
    received: list[int] = []

    async def consumer() -> None:
        async for item in channel:
            received.append(item)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        for i in range(5):
            await trio.testing.wait_all_tasks_blocked()
            fanout.publish(i)
        await trio.testing.wait_all_tasks_blocked()
        fanout.close()
    assert received == [0, 1, 2, 3, 4]


async def test_latest_policy_keeps_the_newest_items() -> None:
    fanout: FanOut[int] = FanOut()
    channel = fanout.subscribe("latest", 3)
    for i in range(10):
        fanout.publish(i)
    assert [channel.receive_nowait() for _ in range(3)] == [7, 8, 9]
    (health,) = fanout.health()
    assert health.dropped == 7
    assert health.lag == 0


async def test_drop_policy_drops_new_items_and_counts_them() -> None:
    fanout: FanOut[int] = FanOut()
    channel = fanout.subscribe("drop", 3)
    for i in range(10):
        fanout.publish(i)
    (health,) = fanout.health()
    assert (health.lag, health.dropped, health.delivered) == (3, 7, 0)
    assert [channel.receive_nowait() for _ in range(3)] == [0, 1, 2]
    (health,) = fanout.health()
    assert (health.lag, health.delivered) == (0, 3)


async def test_a_slow_latest_consumer_does_not_hold_up_a_fast_one() -> None:
    fanout: FanOut[int] = FanOut()
    fast = fanout.subscribe("block", 1000)
    fanout.subscribe("latest", 1)
    for i in range(500):
        fanout.publish(i)
    assert fast.receive_nowait() == 0
    assert len(fanout) == 2


async def test_filter_selects_what_a_subscriber_receives() -> None:
    fanout: FanOut[int] = FanOut()
    evens = fanout.subscribe("block", 10, accepts=lambda i: i % 2 == 0)
    for i in range(6):
        fanout.publish(i)
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


async def test_a_failed_stream_raises_its_error_at_once_from_receive() -> None:
    fanout: FanOut[int] = FanOut()
    channel = fanout.subscribe("block", 10)
    fanout.publish(1)
    error = SubscriptionError("bingx", "kline:DOGE/USDT:USDT:1m", 80014, "invalid params")
    fanout.close(error)
    with pytest.raises(SubscriptionError, match="80014"):
        await channel.receive()
    with pytest.raises(SubscriptionError):
        async for _ in channel:
            pass


async def test_counters_stay_readable_after_the_subscription_closed() -> None:
    fanout: FanOut[int] = FanOut()
    channel = fanout.subscribe("drop", 1, name="audit")
    fanout.publish(1)
    fanout.publish(2)
    assert channel.receive_nowait() == 1
    channel.close()
    assert (channel.name, channel.delivered, channel.dropped) == ("audit", 1, 1)
    with pytest.raises(trio.ClosedResourceError):
        channel.receive_nowait()


async def test_close_ends_consumers_iteration() -> None:
    fanout: FanOut[int] = FanOut()
    channel = fanout.subscribe("block", 10)
    fanout.publish(1)
    fanout.close()
    assert [item async for item in channel] == [1]


def test_bad_policy_and_buffer_are_named() -> None:
    fanout: FanOut[int] = FanOut()
    with pytest.raises(ValueError, match=r"'fastest'.*block, latest, drop"):
        fanout.subscribe("fastest", 1)
    with pytest.raises(ValueError, match="buffer size 0"):
        fanout.subscribe("block", 0)


async def test_a_pausable_source_waits_for_room_and_drops_nothing() -> None:
    fanout: FanOut[int] = FanOut()
    channel = fanout.subscribe("block", 2)
    fanout.subscribe("latest", 1)  # never read: a latest subscriber holds up no one
    received: list[int] = []

    async def slow_consumer() -> None:
        async for item in channel:
            received.append(item)
            await trio.sleep(0.001)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow_consumer)
        for i in range(20):
            await fanout.publish_when_room(i)
        await trio.testing.wait_all_tasks_blocked()
        fanout.close()
    assert received == list(range(20)) and channel.dropped == 0
