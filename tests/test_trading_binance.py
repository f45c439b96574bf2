"""The engine paper-trades Binance: the simulator's Binance dialect, spot and USDⓈ-M, klines and ticks."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from trio.testing import MockClock

from tradeloop.sim import SimConfig, open_simulator
from tradeloop.trading import Breakout, EngineConfig, SmaCrossover, TradingEngine


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock(autojump_threshold=0.005)


async def test_the_engine_trades_binance_ticks_and_closed_candles(mock_clock: MockClock, tmp_path: Path) -> None:
    async with open_simulator(SimConfig(exchange="binance", seed=3, speed=10.0)) as sim:
        config = EngineConfig(
            exchanges={"binance": sim.exchange()},
            strategies=[
                SmaCrossover(name="sma", symbols=("BTC/USDT:USDT",), fast=3, slow=8, size=Decimal(1000), source="tick"),
                Breakout(name="breakout", symbols=("ETH/USDT",), lookback=3, size=Decimal(1000), timeframe="1m"),
            ],
            starting_cash=Decimal(10_000),
            journal=tmp_path / "journal.sqlite",
        )
        summary = await TradingEngine(config).run(duration=60)
    statuses = {status.name: status for status in summary.strategies}
    assert summary.strategy_errors == {} and summary.reconnects == 0
    assert statuses["sma"].ticks > 30 and statuses["breakout"].klines >= 5  # ten simulated minutes
    assert summary.trades >= 1
