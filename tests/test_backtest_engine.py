"""The trading engine on a historical replay, in virtual time (MockClock, autojump at once)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

import pytest
import trio
from backtest_helpers import BTC, DAY, MINUTE, START, random_walk
from trio.testing import MockClock

from tradeloop.backtest import BacktestJournal, MarketHistory, run_backtest, series_from_klines
from tradeloop.backtest.report import build_report
from tradeloop.trading import Breakout, EngineConfig, RiskLimits, SmaCrossover

D = Decimal


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock(autojump_threshold=0)


def sma_config(tmp_path: Path, risk: RiskLimits | None = None) -> EngineConfig:
    strategy = SmaCrossover(name="sma", symbols=[BTC], fast=3, slow=8, size=1000, allow_short=True)
    return EngineConfig(
        exchanges={"bingx": {}},
        strategies=[strategy],
        risk=risk or RiskLimits(),
        fee_rate=D("0.0005"),
        slippage=D("0.0001"),
        journal=tmp_path / "unused.sqlite",
    )


def history(count: int, seed: int) -> MarketHistory:
    klines = random_walk(count, seed=seed)
    return {("bingx", BTC): series_from_klines(klines, exchange="bingx", symbol=BTC, timeframe="1m")}


async def test_fills_at_the_next_open_in_virtual_time(mock_clock: MockClock, tmp_path: Path) -> None:
    klines = random_walk(2 * 1440 + 10)
    data = {("bingx", BTC): series_from_klines(klines, exchange="bingx", symbol=BTC, timeframe="1m")}
    start, end = START + 10 * MINUTE, START + 10 * MINUTE + 2 * DAY
    result = await run_backtest(sma_config(tmp_path), data, start_ms=start, end_ms=end, out_dir=tmp_path / "out")
    assert result.summary.stopped_by == "end of data"
    assert result.candles == 2 * 1440
    assert len(result.fills) > 20
    opens = {k.open_time: k.open for k in klines}
    for fill in result.fills:
        # each fill is priced at the open of the candle after the signal's, plus slippage
        slip = D("0.0001")
        expected = opens[fill.time] * (1 + slip if fill.side.value == "buy" else 1 - slip)
        assert fill.price == expected
        assert fill.fee == fill.quantity * fill.price * D("0.0005")
        assert start < fill.time < end
    # warm-up from the ten candles before the start: the first view comes with the first candle
    status = result.summary.strategies[0]
    assert status.klines == 8 + 2 * 1440
    # one snapshot per virtual day, stamped in virtual time; the final one ends the last day
    assert [point.time for point in result.equity] == [start + DAY, end]
    assert result.equity[-1].equity == result.summary.portfolio.equity
    assert result.equity[-1].marks[("bingx", BTC)] == klines[-1].close


async def test_the_same_inputs_give_the_same_fills(mock_clock: MockClock, tmp_path: Path) -> None:
    # candles and ticks, two timeframes, two strategies on one symbol: every ordering matters here
    config = dataclasses.replace(
        sma_config(tmp_path),
        strategies=[
            SmaCrossover(name="sma-1m", symbols=[BTC], fast=3, slow=8, size=1000, allow_short=True),
            SmaCrossover(name="sma-5m", symbols=[BTC], fast=2, slow=4, size=700, timeframe="5m"),
            Breakout(name="ticks", symbols=[BTC], lookback=6, size=500, source="tick", allow_short=True),
        ],
    )
    data = history(600, seed=4)
    start, end = START + 30 * MINUTE, START + 600 * MINUTE
    runs = [await run_backtest(config, data, start_ms=start, end_ms=end, out_dir=tmp_path / n) for n in "ab"]
    assert runs[0].fills == runs[1].fills
    assert runs[0].summary.portfolio == runs[1].summary.portfolio
    assert {fill.strategy for fill in runs[0].fills} == {"sma-1m", "sma-5m", "ticks"}
    status = {s.name: s for s in runs[0].summary.strategies}
    assert status["sma-5m"].klines == 4 + (600 - 30) // 5  # warm-up, then one per five minutes
    assert status["ticks"].ticks == 570 + 1


async def test_the_kill_switch_stops_a_backtest(mock_clock: MockClock, tmp_path: Path) -> None:
    config = sma_config(tmp_path, risk=RiskLimits(max_drawdown=D("0.0005")))
    result = await run_backtest(
        config, history(600, seed=5), start_ms=START + 30 * MINUTE, end_ms=START + 600 * MINUTE, out_dir=tmp_path
    )
    assert result.summary.stopped_by == "kill switch"
    assert result.candles < 570
    assert all(p.quantity == 0 for p in result.summary.portfolio.positions)


async def test_opening_the_backtest_journal_takes_no_virtual_time(mock_clock: MockClock, tmp_path: Path) -> None:
    # A task waiting for a worker thread counts as waiting: the clock would jump to the next timer
    # (an hour away here) while a journal opened in a thread, as the live Journal does.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep, 3600)
        before = trio.current_time()
        async with BacktestJournal.open(tmp_path / "journal.sqlite", starting_cash=Decimal(10_000)):
            assert trio.current_time() == before
        nursery.cancel_scope.cancel()


async def test_a_backtest_stopped_before_its_first_candle_still_has_a_report(
    mock_clock: MockClock, tmp_path: Path
) -> None:
    # Ctrl-C right after the journal opens: an empty period, whose exposure once divided by zero.
    async def at_once() -> str:
        return "Ctrl-C"

    data = history(1440 + 10, seed=4)
    start = START + 10 * MINUTE
    result = await run_backtest(
        sma_config(tmp_path), data, start_ms=start, end_ms=start + DAY, out_dir=tmp_path / "out", stop_when=at_once
    )
    assert (result.summary.stopped_by, result.end_ms, result.fills) == ("Ctrl-C", start, ())
    report = build_report(result, data="a test")
    assert report["total"]["exposure"] == 0 and report["total"]["trades"] == 0
