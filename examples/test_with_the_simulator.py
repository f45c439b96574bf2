"""Testing your own code against tradeloop's embedded exchange, with faults.

Copy this file into your project and run ``pytest``: the fixtures come from the plugin installed
with tradeloop (``pip install 'tradeloop[testing]'``), so there is no conftest.py to write. Every
test runs on ``tradeloop_clock`` (simulated time: minutes of candles in well under a second).
The ``# --8<--`` comments mark the parts the documentation site shows (docs/concepts/testing.md).
"""

from __future__ import annotations

# --8<-- [start:imports]
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tradeloop import EngineConfig, Kline, Signal, Tick, TradingEngine
from tradeloop.testing import TEST_STREAM_CONFIG, assert_candles_match, closed_klines, faults

SWAP = "BTC/USDT:USDT"
# --8<-- [end:imports]


# --8<-- [start:disconnect]
@pytest.mark.tradeloop_sim(symbols=["BTC-USDT"], seed=1)
async def test_every_closed_candle_despite_a_disconnect(tradeloop_clock, tradeloop_sim, tradeloop_streams):
    async with tradeloop_streams.klines("bingx", SWAP, "1m") as candles:
        before = await closed_klines(candles, 2, sim=tradeloop_sim)
        tradeloop_sim.faults.drop_all()  # every socket aborted mid-candle
        after = await closed_klines(candles, 3, sim=tradeloop_sim)
    assert_candles_match(tradeloop_sim, before + after)  # none lost, none twice, final values


# --8<-- [end:disconnect]


# --8<-- [start:strategy]
class UpCandles:
    """A strategy of yours: hold 0.01 BTC after a candle that closed up, none after one that closed
    down; it also keeps every candle it was given, for the test to check."""

    name = "up-candles"
    symbols = (SWAP,)
    timeframe = "1m"
    warmup = 0

    def __init__(self) -> None:
        self.seen: list[Kline] = []

    def on_kline(self, kline: Kline) -> list[Signal]:
        self.seen.append(kline)
        up = kline.close > kline.open
        return [Signal.hold(kline, Decimal("0.01") if up else Decimal(0), "up" if up else "down")]

    def on_tick(self, tick: Tick) -> list[Signal]:
        return []


# --8<-- [end:strategy]


# --8<-- [start:malformed]
@pytest.mark.tradeloop_sim(symbols=["BTC-USDT"])
async def test_my_strategy_under_malformed_frames(tradeloop_clock, tradeloop_sim, tradeloop_streams):
    strategy = UpCandles()
    with faults(tradeloop_sim, malformed_rate=0.05):  # 5% of pushes broken: bad gzip, bad JSON, missing field
        async with tradeloop_streams.klines("bingx", SWAP, "1m") as candles:
            for kline in await closed_klines(candles, 5):
                strategy.on_kline(kline)
            (topic,) = tradeloop_streams.health().topics
    assert sum(topic.parse_errors.values()) > 0, "the fault was on: some frames were malformed"
    assert_candles_match(tradeloop_sim, strategy.seen)  # the strategy still saw every candle, right


# --8<-- [end:malformed]


# --8<-- [start:outage]
@pytest.mark.tradeloop_sim(symbols=["BTC-USDT"])
async def test_my_bot_after_a_rest_outage(tradeloop_clock, tradeloop_sim, tmp_path: Path):
    strategy = UpCandles()
    urls = {"ws_url": tradeloop_sim.ws_url, "rest_url": tradeloop_sim.rest_url}
    journal = tmp_path / "journal.sqlite"
    config = EngineConfig(exchanges={"bingx": urls}, strategies=[strategy], journal=journal, streams=TEST_STREAM_CONFIG)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(TradingEngine(config).run, 600.0)  # ten simulated minutes
        await trio.sleep(120)
        with faults(tradeloop_sim, rest_down="503"):  # REST answers 503 with an HTML page...
            tradeloop_sim.faults.drop_all()  # ...while the sockets drop: no backfill possible
            await trio.sleep(180)
    closed = [kline for kline in strategy.seen if kline.closed]
    assert len(closed) >= 8
    assert_candles_match(tradeloop_sim, closed)  # after the outage the bot caught up, in order


# --8<-- [end:outage]
