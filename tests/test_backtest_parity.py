"""Parity: the same candles, backtested and traded live against the simulator replaying them,
give the same orders and fills, in the same order, at the same prices."""

from __future__ import annotations

import time
from decimal import Decimal
from functools import partial
from pathlib import Path

import pytest
import trio
from backtest_helpers import BTC, MINUTE, START, random_walk
from trio.testing import MockClock

from tradeloop.backtest import BacktestJournal, run_backtest, series_from_klines
from tradeloop.exchanges import Exchange
from tradeloop.models import Fill
from tradeloop.sim import SimConfig, open_simulator
from tradeloop.streams import StreamConfig
from tradeloop.trading import EngineConfig, RiskLimits, SmaCrossover, TradingEngine

WARMUP = 8
CANDLES = 30
D = Decimal


def config(exchange: Exchange | dict[str, str], journal: Path) -> EngineConfig:
    strategy = SmaCrossover(name="sma", symbols=[BTC], fast=3, slow=WARMUP, size=1000, allow_short=True)
    return EngineConfig(
        exchanges={"bingx": exchange},
        strategies=[strategy],
        # No tick-age limit: how long the live run's REST confirmation of a close takes must not
        # matter. The simulator pushes once a minute, so the stall watchdog waits longer.
        risk=RiskLimits(max_tick_age=None),
        streams=StreamConfig(stall_timeout=150),
        fee_rate=D("0.0005"),
        slippage=D("0.0002"),
        journal=journal,
        snapshot_interval=600,  # few timers: each costs the live run 20 ms of real idle time
    )


async def hold_the_clock_until_warmed_up(engine: TradingEngine) -> None:
    """Keep the loop busy, so that the MockClock cannot jump, until the strategy has its warm-up.

    The clock jumps once every task has waited for the threshold. On a loaded machine the engine's
    start (journal, subscriptions, the REST warm-up over loopback) waited longer than that, twice,
    and the clock jumped over two minute pushes: the warm-up then held the candle opening at START,
    and the live run never traded on it. A real exchange does not move a minute while we connect.
    Bounded in real time, so that an engine that never warms up fails the parity check, not hangs.
    """
    give_up = time.monotonic() + 60
    while time.monotonic() < give_up:
        status = engine.status()
        if status is not None and all(strategy.klines >= WARMUP for strategy in status.strategies):
            return
        await trio.lowlevel.checkpoint()


def test_a_backtest_and_a_live_run_on_the_same_candles_fill_alike(tmp_path: Path) -> None:
    klines = random_walk(WARMUP + 1 + CANDLES, seed=11, start_ms=START - (WARMUP + 1) * MINUTE)
    # Both start 45 s into the candle before START: they warm up on the candles closed by then and
    # trade from the first candle the live stream sees whole (the one opening at START). The margin
    # keeps any clock jump during the live run's start-up (to a timer due before it) before START.
    start = START - 45_000

    async def live() -> list[Fill]:
        sim_config = SimConfig(
            symbols=["BTC-USDT"],
            history={"BTC-USDT": klines},
            start_ms=start,
            step_seconds=15,
            # Pushes at the minute only: the ticker then shows each candle's open until the next
            # minute, however long the stream layer takes to confirm the candle that closed.
            push_interval=60,
            ping_interval=60,
        )
        async with open_simulator(sim_config) as sim:
            # The journal in the Trio thread: a task waiting for a worker thread (the live journal's
            # SQLite) counts as waiting, and the clock would jump over the write to the next push.
            engine = TradingEngine(config(sim.exchange(), tmp_path / "live.sqlite"), journal_class=BacktestJournal)
            async with trio.open_nursery() as nursery:
                # every candle but the last closes within the run (its order would fill at the next open)
                nursery.start_soon(partial(engine.run, duration=45 + (CANDLES - 1) * 60 + 30))
                await hold_the_clock_until_warmed_up(engine)
        assert engine.portfolio is not None
        return engine.portfolio.fills

    async def backtest() -> list[Fill]:
        history = {("bingx", BTC): series_from_klines(klines, exchange="bingx", symbol=BTC, timeframe="1m")}
        result = await run_backtest(
            config({}, tmp_path / "unused.sqlite"),
            history,
            start_ms=start,
            end_ms=START + CANDLES * MINUTE,
            out_dir=tmp_path / "backtest",
        )
        return list(result.fills)

    # Loopback I/O takes real time: the live run's clock jumps only after 20 ms with nothing to do.
    live_fills = trio.run(live, clock=MockClock(autojump_threshold=0.02))
    backtest_fills = trio.run(backtest, clock=MockClock(autojump_threshold=0))
    assert len(backtest_fills) >= 4
    assert live_fills == backtest_fills
    opens = {k.open_time: k.open for k in klines}
    assert all(fill.price == opens[fill.time] * (1 + fill.side.sign * D("0.0002")) for fill in live_fills)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"step_seconds": 30}, "must span at least 4 whole steps"),
        ({"symbols": ["ETH-USDT"]}, "not one of the symbols"),
    ],
)
def test_a_history_the_simulator_cannot_replay_is_refused(change: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {"symbols": ["BTC-USDT"], "history": {"BTC-USDT": random_walk(5)}} | change
    with pytest.raises(ValueError, match=message):
        SimConfig(**settings)  # type: ignore[arg-type]


def test_a_gap_in_the_history_is_refused() -> None:
    klines = random_walk(5)
    with pytest.raises(ValueError, match="contiguous"):
        SimConfig(symbols=["BTC-USDT"], history={"BTC-USDT": klines[:2] + klines[3:]})


async def test_the_simulator_serves_the_given_candles() -> None:
    klines = random_walk(20, seed=3)
    async with open_simulator(SimConfig(symbols=["BTC-USDT"], history={"BTC-USDT": klines}, step_seconds=15)) as sim:
        assert sim.now_ms() >= klines[-1].open_time  # start_ms defaults to history_seconds after the first open
        served = sim.candles("BTC-USDT", "1m", START, START + 19 * MINUTE)
        five = sim.candles("BTC-USDT", "5m", START, START + 15 * MINUTE)
    assert [(c.open_time, c.open, c.high, c.low, c.close, c.volume) for c in served] == [
        (k.open_time, k.open, k.high, k.low, k.close, k.volume) for k in klines
    ]
    assert [(c.open, c.high, c.low, c.close) for c in five] == [
        (group[0].open, max(k.high for k in group), min(k.low for k in group), group[-1].close)
        for group in (klines[i : i + 5] for i in range(0, 20, 5))
    ]
