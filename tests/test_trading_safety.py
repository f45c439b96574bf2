"""Safety state survives a restart: a tripped kill switch stays tripped until an explicit reset,
the daily loss of a restart on the same day counts from that day's start, refused orders are
journaled and fed back to their strategy, and old journals are migrated forward.
"""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from tradeloop.models import Fill, Kline, Side, Signal, Tick
from tradeloop.sim import SimConfig, open_simulator
from tradeloop.trading import (
    Journal,
    JournalError,
    PortfolioManager,
    RejectReason,
    RiskLimits,
    RiskManager,
    SmaCrossover,
    StrategyCoordinator,
    TradingEngine,
)
from tradeloop.trading.cli import demo_config
from tradeloop.trading.journal import SCHEMA_VERSION, RejectionRecord
from tradeloop.trading.view import format_summary

D = Decimal
BTC = "BTC/USDT:USDT"
CASH = D(10_000)
DAY_MS = 86_400_000
V1_JOURNAL = Path(__file__).parent / "data" / "journal-v1.sqlite"
"""Made by tradeloop at c8785a1 (schema version 1): two fills of 'sma' on BTC and one snapshot."""


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock(autojump_threshold=0.005)


async def test_a_tripped_kill_switch_stays_tripped_after_a_restart(mock_clock: MockClock, tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    async with open_simulator(SimConfig(seed=5)) as sim:
        config = demo_config(sim.exchange(), path)
        tight = dataclasses.replace(config, risk=dataclasses.replace(config.risk, max_drawdown=D("0.0001")))
        tripped = await TradingEngine(tight).run(duration=600)
        assert tripped.stopped_by == "kill switch" and tripped.trades > 0
        assert tripped.journaled_rejections == tripped.risk.total_rejections  # a new journal: this run's
        fills = len(await _fills(path))

        # The same journal with the ordinary limits: nothing is traded, the switch is still on.
        again = await TradingEngine(config).run(duration=60)
        assert again.stopped_by == "kill switch"
        assert again.trades == 0 and len(await _fills(path)) == fills
        assert again.risk.killed and again.risk.kill_restored
        assert again.risk.kill_reason == tripped.risk.kill_reason
        assert again.risk.kill_time == tripped.risk.kill_time
        assert again.journaled_rejections == tripped.journaled_rejections + again.risk.total_rejections
        text = format_summary(again)
        assert "tripped in an earlier run" in text and "--reset-kill-switch" in text
        assert f"{again.journaled_rejections} in the journal" in text

        # Only an explicit reset trades again, and the reset is journaled.
        reset = await TradingEngine(config).run(duration=60, reset_kill_switch=True)
        assert not reset.risk.killed and reset.trades > 0
    async with Journal.open(path, starting_cash=CASH) as journal:
        events = [(event, reason) for _, event, reason in await journal.risk_events()]
        state = await journal.risk_state()
    assert [event for event, _ in events] == ["kill", "reset"]
    assert "max_drawdown" in events[0][1] and "reset by the user" in events[1][1]
    assert state is not None and not state.killed


async def _fills(path: Path) -> list[Fill]:
    async with Journal.open(path, starting_cash=CASH) as journal:
        return await journal.load_fills()


def _tick(price: str, time: int) -> Tick:
    return Tick("bingx", BTC, time, D(price), D(price), D(price))


async def test_a_restart_on_the_same_day_counts_the_daily_loss_from_the_days_start(tmp_path: Path) -> None:
    limits = RiskLimits(max_daily_loss=D(100), max_tick_age=None, max_orders_per_minute=None)
    day = 19_700 * DAY_MS
    path = tmp_path / "journal.sqlite"
    async with Journal.open(path, starting_cash=CASH) as journal:
        portfolio = PortfolioManager(CASH, journal=journal)
        risk = RiskManager(limits, portfolio, journal=journal)
        portfolio.on_tick(_tick("100", day + 1000))
        risk.after_mark(day + 1000)
        assert isinstance(await risk.submit(Signal("bingx", BTC, "in", target=D(10), strategy="s")), Fill)
        portfolio.on_tick(_tick("93", day + 2000))  # -70 today
        risk.after_mark(day + 2000)
        await journal.record_snapshot(portfolio.journal_snapshot(day + 2000), risk.record())
    async with Journal.open(path, starting_cash=CASH) as journal:
        portfolio = await PortfolioManager.restore(journal)
        risk = RiskManager(limits, portfolio, restored=await journal.risk_state())
        portfolio.on_tick(_tick("90", day + 3000))  # -100: at the limit, not over it
        risk.after_mark(day + 3000)
        assert not risk.killed.is_set()
        portfolio.on_tick(_tick("89.9", day + 4000))  # -101 since the day's start, -31 since the restart
        risk.after_mark(day + 4000)
        assert risk.killed.is_set()
        assert risk.kill_reason is not None and "daily loss 101.00" in risk.kill_reason
        assert "exceeds max_daily_loss 100" in risk.kill_reason


async def test_a_refused_flip_does_not_make_the_strategy_trade_against_its_reason(tmp_path: Path) -> None:
    """A flip from long to short is twice the size, so max_order_notional refuses it while the
    opening order passes; the strategy must then act on what it holds, not on what it asked for.
    """
    strategy = SmaCrossover(name="sma", symbols=[BTC], fast=1, slow=2, size=1000, source="tick", allow_short=True)
    limits = RiskLimits(max_order_notional=D(1500), max_tick_age=None, max_orders_per_minute=None)
    # prices: up (long), down (flip refused), up (still long), then a slightly different long size
    prices = ["100", "101", "102", "99", "98", "100.5", "101.5", "99.7", "101.9", "102.4", "101"]
    async with Journal.open(tmp_path / "journal.sqlite", starting_cash=CASH) as journal:
        portfolio = PortfolioManager(CASH, journal=journal)
        signals_tx, signals_rx = trio.open_memory_channel[Signal](16)
        coordinator = StrategyCoordinator([strategy], signals_tx)
        risk = RiskManager(limits, portfolio, journal=journal, on_rejection=coordinator.rejected)
        market_tx, market_rx = trio.open_memory_channel[Kline | Tick](0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(coordinator.run, market_rx)
            nursery.start_soon(risk.run, signals_rx)
            async with market_tx:
                for index, price in enumerate(prices):
                    tick = _tick(price, 1_700_000_000_000 + index * 1000)
                    portfolio.on_tick(tick)
                    await market_tx.send(tick)
                    await trio.testing.wait_all_tasks_blocked()
        rejections = await journal.load_rejections()
    assert risk.state().rejections.get(RejectReason.MAX_ORDER_NOTIONAL, 0) >= 1
    assert [r.reason for r in rejections] == ["max_order_notional"] * len(rejections)
    assert all(r.strategy == "sma" and r.signal.startswith("target -") and "<" in r.signal_reason for r in rejections)
    assert portfolio.fills, "the strategy never traded"
    for fill in portfolio.fills:
        wants_long = " > " in fill.reason
        assert (fill.side is Side.BUY) == wants_long, fill


async def test_a_version_1_journal_is_migrated_forward(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    shutil.copyfile(V1_JOURNAL, path)
    async with Journal.open(path, starting_cash=CASH) as journal:
        portfolio = await PortfolioManager.restore(journal)
        assert len(portfolio.fills) == 2
        assert portfolio.position("bingx", BTC).quantity == D("0.3")
        assert await journal.risk_state() is None and await journal.load_rejections() == []
        risk = RiskManager(RiskLimits(), portfolio)
        risk.kill("test", 1_700_000_000_000)
        await journal.record_risk_event("kill", "test", 1_700_000_000_000, risk.record())
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        connection.close()
    async with Journal.open(path, starting_cash=CASH) as journal:
        state = await journal.risk_state()
    assert state is not None and state.kill_reason == "test" and state.kill_time == 1_700_000_000_000


async def test_a_journal_of_a_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    async with Journal.open(path, starting_cash=CASH):
        pass
    connection = sqlite3.connect(path)
    connection.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    connection.commit()
    connection.close()
    before = path.read_bytes()
    with pytest.raises(JournalError, match=f"schema version {SCHEMA_VERSION + 1}"):
        async with Journal.open(path, starting_cash=CASH):
            pytest.fail("opened")
    assert path.read_bytes() == before


async def test_a_row_that_cannot_be_read_is_one_journal_error(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    shutil.copyfile(V1_JOURNAL, path)
    connection = sqlite3.connect(path)
    connection.execute("UPDATE fills SET price = 'lots' WHERE seq = 2")
    connection.commit()
    connection.close()
    with pytest.raises(JournalError, match="is corrupt: a row cannot be read"):
        async with Journal.open(path, starting_cash=CASH) as journal:
            await journal.load_fills()


async def test_a_restart_that_tripped_before_its_flatten_flattens_and_trades_nothing_else(
    mock_clock: MockClock, tmp_path: Path
) -> None:
    path = tmp_path / "journal.sqlite"
    shutil.copyfile(V1_JOURNAL, path)  # 'sma' holds 0.3 BTC
    async with Journal.open(path, starting_cash=CASH) as journal:
        risk = RiskManager(RiskLimits(), await PortfolioManager.restore(journal))
        risk.kill("crashed before the flatten", 1_700_000_000_000)
        await journal.record_risk_event("kill", "crashed before the flatten", 1_700_000_000_000, risk.record())
    async with open_simulator(SimConfig(seed=12)) as sim:
        summary = await TradingEngine(demo_config(sim.exchange(), path)).run(duration=60)
    assert summary.stopped_by == "kill switch"
    assert summary.portfolio.strategy_positions == () and all(p.quantity == 0 for p in summary.portfolio.positions)
    fills = (await _fills(path))[2:]
    assert [(f.strategy, f.side, f.quantity) for f in fills] == [("sma", Side.SELL, D("0.3"))]
    assert fills[0].reason == "kill switch: crashed before the flatten"


async def test_a_full_disk_is_named_as_such(tmp_path: Path) -> None:
    """SQLite's page limit stands in for a full disk: the same SQLITE_FULL error."""
    async with Journal.open(tmp_path / "journal.sqlite", starting_cash=CASH) as journal:
        assert journal._connection is not None
        pages = journal._connection.execute("PRAGMA page_count").fetchone()[0]
        journal._connection.execute(f"PRAGMA max_page_count = {pages}")
        record = RejectionRecord(0, "s", "bingx", BTC, "target 1", "why" * 2000, "max_order_notional", "detail")
        with pytest.raises(JournalError, match="cannot be written: the disk is full"):
            for _ in range(100):
                await journal.record_rejection(record)
