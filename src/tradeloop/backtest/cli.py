"""``tradeloop backtest``: the live trading loop, in virtual time, over historical candles.

    tradeloop backtest --config FILE --from DATE --to DATE [--data [SYMBOL=]PATH ...] [--out DIR]

The config is the same TOML file as ``tradeloop run``'s (its journal and snapshot interval are
replaced: the backtest's journal is ``DIR/journal.sqlite``, with one equity snapshot per day).
Dates are ISO 8601 in UTC (``2026-01-31`` or ``2026-01-31T12:00``); a date alone in ``--to``
includes that whole day.

History comes from the configured exchange's REST API (paginated, fetched once into a local
SQLite cache, ``--cache``) or from CSV files (``--data``; columns open_time, open, high, low,
close, volume; see :mod:`tradeloop.backtest.csvfile`). Candles the strategies warm up on are read
from before ``--from``. Gaps in the data stop the backtest unless ``--allow-gaps`` is given.

Writes ``DIR/report.json`` (byte-identical for the same inputs) and ``DIR/equity.png`` (needs the
``tradeloop[plot]`` extra), and prints a summary. Ctrl-C during the replay stops it there: the
report and summary cover the candles replayed so far ("stopped by Ctrl-C"), and the exit status
is 130. Fill model: one tick per candle at its open;
an order placed on a closed candle fills at the next candle's open, plus slippage and fee.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import trio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from trio.testing import MockClock

from ..cli import EXIT_INTERRUPTED
from ..errors import InvalidValueError, TradeloopError
from ..symbols import candle_open_time, next_open_time, normalize_symbol, timeframe_ms
from ..trading import EngineConfig, load_config
from .cache import default_cache_path, load_exchange_history
from .csvfile import read_csv
from .history import CandleSeries
from .report import PlotUnavailable, build_report, format_summary, iso, plot_equity, write_report
from .runner import run_backtest
from .source import ReplayProgress

__all__ = ["add_parser", "base_timeframe", "parse_date"]

_REFRESH = 0.1
"""Seconds of wall time between two redraws of the progress bar."""
_CTRL_C = "Ctrl-C"


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "backtest",
        help="run the trading loop over historical candles in virtual time",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, required=True, metavar="FILE", help="TOML engine config")
    parser.add_argument("--from", dest="start", required=True, metavar="DATE", help="start, ISO 8601 UTC")
    parser.add_argument("--to", dest="end", required=True, metavar="DATE", help="end, ISO 8601 UTC (a date: inclusive)")
    parser.add_argument(
        "--data", action="append", default=[], metavar="[SYMBOL=]PATH", help="CSV candles (default: exchange REST)"
    )
    parser.add_argument("--out", type=Path, default=Path("backtest-report"), metavar="DIR", help="report directory")
    parser.add_argument("--allow-gaps", action="store_true", help="run even if candles are missing in the data")
    parser.add_argument("--cache", type=Path, metavar="PATH", help=f"candle cache (default {default_cache_path()})")
    parser.set_defaults(handler=_handle)


def parse_date(text: str, option: str, *, end: bool = False) -> int:
    """Epoch ms of an ISO 8601 date or time (UTC unless it says otherwise); with ``end``, a date
    alone means the end of that day."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidValueError(
            f"invalid {option} {text!r}: expected an ISO 8601 date or time in UTC, e.g. 2026-01-31 or 2026-01-31T12:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        if end and len(text.strip()) == 10:
            moment += timedelta(days=1)
        return round(moment.timestamp() * 1000)
    except (OverflowError, ValueError):  # past year 9999, or before year 1 once in UTC
        raise InvalidValueError(f"invalid {option} {text!r}: expected a time from year 1 to 9999") from None


def base_timeframe(config: EngineConfig) -> str:
    """The candles to replay: the strategies' shortest timeframe if it divides all the others and
    none reads ticks only; else one-minute candles."""
    timeframes = [strategy.timeframe for strategy in config.strategies]
    lengths = {timeframe_ms(t) for t in timeframes if t is not None}
    if None in timeframes or not lengths or any(length % min(lengths) for length in lengths):
        return "1m"
    return next(t for t in timeframes if t is not None and timeframe_ms(t) == min(lengths))


def _handle(args: argparse.Namespace) -> int:
    """Errors go to :func:`tradeloop.cli.main`, which prints them as one line with the exit status."""
    try:
        return _backtest(args)
    except httpx.HTTPError as exc:
        raise TradeloopError(f"cannot fetch history: {type(exc).__name__}: {exc}".splitlines()[0]) from exc


def _backtest(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    start = parse_date(args.start, "--from")
    end = parse_date(args.end, "--to", end=True)
    if not start < end:
        raise InvalidValueError(f"--from {args.start} must be before --to {args.end}")
    instruments = sorted({(config.strategy_exchange(s), symbol) for s in config.strategies for symbol in s.symbols})
    stderr = Console(stderr=True)
    with _ProgressBar(stderr) as progress:
        if args.data:
            history = _csv_history(args.data, instruments)
            described = "csv " + ", ".join(sorted(path.name for path in _paths(args.data)))
        else:
            history = trio.run(
                _exchange_history,
                config,
                instruments,
                start,
                end,
                args.cache,
                progress,
                restrict_keyboard_interrupt_to_checkpoints=True,
            )
            described = "rest " + ", ".join(sorted({exchange for exchange, _ in instruments}))
        end = _check_history(config, history, start, end, allow_gaps=args.allow_gaps, console=stderr)
        described += f" ({', '.join(sorted({series.timeframe for series in history.values()}))} candles)"
        task = progress.add_task("replaying", total=None, date="")
        last_redraw = 0.0

        def on_progress(update: ReplayProgress) -> None:
            nonlocal last_redraw
            progress.update(task, completed=update.candles, total=update.total, date=iso(update.time_ms)[:16])
            if time.monotonic() - last_redraw >= _REFRESH:
                last_redraw = time.monotonic()
                progress.refresh()

        async def replay() -> Any:
            interrupted = trio.Event()

            async def stopped() -> str:
                await interrupted.wait()
                return _CTRL_C

            async with trio.open_nursery() as nursery:
                # Listening before the replay starts (its journal included): Ctrl-C at any moment
                # of it stops it with a partial report, not a bare KeyboardInterrupt.
                listening = threading.current_thread() is threading.main_thread()
                if listening:
                    await nursery.start(_ctrl_c, interrupted)
                result = await run_backtest(
                    config,
                    history,
                    start_ms=start,
                    end_ms=end,
                    out_dir=args.out,
                    on_progress=on_progress,
                    stop_when=stopped if listening else None,
                )
                nursery.cancel_scope.cancel()
            return result

        # Trio otherwise raises KeyboardInterrupt in whatever frame runs when Ctrl-C comes (its
        # own bookkeeping included: a TrioInternalError); at a checkpoint it cancels cleanly.
        # This covers the moments before and after _ctrl_c listens.
        clock = MockClock(autojump_threshold=0)
        result = trio.run(replay, clock=clock, restrict_keyboard_interrupt_to_checkpoints=True)
    report = build_report(result, data=described)
    files = [args.out / "report.json"]
    write_report(report, files[0])
    try:
        plot_equity(report, args.out / "equity.png")
        files.append(args.out / "equity.png")
    except PlotUnavailable as exc:
        print(f"tradeloop backtest: {exc}", file=sys.stderr)
    print(format_summary(report, files))
    return EXIT_INTERRUPTED if result.summary.stopped_by == _CTRL_C else 0


async def _ctrl_c(interrupted: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Set ``interrupted`` on Ctrl-C (SIGINT): while this listens, Ctrl-C stops the replay where it
    is (a partial report) instead of raising KeyboardInterrupt. Reports started once listening."""
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        task_status.started()
        async for _ in signals:
            break
    interrupted.set()


class _ProgressBar:
    """A progress bar on stderr when it is a terminal, nothing otherwise."""

    def __init__(self, console: Console) -> None:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[date]}"),
            TimeRemainingColumn(),
        )
        self.bar = Progress(*columns, console=console, auto_refresh=False, disable=not console.is_terminal)

    def __enter__(self) -> Progress:
        self.bar.start()
        return self.bar

    def __exit__(self, *exc: object) -> None:
        self.bar.refresh()
        self.bar.stop()


def _paths(entries: list[str]) -> list[Path]:
    return [path for _, path in (_data_entry(entry) for entry in entries)]


def _data_entry(entry: str) -> tuple[str | None, Path]:
    """``SYMBOL=PATH`` or ``PATH``; an entry with ``=`` whose symbol is invalid is a file name
    with ``=`` in it if such a file exists, else a mistake in the symbol, and said so."""
    symbol, separator, path = entry.partition("=")
    if separator:
        try:
            return normalize_symbol(symbol), Path(path)
        except InvalidValueError as exc:
            if not Path(entry).exists():
                raise InvalidValueError(f"--data {entry}: {exc}") from None
    return None, Path(entry)


def _csv_history(entries: list[str], instruments: list[tuple[str, str]]) -> dict[tuple[str, str], CandleSeries]:
    traded = {symbol: exchange for exchange, symbol in instruments}
    history: dict[tuple[str, str], CandleSeries] = {}
    for entry in entries:
        symbol, path = _data_entry(entry)
        if symbol is None:
            if len(traded) > 1:
                symbols = ", ".join(sorted(traded))
                raise InvalidValueError(f"--data {entry}: the config trades {symbols}; name it: --data SYMBOL=PATH")
            symbol = next(iter(traded))
        if symbol not in traded:
            symbols = ", ".join(sorted(traded))
            raise InvalidValueError(f"--data {entry}: unknown symbol {symbol}; the config trades {symbols}")
        history[(traded[symbol], symbol)] = read_csv(path, exchange=traded[symbol], symbol=symbol)
    for exchange, symbol in instruments:
        if (exchange, symbol) not in history:
            raise InvalidValueError(f"no --data for {symbol}; give one per symbol: --data {symbol}=PATH")
    return history


async def _exchange_history(
    config: EngineConfig,
    instruments: list[tuple[str, str]],
    start: int,
    end: int,
    cache: Path | None,
    progress: Progress,
) -> dict[tuple[str, str], CandleSeries]:
    timeframe = base_timeframe(config)
    length = timeframe_ms(timeframe)
    warmup = max((s.warmup * timeframe_ms(s.timeframe) for s in config.strategies if s.timeframe), default=0)
    first = candle_open_time(timeframe, start - warmup)
    history: dict[tuple[str, str], CandleSeries] = {}
    for exchange, symbol in instruments:
        total = (end - first) // length
        task = progress.add_task(f"fetching {symbol} {timeframe}", total=total, date="")

        def fetched(count: int, task: Any = task) -> None:
            progress.advance(task, count)
            progress.refresh()

        history[(exchange, symbol)] = await load_exchange_history(
            config.clients[exchange],
            exchange,
            symbol,
            timeframe,
            start_ms=first,
            end_ms=end,
            cache=cache or default_cache_path(),
            on_fetched=fetched,
        )
        progress.update(task, completed=total)  # what the cache held was not fetched
    return history


def _check_history(
    config: EngineConfig,
    history: dict[tuple[str, str], CandleSeries],
    start: int,
    end: int,
    *,
    allow_gaps: bool,
    console: Console,
) -> int:
    """The end of the backtest, aligned to the data's candles; a one-line error for data that
    cannot be replayed."""
    for (_, symbol), series in sorted(history.items()):
        has = series.timeframe
        for strategy in config.strategies:
            reads = strategy.timeframe
            if symbol in strategy.symbols and reads is not None and timeframe_ms(reads) % timeframe_ms(has):
                raise InvalidValueError(
                    f"strategy {strategy.name!r} reads {reads} candles; the data of {symbol} has {has} candles"
                )
        end = min(end, candle_open_time(series.timeframe, end))
        if not series.index_range(start, end):
            covers = (
                f"the data covers {iso(series.open_times[0])} to {iso(series.open_times[-1])}"
                if len(series)
                else "the data has no candles"
            )
            raise InvalidValueError(f"no {symbol} candles between {iso(start)} and {iso(end)}; {covers}")
        gaps = series.gaps(start, end)
        if gaps:
            missing = sum(gap.missing for gap in gaps)
            text = (
                f"the data of {symbol} has {len(gaps)} gap(s), {missing} {series.timeframe} candle(s) missing, "
                f"the first at {iso(gaps[0].first_missing)}"
            )
            first, last = series.open_times[0], series.open_times[-1]
            if first > start:
                text += f" (the data starts at {iso(first)}, after --from)"
            elif next_open_time(series.timeframe, last) < end:
                text += f" (the data ends with the candle at {iso(last)}, before --to)"
            if not allow_gaps:
                raise InvalidValueError(f"{text}; pass --allow-gaps to run anyway")
            console.print(f"tradeloop backtest: note: {text}", markup=False, highlight=False, soft_wrap=True)
    return end
