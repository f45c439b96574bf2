"""ccxt, an independent BingX client, unchanged, against the simulator (real clock, no network).

ccxt is asyncio: it runs in a worker thread with its own event loop while this trio test hosts the
simulator. Only URLs are changed: ``urls['api']['ws']`` (the swap URL contains ``swap``, which is
how ccxt tells the markets apart) and the REST bases; markets load from the simulator's
contracts/symbols endpoints.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ccxt.pro  # type: ignore[import-untyped]
import trio

from tradeloop.sim import SimConfig, open_simulator
from tradeloop.symbols import candle_open_time

WATCH_SECONDS = 2.5


async def ccxt_session(ws_url: str, spot_ws_url: str, rest_url: str) -> dict[str, Any]:
    exchange = ccxt.pro.bingx({"timeout": 5000})
    exchange.urls["api"]["ws"] = {"linear": ws_url, "spot": spot_ws_url}
    for section in exchange.urls["api"]:
        if section != "ws":
            exchange.urls["api"][section] = rest_url + "/openApi"
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


async def test_ccxt_watches_and_fetches_from_the_simulator() -> None:
    config = SimConfig(push_interval=0.1, ping_interval=0.5, history_seconds=900)
    with trio.fail_after(30):
        async with open_simulator(config) as sim:
            session = ccxt_session(sim.ws_url, sim.spot_ws_url, sim.rest_url)
            results = await trio.to_thread.run_sync(asyncio.run, asyncio.wait_for(session, 20))
            now = sim.now_ms()
            truth = {c.open_time: c for c in sim.candles("BTC-USDT", "1m", now - 3_600_000, now)}
            assert sim.stats.pongs_received >= 4  # ccxt answered both heartbeat dialects
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
        assert ticker["bid"] < ticker["ask"] and ticker["last"] == ticker["bid"]
        assert ticker["percentage"] is not None and ticker["baseVolume"] > 0
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
