"""ccxt, an independent BingX client, unchanged, against the simulator (real clock, no network).

ccxt is asyncio: on the asyncio backend it runs in the test's own loop, on Trio in a worker thread
with its own event loop; the simulator runs in the test's own loop. Only URLs
are changed: ``urls['api']['ws']`` (the swap URL contains ``swap``, which is how ccxt tells the
markets apart) and the REST bases; markets load from the simulator's contracts/symbols endpoints.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import ccxt.pro  # type: ignore[import-untyped]
import pytest
import trio
from ccxt_checks import check_candles, watch_and_fetch

from tradeloop.sim import SimCandle, SimConfig, open_simulator


async def ccxt_session(ws_url: str, spot_ws_url: str, rest_url: str) -> dict[str, Any]:
    exchange = ccxt.pro.bingx({"timeout": 5000})
    exchange.urls["api"]["ws"] = {"linear": ws_url, "spot": spot_ws_url}
    for section in exchange.urls["api"]:
        if section != "ws":
            exchange.urls["api"][section] = rest_url + "/openApi"
    return await watch_and_fetch(exchange)


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
async def test_ccxt_watches_and_fetches_from_the_simulator(anyio_backend: str) -> None:
    config = SimConfig(push_interval=0.1, ping_interval=0.5, history_seconds=900)
    with anyio.fail_after(30):
        async with open_simulator(config) as sim:
            session = asyncio.wait_for(ccxt_session(sim.ws_url, sim.spot_ws_url, sim.rest_url), 20)
            if anyio_backend == "asyncio":
                results = await session  # ccxt in this very loop
            else:
                results = await trio.to_thread.run_sync(asyncio.run, session)
            now = sim.now_ms()
            truth: dict[int, SimCandle] = {c.open_time: c for c in sim.candles("BTC-USDT", "1m", now - 3_600_000, now)}
            stats = sim.stats
    assert stats.pongs_received >= 4  # ccxt answered both heartbeat dialects
    assert stats.pong_timeouts == 0 and stats.request_errors == 0

    check_candles(results, truth, now)
    for key, symbol in (("swap_ticker", "BTC/USDT:USDT"), ("spot_ticker", "BTC/USDT")):
        ticker = results[key]
        assert ticker["symbol"] == symbol and ticker["timestamp"] is not None
        assert ticker["bid"] < ticker["ask"] and ticker["last"] == ticker["bid"]
        assert ticker["percentage"] is not None and ticker["baseVolume"] > 0
