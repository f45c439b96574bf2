"""Candle histories for the backtest tests: a seeded random walk, as klines or as a CSV file."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

from tradeloop.models import Kline

BTC = "BTC/USDT:USDT"
MINUTE = 60_000
DAY = 86_400_000
START = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def random_walk(count: int, *, seed: int = 1, start_ms: int = START, symbol: str = BTC) -> list[Kline]:
    """``count`` one-minute candles of a random walk around 60,000 with 0.1 price steps."""
    rng = random.Random(seed)
    klines = []
    price = 600_000  # tenths
    for index in range(count):
        path = [price]
        for _ in range(3):
            path.append(max(10, path[-1] + round(rng.gauss(0, 60))))
        price = path[-1]
        tenth = Decimal("0.1")
        klines.append(
            Kline(
                "bingx",
                symbol,
                "1m",
                start_ms + index * MINUTE,
                path[0] * tenth,
                max(path) * tenth,
                min(path) * tenth,
                path[-1] * tenth,
                Decimal(rng.randrange(1, 5000)) / 1000,
                True,
            )
        )
    return klines


def write_csv(path: Path, klines: list[Kline], *, iso: bool = False) -> Path:
    from datetime import UTC, datetime

    lines = ["open_time,open,high,low,close,volume"]
    for k in klines:
        moment = datetime.fromtimestamp(k.open_time / 1000, tz=UTC)
        when = moment.strftime("%Y-%m-%dT%H:%M:%SZ") if iso else str(k.open_time)
        lines.append(f"{when},{k.open},{k.high},{k.low},{k.close},{k.volume}")
    path.write_text("\n".join(lines) + "\n")
    return path
