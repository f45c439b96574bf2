"""``tradeloop run``: paper-trade with a live view, then print a summary.

Without ``--config`` it is the demo: the embedded BingX-compatible exchange starts in this
process (default market: a new price every second, pushed every second), and two reference
strategies, an SMA crossover and a Donchian breakout, paper-trade BTC/USDT:USDT and ETH/USDT:USDT
on it. The demo strategies read *ticks*, not candles: the shortest candle is a minute, so a candle
strategy would not trade at all in a 20-second demo, while on 1-second ticks SMA(3)/SMA(8) and an
8-tick breakout act within about ten seconds. Shorts are allowed (these are perpetual swaps), so
every change of view is a trade. The demo journal is ``tradeloop-demo-journal.sqlite`` in the
system temporary directory: a second demo resumes the first one's portfolio (a restart restores
it exactly); ``--journal`` picks another file.

With ``--config FILE`` (TOML, see :mod:`tradeloop.trading.config`) it trades the configured
exchanges, e.g. the real BingX URLs, with the same code; execution is always paper.

Ctrl-C (or SIGTERM) stops the engine cleanly: the summary is printed and the exit status is 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio
from rich.console import Console

from ..exchanges import Exchange
from ..metrics.cli import MetricsAddress, add_metrics_options, metrics_address, start_metrics
from ..metrics.collector import Snapshot
from .config import EngineConfig, load_config
from .engine import RunSummary, TradingEngine
from .journal import JournalError
from .risk import RiskLimits
from .strategies import Breakout, SmaCrossover
from .view import format_summary, show_live

__all__ = ["DEMO_JOURNAL", "add_parser", "demo_config", "run_command"]

DEMO_JOURNAL = Path(tempfile.gettempdir()) / "tradeloop-demo-journal.sqlite"
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
    parser.add_argument("--duration", type=_seconds, metavar="SECONDS", help="stop after this long (default: Ctrl-C)")
    parser.add_argument("--journal", type=Path, metavar="PATH", help=f"SQLite journal (demo default: {DEMO_JOURNAL})")
    add_metrics_options(parser)
    parser.set_defaults(handler=_handle)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: expected a number of seconds > 0")
    return value


def demo_config(exchange: Exchange, journal: Path = DEMO_JOURNAL) -> EngineConfig:
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
        starting_cash=Decimal(10_000),
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
    metrics: MetricsAddress | None = None,
) -> RunSummary:
    """What ``tradeloop run`` does, as a coroutine (the demo's simulator lives inside it)."""
    if config_path is not None:
        config = load_config(config_path, **({"journal": journal} if journal is not None else {}))
        return await _trade(_engine(config), duration, console, metrics)
    from ..sim import SimConfig, open_simulator

    async with open_simulator(SimConfig(symbols=_SIM_SYMBOLS, seed=7)) as sim:
        engine = TradingEngine(demo_config(sim.exchange(), journal or DEMO_JOURNAL))
        return await _trade(engine, duration, console, metrics)


def _engine(config: EngineConfig) -> TradingEngine:
    """An engine on the exchanges' sockets, or on Redis when the config has a ``[data]`` table."""
    if config.data is None:
        return TradingEngine(config)
    from ..distributed.engine import RedisFeed

    return RedisFeed(config.data, config.clients).engine(config)


async def _trade(
    engine: TradingEngine, duration: float | None, console: Console, metrics: MetricsAddress | None = None
) -> RunSummary:
    async with trio.open_nursery() as nursery:
        if threading.current_thread() is threading.main_thread():
            nursery.start_soon(_stop_on_signals, engine)
        await start_metrics(nursery, metrics, lambda: _snapshot(engine))
        nursery.start_soon(show_live, engine, console)
        summary = await engine.run(duration)
        nursery.cancel_scope.cancel()
    return summary


def _snapshot(engine: TradingEngine) -> Snapshot:
    status = engine.status()
    return Snapshot() if status is None else Snapshot(health=status.health, engine=status)


async def _stop_on_signals(engine: TradingEngine) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            engine.stop("Ctrl-C" if signum == signal.SIGINT else "SIGTERM")


def _handle(args: argparse.Namespace) -> int:
    console = Console()
    try:
        try:
            summary = trio.run(run_command, args.config, args.duration, args.journal, console, metrics_address(args))
        except BaseExceptionGroup as group:
            raise _sole_error(group) from None
    except JournalError as exc:
        print(f"tradeloop run: {exc}", file=sys.stderr)
        return 2
    console.print(format_summary(summary), markup=False, highlight=False)
    return 0


def _sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error a nursery wrapped when it is the only one (a bad journal, say), so the user sees
    its message rather than a traceback; otherwise the group itself.
    """
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
