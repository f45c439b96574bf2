"""The README's custom strategy, paper-trading on the engine.

    python examples/buy_the_dip.py                 # the real BingX (internet, paper only): 5 minutes
    python examples/buy_the_dip.py --sim           # the embedded exchange, 100x faster: 3 seconds

With ``--sim`` the exchange runs inside this process and the whole run uses a Trio ``MockClock``
running 100 times faster than the wall clock, so ``--minutes`` of market pass in as many times 0.6
seconds. (Not an autojumping clock: the journal writes SQLite in worker threads, which a clock
jumping ahead while every Trio task waits would not wait for.) The ``# --8<--`` comments mark
the part the documentation site shows.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio
from trio.testing import MockClock

from tradeloop import EngineConfig, Kline, Signal, Tick, TradingEngine
from tradeloop.sim import SimConfig, open_simulator

SIM_SPEED = 100.0
"""Simulated seconds per real second with ``--sim``."""


# --8<-- [start:strategy]
class BuyTheDip:
    """Hold 0.01 BTC after a candle closes 0.1% below the one before, flat otherwise."""

    name = "buy-the-dip"
    symbols = ("BTC/USDT:USDT",)
    timeframe = "1m"
    warmup = 1

    def __init__(self) -> None:
        self.previous: Decimal | None = None

    def on_kline(self, kline: Kline) -> list[Signal]:
        previous, self.previous = self.previous, kline.close
        if previous is None:
            return []
        dipped = kline.close < previous * Decimal("0.999")
        return [Signal.hold(kline, Decimal("0.01") if dipped else Decimal(0), "dip" if dipped else "no dip")]

    def on_tick(self, tick: Tick) -> list[Signal]:
        return []


# --8<-- [end:strategy]


async def trade(bingx: dict[str, Any], minutes: float, journal: Path) -> None:
    config = EngineConfig(exchanges={"bingx": bingx}, strategies=[BuyTheDip()], journal=journal)
    summary = await TradingEngine(config).run(duration=minutes * 60)
    (status,) = summary.strategies
    print(f"{status.name}: {status.klines} closed candles, {status.signals} signals, {summary.trades} trades")
    print(f"equity {summary.portfolio.equity:.2f} USDT, fees {summary.fees:.4f} USDT")


async def main(minutes: float, use_sim: bool) -> None:
    with tempfile.TemporaryDirectory() as directory:  # a fresh journal: a rerun starts from cash again
        journal = Path(directory) / "journal.sqlite"
        if not use_sim:
            await trade({}, minutes, journal)  # {}: the real BingX's URLs
            return
        async with open_simulator(SimConfig(symbols=["BTC-USDT"])) as sim:
            await trade({"ws_url": sim.ws_url, "rest_url": sim.rest_url}, minutes, journal)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", action="store_true", help="run against the embedded exchange, in simulated time")
    parser.add_argument("--minutes", type=float, default=5.0, help="how long to trade (default 5)")
    args = parser.parse_args()
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    trio.run(main, args.minutes, args.sim, clock=MockClock(rate=SIM_SPEED) if args.sim else None)
