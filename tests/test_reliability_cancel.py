"""Cancellation everywhere: the StreamManager and the engine, cancelled at many points.

Every time, the cancelled thing must return at once in simulated time (MockClock), leave no task of
tradeloop's anywhere in the task tree, leave no socket open (the simulator sees every connection
close; an unclosed socket would also be a ResourceWarning, an error under ``filterwarnings``),
and the engine's journal must reopen with exactly the fills the portfolio applied.

Cancel points come three ways: a number of scheduler steps after a start or an event (these
sweep through connect, the WebSocket handshake and the first subscriptions without simulated time
passing), a simulated time (subscriptions are paced, so they take time), and states reached on
purpose (REST backfill retrying against a 429, a consumer that stopped reading, a REST request
with no answer, a fill being written to the journal).
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from streams_helpers import FAST, START_MS, SWAP, assert_matches_history
from trio.testing import MockClock

from tradeloop.exchanges.bingx import BingX
from tradeloop.models import Fill, Kline, Signal, Tick
from tradeloop.sim import RestDown, SimConfig, Simulator, open_simulator
from tradeloop.streams import StreamConfig, StreamManager
from tradeloop.trading import EngineConfig, Journal, PortfolioManager, RiskLimits, SmaCrossover, TradingEngine

PROMPT = 1.0
"""Simulated seconds a cancelled manager or engine may take to return: the close bounds (2 s for
a WebSocket, 5 s for the journal) are for peers that do not answer; cancelled, nothing waits."""
ETH = "ETH/USDT:USDT"
STEPS = (*range(24), 34, 55, 89, 144, 233, 377, 610, 987, 1597)
"""Scheduler steps before a cancel: over loopback, connecting and the first subscription take about
a dozen; opening the journal (threads) takes hundreds."""


RUNNING = 0.002
"""Autojump threshold while things run (real seconds idle before the clock jumps)."""
CLOSING = 1.0
"""Autojump threshold from the cancel until the return: the journal's SQLite calls run in threads,
and a jump while one is in flight would move the clock on for no fault of the code."""


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock(autojump_threshold=RUNNING)


def all_tasks() -> list[trio.lowlevel.Task]:
    """Every task alive in this run, walking down from the root task."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    tasks, stack = [], [root]
    while stack:
        task = stack.pop()
        tasks.append(task)
        stack.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return tasks


def tradeloop_tasks() -> list[str]:
    """Names of every task of tradeloop's streams and trading still alive, anywhere."""
    prefixes = ("tradeloop.streams", "tradeloop.trading", "trio_websocket", "http")
    return [task.name for task in all_tasks() if task.name.startswith(prefixes)]


async def assert_all_closed(sim: Simulator) -> None:
    assert tradeloop_tasks() == []
    with trio.fail_after(5):  # the simulator notices a closed socket on its next read
        while sim.stats.connections_open:  # noqa: ASYNC110 - a counter, no event to wait on
            await trio.sleep(0.01)
    gc.collect()  # an unclosed socket warns when collected; filterwarnings makes that an error


async def cancel_after_steps(scope: trio.CancelScope, *, steps: int) -> None:
    for _ in range(steps):
        await trio.lowlevel.checkpoint()
    scope.cancel()


async def sleep_then_cancel(delay: float, scope: trio.CancelScope) -> None:
    await trio.sleep(delay)
    scope.cancel()


async def run_then_cancel(
    body: Callable[[], Awaitable[object]], canceller: Callable[[trio.CancelScope], Awaitable[None]]
) -> float:
    """Run ``body`` until ``canceller`` cancels it; the simulated seconds it took to return."""
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, MockClock)
    cancelled_at: list[float] = []

    async def cancel(scope: trio.CancelScope) -> None:
        await canceller(scope)
        cancelled_at.append(trio.current_time())
        clock.autojump_threshold = CLOSING

    try:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(cancel, scope)
                await body()
    finally:
        clock.autojump_threshold = RUNNING
    assert cancelled_at, "the body ended before it was cancelled"
    return trio.current_time() - cancelled_at[0]


# --- the StreamManager ---------------------------------------------------------------------------


async def stream_forever(exchange: BingX, *, read: bool = True, config: StreamConfig = FAST) -> None:
    """Klines of two symbols and a ticker on one socket, consumed (or not) until cancelled."""
    async with StreamManager.open({"bingx": exchange}, config) as streams, trio.open_nursery() as nursery:
        channels: list[trio.abc.ReceiveChannel[Any]] = [
            streams.klines("bingx", SWAP, "1m", buffer=1),
            streams.klines("bingx", ETH, "1m", buffer=1),
            streams.ticks("bingx", SWAP),
        ]
        for channel in channels if read else ():
            nursery.start_soon(drain, channel)
        await trio.sleep_forever()


async def drain(channel: trio.abc.ReceiveChannel[Any]) -> None:
    async for _ in channel:
        pass


@asynccontextmanager
async def simulator(**options: object) -> AsyncIterator[Simulator]:
    async with open_simulator(SimConfig(start_ms=START_MS, ping_interval=5.0, **options)) as sim:  # type: ignore[arg-type]
        yield sim


async def test_manager_cancelled_at_every_step_of_connecting_and_subscribing(mock_clock: MockClock) -> None:
    reached = set()
    async with simulator() as sim:

        async def cancel_and_note(canceller: Callable[[trio.CancelScope], Awaitable[None]]) -> None:
            before = sim.stats.connections_total

            async def noting(scope: trio.CancelScope) -> None:
                await canceller(scope)
                reached.add((sim.stats.connections_total > before, sim.stats.subscriptions))

            assert await run_then_cancel(lambda: stream_forever(sim.exchange()), noting) <= PROMPT
            await assert_all_closed(sim)

        for steps in STEPS:  # connect, handshake, the first subscription
            await cancel_and_note(partial(cancel_after_steps, steps=steps))
        for delay in (0.05, 0.15, 0.25, 2.0, 65.0):  # the paced subscriptions, streaming, a close
            await cancel_and_note(partial(sleep_then_cancel, delay))
    # (socket accepted by the server, subscriptions made) when cancelled
    assert {(False, 0), (True, 1), (True, 2), (True, 3)} <= reached, reached


async def test_manager_cancelled_while_backfill_retries_a_rate_limited_rest(mock_clock: MockClock) -> None:
    async with simulator() as sim:
        async with StreamManager.open({"bingx": sim.exchange()}, FAST):
            pass  # a manager that never subscribed closes at once too

        async def backfilling() -> None:
            async with StreamManager.open({"bingx": sim.exchange()}, FAST) as streams, trio.open_nursery() as nursery:
                nursery.start_soon(drain, streams.klines("bingx", SWAP, "1m"))
                await trio.sleep(30)
                sim.faults.rest_rate_limited = True
                sim.faults.drop_all()
                with trio.fail_after(120):
                    while not any(t.rest_errors >= 3 for t in streams.health().topics):  # noqa: ASYNC110
                        await trio.sleep(0.5)
                retrying.set()
                await trio.sleep_forever()

        retrying = trio.Event()

        async def canceller(scope: trio.CancelScope) -> None:
            await retrying.wait()
            scope.cancel()

        assert await run_then_cancel(backfilling, canceller) <= PROMPT
        sim.faults.clear()
        await assert_all_closed(sim)


async def test_manager_cancelled_while_a_consumer_blocks_its_socket(mock_clock: MockClock) -> None:
    blocking = dataclasses.replace(FAST, kline_buffer=8)  # the topic inbox fills in seconds
    async with simulator() as sim:
        for delay in (2.0, 30.0):  # buffers filling; the reader blocked, the socket stalled and reconnecting
            body = partial(stream_forever, sim.exchange(), read=False, config=blocking)
            assert await run_then_cancel(body, partial(sleep_then_cancel, delay)) <= PROMPT
            await assert_all_closed(sim)


async def test_manager_cancelled_while_polling_a_failing_rest(mock_clock: MockClock) -> None:
    async with simulator() as sim:
        sim.faults.malformed_rate = 1.0
        sim.faults.rest_down = RestDown.HTTP_503
        for delay in (5.0, 40.0):
            assert (
                await run_then_cancel(lambda: stream_forever(sim.exchange()), partial(sleep_then_cancel, delay))
                <= PROMPT
            )
            await assert_all_closed(sim)


@asynccontextmanager
async def unanswered_rest() -> AsyncIterator[str]:
    """The URL of an HTTP server that accepts requests and never answers."""

    async def hold(stream: trio.SocketStream) -> None:
        async with stream:
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, hold, 0, host="127.0.0.1"))
        yield f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        nursery.cancel_scope.cancel()


async def test_manager_cancelled_with_a_rest_request_in_flight(mock_clock: MockClock) -> None:
    async with simulator() as sim, unanswered_rest() as rest_url:
        exchange = BingX(ws_url=sim.ws_url, rest_url=rest_url)
        # The first close waits for REST (rest_timeout: 10 s), then backs off and asks again.
        for delay in (62.0, 66.0, 90.0):
            assert await run_then_cancel(lambda: stream_forever(exchange), partial(sleep_then_cancel, delay)) <= PROMPT
            await assert_all_closed(sim)


async def test_a_rest_that_never_answers_costs_confirmations_not_the_stream(mock_clock: MockClock) -> None:
    """Each close is confirmed in vain, every attempt bounded by rest_timeout, then delivered
    from the stream and counted; the manager carries on (it used to end on the TooSlowError)."""
    async with simulator() as sim, unanswered_rest() as rest_url:
        exchange = BingX(ws_url=sim.ws_url, rest_url=rest_url)
        async with StreamManager.open({"bingx": exchange}, FAST) as streams:
            closed = []
            with trio.fail_after(600):
                async for kline in streams.klines("bingx", SWAP, "1m", closed_only=True):
                    closed.append(kline)
                    if len(closed) == 3:
                        break
            (topic,) = streams.health().topics
    assert topic.unconfirmed_closes >= 2 and topic.rest_errors >= 2 * FAST.confirm_attempts
    assert_matches_history(sim, closed)  # an uninterrupted stream's last updates are final


# --- the engine ----------------------------------------------------------------------------------


class EveryTick:
    """Flips between long and flat on every tick, and tells the test when it has signalled."""

    name = "every-tick"
    symbols = (SWAP,)
    timeframe = None
    warmup = 0

    def __init__(self) -> None:
        self.signalled = trio.Event()
        self._long = False

    def on_kline(self, kline: Kline) -> list[Signal]:
        return []

    def on_tick(self, tick: Tick) -> list[Signal]:
        self._long = not self._long
        self.signalled.set()
        return [Signal.hold(tick, Decimal("0.01") if self._long else Decimal(0), "flip")]


def engine_config(sim: Simulator, journal: Path, *strategies: object) -> EngineConfig:
    candles = SmaCrossover(name="sma", symbols=[SWAP, ETH], fast=2, slow=3, size=500)  # warms up over REST
    return EngineConfig(
        exchanges={"bingx": sim.exchange()},
        strategies=[candles, *strategies],  # type: ignore[list-item]
        risk=RiskLimits(max_orders_per_minute=None, max_tick_age=60.0),
        journal=journal,
        snapshot_interval=1.0,
        streams=FAST,
    )


class Engines:
    """Engines run one after the other on one journal, each checked once cancelled."""

    def __init__(self, sim: Simulator, journal: Path) -> None:
        self.sim = sim
        self.journal = journal
        self.fills: list[Fill] = []
        """What the journal must hold: the fills of the last engine that opened it."""

    async def cancel(
        self, canceller: Callable[[TradingEngine, trio.CancelScope], Awaitable[None]], *strategies: object
    ) -> TradingEngine:
        engine = TradingEngine(engine_config(self.sim, self.journal, *strategies))
        assert await run_then_cancel(engine.run, partial(canceller, engine)) <= PROMPT
        assert engine.status() is None
        await assert_all_closed(self.sim)
        if engine.portfolio is not None:
            self.fills = engine.portfolio.fills
        async with Journal.open(self.journal, starting_cash=engine.config.starting_cash) as journal:
            assert await journal.load_fills() == self.fills
            if engine.portfolio is not None:
                restored = (await PortfolioManager.restore(journal, fee_rate=engine.config.fee_rate)).snapshot()
                books = engine.portfolio.snapshot()
                # An order cancelled before its write took an id that no journaled order has.
                assert restored.next_order_id <= books.next_order_id
                assert dataclasses.replace(restored, next_order_id=0) == dataclasses.replace(books, next_order_id=0)
        return engine


async def steps_then_stop(steps: int, engine: TradingEngine, scope: trio.CancelScope) -> None:
    """Alternately cancel from outside and ask the engine to stop: both must end it the same way."""
    for _ in range(steps):
        await trio.lowlevel.checkpoint()
    if steps % 2:
        engine.stop("test")
    else:
        scope.cancel()


async def test_engine_cancelled_at_every_step_of_starting(mock_clock: MockClock, tmp_path: Path) -> None:
    async with simulator() as sim:
        engines = Engines(sim, tmp_path / "journal.sqlite")
        opened = 0
        for steps in STEPS:  # journal opening, portfolio restoring
            engine = await engines.cancel(partial(steps_then_stop, steps))
            opened += engine.portfolio is not None

        async def after_open(steps: int, engine: TradingEngine, scope: trio.CancelScope) -> None:
            while engine.portfolio is None:  # busy, so simulated time stands still
                await trio.lowlevel.checkpoint()
            await steps_then_stop(steps, engine, scope)

        for steps in STEPS:  # streams opening, warm-up over REST, connecting, subscribing
            await engines.cancel(partial(after_open, steps))

        async def after_delay(delay: float, engine: TradingEngine, scope: trio.CancelScope) -> None:
            await sleep_then_cancel(delay, scope)

        for delay in (0.05, 0.2, 0.5, 1.5, 5.0):  # paced subscriptions, first ticks
            await engines.cancel(partial(after_delay, delay))
    assert 0 < opened < len(STEPS), "the sweep spans opening the journal"


async def test_engine_cancelled_while_backfill_retries(mock_clock: MockClock, tmp_path: Path) -> None:
    async with simulator() as sim:

        async def backfilling(engine: TradingEngine, scope: trio.CancelScope) -> None:
            await trio.sleep(70)
            sim.faults.rest_rate_limited = True
            sim.faults.drop_all()
            with trio.fail_after(120):
                while True:
                    status = engine.status()
                    assert status is not None and status.health is not None
                    if any(t.rest_errors >= 3 and t.topic.timeframe for t in status.health.topics):
                        break
                    await trio.sleep(0.5)
            scope.cancel()

        await Engines(sim, tmp_path / "journal.sqlite").cancel(backfilling)
        sim.faults.clear()


def task_named(suffix: str) -> trio.lowlevel.Task:
    (task,) = [t for t in all_tasks() if t.name.endswith(suffix)]
    return task


def writing_a_fill(task: trio.lowlevel.Task) -> bool:
    """Whether ``task`` waits for the journal's thread to write a fill (not for its turn at it)."""
    chain = suspended_in(task)
    return "record_fill" in chain and "acquire_on_behalf_of" not in chain and "wait_task_rescheduled" in chain


def suspended_in(task: trio.lowlevel.Task) -> list[str]:
    """The functions ``task`` is suspended in, outermost first: its coroutines' await chain."""
    names: list[str] = []
    awaited: object = task.coro
    while awaited is not None:
        code = getattr(awaited, "cr_code", None) or getattr(awaited, "gi_code", None)
        names.append(getattr(code, "co_name", "?"))
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return names


async def test_engine_cancelled_while_a_fill_is_being_journaled(mock_clock: MockClock, tmp_path: Path) -> None:
    """Cancelled the moment the risk task waits on the journal's thread: the write finishes, and
    the fill is on disk and in the books."""
    async with simulator() as sim:
        engines = Engines(sim, tmp_path / "journal.sqlite")
        for round_ in range(6):
            flipper = EveryTick()
            applied: list[int] = []

            async def writing(
                engine: TradingEngine,
                scope: trio.CancelScope,
                round_: int = round_,
                flipper: EveryTick = flipper,
                applied: list[int] = applied,
            ) -> None:
                with trio.fail_after(60):
                    while True:
                        await flipper.signalled.wait()
                        flipper.signalled = trio.Event()
                        risk = task_named("RiskManager.run")
                        # Busy, so simulated time stands still and no step of the write goes unseen.
                        for _ in range(5_000):
                            if writing_a_fill(risk):
                                assert engine.portfolio is not None
                                applied.append(len(engine.portfolio.fills))
                                await steps_then_stop(round_ % 2, engine, scope)
                                return
                            await trio.lowlevel.checkpoint()

            await engines.cancel(writing, flipper)
            assert len(engines.fills) == applied[0] + 1, "the write in flight was finished, not abandoned"
