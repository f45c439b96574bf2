"""cryptofeed's side of a Binance run: its ``BinanceFutures`` feed with a candle callback, as its docs show it.

cryptofeed defines where a feed connects in class attributes (``websocket_endpoints``,
``rest_endpoints``), so a subclass points them at the benchmark's servers and changes nothing
else but the ``ws://`` scheme (see :func:`_feed_class`): the socket at the feed server's USDⓈ-M
``/market`` path (cryptofeed appends ``/stream?streams=…``: it subscribes in the URL and reads
combined pushes), REST at the simulator's origin, whose ``/fapi/v1/exchangeInfo`` gives it its
symbols. Its ``FeedHandler`` runs the feed on its own asyncio loop, on uvloop as cryptofeed's
default configuration does; every push becomes a ``Candle`` (``candle_closed_only`` off: the
pushes are of a forming candle) handed to each callback, one per consumer, once per push.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from cryptofeed import FeedHandler  # type: ignore[import-untyped]
from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint  # type: ignore[import-untyped]
from cryptofeed.defines import CANDLES  # type: ignore[import-untyped]
from cryptofeed.exchanges import BinanceFutures  # type: ignore[import-untyped]

from .client import Meter, final_seqs
from .frames import unified

__all__ = ["run"]


def _feed_class(ws_origin: str, rest_origin: str) -> type[Any]:
    """``BinanceFutures`` with the benchmark's servers as its endpoints.

    cryptofeed refuses any socket address but ``wss://`` (``WSAsyncConn``), and the servers speak
    plain ``ws://`` on loopback (TLS would cost cryptofeed alone CPU per message, and the feed
    server's one-frame-per-packet mode writes raw frames to the socket). Its hook for adjusting a
    socket's address just before connecting (an endpoint with ``authentication``, which calls
    ``_ws_authentication``) turns the ``wss://`` it was given back into ``ws://``.
    """
    secure_origin = "wss://" + ws_origin.removeprefix("ws://")

    class SimulatedBinanceFutures(BinanceFutures):  # type: ignore[misc]
        websocket_endpoints: ClassVar[list[Any]] = [
            WebsocketEndpoint(secure_origin + "/market", options={"compression": None}, authentication=True)
        ]
        rest_endpoints: ClassVar[list[Any]] = [RestEndpoint(rest_origin, routes=Routes("/fapi/v1/exchangeInfo"))]

        async def _ws_authentication(self, address: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            return "ws://" + address.removeprefix("wss://"), options

    return SimulatedBinanceFutures


def run(spec: dict[str, Any]) -> dict[str, Any]:
    # cryptofeed names perpetuals BASE-QUOTE-PERP.
    symbols = [unified_symbol.replace("/", "-").split(":")[0] + "-PERP" for unified_symbol in unified(spec["symbols"])]
    consumers = spec["consumers"]
    index_of = {symbol: index for index, symbol in enumerate(symbols)}
    meter = Meter(spec["total"], len(symbols) * consumers, final_seqs(len(symbols), spec["total"]),
                  waiting=len(symbols) * consumers)
    # cryptofeed's default configuration runs on uvloop (when installed, as the bench extra does):
    # the FeedHandler sets its policy, and the loop is made after it.
    handler = FeedHandler(config={"uvloop": True, "log": {"disabled": True}})
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    timed_out = loop.call_later(spec["timeout"], loop.stop)

    def consumer(number: int) -> Callable[[Any, float], Awaitable[None]]:
        """Consumer ``number`` of every symbol: one more callback cryptofeed calls with each candle."""

        async def on_candle(candle: Any, receipt_timestamp: float) -> None:
            if meter.seen(index_of[candle.symbol] * consumers + number, [int(candle.close)]):
                loop.stop()

        return on_candle

    feed = _feed_class(spec["url"], spec["rest_url"])(
        symbols=symbols,
        channels=[CANDLES],
        callbacks={CANDLES: [consumer(number) for number in range(consumers)]},
        candle_closed_only=False,
    )
    handler.add_feed(feed)
    handler.run(install_signal_handlers=False)  # runs the loop until stopped, then shuts the feed down
    timed_out.cancel()
    if not meter.last_ns:
        raise TimeoutError(f"cryptofeed received {sum(meter.items)} pushes of {spec['total']} in {spec['timeout']} s")
    return meter.result(keep_times=spec["run"] == "paced")
