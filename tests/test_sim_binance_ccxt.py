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
import time
from typing import Any

import ccxt.pro  # type: ignore[import-untyped]
import trio

from tradeloop.sim import SimConfig, open_simulator
from tradeloop.symbols import candle_open_time

WATCH_SECONDS = 2.5


async def ccxt_session(ws_origin: str, rest_origin: str) -> dict[str, Any]:
    exchange = ccxt.pro.binance({"timeout": 5000})
    exchange.urls["api"]["ws"]["spot"] = ws_origin + "/stream"
    exchange.urls["api"]["ws"]["linear"] = ws_origin + "/ws"
    for section, url in exchange.urls["api"].items():
        if isinstance(url, str):
            exchange.urls["api"][section] = re.sub(r"^https://[^/]+", rest_origin, url)
    results: dict[str, Any] = {}
    try:
        markets = await exchange.load_markets()
        results["markets"] = sorted(markets)
        deadline = time.monotonic() + WATCH_SECONDS
        updates = 0
        while time.monotonic() < deadline:
            results["swap_ohlcv"] = list(await exchange.watch_ohlcv("BTC/USDT:USDT", "1m"))
            results["swap_ticker"] = await exchange.watch_ticker("BTC/USDT:USDT")
            results["spot_ohlcv"] = list(await exchange.watch_ohlcv("BTC/USDT", "1m"))
            results["spot_ticker"] = await exchange.watch_ticker("BTC/USDT")
            updates += 1
        results["updates"] = updates
        results["swap_fetched"] = await exchange.fetch_ohlcv("BTC/USDT:USDT", "1m", limit=5)
        results["spot_fetched"] = await exchange.fetch_ohlcv("BTC/USDT", "1m", limit=5)
    finally:
        await exchange.close()
    return results


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

    assert results["markets"] == ["BTC/USDT", "BTC/USDT:USDT", "ETH/USDT", "ETH/USDT:USDT"]
    assert results["updates"] >= 3
    for key in ("swap_ohlcv", "spot_ohlcv"):
        timestamp, open_, high, low, close, volume = results[key][-1]
        candle = truth[timestamp]  # ccxt keyed the candle by its open time, as we send it
        assert timestamp in (candle_open_time("1m", now), candle_open_time("1m", now) - 60_000)
        assert open_ == float(candle.open)
        assert float(candle.low) <= low <= close <= high <= float(candle.high)  # the truth grew since
        assert 0 < volume <= float(candle.volume)
    for key, symbol in (("swap_ticker", "BTC/USDT:USDT"), ("spot_ticker", "BTC/USDT")):
        ticker = results[key]
        assert ticker["symbol"] == symbol and ticker["timestamp"] is not None
        assert ticker["last"] > 0 and ticker["baseVolume"] > 0
    for key in ("swap_fetched", "spot_fetched"):
        rows = results[key]
        assert len(rows) == 5 and [row[0] for row in rows] == sorted(row[0] for row in rows)
        for timestamp, open_, high, low, close, volume in rows[:-1]:  # closed candles: exactly the truth
            candle = truth[timestamp]
            assert candle.closed
            assert [open_, high, low, close, volume] == [
                float(candle.open),
                float(candle.high),
                float(candle.low),
                float(candle.close),
                float(candle.volume),
            ]
