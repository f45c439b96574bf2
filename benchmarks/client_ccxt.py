"""ccxt.pro's side of a run: ``watch_ohlcv`` loops on asyncio, as ccxt's docs show them (or on uvloop:
``"loop": "uvloop"`` in the spec, the loop tradeloop's asyncio+uvloop rows run on).

BingX (the default): ccxt.pro is pointed at the benchmark's server by overriding ``urls['api']['ws']['linear']`` (its
kline handler needs ``swap`` in the URL, which the server's path has) and given its markets with
``set_markets`` from contract rows shaped like BingX's ``/openApi/swap/v2/quote/contracts``, so it
makes no REST call. Every push is decoded and stored by ccxt (its ``handle_ohlcv`` runs per
push); a ``watch_ohlcv`` call returns the newest candle rows, so a consumer that wakes after
several pushes of one candle sees only the newest: that is ccxt's delivery model, and the counts
of items and wake-ups in the result show it.

Binance (``"exchange": "binance"`` in the spec): ccxt.pro's ``binance`` client, unchanged, its URLs
pointed at the benchmark's servers as tests/test_sim_binance_ccxt.py does: the USDⓈ-M socket at the
feed server's origin (ccxt moves ``/ws`` to ``/market/ws``), every REST section at the simulator's
origin, from which it loads its markets (``exchangeInfo``) before the run.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import ccxt.pro  # type: ignore[import-untyped]

from .client import TIMEFRAME, Meter, final_seqs
from .frames import unified

__all__ = ["binance_for", "contract", "exchange_for", "run"]


def contract(symbol_id: str) -> dict[str, str]:
    """A BingX swap contract row (the fields ccxt's ``parse_market`` reads)."""
    base, _, quote = symbol_id.partition("-")
    return {
        "contractId": "1",
        "symbol": symbol_id,
        "size": "0.0001",
        "quantityPrecision": "4",
        "pricePrecision": "1",
        "feeRate": "0.0005",
        "makerFeeRate": "0.0002",
        "takerFeeRate": "0.0005",
        "tradeMinLimit": "0",
        "tradeMinQuantity": "0.0001",
        "tradeMinUSDT": "2",
        "maxLongLeverage": "125",
        "maxShortLeverage": "125",
        "currency": quote,
        "asset": base,
        "status": "1",
        "apiStateOpen": "true",
        "apiStateClose": "true",
    }


def exchange_for(url: str, symbol_ids: list[str]) -> Any:
    """A ccxt.pro bingx client whose swap socket is ``url``, with markets set offline.

    Its 10-subscriptions-per-second throttle is off, as tradeloop's is raised, for the benchmark's own server.
    """
    exchange = ccxt.pro.bingx({"enableRateLimit": False})
    exchange.urls["api"]["ws"]["linear"] = url
    exchange.set_markets(exchange.parse_markets([contract(s) for s in symbol_ids]))
    return exchange


def binance_for(ws_origin: str, rest_origin: str) -> Any:
    """A ccxt.pro binance client whose USDⓈ-M socket is under ``ws_origin`` and REST under ``rest_origin``.

    Its throttle is off, as for BingX: the benchmark's servers limit nothing.
    """
    exchange = ccxt.pro.binance({"enableRateLimit": False})
    exchange.urls["api"]["ws"]["linear"] = ws_origin + "/ws"
    for section, url in exchange.urls["api"].items():
        if isinstance(url, str):
            exchange.urls["api"][section] = re.sub(r"^https://[^/]+", rest_origin, url)
    return exchange


async def _consume(exchange: Any, symbol: str, final: int, consumer: int, meter: Meter, done: asyncio.Event) -> None:
    while True:
        rows = await exchange.watch_ohlcv(symbol, TIMEFRAME)
        seq = int(rows[-1][4])
        if meter.seen(consumer, [seq]):
            done.set()
        if seq == final:
            return


async def _run(spec: dict[str, Any]) -> dict[str, Any]:
    if spec.get("exchange") == "binance":
        exchange = binance_for(spec["url"], spec["rest_url"])
        await exchange.load_markets()
    else:
        exchange = exchange_for(spec["url"], spec["symbols"])
    topics = unified(spec["symbols"])
    consumers = spec["consumers"]
    finals = final_seqs(len(topics), spec["total"])
    meter = Meter(spec["total"], len(topics) * consumers, finals, waiting=len(topics) * consumers)
    done = asyncio.Event()
    try:
        async with asyncio.timeout(spec["timeout"]):
            tasks = [
                asyncio.create_task(_consume(exchange, topic, final, index * consumers + c, meter, done))
                for index, (topic, final) in enumerate(zip(topics, finals, strict=True))
                for c in range(consumers)
            ]
            await done.wait()
            await asyncio.gather(*tasks)
    finally:
        await exchange.close()
    return meter.result(keep_times=spec["run"] == "paced")


def run(spec: dict[str, Any]) -> dict[str, Any]:
    if spec.get("loop") == "uvloop":
        import uvloop  # the bench extra's; only this variant needs it

        return uvloop.run(_run(spec))
    return asyncio.run(_run(spec))
