"""The stream layer on both event loops: the same tests under Trio and asyncio (pytest's anyio plugin).

The simulator runs in the test's own event loop, on either backend too; these run in real time,
kept short by a fast market (two candles a second). On asyncio a connection handles what its
socket reads in the loop's own callback, outside any task: the rejection and fallback tests
(tests/callback_scenarios.py) run those paths (subscriptions ended, pollers started) from there.
"""

from __future__ import annotations

import itertools

import anyio
import pytest
import trio
from callback_scenarios import fall_back_to_rest_on_malformed_frames, reject_an_unknown_symbol
from disconnect_scenario import FAST_MARKET, REAL_TIME, stream_through_a_disconnect

from tradeloop import ForeignLoopError
from tradeloop._groups import single_error
from tradeloop.exchanges.binance import Binance
from tradeloop.exchanges.bingx import BingX
from tradeloop.sim import SimConfig, open_simulator
from tradeloop.streams import StreamManager
from tradeloop.streams.fanout import FanOut

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_a_subscription_wakes_its_receiver_and_ends_the_same_on_every_backend() -> None:
    fanout: FanOut[int] = FanOut()
    subscription = fanout.subscribe("block", 10)
    received: list[int] = []

    async def consume() -> None:
        async for item in subscription:
            received.append(item)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        for item in range(3):
            fanout.publish(item)
            await anyio.wait_all_tasks_blocked()
        fanout.close()
    assert received == [0, 1, 2]
    # One class, caught as either library's end of stream, on either backend.
    with pytest.raises(trio.EndOfChannel):
        await subscription.receive()
    with pytest.raises(anyio.EndOfStream):
        await subscription.receive()


async def test_one_error_leaves_a_task_group_as_itself_on_every_backend() -> None:
    async def fail() -> None:
        await anyio.wait_all_tasks_blocked()
        raise ValueError("the one real error")

    with pytest.raises(ValueError, match="the one real error"), single_error():
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(anyio.sleep_forever)
            tasks.start_soon(fail)


async def test_closed_candles_arrive_exactly_once_across_a_dropped_socket(anyio_backend: str) -> None:
    async with open_simulator(FAST_MARKET) as sim:
        await stream_through_a_disconnect(sim)


async def test_a_manager_used_from_another_thread_says_which_loop_owns_it(anyio_backend: str) -> None:
    async with StreamManager.open([BingX()]) as streams:
        with pytest.raises(ForeignLoopError, match=f"belongs to the {anyio_backend} event loop of thread"):
            await anyio.to_thread.run_sync(lambda: streams.klines("bingx", "BTC/USDT:USDT", "1m"))
        with pytest.raises(ForeignLoopError, match="call it from that loop"):
            await anyio.to_thread.run_sync(streams.health)
        assert streams.health().topics == (), "the refused call subscribed nothing"



async def test_an_unknown_symbol_raises_subscription_error_on_every_backend(anyio_backend: str) -> None:
    async with open_simulator(FAST_MARKET) as sim:
        await reject_an_unknown_symbol(sim)


async def test_malformed_frames_move_a_topic_to_rest_and_back_on_every_backend(anyio_backend: str) -> None:
    async with open_simulator(FAST_MARKET) as sim:
        await fall_back_to_rest_on_malformed_frames(sim)


async def test_a_planned_rotation_overlaps_the_sockets_in_real_time_on_every_backend(anyio_backend: str) -> None:
    # On asyncio each read is handled as it arrives, and the server writes each push to the old
    # socket first: the handover must still find where the streams overlap (an outside audit saw
    # every handover time out there, its topics interrupted each time).
    class ShortLived(Binance):
        connection_lifetime = 0.6  # replaced every 0.59 s

    market = SimConfig(exchange="binance", symbols=("BTC-USDT",), speed=120.0, push_interval=0.1, seed=3)
    ticks: list[int] = []
    async with (
        open_simulator(market) as sim,
        StreamManager.open({"binance": ShortLived(ws_url=sim.ws_url, rest_url=sim.rest_url)}, REAL_TIME) as streams,
        anyio.create_task_group() as tasks,
    ):

        async def take() -> None:
            async for tick in streams.ticks("binance", "BTC/USDT:USDT", policy="block"):
                ticks.append(tick.time)

        tasks.start_soon(take)
        await anyio.sleep(2.5)
        health = streams.health()
        tasks.cancel_scope.cancel()
    (connection,) = health.connections
    assert connection.reconnects == 0 and connection.rotations >= 3, connection
    assert len({b - a for a, b in itertools.pairwise(ticks)}) == 1, "every tick once, none missing"
