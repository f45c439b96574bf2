"""Backtest speed: a year of one-minute candles (525,600) for one symbol, reference SMA strategy.

``python -m benchmarks.bench_backtest [--days 365] [--profile] [--out FILE]``

The candles are a seeded random walk built straight into a :class:`CandleSeries` (their making
is not timed); the timed span is ``run_backtest`` from start to report-ready result: the replay,
the whole engine (strategy, risk, paper portfolio, journal on disk) and reading the equity back,
under ``MockClock(autojump_threshold=0)``. Goal: under 60 s for the year. ``--profile`` runs it
under cProfile instead and prints the functions with the most own time.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import pstats
import random
import tempfile
import time
from array import array
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio
from trio.testing import MockClock

from tradeloop.backtest import CandleSeries, run_backtest
from tradeloop.trading import EngineConfig, SmaCrossover

from .harness import machine

SYMBOL = "BTC/USDT:USDT"
START = 1_735_689_600_000  # 2025-01-01T00:00:00Z
MINUTE = 60_000
WARMUP = 30
_RESULT = Path(__file__).resolve().parent / "results" / "backtest.json"


def candles(count: int, seed: int = 1) -> CandleSeries:
    """``count`` one-minute candles (plus the warm-up before ``START``): a random walk from 60,000."""
    rng = random.Random(seed)
    columns: tuple[array[int], ...] = tuple(array("q") for _ in range(6))
    times, opens, highs, lows, closes, volumes = columns
    price = 600_000  # tenths of a dollar
    for index in range(-WARMUP, count):
        path = [price]
        for _ in range(3):
            path.append(max(10, path[-1] + round(rng.gauss(0, 60))))
        price = path[-1]
        times.append(START + index * MINUTE)
        opens.append(path[0])
        highs.append(max(path))
        lows.append(min(path))
        closes.append(price)
        volumes.append(rng.randrange(1, 5000))
    return CandleSeries("bingx", SYMBOL, "1m", (times, opens, highs, lows, closes, volumes), 1, 3)


def config() -> EngineConfig:
    strategy = SmaCrossover(name="sma", symbols=[SYMBOL], fast=10, slow=WARMUP, size=1000, allow_short=True)
    return EngineConfig(exchanges={"bingx": {}}, strategies=[strategy], fee_rate=Decimal("0.0005"))


def run(days: float, *, profile: bool = False) -> dict[str, Any]:
    count = round(days * 1440)
    series = candles(count)
    out = Path(tempfile.mkdtemp(prefix="tradeloop-bench-backtest-"))

    async def backtest() -> Any:
        history = {("bingx", SYMBOL): series}
        return await run_backtest(config(), history, start_ms=START, end_ms=START + count * MINUTE, out_dir=out)

    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    cpu = time.process_time()
    if profiler is not None:
        profiler.enable()
    result = trio.run(backtest, clock=MockClock(autojump_threshold=0))
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return {
        "candles": result.candles,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "candles_per_s": round(result.candles / seconds),
        "fills": len(result.fills),
        "equity_points": len(result.equity),
        "year_projection_s": round(525_600 / (result.candles / seconds), 1),
        "goal_s": 60,
        "met": math.isfinite(seconds) and 525_600 / (result.candles / seconds) < 60,
        "profiled": profile,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_backtest", description=__doc__)
    parser.add_argument("--days", type=float, default=365.0, help="days of one-minute candles (default 365)")
    parser.add_argument("--profile", action="store_true", help="run under cProfile and print the hot spots")
    parser.add_argument("--out", type=Path, help=f"write the result as JSON (a full year: default {_RESULT})")
    args = parser.parse_args()
    result = run(args.days, profile=args.profile)
    print(json.dumps(result, indent=1))
    out = args.out or (_RESULT if args.days >= 365 and not args.profile else None)
    if out is not None:
        out.write_text(json.dumps({"machine": machine(), **result}, indent=1) + "\n")


if __name__ == "__main__":
    main()
