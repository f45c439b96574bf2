"""``tradeloop run``: paper-trade with a live view, then print a summary.

Without ``--config`` it is the demo: the embedded BingX-compatible exchange starts in this
process (default market: a new price every second, pushed every second), and two reference
strategies, an SMA crossover and a Donchian breakout, paper-trade BTC/USDT:USDT and ETH/USDT:USDT
on it. The demo strategies read *ticks*, not candles: the shortest candle is a minute, so a candle
strategy would not trade at all in a 20-second demo, while on 1-second ticks SMA(3)/SMA(8) and an
8-tick breakout act within about ten seconds. Shorts are allowed (these are perpetual swaps), so
every change of view is a trade. The demo journal is ``demo-journal.sqlite`` in the user's state
directory ($XDG_STATE_HOME/tradeloop, else ~/.local/state/tradeloop), created 0600 in a 0700
directory: a second demo resumes the first one's portfolio (a restart restores it exactly), on a
market seeded from the wall clock so that it does not replay the first run's prices;
``--journal`` picks another file.

A kill switch that tripped stays tripped on restart: the run flattens, trades nothing and says
why, until ``--reset-kill-switch``. The demo alone, on its default journal, instead moves a
tripped journal aside and starts a fresh one, saying so in one line: a newcomer's demo trades.

With ``--config FILE`` (TOML, see :mod:`tradeloop.trading.config`) it trades the configured
exchanges, e.g. the real BingX URLs, with the same code; execution is always paper.

Ctrl-C (or SIGTERM) stops the engine cleanly: the summary is printed and the exit status is 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import stat
import sys
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import trio
from rich.console import Console

from ..cli import seconds
from ..exchanges import Exchange
from ..metrics.cli import MetricsAddress, add_metrics_options, metrics_address, start_metrics
from ..metrics.collector import Snapshot
from .config import EngineConfig, load_config
from .engine import RunSummary, TradingEngine
from .journal import Journal, JournalError
from .risk import RiskLimits
from .strategies import Breakout, SmaCrossover
from .view import format_summary, show_live, tripped_when

__all__ = ["add_parser", "demo_config", "demo_journal", "run_command", "user_state_dir"]

DEMO_STARTING_CASH = Decimal(10_000)
DEMO_SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT")
_SIM_SYMBOLS = ("BTC-USDT", "ETH-USDT")


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="paper-trade with a live view (the embedded exchange unless --config is given)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML engine config (default: the demo)")
    parser.add_argument("--duration", type=seconds, metavar="SECONDS", help="stop after this long (default: Ctrl-C)")
    parser.add_argument("--journal", type=Path, metavar="PATH", help=f"SQLite journal (demo default: {demo_journal()})")
    parser.add_argument(
        "--reset-kill-switch",
        action="store_true",
        help="clear a kill switch that tripped in an earlier run on this journal (journaled), then trade",
    )
    add_metrics_options(parser)
    parser.set_defaults(handler=_handle)


def user_state_dir() -> Path:
    """tradeloop's per-user state directory: $XDG_STATE_HOME/tradeloop (an absolute path), else
    ~/.local/state/tradeloop; ~/Library/Application Support/tradeloop on macOS, %LOCALAPPDATA%
    on Windows. A small function rather than a dependency: this one path is all we need of it.
    """
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_STATE_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "state"
    return base / "tradeloop"


def demo_journal() -> Path:
    return user_state_dir() / "demo-journal.sqlite"


def _private_directory(path: Path) -> None:
    """Create ``path`` 0700 (its parents as usual), or check an existing one is a real directory
    of ours and make it 0700: a journal in it is then nobody else's to read, replace or link.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode):
            raise JournalError(f"{path} is not a directory (a symbolic link?); refusing to keep the demo journal there")
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise JournalError(f"{path} belongs to another user; refusing to keep the demo journal there")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(path, 0o700)
    except OSError as exc:
        raise JournalError(f"cannot create the demo journal directory {path}: {exc.strerror or exc}") from exc


def demo_config(exchange: Exchange, journal: Path) -> EngineConfig:
    """The demo: both reference strategies on ticks of two perpetual swaps."""
    common: dict[str, Any] = {"symbols": DEMO_SYMBOLS, "size": Decimal(1000), "source": "tick", "allow_short": True}
    return EngineConfig(
        exchanges={"bingx": exchange},
        strategies=[
            SmaCrossover(name="sma", fast=3, slow=8, **common),
            Breakout(name="breakout", lookback=8, **common),
        ],
        risk=RiskLimits(
            max_position_notional=Decimal(2500),
            max_gross_exposure=Decimal(6000),
            max_order_notional=Decimal(2500),
            max_daily_loss=Decimal(500),
            max_drawdown=Decimal("0.05"),
            max_tick_age=5.0,
            max_orders_per_minute=30,
        ),
        starting_cash=DEMO_STARTING_CASH,
        fee_rate=Decimal("0.0005"),
        slippage=Decimal("0.0001"),
        journal=journal,
        snapshot_interval=5.0,
    )


async def run_command(
    config_path: Path | None,
    duration: float | None,
    journal: Path | None,
    console: Console,
    *,
    reset_kill_switch: bool = False,
    metrics: MetricsAddress | None = None,
    journal_class: type[Journal] = Journal,
) -> RunSummary:
    """What ``tradeloop run`` does, as a coroutine (the demo's simulator lives inside it).

    ``journal_class`` opens the demo engine's journal (see :class:`TradingEngine`): a test under a
    ``MockClock`` passes one that runs in the Trio thread, which the clock cannot jump over.
    """
    if config_path is not None:
        config = load_config(config_path, **({"journal": journal} if journal is not None else {}))
        return await _trade(_engine(config), duration, console, reset_kill_switch, metrics)
    from ..sim import SimConfig, open_simulator

    if journal is None:
        journal = demo_journal()
        await trio.to_thread.run_sync(_private_directory, journal.parent)
        if not reset_kill_switch:
            await _set_aside_if_tripped(journal)
    # A new market each run: a fixed seed would replay the last run's prices, and its trades.
    seed = time.time_ns() % 2**32
    async with open_simulator(SimConfig(symbols=_SIM_SYMBOLS, seed=seed)) as sim:
        engine = TradingEngine(demo_config(sim.exchange(), journal), journal_class=journal_class)
        return await _trade(engine, duration, console, reset_kill_switch, metrics)


def _engine(config: EngineConfig) -> TradingEngine:
    """An engine on the exchanges' sockets, or on Redis when the config has a ``[data]`` table."""
    if config.data is None:
        return TradingEngine(config)
    from ..distributed.engine import RedisFeed

    return RedisFeed(config.data, config.clients).engine(config)


async def _set_aside_if_tripped(journal: Path) -> None:
    """Rename the demo journal (and its WAL file) aside when its kill switch tripped, so the demo
    starts afresh instead of refusing to trade; nothing is deleted.
    """
    if not await trio.Path(journal).exists():
        return
    async with Journal.open(journal, starting_cash=DEMO_STARTING_CASH) as opened:
        risk = await opened.risk_state()
    if risk is None or not risk.killed:
        return
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = journal.with_name(f"{journal.stem}-tripped-{stamp}{journal.suffix}")
    for suffix in ("", "-wal"):
        source = trio.Path(f"{journal}{suffix}")
        if await source.exists():
            await source.rename(f"{kept}{suffix}")
    print(
        f"tradeloop run: the demo journal's kill switch tripped{tripped_when(risk.kill_time)} ({risk.kill_reason}); "
        f"starting a fresh demo journal (the old one is kept as {kept})",
        file=sys.stderr,
    )


async def _trade(
    engine: TradingEngine,
    duration: float | None,
    console: Console,
    reset_kill_switch: bool,
    metrics: MetricsAddress | None = None,
) -> RunSummary:
    async with trio.open_nursery() as nursery:
        if threading.current_thread() is threading.main_thread():
            nursery.start_soon(_stop_on_signals, engine)
        await start_metrics(nursery, metrics, lambda: _snapshot(engine))
        nursery.start_soon(show_live, engine, console)
        summary = await engine.run(duration, reset_kill_switch=reset_kill_switch)
        nursery.cancel_scope.cancel()
    return summary


def _snapshot(engine: TradingEngine) -> Snapshot:
    status = engine.status()
    return Snapshot() if status is None else Snapshot(health=status.health, engine=status)


async def _stop_on_signals(engine: TradingEngine) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            engine.stop("Ctrl-C" if signum == signal.SIGINT else "SIGTERM")


class _Console(Console):
    """rich's console, except that a closed stdout (``tradeloop run | head -1``) raises
    BrokenPipeError like any other write, for the CLI to end quietly, instead of rich's
    ``SystemExit(1)`` from inside a task.
    """

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError("stdout closed")


def _handle(args: argparse.Namespace) -> int:
    """Errors go to :func:`tradeloop.cli.main`, which prints them as one line."""
    console = _Console()
    run = partial(run_command, reset_kill_switch=args.reset_kill_switch, metrics=metrics_address(args))
    summary = trio.run(run, args.config, args.duration, args.journal, console)
    console.print(format_summary(summary), markup=False, highlight=False, soft_wrap=True)
    return 0
