"""The trading engine: market data in, paper trades out, everything in one cancel scope.

``await engine.run()`` opens the journal and restores the portfolio from it, then, inside one
cancel scope, the :class:`~tradeloop.streams.StreamManager` and one nursery holding every
consumer::

    ticks  ──► tick pump ──► portfolio (marks) ──► risk (kill switch) ─┐
    klines ──► kline pump (warm-up from REST first) ───────────────────┴─► coordinator
                                                                              │ signals
                                       journal ◄── portfolio ◄── risk manager ◄┘
    + a snapshot task (equity to the journal every ``snapshot_interval``)
    + the kill-switch watcher (flatten, then stop)

The risk manager's state (kill switch, equity peak, the day's starting equity) is journaled with
every snapshot and at once when the switch trips, and restored on start: an engine whose journal
holds a tripped switch flattens whatever is still held, places no other order and stops, until
``run(reset_kill_switch=True)`` clears it (the reset is journaled too).

Stopping is cancelling that scope, whatever asks for it: :meth:`TradingEngine.stop` (the CLI's
Ctrl-C handler), the kill switch, or the ``duration`` deadline. Streams close within their own
bounds, then a final snapshot is written (shielded, bounded) and the journal closed, and
``run`` returns a :class:`RunSummary`. Cancelling ``run`` from outside does the same cleanup and
lets the cancellation propagate. Nothing sleeps hoping that cleanup has finished: each step is
awaited by the scope that owns it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path

import anyio
import anyio.abc

from .._backend import ReceiveChannel, SendChannel, open_memory_channel
from .._groups import first_error_of, single_error
from ..errors import InvalidValueError, SubscriptionError
from ..models import Kline, Signal, Tick
from ..streams import MarketData, MarketDataFactory, StreamHealth, StreamManager, Subscription, candles_between
from ..streams.source import MARK_PROCESSED, SHOULD_PROCESS
from .config import EngineConfig
from .journal import Journal, RiskRecord
from .portfolio import PortfolioManager, PortfolioSnapshot
from .risk import RiskManager, RiskState
from .strategy import StrategyCoordinator, StrategyStatus

__all__ = ["EngineStatus", "RunSummary", "TradingEngine"]

logger = logging.getLogger(__name__)

_SIGNAL_BUFFER = 16
_MARKET_BUFFER = 64
_FINAL_SNAPSHOT_TIMEOUT = 5.0
_FLATTEN_PATIENCE = 30.0
"""Seconds the kill switch keeps trying to flatten instruments with no price yet (e.g. just restarted)."""
_FLATTEN_RETRY = 1.0


@dataclass(frozen=True, slots=True)
class EngineStatus:
    """A running engine at one moment, for the live view."""

    elapsed: float
    prices: tuple[Tick, ...]
    portfolio: PortfolioSnapshot
    risk: RiskState
    strategies: tuple[StrategyStatus, ...]
    health: StreamHealth | None
    trades: int
    """Fills in this run (the portfolio counts every fill of the journal)."""


@dataclass(frozen=True, slots=True)
class RunSummary:
    """How a run ended and what it did."""

    stopped_by: str
    """"duration", "kill switch" or the reason given to :meth:`TradingEngine.stop`."""
    elapsed: float
    trades: int
    """Fills in this run."""
    portfolio: PortfolioSnapshot
    """The books at the end (for the journal's whole life)."""
    risk: RiskState
    strategies: tuple[StrategyStatus, ...]
    reconnects: int
    warmup_failures: int
    journal: Path
    journaled_rejections: int = 0
    """Rejections in the journal, earlier runs' included."""

    @property
    def fees(self) -> Decimal:
        return self.portfolio.fees

    @property
    def strategy_errors(self) -> Mapping[str, int]:
        return {status.name: status.errors for status in self.strategies if status.errors}


class _Run:
    """The components of one run, alive while it lasts (and readable after)."""

    def __init__(
        self, config: EngineConfig, journal: Journal, portfolio: PortfolioManager, risk: RiskRecord | None
    ) -> None:
        self.journal = journal
        self.portfolio = portfolio
        self.signals_tx: SendChannel[Signal]
        self.signals_rx: ReceiveChannel[Signal]
        self.signals_tx, self.signals_rx = open_memory_channel(_SIGNAL_BUFFER)
        self.coordinator = StrategyCoordinator(config.strategies, self.signals_tx)
        self.risk = RiskManager(
            config.risk, portfolio, restored=risk, journal=journal, on_rejection=self.coordinator.rejected
        )
        self.started = anyio.current_time()
        self.fills_before = len(portfolio.fills)
        self.streams: MarketData | None = None
        self.health: StreamHealth | None = None
        self.warmup_failures = 0

    @property
    def trades(self) -> int:
        return len(self.portfolio.fills) - self.fills_before


class TradingEngine:
    """Paper-trades ``config``'s strategies on live (or simulated) market data. Runs once at a time.

    ``market_data`` opens the data source (see :class:`~tradeloop.streams.MarketData`); by default a
    :class:`~tradeloop.streams.StreamManager` on ``config``'s exchange clients and stream settings,
    and then each run closes the clients that hold resources of their own (a ccxt client's HTTP
    session and sockets; they reopen when next used).
    The engine only subscribes, warms up and reads health through it, so a Redis consumer or a
    historical replay plugs in here without the engine knowing.

    ``now_ms`` is the clock of the journal's snapshot timestamps (default: the wall clock); a
    backtest passes its virtual clock. ``journal_class`` opens the journal (default
    :class:`Journal`); a backtest passes one that writes in the Trio thread, so that virtual time
    cannot jump while a write is in flight.
    """

    def __init__(
        self,
        config: EngineConfig,
        *,
        market_data: MarketDataFactory | None = None,
        now_ms: Callable[[], int] | None = None,
        journal_class: type[Journal] = Journal,
    ) -> None:
        self.config = config
        self._market_data = market_data or partial(_exchange_streams, config)
        self._now_ms = now_ms or _now_ms
        self._journal_class = journal_class
        self._run: _Run | None = None
        self._scope: anyio.CancelScope | None = None
        self._stop_reason: str | None = None

    @property
    def portfolio(self) -> PortfolioManager | None:
        """The portfolio of the current run, or of the last one after it ended."""
        return None if self._run is None else self._run.portfolio

    def stop(self, reason: str = "stopped") -> None:
        """Ask a running (or starting) engine to shut down; ``run`` returns with ``stopped_by=reason``."""
        if self._scope is not None:
            if self._stop_reason is None:
                self._stop_reason = reason
            self._scope.cancel()

    def status(self) -> EngineStatus | None:
        """The running engine's state, None when not running."""
        run = self._run
        if run is None or self._scope is None:
            return None
        return EngineStatus(
            elapsed=anyio.current_time() - run.started,
            prices=run.portfolio.market.ticks(),
            portfolio=run.portfolio.snapshot(),
            risk=run.risk.state(),
            strategies=run.coordinator.status(),
            health=run.health if run.streams is None else run.streams.health(),
            trades=run.trades,
        )

    async def run(
        self,
        duration: float | None = None,
        *,
        reset_kill_switch: bool = False,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> RunSummary:
        """Trade until stopped, the kill switch trips or ``duration`` seconds pass.

        A kill switch tripped in an earlier run on this journal stays tripped (the run flattens
        and stops at once) unless ``reset_kill_switch`` clears it first. An error raised by one
        of its tasks leaves as itself, not wrapped in an ExceptionGroup.
        ``task_status.started()`` fires once the streams are open and every consumer task is started.
        """
        if self._scope is not None:
            raise RuntimeError("this engine is already running")
        if duration is not None and not duration > 0:
            raise InvalidValueError(f"duration must be a number of seconds > 0, got {duration!r}")
        config = self.config
        # The scope exists before it is entered so that stop() works from the first moment: a
        # scope cancelled before it is entered cancels its body at once.
        scope = self._scope = anyio.CancelScope()
        self._run = None
        self._stop_reason = None
        try:
            async with self._journal_class.open(config.journal, starting_cash=config.starting_cash) as journal:
                portfolio = await PortfolioManager.restore(journal, fee_rate=config.fee_rate, slippage=config.slippage)
                run = self._run = _Run(config, journal, portfolio, await journal.risk_state())
                if reset_kill_switch and run.risk.kill_reason is not None:
                    reason = f"reset by the user (was: {run.risk.kill_reason})"
                    await journal.record_risk_event("reset", reason, self._now_ms(), run.risk.reset(self._now_ms()))
                if duration is not None:
                    scope.deadline = run.started + duration
                try:
                    # One error (a strategy's bug, a rejected symbol) leaves run() as itself, not
                    # wrapped in the groups of the nurseries below; Ctrl-C as KeyboardInterrupt.
                    # Topics rejected together (one symbol's ticks and candles) leave as the first;
                    # the stream layer logged each.
                    with scope, single_error(), first_error_of(SubscriptionError):
                        await self._serve(run, scope, task_status)
                finally:
                    await self._final_snapshot(run)
                    journaled_rejections = await _count_rejections(journal)
        finally:
            self._scope = None
        stopped_by = self._stop_reason or ("duration" if duration is not None else "finished")
        logger.info("engine stopped (%s) after %d trades", stopped_by, run.trades)
        return RunSummary(
            stopped_by=stopped_by,
            elapsed=anyio.current_time() - run.started,
            trades=run.trades,
            portfolio=portfolio.snapshot(),
            risk=run.risk.state(),
            strategies=run.coordinator.status(),
            reconnects=0 if run.health is None else run.health.total_reconnects,
            warmup_failures=run.warmup_failures,
            journal=journal.path,
            journaled_rejections=journaled_rejections,
        )

    async def _serve(self, run: _Run, scope: anyio.CancelScope, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with self._market_data() as streams:
            run.streams = streams
            admit = getattr(streams, SHOULD_PROCESS, None)  # optional: a source shared with other engines
            if admit is not None:
                run.coordinator.admit = admit
            processed = getattr(streams, MARK_PROCESSED, None)  # its companion: acknowledgements
            if processed is not None:
                run.coordinator.processed = processed
            # The subscriptions belong to this function, not to the pumps reading them: they stay
            # open until the health snapshot below has seen every topic with its final counters.
            ticks = {(exchange, symbol): streams.ticks(exchange, symbol) for exchange, symbol in self._instruments()}
            warmups = self._candle_streams()
            candles = {stream: streams.klines(*stream, closed_only=True) for stream in warmups}
            try:
                async with anyio.create_task_group() as nursery:
                    market_tx: SendChannel[Kline | Tick]
                    market_rx: ReceiveChannel[Kline | Tick]
                    market_tx, market_rx = open_memory_channel(_MARKET_BUFFER)
                    nursery.start_soon(run.coordinator.run, market_rx)
                    nursery.start_soon(run.risk.run, run.signals_rx)
                    with market_tx:
                        for tick_stream in ticks.values():
                            nursery.start_soon(self._pump_ticks, run, tick_stream, market_tx.clone())
                        for stream, kline_stream in candles.items():
                            args = (run, stream, warmups[stream], kline_stream, market_tx.clone())
                            nursery.start_soon(self._pump_klines, *args)
                    nursery.start_soon(self._snapshots, run)
                    nursery.start_soon(self._watch_kill_switch, run, scope)
                    task_status.started()
            finally:
                run.health = streams.health()
                run.streams = None
                for tick_stream in ticks.values():
                    tick_stream.close()
                for kline_stream in candles.values():
                    kline_stream.close()

    def _instruments(self) -> list[tuple[str, str]]:
        """Every (exchange, symbol) some strategy trades: each gets a tick stream."""
        strategies = self.config.strategies
        exchange = self.config.strategy_exchange
        return sorted({(exchange(strategy), symbol) for strategy in strategies for symbol in strategy.symbols})

    def _candle_streams(self) -> dict[tuple[str, str, str], int]:
        """Every (exchange, symbol, timeframe) some strategy reads, with the longest warm-up asked."""
        streams: dict[tuple[str, str, str], int] = {}
        for strategy in self.config.strategies:
            if strategy.timeframe is None:
                continue
            exchange = self.config.strategy_exchange(strategy)
            for symbol in strategy.symbols:
                key = (exchange, symbol, strategy.timeframe)
                streams[key] = max(streams.get(key, 0), strategy.warmup)
        return streams

    async def _pump_ticks(self, run: _Run, ticks: Subscription[Tick], market: SendChannel[Kline | Tick]) -> None:
        """Mark the books and check the kill switch on every tick, then hand it to the strategies."""
        with market:
            async for tick in ticks:
                run.portfolio.on_tick(tick)
                run.risk.after_mark(tick.time)
                await market.send(tick)

    async def _pump_klines(
        self,
        run: _Run,
        stream: tuple[str, str, str],
        warmup: int,
        klines: Subscription[Kline],
        market: SendChannel[Kline | Tick],
    ) -> None:
        """Replay history once subscribed: live candles wait in the subscription meanwhile, and
        the coordinator drops the ones the history already covered.
        """
        with market:
            last_warm = await self._warm_up(run, stream, warmup) if warmup else None
            async for kline in klines:
                if last_warm is not None:
                    # The first live candle: those that closed after the warm-up fetch and
                    # before the first push reach the strategies too, as warm-up (they may be
                    # minutes old: a signal from them would trade at a stale price).
                    assert run.streams is not None
                    after, last_warm = last_warm, None
                    seam = await candles_between(run.streams, *stream, after=after, before=kline.open_time)
                    run.coordinator.warm_up(seam)
                await market.send(kline)

    async def _warm_up(self, run: _Run, stream: tuple[str, str, str], warmup: int) -> int | None:
        """Replay history into the strategies; the open time of its newest candle (None: none)."""
        assert run.streams is not None
        try:
            history = await run.streams.fetch_klines(*stream, limit=warmup)
        except Exception:
            # Not fatal: the strategies warm up from live candles instead, just later.
            run.warmup_failures += 1
            logger.warning("warm-up history for %s unavailable; warming up from live candles", stream, exc_info=True)
            return None
        run.coordinator.warm_up(history)
        return history[-1].open_time if history else None

    async def _snapshots(self, run: _Run) -> None:
        while True:
            await anyio.sleep(self.config.snapshot_interval)
            await run.journal.record_snapshot(run.portfolio.journal_snapshot(self._now_ms()), run.risk.record())

    async def _watch_kill_switch(self, run: _Run, scope: anyio.CancelScope) -> None:
        await run.risk.killed.wait()
        state = run.risk.state()
        if not state.kill_restored:
            # Durable before the flatten: a crash from here on restarts tripped.
            assert state.kill_reason is not None and state.kill_time is not None
            await run.journal.record_risk_event("kill", state.kill_reason, state.kill_time, run.risk.record())
        fills = await run.risk.flatten()
        # An instrument without a price yet (a restart that tripped before its crash) is retried.
        with anyio.move_on_after(_FLATTEN_PATIENCE):
            while run.portfolio.strategy_positions():
                await anyio.sleep(_FLATTEN_RETRY)
                fills += await run.risk.flatten()
        if run.portfolio.strategy_positions():
            logger.error("kill switch could not flatten %s: no price", run.portfolio.strategy_positions())
        logger.warning("kill switch flattened %d positions; stopping", len(fills))
        if self._stop_reason is None:
            self._stop_reason = "kill switch"
        scope.cancel()

    async def _final_snapshot(self, run: _Run) -> None:
        """Journal the books' last marks; shielded so a cancelled run still records them."""
        with anyio.move_on_after(_FINAL_SNAPSHOT_TIMEOUT, shield=True) as scope:
            try:
                await run.journal.record_snapshot(run.portfolio.journal_snapshot(self._now_ms()), run.risk.record())
            except Exception:
                # The fills are already durable; only the marks of this moment are lost.
                logger.exception("final snapshot of %s failed", run.journal.path)
        if scope.cancelled_caught:
            logger.error("final snapshot of %s took over %.0f s; skipped", run.journal.path, _FINAL_SNAPSHOT_TIMEOUT)


@asynccontextmanager
async def _exchange_streams(config: EngineConfig) -> AsyncIterator[MarketData]:
    """The default market data: a StreamManager on the config's clients, closing them after it."""
    async with AsyncExitStack() as stack:
        for client in config.clients.values():
            if isinstance(client, anyio.abc.AsyncResource):
                await stack.enter_async_context(client)
        yield await stack.enter_async_context(StreamManager.open(config.clients, config.streams))


async def _count_rejections(journal: Journal) -> int:
    """For the summary; shielded and bounded like the final snapshot, and never fatal."""
    with anyio.move_on_after(_FINAL_SNAPSHOT_TIMEOUT, shield=True):
        try:
            return await journal.rejection_count()
        except Exception:
            logger.exception("counting the rejections in %s failed", journal.path)
    return 0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
