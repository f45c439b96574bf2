"""One backtest: the live engine, unchanged, on a historical replay in virtual time."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import trio

from ..models import Fill
from ..trading import EngineConfig, RunSummary, TradingEngine
from .history import MarketHistory
from .journal import BacktestJournal, EquityPoint, read_equity
from .source import HistoricalMarketData, ReplayProgress

__all__ = ["JOURNAL_NAME", "SNAPSHOT_INTERVAL", "BacktestResult", "run_backtest"]

SNAPSHOT_INTERVAL = 86_400.0
"""Seconds of virtual time between two equity snapshots: one per day."""
JOURNAL_NAME = "journal.sqlite"


@dataclass(frozen=True, slots=True)
class BacktestResult:
    config: EngineConfig
    start_ms: int
    end_ms: int
    summary: RunSummary
    fills: tuple[Fill, ...]
    equity: tuple[EquityPoint, ...]
    """The journal's daily snapshots, then the final one."""
    candles: int
    """Base candles replayed."""


async def run_backtest(
    config: EngineConfig,
    history: MarketHistory,
    *,
    start_ms: int,
    end_ms: int,
    out_dir: Path,
    on_progress: Callable[[ReplayProgress], None] | None = None,
    stop_when: Callable[[], Awaitable[str]] | None = None,
) -> BacktestResult:
    """Run ``config``'s strategies over ``history`` from ``start_ms`` to ``end_ms``.

    Must run under ``MockClock(autojump_threshold=0)``. The journal is ``out_dir/journal.sqlite``,
    made afresh (a previous backtest's journal there is replaced); equity is snapshot once per
    virtual day. The run ends when the data does, when the kill switch trips, or when
    ``stop_when()`` returns (the CLI's Ctrl-C): its result is the summary's ``stopped_by``, and the
    result ends at that virtual moment.
    """
    journal = await trio.to_thread.run_sync(_fresh_journal, out_dir)
    config = dataclasses.replace(config, journal=journal, snapshot_interval=SNAPSHOT_INTERVAL)
    replayed = 0

    def progress(update: ReplayProgress) -> None:
        nonlocal replayed
        replayed = update.candles
        if on_progress is not None:
            on_progress(update)

    source = HistoricalMarketData(history, start_ms=start_ms, end_ms=end_ms, on_progress=progress)
    engine = TradingEngine(config, market_data=source.open, now_ms=source.now_ms, journal_class=BacktestJournal)

    async def stop_at_the_end() -> None:
        await source.finished.wait()
        engine.stop("end of data")

    async def stop_on_request(stop_when: Callable[[], Awaitable[str]]) -> None:
        nonlocal end_ms
        reason = await stop_when()
        if not source.finished.is_set():
            end_ms = min(end_ms, source.now_ms())
            engine.stop(reason)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_at_the_end)
        if stop_when is not None:
            nursery.start_soon(stop_on_request, stop_when)
        summary = await engine.run()
        nursery.cancel_scope.cancel()
    fills = tuple(engine.portfolio.fills) if engine.portfolio is not None else ()
    return BacktestResult(
        config=config,
        start_ms=start_ms,
        end_ms=end_ms,
        summary=summary,
        fills=fills,
        equity=tuple(read_equity(journal)),
        candles=replayed,
    )


def _fresh_journal(out_dir: Path) -> Path:
    """The journal path in ``out_dir``, with no journal of an earlier backtest left there."""
    out_dir.mkdir(parents=True, exist_ok=True)
    journal = out_dir / JOURNAL_NAME
    for suffix in ("", "-wal", "-shm"):
        journal.with_name(JOURNAL_NAME + suffix).unlink(missing_ok=True)
    return journal
