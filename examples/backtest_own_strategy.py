"""Backtest a strategy of your own from Python, on the engine that runs it live.

    python examples/backtest_own_strategy.py --data btc-1m.csv   # your CSV: open_time,open,high,low,close,volume
    python examples/backtest_own_strategy.py --sim               # two days of the embedded exchange's market

``tradeloop backtest`` takes the built-in strategies of a TOML config; a strategy class of your
own goes through :func:`tradeloop.backtest.run_backtest`, as here. Two things to know:

- the history is fetched first, on the real clock (it is network I/O), and the backtest runs
  after, in virtual time: ``run_backtest`` must run under ``MockClock(autojump_threshold=0)``;
- the candles before ``start_ms`` feed the strategies' warm-up, so start a ``warmup`` of candles
  after the data's first one.

The ``# --8<--`` comments mark the part the documentation site shows.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import deque
from decimal import Decimal
from pathlib import Path

import trio
from trio.testing import MockClock

from tradeloop import EngineConfig, Kline, Signal, Tick
from tradeloop.backtest import CandleSeries, load_exchange_history, read_csv, run_backtest
from tradeloop.sim import SimConfig, open_simulator

SYMBOL = "BTC/USDT:USDT"
MINUTE = 60_000


# --8<-- [start:strategy]
class MeanReversion:
    """Hold 0.01 BTC while a close is 0.2% under the average of the last 20, flat otherwise."""

    name = "mean-reversion"
    symbols = (SYMBOL,)
    timeframe = "1m"
    warmup = 20

    def __init__(self) -> None:
        self.closes: deque[Decimal] = deque(maxlen=20)

    def on_kline(self, kline: Kline) -> list[Signal]:
        self.closes.append(kline.close)
        if len(self.closes) < 20:
            return []
        cheap = kline.close < sum(self.closes) / 20 * Decimal("0.998")
        return [Signal.hold(kline, Decimal("0.01") if cheap else Decimal(0), "cheap" if cheap else "back")]

    def on_tick(self, tick: Tick) -> list[Signal]:
        return []


# --8<-- [end:strategy]


# --8<-- [start:backtest]
async def backtest(series: CandleSeries, out_dir: Path) -> None:
    """Run under MockClock(autojump_threshold=0): a day of candles takes about a second."""
    config = EngineConfig(exchanges={"bingx": {}}, strategies=[MeanReversion()])
    start_ms = series.open_times[MeanReversion.warmup]  # the candles before it warm the strategy up
    end_ms = series.open_times[-1] + MINUTE
    result = await run_backtest(
        config, {("bingx", SYMBOL): series}, start_ms=start_ms, end_ms=end_ms, out_dir=out_dir
    )
    print(f"{result.candles} candles replayed, {len(result.fills)} fills")
    print(f"equity {result.summary.portfolio.equity:.2f} USDT, fees {result.summary.fees:.4f} USDT")


# --8<-- [end:backtest]


async def simulator_history(days: float, cache: Path) -> CandleSeries:
    """``days`` of one-minute candles from the embedded exchange's REST API, on the real clock."""
    async with open_simulator(SimConfig(symbols=["BTC-USDT"], history_seconds=days * 86_400 + 120)) as sim:
        end_ms = sim.now_ms() // MINUTE * MINUTE
        start_ms = end_ms - round(days * 86_400_000)
        return await load_exchange_history(
            sim.exchange(), "bingx", SYMBOL, "1m", start_ms=start_ms, end_ms=end_ms, cache=cache
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="a CSV file of one-minute BTC/USDT:USDT candles")
    source.add_argument("--sim", action="store_true", help="two days of the embedded exchange's candles")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        if args.sim:
            series = trio.run(simulator_history, 2.0, Path(directory) / "candles.sqlite")
        else:
            series = read_csv(args.data, exchange="bingx", symbol=SYMBOL)
        trio.run(backtest, series, Path(directory) / "report", clock=MockClock(autojump_threshold=0))


if __name__ == "__main__":
    main()
