"""What the ccxt tests share: one ccxt.pro session against the simulator, and the checks of what
it watched and fetched against the simulator's truth (one market model behind both dialects)."""

from __future__ import annotations

import time
from typing import Any

from tradeloop.sim import SimCandle
from tradeloop.symbols import candle_open_time

WATCH_SECONDS = 2.5


async def watch_and_fetch(exchange: Any) -> dict[str, Any]:
    """Load markets, watch BTC's 1m candles and tickers on both markets for a while, then fetch
    five candles of each market; the exchange is closed afterwards."""
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


def check_candles(results: dict[str, Any], truth: dict[int, SimCandle], now: int) -> None:
    """Watched candles are the truth so far, fetched closed candles exactly the truth."""
    assert results["markets"] == ["BTC/USDT", "BTC/USDT:USDT", "ETH/USDT", "ETH/USDT:USDT"]
    assert results["updates"] >= 3
    for key in ("swap_ohlcv", "spot_ohlcv"):
        timestamp, open_, high, low, close, volume = results[key][-1]
        candle = truth[timestamp]  # ccxt keyed the candle by its open time, as we send it
        assert timestamp in (candle_open_time("1m", now), candle_open_time("1m", now) - 60_000)
        assert open_ == float(candle.open)
        assert float(candle.low) <= low <= close <= high <= float(candle.high)  # the truth grew since
        assert 0 < volume <= float(candle.volume)
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
