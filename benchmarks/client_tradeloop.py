"""tradeloop's side of a run: a StreamManager, every subscriber draining its channel.

The exchange is BingX, or Binance's USDⓈ-M with ``"exchange": "binance"`` in the spec: the
feed server's origin for its sockets, the simulator's for the ``exchangeInfo`` it checks symbols
against. A ``transport`` in the spec selects it (``trio-websocket``, the reference); without one, tradeloop's
default runs. A ``loop`` selects the event loop: ``trio`` (the default), ``asyncio`` or ``uvloop``
(asyncio on uvloop), through anyio. The script uses only ``StreamManager.open``, ``klines()``, a subscription's
``receive()`` / ``receive_nowait()`` and ``StreamConfig``, which older revisions have too: a baseline
run (:func:`benchmarks.variants.baseline`) imports another revision's tradeloop under it.

A consumer takes one kline with ``await receive()`` and then everything already buffered with
``receive_nowait()``: one scheduling point per wake-up instead of one per kline, which is how a
consumer keeps up with a burst. Nothing is dropped (the ``block`` policy), so every consumer
receives every push.
"""

from __future__ import annotations

import cProfile
import time
from typing import TYPE_CHECKING, Any

import anyio
import trio

from tradeloop.exchanges.bingx import BingX
from tradeloop.streams import StreamConfig, StreamManager

from .client import TIMEFRAME, Meter, final_seqs
from .frames import unified
from .profiling import where_time_goes

if TYPE_CHECKING:
    from tradeloop.exchanges.base import Exchange
    from tradeloop.streams import Subscription

__all__ = ["run"]

_UNUSED_REST = "http://127.0.0.1:9"
"""No REST call happens in these runs (closed-candle confirmation is off, nothing is missed)."""


async def _consume(subscription: Subscription[Any], consumer: int, meter: Meter, done: anyio.Event) -> None:
    while True:
        kline = await subscription.receive()
        seqs = [int(kline.close)]
        while True:
            try:
                kline = subscription.receive_nowait()
            except trio.WouldBlock:  # older revisions raise only Trio's; today's subscription is both
                break
            seqs.append(int(kline.close))
        if meter.seen(consumer, seqs):
            done.set()


def _exchange(spec: dict[str, Any]) -> tuple[str, Exchange]:
    url = spec["url"]
    if spec.get("exchange") != "binance":
        return "bingx", BingX(ws_url=url, spot_ws_url=url, rest_url=_UNUSED_REST)
    # Imported here: a baseline revision from before Binance runs the BingX benchmarks only.
    from tradeloop.exchanges.binance import Binance

    class UnthrottledBinance(Binance):
        """Binance closes a socket sent more than 5 messages a second; the feed server does not, and
        the run's ``subscribe_rate`` applies, as it does for BingX and for ccxt with its throttle off."""

        max_subscriptions_per_second = spec["subscribe_rate"]

    return "binance", UnthrottledBinance(ws_url=url, rest_url=spec["rest_url"])


async def _run(spec: dict[str, Any]) -> dict[str, Any]:
    name, exchange = _exchange(spec)
    transport = {"transport": spec["transport"]} if "transport" in spec else {}
    config = StreamConfig(confirm_closed_candles=False, subscribe_rate=spec["subscribe_rate"], **transport)
    topics = unified(spec["symbols"])
    consumers = spec["consumers"]
    meter = Meter(spec["total"], len(topics) * consumers, final_seqs(len(topics), spec["total"]),
                  waiting=len(topics) * consumers)
    with anyio.fail_after(spec["timeout"]):
        async with StreamManager.open({name: exchange}, config) as streams:
            subscriptions = [streams.klines(name, t, TIMEFRAME) for t in topics for _ in range(consumers)]
            done = anyio.Event()
            async with anyio.create_task_group() as nursery:
                for index, subscription in enumerate(subscriptions):
                    nursery.start_soon(_consume, subscription, index, meter, done)
                await done.wait()
                nursery.cancel_scope.cancel()
    return meter.result(keep_times=spec["run"] == "paced")


def _run_on_loop(spec: dict[str, Any]) -> dict[str, Any]:
    loop = spec.get("loop", "trio")
    if loop == "uvloop":
        return anyio.run(_run, spec, backend="asyncio", backend_options={"use_uvloop": True})
    return anyio.run(_run, spec, backend=loop)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    if not spec.get("profile"):
        return _run_on_loop(spec)
    profiler = cProfile.Profile(time.process_time)  # CPU time: waiting in epoll is not work
    result = profiler.runcall(_run_on_loop, spec)
    result["profile"] = where_time_goes(profiler, spec["total"])
    return result
