"""What a connection does from its socket's callback on asyncio, as scenarios for any event loop.

On asyncio a connection decodes each read and hands it over in the loop's own callback, outside
any task (``WebSocket.pump``). Two things it does there reach further than a subscriber's
buffer: a rejected subscription ends its subscribers and releases the topic, and a run of
malformed frames starts REST polling (a new task) and later stops it. Both run here against the
simulator, in real time, each bounded to 20 s; they raise AssertionError on any failure. Used by
tests/test_streams_anyio.py (on Trio and asyncio, under anyio's runner) and by
tests/asyncio_program.py (under a bare ``asyncio.run``, where no anyio runner names the library).
"""

from __future__ import annotations

import dataclasses

import anyio
from disconnect_scenario import REAL_TIME, SYMBOL

from tradeloop import SubscriptionError
from tradeloop.sim import Simulator
from tradeloop.streams import StreamManager

__all__ = ["fall_back_to_rest_on_malformed_frames", "reject_an_unknown_symbol"]


async def reject_an_unknown_symbol(sim: Simulator) -> None:
    """An unlisted symbol raises SubscriptionError within 5 s; the socket's other topic flows on."""
    async with StreamManager.open([sim.exchange()], REAL_TIME) as streams:
        doge = streams.klines("bingx", "DOGE/USDT:USDT", "1m")
        btc = streams.ticks("bingx", SYMBOL)
        try:
            with anyio.fail_after(5):
                await doge.receive()
        except SubscriptionError as exc:
            assert exc.code == 80014 and "DOGE" in str(exc), exc
        else:
            raise AssertionError("the unknown symbol was not rejected")
        with anyio.fail_after(10):
            assert (await btc.receive()).symbol == SYMBOL, "the socket's other topics are unaffected"
        topics = [topic.topic.symbol for topic in streams.health().topics]
        assert topics == [SYMBOL], f"the rejected topic was not released: {topics}"


async def fall_back_to_rest_on_malformed_frames(sim: Simulator) -> None:
    """Every frame malformed: the topic's ticks come over REST; frames good again: back to the socket."""
    config = dataclasses.replace(REAL_TIME, max_parse_frame_retries=2, fallback_recovery_frames=3)
    async with StreamManager.open([sim.exchange()], config) as streams:
        sim.faults.malformed_rate = 1.0
        ticks = streams.ticks("bingx", SYMBOL)
        with anyio.fail_after(20):
            while streams.health().topics[0].mode != "rest":
                await ticks.receive()
            assert (await ticks.receive()).symbol == SYMBOL, "ticks keep coming, over REST"
            sim.faults.clear()
            while streams.health().topics[0].mode != "ws":
                await ticks.receive()
        (connection,) = streams.health().connections
        assert connection.parse_errors, "the malformed frames were counted"
