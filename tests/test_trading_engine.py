"""The engine end to end against the embedded exchange: on Trio's MockClock (simulated seconds), and
a representative set on both Trio and asyncio (real time, a fast market)."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
from sim_thread import simulator_thread
from trio.testing import MockClock

from tradeloop import SubscriptionError
from tradeloop._groups import first_error_of, leaves, single_error
from tradeloop.exchanges.ccxt import CcxtExchange
from tradeloop.models import Fill, Kline, Signal, Tick
from tradeloop.sim import SimConfig, open_simulator
from tradeloop.streams import StreamConfig
from tradeloop.trading import (
    Breakout,
    EngineConfig,
    Journal,
    PortfolioManager,
    PortfolioSnapshot,
    RiskLimits,
    SmaCrossover,
    Strategy,
    TradingEngine,
)
from tradeloop.trading.cli import demo_config

D = Decimal
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock(autojump_threshold=0.005)


def reconcile(snapshot: PortfolioSnapshot, fills: list[Fill]) -> None:
    """The books, recomputed from the journal's fills and the final marks alone."""
    cash = snapshot.starting_cash - sum((f.signed_quantity * f.price + f.fee for f in fills), D(0))
    held: dict[str, Decimal] = {}
    for fill in fills:
        held[fill.symbol] = held.get(fill.symbol, D(0)) + fill.signed_quantity
    marks = {p.symbol: p.mark for p in snapshot.positions}
    value = sum((quantity * (marks[symbol] or 0) for symbol, quantity in held.items()), D(0))
    assert snapshot.cash == cash
    assert snapshot.equity == cash + value
    assert snapshot.fees == sum((f.fee for f in fills), D(0))
    assert snapshot.equity - snapshot.starting_cash == snapshot.realised_pnl + snapshot.unrealised_pnl - snapshot.fees
    assert {p.symbol: p.quantity for p in snapshot.positions} == held


async def journal_fills(path: Path) -> list[Fill]:
    async with Journal.open(path, starting_cash=D(10_000)) as journal:
        return await journal.load_fills()


async def test_demo_run_trades_and_reconciles(mock_clock: MockClock, tmp_path: Path) -> None:
    async with open_simulator(SimConfig(seed=3)) as sim:
        engine = TradingEngine(demo_config(sim.exchange(), tmp_path / "journal.sqlite"))
        summary = await engine.run(duration=60)
    assert summary.stopped_by == "duration"
    assert summary.trades >= 4
    assert summary.reconnects == 0
    assert summary.strategy_errors == {}
    fills = await journal_fills(tmp_path / "journal.sqlite")
    assert engine.portfolio is not None and fills == engine.portfolio.fills
    assert len(fills) == summary.trades == summary.portfolio.fills
    assert {f.strategy for f in fills} == {"sma", "breakout"}
    assert {f.symbol for f in fills} == {BTC, ETH}
    reconcile(summary.portfolio, fills)


class TickCounter:
    """A strategy of BTC's ticks that counts them; subclasses decide what each tick signals."""

    name = "ticks"
    symbols = (BTC,)
    timeframe = None
    warmup = 0

    def __init__(self) -> None:
        self.ticks = 0

    def on_kline(self, kline: Kline) -> list[Signal]:
        return []

    def on_tick(self, tick: Tick) -> list[Signal]:
        self.ticks += 1
        return self.decide(tick)

    def decide(self, tick: Tick) -> list[Signal]:
        raise NotImplementedError


class Exploding(TickCounter):
    """Trades once, then raises on its fifth tick."""

    name = "exploding"

    def decide(self, tick: Tick) -> list[Signal]:
        if self.ticks == 5:
            raise RuntimeError("strategy bug")
        return [Signal.hold(tick, D("0.01"), "first tick")] if self.ticks == 1 else []


async def test_a_raising_strategy_is_isolated_and_the_others_trade(mock_clock: MockClock, tmp_path: Path) -> None:
    async with open_simulator(SimConfig(seed=4)) as sim:
        config = demo_config(sim.exchange(), tmp_path / "journal.sqlite")
        strategies: list[Strategy] = [Exploding(), *config.strategies]
        engine = TradingEngine(dataclasses.replace(config, strategies=strategies))
        summary = await engine.run(duration=60)
    assert summary.strategy_errors == {"exploding": 1}
    status = {s.name: s for s in summary.strategies}
    assert not status["exploding"].enabled and status["exploding"].last_error == "RuntimeError: strategy bug"
    assert status["exploding"].ticks == 5
    fills = await journal_fills(tmp_path / "journal.sqlite")
    exploded_at = [f.time for f in fills if f.strategy == "exploding"]
    assert len(exploded_at) == 1
    assert any(f.time > exploded_at[0] + 5_000 for f in fills if f.strategy != "exploding")


async def test_the_kill_switch_flattens_and_stops(mock_clock: MockClock, tmp_path: Path) -> None:
    async with open_simulator(SimConfig(seed=5)) as sim:
        config = demo_config(sim.exchange(), tmp_path / "journal.sqlite")
        tight = dataclasses.replace(config.risk, max_drawdown=D("0.0001"))  # 1 USDT of 10,000
        engine = TradingEngine(dataclasses.replace(config, risk=tight))
        summary = await engine.run(duration=600)
    assert summary.stopped_by == "kill switch"
    assert summary.elapsed < 600
    assert summary.risk.killed and "max_drawdown" in (summary.risk.kill_reason or "")
    assert all(p.quantity == 0 for p in summary.portfolio.positions)
    assert summary.portfolio.strategy_positions == ()
    fills = await journal_fills(tmp_path / "journal.sqlite")
    assert any(f.reason.startswith("kill switch") for f in fills)
    reconcile(summary.portfolio, fills)


async def test_cancel_mid_run_then_restart_restores_the_portfolio(mock_clock: MockClock, tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    async with open_simulator(SimConfig(seed=6)) as sim:
        config = demo_config(sim.exchange(), path)
        engine = TradingEngine(config)
        async with trio.open_nursery() as nursery:
            await nursery.start(engine.run)
            portfolio = engine.portfolio
            assert portfolio is not None
            # Polls public state: nothing signals "three fills and a position open".
            while len(portfolio.fills) < 3 or not any(p.quantity for p in portfolio.positions()):  # noqa: ASYNC110
                await trio.sleep(0.5)
            nursery.cancel_scope.cancel()
        before = portfolio.snapshot()
        async with Journal.open(path, starting_cash=config.starting_cash) as journal:
            restored = await PortfolioManager.restore(journal, fee_rate=config.fee_rate, slippage=config.slippage)
            assert restored.snapshot() == before
        # and trading carries on from there: order ids continue, the journal keeps every fill
        summary = await TradingEngine(config).run(duration=30)
    assert summary.portfolio.fills == len(await journal_fills(path)) > before.fills
    assert summary.portfolio.next_order_id > before.next_order_id


async def test_candle_strategies_warm_up_from_history(mock_clock: MockClock, tmp_path: Path) -> None:
    async with open_simulator(SimConfig(seed=8)) as sim:
        candles = SmaCrossover(name="sma-1m", symbols=[BTC, ETH], fast=3, slow=10, size=500, allow_short=True)
        ticks = Breakout(name="breakout", symbols=[ETH], lookback=5, size=500, source="tick")
        config = EngineConfig(
            exchanges={"BingX": sim.exchange()},
            strategies=[candles, ticks],
            risk=RiskLimits(max_order_notional=D(1000)),
            journal=tmp_path / "journal.sqlite",
        )
        summary = await TradingEngine(config).run(duration=150)
    assert summary.warmup_failures == 0
    status = {s.name: s for s in summary.strategies}
    # 10 warm-up candles per symbol, then the two minutes that closed during the run
    assert 2 * 10 + 2 * 2 <= status["sma-1m"].klines <= 2 * 10 + 2 * 3
    assert status["breakout"].klines == 0  # it reads ticks only
    assert status["sma-1m"].signals >= 2  # each symbol's first view after warm-up


class CandleRecorder:
    """A strategy of BTC's 1m candles that records their open times and never trades."""

    name = "recorder"
    symbols = (BTC,)
    timeframe = "1m"
    warmup = 3

    def __init__(self) -> None:
        self.open_times: list[int] = []

    def on_kline(self, kline: Kline) -> list[Signal]:
        self.open_times.append(kline.open_time)
        return []

    def on_tick(self, tick: Tick) -> list[Signal]:
        return []


@pytest.mark.parametrize(
    ("push_interval", "duration", "last"),
    [
        # The first push comes 60 s in, after the candle forming at the warm-up's fetch closed:
        # warm-up, then candles 0 (the seam) to 3, closed by 280 s and handed over at 260 s.
        (100.0, 280.0, 3),
        # The first push comes 210 s in (candle 3 forming); candle 3 is handed over only at the
        # next push (460 s), when REST's newest is 6: the seam 0-2 is no longer among the newest.
        (250.0, 500.0, 6),
    ],
)
async def test_candles_closing_between_warm_up_and_the_first_push_reach_the_strategy(
    mock_clock: MockClock, tmp_path: Path, push_interval: float, duration: float, last: int
) -> None:
    # Pushes on a coarse grid; stalls are not detected before the first (REST polling would
    # fetch the seam).
    start = 1_760_000_040_000
    async with open_simulator(SimConfig(start_ms=start, push_interval=push_interval, seed=8)) as sim:
        recorder = CandleRecorder()
        config = EngineConfig(
            exchanges={"BingX": sim.exchange()},
            strategies=[recorder],
            journal=tmp_path / "journal.sqlite",
            streams=dataclasses.replace(StreamConfig(), stall_timeout=600.0),
        )
        engine = TradingEngine(config)
        # Virtual time stands still while the journal opens in a worker thread: an autojumping
        # clock would jump to the simulator's next timers meanwhile, and under load the engine
        # then started minutes late, after the pushes this test is about (two failed CI runs).
        mock_clock.autojump_threshold = math.inf
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(engine.run, duration=duration))
            while engine.portfolio is None:  # busy, so the clock cannot jump either
                await trio.lowlevel.checkpoint()
            mock_clock.autojump_threshold = 0.005
    assert start in recorder.open_times
    assert recorder.open_times == list(range(recorder.open_times[0], recorder.open_times[-1] + 1, 60_000))
    assert recorder.open_times[-1] == start + last * 60_000
    assert len(recorder.open_times) == 3 + last + 1  # the warm-up's three, then candles 0 to last


async def test_stop_returns_a_summary(mock_clock: MockClock, tmp_path: Path) -> None:
    async with open_simulator(SimConfig(seed=9)) as sim:
        engine = TradingEngine(demo_config(sim.exchange(), tmp_path / "journal.sqlite"))
        assert engine.status() is None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(engine.run)
            await trio.sleep(15)
            status = engine.status()
            assert status is not None and {t.symbol for t in status.prices} == {BTC, ETH}
            assert status.health is not None and len(status.health.topics) == 2
            engine.stop("test over")
        assert engine.status() is None


async def test_run_refuses_a_second_concurrent_run(mock_clock: MockClock, tmp_path: Path) -> None:
    async with open_simulator(SimConfig(seed=10)) as sim:
        engine = TradingEngine(demo_config(sim.exchange(), tmp_path / "journal.sqlite"))
        async with trio.open_nursery() as nursery:
            await nursery.start(engine.run)
            with pytest.raises(RuntimeError, match="already running"):
                await engine.run()
            engine.stop()
        with pytest.raises(ValueError, match="duration"):
            await engine.run(duration=0)



async def test_stop_while_starting(mock_clock: MockClock, tmp_path: Path) -> None:
    async with open_simulator(SimConfig(seed=11)) as sim:
        engine = TradingEngine(demo_config(sim.exchange(), tmp_path / "journal.sqlite"))
        summaries = []

        async def run() -> None:
            summaries.append(await engine.run())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await trio.testing.wait_all_tasks_blocked()  # the engine is opening its journal
            assert engine.status() is None  # not trading yet
            engine.stop("early")
    assert [(s.stopped_by, s.trades) for s in summaries] == [("early", 0)]


async def test_a_symbol_the_exchange_rejects_stops_the_engine_at_start_with_that_error(
    mock_clock: MockClock, tmp_path: Path
) -> None:
    async with open_simulator(SimConfig(symbols=("BTC-USDT",))) as sim:
        strategy = SmaCrossover(name="doge", symbols=["DOGE/USDT:USDT"], fast=3, slow=8, size=100)
        # No snapshot timer at 10 s: MockClock jumps to it when a journal thread or a loaded
        # machine leaves every task waiting 5 ms, and the bound below would then measure that.
        exchanges = {"bingx": sim.exchange()}
        config = EngineConfig(exchanges, [strategy], journal=tmp_path / "j.sqlite", snapshot_interval=600)
        started = trio.current_time()
        with pytest.raises(SubscriptionError, match="DOGE") as info:
            await TradingEngine(config).run(duration=600)
    assert not isinstance(info.value, BaseExceptionGroup), "one error, not a group"
    # Simulated seconds: far below the run's 600 even when a loaded machine lets the mock clock jump.
    assert trio.current_time() - started < 60, "at start, not after the run's duration"


# --- the same engine on Trio and asyncio ----------------------------------------------------------
# Real time, the simulator in the test's own loop, a fast market: each run lasts a second at most.

FAST_TICKS = SimConfig(speed=120.0, push_interval=0.02, seed=12)
"""Two symbols, a ticker push every 20 ms, a one-minute candle every half second."""


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Flipper(TickCounter):
    """Holds 0.01 BTC after every odd tick, nothing after every even one: a fill per tick."""

    name = "flipper"

    def decide(self, tick: Tick) -> list[Signal]:
        return [Signal.hold(tick, D("0.01") if self.ticks % 2 else D(0), f"tick {self.ticks}")]


def flipping(exchanges: dict[str, Any], journal: Path, **changes: Any) -> EngineConfig:
    return EngineConfig(exchanges=exchanges, strategies=[Flipper()], journal=journal, **changes)


@pytest.mark.anyio
async def test_a_run_fills_and_reconciles_on_every_backend(anyio_backend: str, tmp_path: Path) -> None:
    async with open_simulator(FAST_TICKS) as sim:
        engine = TradingEngine(flipping({"bingx": sim.exchange()}, tmp_path / "journal.sqlite"))
        summary = await engine.run(duration=0.5)
    assert summary.stopped_by == "duration"
    assert summary.trades >= 4 and summary.strategy_errors == {}
    fills = await journal_fills(tmp_path / "journal.sqlite")
    assert len(fills) == summary.trades == summary.portfolio.fills
    assert [f.side.value for f in fills[:2]] == ["buy", "sell"]
    reconcile(summary.portfolio, fills)


@pytest.mark.anyio
async def test_the_kill_switch_stops_the_run_on_every_backend(anyio_backend: str, tmp_path: Path) -> None:
    tight = RiskLimits(max_drawdown=D("0.0001"))  # 1 USDT of 10,000: a few fills' fees
    async with open_simulator(FAST_TICKS) as sim:
        config = flipping({"bingx": sim.exchange()}, tmp_path / "journal.sqlite", risk=tight, fee_rate=D("0.001"))
        summary = await TradingEngine(config).run(duration=30)
    assert summary.stopped_by == "kill switch"
    assert summary.risk.killed and "max_drawdown" in (summary.risk.kill_reason or "")
    assert all(p.quantity == 0 for p in summary.portfolio.positions)
    reconcile(summary.portfolio, await journal_fills(tmp_path / "journal.sqlite"))


@pytest.mark.anyio
async def test_cancelling_a_run_keeps_the_books_on_every_backend(anyio_backend: str, tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    async with open_simulator(FAST_TICKS) as sim:
        config = flipping({"bingx": sim.exchange()}, path)
        engine = TradingEngine(config)
        async with anyio.create_task_group() as tasks:
            await tasks.start(engine.run)
            portfolio = engine.portfolio
            assert portfolio is not None
            with anyio.fail_after(10):
                while len(portfolio.fills) < 3:  # noqa: ASYNC110 (polls public state, as a user would)
                    await anyio.sleep(0.02)
            tasks.cancel_scope.cancel()
    assert engine.status() is None
    before = portfolio.snapshot()
    async with Journal.open(path, starting_cash=config.starting_cash) as journal:
        books = await PortfolioManager.restore(journal, fee_rate=config.fee_rate, slippage=config.slippage)
    restored = books.snapshot()
    # An order cancelled before its fill was journaled used an id; the journal never saw it.
    assert restored.next_order_id <= before.next_order_id
    assert dataclasses.replace(restored, next_order_id=0) == dataclasses.replace(before, next_order_id=0)


@pytest.mark.anyio
@pytest.mark.parametrize("exchange", ["bingx", "binance"])  # Binance: checked against exchangeInfo
async def test_a_rejected_symbol_stops_the_engine_at_start_on_every_backend(
    anyio_backend: str, exchange: str, tmp_path: Path
) -> None:
    async with open_simulator(SimConfig(symbols=("BTC-USDT",), exchange=exchange)) as sim:
        strategy = SmaCrossover(name="doge", symbols=["DOGE/USDT:USDT"], fast=3, slow=8, size=100)
        config = EngineConfig(exchanges={exchange: sim.exchange()}, strategies=[strategy], journal=tmp_path / "j")
        with anyio.fail_after(10), pytest.raises(SubscriptionError, match="DOGE") as info:
            await TradingEngine(config).run(duration=600)
    assert not isinstance(info.value, BaseExceptionGroup), "one error, not a group"


@pytest.mark.anyio
async def test_a_ccxt_run_closes_its_client_on_every_backend(anyio_backend: str, tmp_path: Path) -> None:
    async with open_simulator(FAST_TICKS) as sim:
        urls = {"ws_url": sim.ws_url, "rest_url": sim.rest_url}
        config = flipping({"ccxt:bingx": urls}, tmp_path / "journal.sqlite", risk=RiskLimits(max_tick_age=None))
        summary = await TradingEngine(config).run(duration=1)
    (client,) = config.clients.values()
    assert isinstance(client, CcxtExchange)
    assert summary.trades >= 2
    assert client.client.session is None and client.client.clients == {}  # HTTP session and sockets closed
    assert not [t for t in threading.enumerate() if t.name.startswith("tradeloop ccxt")]


def test_tradeloop_run_against_a_polled_ccxt_exchange_ends_with_no_unclosed_session(tmp_path: Path) -> None:
    with simulator_thread(FAST_TICKS) as sim:
        config = tmp_path / "ccxt.toml"
        config.write_text(
            f'journal = "{tmp_path / "journal.sqlite"}"\n'
            '[exchanges."ccxt:bingx"]\n'
            f'ws_url = "{sim.sim.ws_url}"\nrest_url = "{sim.sim.rest_url}"\npoll = true\n'
            '[[strategies]]\ntype = "breakout"\nsymbols = ["BTC/USDT:USDT"]\nsize = 100\nsource = "tick"\n'
        )
        command = [sys.executable, "-W", "error", "-m", "tradeloop.cli", "run", "--config", str(config)]
        result = subprocess.run([*command, "--duration", "1"], capture_output=True, text=True, timeout=60, check=False)
        rest_requests = sim.call(lambda sim: sim.stats.rest_requests)
    assert result.returncode == 0, result.stderr
    assert "stopped by duration" in result.stdout
    assert "Unclosed" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    assert rest_requests > 0  # polled: nothing but REST


@pytest.mark.anyio
async def test_stop_while_starting_on_every_backend(anyio_backend: str, tmp_path: Path) -> None:
    # Nothing listens here: a stop that let the run reach the exchange would fail or hang.
    nowhere = {"ws_url": "ws://127.0.0.1:9/swap-market", "rest_url": "http://127.0.0.1:9"}
    engine = TradingEngine(
        flipping({"bingx": nowhere}, tmp_path / "journal.sqlite"), journal_class=StopsTheEngineWhileOpening
    )
    StopsTheEngineWhileOpening.engine = engine
    with anyio.fail_after(10):
        summary = await engine.run()
    assert (summary.stopped_by, summary.trades) == ("early", 0)
    assert engine.status() is None


class StopsTheEngineWhileOpening(Journal):
    """Asks the engine to stop while its journal opens, before its cancel scope is entered."""

    engine: TradingEngine

    @classmethod
    @asynccontextmanager
    async def open(cls, path: str | Path, *, starting_cash: Decimal) -> AsyncIterator[Journal]:
        cls.engine.stop("early")
        async with super().open(path, starting_cash=starting_cash) as journal:
            yield journal


async def raise_together(*errors: Exception) -> None:
    """Each error raised by a task of one group, all in the same moment (none cancels the others first)."""
    go = anyio.Event()

    async def raise_on_go(error: Exception) -> None:
        with anyio.CancelScope(shield=True):
            await go.wait()
            raise error

    async with anyio.create_task_group() as tasks:
        for error in errors:
            tasks.start_soon(raise_on_go, error)
        await anyio.wait_all_tasks_blocked()
        go.set()


@pytest.mark.anyio
async def test_rejections_together_leave_as_the_first_and_other_errors_stay_a_group(anyio_backend: str) -> None:
    ticks, candles = (SubscriptionError("binance", topic, None, "unknown symbol") for topic in ("ticker", "kline"))
    with pytest.raises(SubscriptionError) as rejected, single_error(), first_error_of(SubscriptionError):
        await raise_together(ticks, candles)
    assert rejected.value in (ticks, candles)

    with pytest.raises(BaseExceptionGroup) as info, single_error(), first_error_of(SubscriptionError):
        await raise_together(ticks, ValueError("a bug"))
    assert {type(exc) for exc in leaves(info.value)} == {SubscriptionError, ValueError}
