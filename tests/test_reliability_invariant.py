"""The no-loss invariant as a property: whatever schedule of faults the exchange goes through, the
closed candles a consumer receives are the exchange's history, each exactly once, in order.

Hypothesis draws the schedule (fault kind, start, duration) over 10-15 simulated minutes; each
example runs in its own ``trio.run`` on a MockClock, against the embedded exchange over loopback.
Two fixed scenarios also run on asyncio, in virtual time too (:mod:`virtual_time`).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
import trio
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from reliability_faults import KINDS, Fault, knowable, run_schedule
from streams_helpers import FAST, START_MS, Collector, assert_matches_history
from trio.testing import MockClock
from virtual_time import VirtualTimeLoop

from tradeloop.sim import SimConfig, open_simulator
from tradeloop.streams import StreamManager
from tradeloop.symbols import candle_open_time
from tradeloop.trading import Journal, PortfolioManager, PortfolioSnapshot, SmaCrossover, TradingEngine
from tradeloop.trading.cli import demo_config

BTC = "BTC/USDT:USDT"

TOPIC_SETS: tuple[tuple[tuple[str, str], ...], ...] = (
    (("BTC-USDT", "1m"),),
    (("BTC-USDT", "1m"), ("ETH-USDT", "1m")),
    (("BTC-USDT", "1m"), ("BTC-USDT", "5m")),
)


@dataclass(frozen=True, slots=True)
class Scenario:
    length: float
    """Simulated seconds the schedule spans; every fault ends two minutes before."""
    schedule: tuple[Fault, ...]
    topics: tuple[tuple[str, str], ...] = (("BTC-USDT", "1m"),)
    seed: int = 0
    exchange: str = "bingx"
    """The simulator's dialect: BingX (closes inferred, confirmed over REST) or Binance (flagged)."""


@st.composite
def schedules(draw: st.DrawFn, length: float) -> tuple[Fault, ...]:
    """Up to six fault windows, each starting after the first candle and ending two minutes
    before ``length``, so the stream has time to recover before the window is checked."""
    faults = []
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        kind = draw(st.sampled_from(KINDS))
        start = draw(st.integers(min_value=30, max_value=int(length) - 180))
        duration = 0 if kind == "drop" else draw(st.integers(min_value=5, max_value=240))
        faults.append(Fault(kind, float(start), float(min(duration, length - 120 - start))))
    return knowable(faults)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    length = 60.0 * draw(st.integers(min_value=10, max_value=15))
    return Scenario(
        length,
        draw(schedules(length)),
        draw(st.sampled_from(TOPIC_SETS)),
        draw(st.integers(min_value=0, max_value=2**16)),
        draw(st.sampled_from(("bingx", "binance"))),
    )


async def consume_through(scenario: Scenario) -> None:
    topics = scenario.topics
    exchange = scenario.exchange
    config = SimConfig(
        symbols=("BTC-USDT", "ETH-USDT"),
        start_ms=START_MS,
        seed=scenario.seed,
        ping_interval=5.0,
        pong_timeout=15.0,
        exchange=exchange,
    )
    async with (
        open_simulator(config) as sim,
        StreamManager.open({exchange: sim.exchange()}, FAST) as streams,
        anyio.create_task_group() as nursery,
    ):
        collectors = []
        for symbol_id, timeframe in topics:
            collector = Collector(streams.klines(exchange, f"{symbol_id.replace('-', '/')}:USDT", timeframe))
            collectors.append(collector)
            nursery.start_soon(collector.run)
        await run_schedule(sim, scenario.schedule, scenario.length)
        # Everything that closed before the faults ended must arrive, in bounded simulated time.
        with anyio.fail_after(900):
            for collector, (_, timeframe) in zip(collectors, topics, strict=True):
                due = candle_open_time(timeframe, sim.now_ms()) - 1
                while not collector.closed or collector.closed[-1].open_time < candle_open_time(timeframe, due):  # noqa: ASYNC110
                    await anyio.sleep(1)
        nursery.cancel_scope.cancel()
    for collector, (symbol_id, timeframe) in zip(collectors, topics, strict=True):
        assert collector.closed[0].open_time == candle_open_time(timeframe, START_MS), "from the first candle on"
        assert_matches_history(sim, collector.closed, symbol_id)


SETTINGS = settings(
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is deterministic
    database=None,
    # No shrinking: an example takes seconds, shrinking one would take minutes; the failing
    # scenario is printed as drawn, and replays (derandomized) with the run that found it.
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


PINNED = (
    # A stall across a candle's close while REST is down: the candle must not be closed with the
    # values it had when the feed stopped (found by this test; fixed in streams.topic).
    Scenario(600.0, (Fault("stall_silent", 100.0, 30.0), Fault("rest_503", 95.0, 105.0))),
    # Pushes reordered while REST is down: an older update of the candle, arriving after its
    # final one, must not replace it (found by this test; fixed in streams.topic).
    Scenario(660.0, (Fault("rest_503", 382.0, 158.0), Fault("reorder", 453.0, 87.0)), seed=1),
    # Binance's dialect: a lost x:true push (the socket dropped across a close) while REST is down.
    Scenario(600.0, (Fault("rest_503", 100.0, 90.0), Fault("drop", 115.0, 0.0)), exchange="binance"),
)
"""Schedules that once broke the invariant, or that it must always cover; every run tries them."""
DISCONNECTS = Scenario(
    600.0, (Fault("drop", 100.0, 0.0), Fault("stall_silent", 200.0, 40.0), Fault("drop", 300.0, 0.0)), seed=2
)
"""BingX's dialect through two forced disconnects and a silent stall (pings stopped too)."""


@settings(SETTINGS, max_examples=6)
@example(PINNED[0])
@example(PINNED[1])
@example(PINNED[2])
@given(scenarios())
def test_closed_candles_equal_the_exchange_history_whatever_the_faults(scenario: Scenario) -> None:
    trio.run(consume_through, scenario, clock=MockClock(autojump_threshold=0.002))


@pytest.mark.parametrize(
    "scenario", [DISCONNECTS, PINNED[0], PINNED[2]], ids=["disconnects", "stall-while-rest-down", "binance-lost-final"]
)
def test_closed_candles_equal_the_exchange_history_on_asyncio_in_virtual_time(scenario: Scenario) -> None:
    """The same invariant under ``asyncio``: simulator, streams and consumers in one loop, on
    virtual time, in both exchanges' dialects."""
    anyio.run(consume_through, scenario, backend="asyncio", backend_options={"loop_factory": VirtualTimeLoop})


# --- the engine: whatever the faults, the journal holds exactly the portfolio's fills ----------


async def calm_clock(at: float) -> None:
    """From ``at`` on, jump the clock only after 50 ms idle: the engine's last journal writes run
    in threads, and a jump during one would run out its timeout for no fault of the code."""
    await trio.sleep_until(at)
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, MockClock)
    clock.autojump_threshold = 0.05


def books_from_fills(snapshot: PortfolioSnapshot) -> tuple[object, ...]:
    """What the fills alone decide (marks, equity and drawdown need the last prices too)."""
    positions = tuple((p.symbol, p.quantity, p.cost, p.realised_pnl) for p in snapshot.positions)
    return snapshot.cash, snapshot.fees, snapshot.realised_pnl, positions, snapshot.strategy_positions


async def trade_through(schedule: Sequence[Fault], length: float, seed: int, journal: Path) -> None:
    async with open_simulator(SimConfig(seed=seed, ping_interval=5.0, pong_timeout=15.0)) as sim:
        demo = demo_config(sim.exchange(), journal)
        candles = SmaCrossover(name="sma-1m", symbols=[BTC], fast=2, slow=3, size=500, allow_short=True)
        config = dataclasses.replace(demo, strategies=[*demo.strategies, candles], streams=FAST)
        engine = TradingEngine(config)
        duration = length + 60
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_schedule, sim, list(schedule), length)
            nursery.start_soon(calm_clock, trio.current_time() + duration - 1)
            summary = await engine.run(duration=duration)
    assert engine.portfolio is not None
    async with Journal.open(journal, starting_cash=config.starting_cash) as reopened:
        assert await reopened.load_fills() == engine.portfolio.fills
        restored = await PortfolioManager.restore(reopened, fee_rate=config.fee_rate, slippage=config.slippage)
    assert books_from_fills(restored.snapshot()) == books_from_fills(summary.portfolio)
    assert summary.trades > 0, "the run traded through the faults"


@settings(SETTINGS, max_examples=4)
@given(data=st.data(), seed=st.integers(min_value=0, max_value=2**16))
def test_the_journal_equals_the_fills_whatever_the_faults(data: st.DataObject, seed: int) -> None:
    length = 5 * 60.0
    schedule = data.draw(schedules(length), label="schedule")
    with tempfile.TemporaryDirectory() as directory:
        journal = Path(directory) / "journal.sqlite"
        trio.run(trade_through, schedule, length, seed, journal, clock=MockClock(autojump_threshold=0.002))
