"""ccxt, an independent Binance client, unchanged, against the simulator's Binance dialect.

ccxt is asyncio: it runs in a worker thread with its own event loop while this trio test hosts the
simulator. Only URLs are changed: every REST section keeps its path under the simulator's origin;
the USDⓈ-M WebSocket base becomes ``<origin>/ws`` (ccxt itself moves it to ``/market/ws`` and
appends a connection index, ``/ws/0``) and the spot one ``<origin>/stream``, Binance's combined
endpoint: ccxt tells a spot socket by ``/stream`` in its URL (the real host name has it). Markets
load from the simulator's exchangeInfo endpoints.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import ccxt.pro  # type: ignore[import-untyped]
import trio
from ccxt_checks import check_candles, watch_and_fetch

from tradeloop.sim import SimConfig, open_simulator


async def ccxt_session(ws_origin: str, rest_origin: str) -> dict[str, Any]:
    exchange = ccxt.pro.binance({"timeout": 5000})
    exchange.urls["api"]["ws"]["spot"] = ws_origin + "/stream"
    exchange.urls["api"]["ws"]["linear"] = ws_origin + "/ws"
    for section, url in exchange.urls["api"].items():
        if isinstance(url, str):
            exchange.urls["api"][section] = re.sub(r"^https://[^/]+", rest_origin, url)
    return await watch_and_fetch(exchange)


async def test_ccxt_watches_and_fetches_from_the_binance_simulator() -> None:
    config = SimConfig(exchange="binance", push_interval=0.1, ping_interval=0.5, history_seconds=900)
    with trio.fail_after(30):
        async with open_simulator(config) as sim:
            session = ccxt_session(sim.ws_url, sim.rest_url)
            results = await trio.to_thread.run_sync(asyncio.run, asyncio.wait_for(session, 20))
            now = sim.now_ms()
            truth = {c.open_time: c for c in sim.candles("BTC-USDT", "1m", now - 3_600_000, now)}
            assert sim.stats.pongs_received >= 4  # ccxt's websocket answered the RFC 6455 pings
            assert sim.stats.pong_timeouts == 0 and sim.stats.request_errors == 0

    check_candles(results, truth, now)
    for key, symbol in (("swap_ticker", "BTC/USDT:USDT"), ("spot_ticker", "BTC/USDT")):
        ticker = results[key]  # ccxt watches the mini ticker: no book, but last price and volume
        assert ticker["symbol"] == symbol and ticker["timestamp"] is not None
        assert ticker["last"] > 0 and ticker["baseVolume"] > 0 and ticker["info"]["e"] == "24hrMiniTicker"
