"""What a person watching the engine sees: a live view while it runs and a summary when it stops.

On a terminal the view is a rich layout redrawn about once a second (prices, positions, PnL and
equity, stream health, strategies, risk); anywhere else (a pipe, a log file, CI) it is one plain
line per second, which greps and diffs well. The view only reads :meth:`TradingEngine.status`; it
owns no state and runs as one task beside the engine, so cancelling it never touches trading.
"""

from __future__ import annotations

from decimal import Decimal

import anyio
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..streams import StreamHealth
from ..symbols import utc_text
from .engine import EngineStatus, RunSummary, TradingEngine
from .portfolio import PortfolioSnapshot
from .risk import RiskState

__all__ = ["RESET_HINT", "format_summary", "kill_text", "render_status", "show_live", "status_line", "tripped_when"]

RESET_HINT = "trading stays off until `tradeloop run --reset-kill-switch`"


def _money(value: Decimal) -> str:
    return f"{value:,.2f}"


def _signed(value: Decimal) -> str:
    return f"{value:+,.2f}"


def _number(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:f}"


def _pnl(portfolio: PortfolioSnapshot) -> Decimal:
    return portfolio.equity - portfolio.starting_cash


def kill_text(risk: RiskState) -> str:
    """Why and when the kill switch tripped, and how to reset it."""
    earlier = " in an earlier run" if risk.kill_restored else ""
    return f"tripped{earlier}{tripped_when(risk.kill_time)}: {risk.kill_reason}; {RESET_HINT}"


def tripped_when(kill_time: int | None) -> str:
    return "" if kill_time is None else f" at {utc_text(kill_time)}"


def _risk_text(status: EngineStatus) -> str:
    risk = status.risk
    if risk.killed:
        return f"KILLED ({kill_text(risk)})"
    rejected = ", ".join(f"{reason.value} {count}" for reason, count in sorted(risk.rejections.items()))
    return f"ok, {risk.orders} orders, {risk.total_rejections} rejected" + (f" ({rejected})" if rejected else "")


def status_line(status: EngineStatus) -> str:
    """One plain line: elapsed time, equity, PnL, trades, positions, risk, stream health."""
    portfolio = status.portfolio
    held = " ".join(f"{p.symbol}={_number(p.quantity)}@{_number(p.mark)}" for p in portfolio.positions if p.quantity)
    prices = " ".join(f"{t.symbol}={_number(t.last)}" for t in sorted(status.prices, key=lambda t: t.symbol))
    health = status.health
    reconnects = 0 if health is None else health.total_reconnects
    modes = "-" if health is None else ",".join(sorted({t.mode for t in health.topics})) or "-"
    trouble = _stream_trouble(health)
    return (
        f"t={status.elapsed:.0f}s prices=[{prices}] equity={_money(portfolio.equity)} "
        f"pnl={_signed(_pnl(portfolio))} (realised {_signed(portfolio.realised_pnl)}, "
        f"unrealised {_signed(portfolio.unrealised_pnl)}, fees {_money(portfolio.fees)}) trades={status.trades} "
        f"positions=[{held or 'flat'}] streams={modes} reconnects={reconnects} risk={_risk_text(status)}"
        + (f" | {trouble}" if trouble else "")
    )


def _stream_trouble(health: StreamHealth | None) -> str:
    """Why data is not flowing ("last error: ..."), while it is not; empty when it is."""
    if health is None or not health.waiting:
        return ""
    last = health.last_error
    return "waiting for data" if last is None else f"last error: {last}"


def render_status(status: EngineStatus) -> RenderableType:
    """The terminal view of one status, compact enough for an 80 x 24 terminal."""
    portfolio = status.portfolio
    pnl = _pnl(portfolio)
    header = Text.assemble(
        ("tradeloop", "bold"),
        f" paper trading · {status.elapsed:.0f} s\nequity ",
        (_money(portfolio.equity), "bold"),
        " · PnL ",
        (_signed(pnl), "green" if pnl >= 0 else "red"),
        f" · fees {_money(portfolio.fees)} · trades {status.trades} · max DD {_money(portfolio.max_drawdown)}",
    )
    several = len({tick.exchange for tick in status.prices}) > 1
    positions = {(p.exchange, p.symbol): p for p in portfolio.positions}
    markets = _table("symbol", "bid", "ask", "position", "entry", "uPnL", "rPnL")
    for tick in sorted(status.prices, key=lambda t: (t.exchange, t.symbol)):
        position = positions.get((tick.exchange, tick.symbol))
        held = position is not None and position.quantity != 0
        markets.add_row(
            f"{tick.exchange}:{tick.symbol}" if several else tick.symbol,
            _number(tick.bid if tick.bid is not None else tick.last),
            _number(tick.ask if tick.ask is not None else tick.last),
            _number(position.quantity) if held and position else "flat",
            f"{position.average_entry:.6g}" if held and position and position.average_entry else "-",
            _signed(position.unrealised_pnl) if position else "-",
            _signed(position.realised_pnl) if position else "-",
        )
    streams = _table("stream", "mode", "state", "msgs", "age s", "reconnects", "bad frames")
    for topic in () if status.health is None else status.health.topics:
        age = topic.last_message_age
        streams.add_row(
            f"{topic.exchange}:{topic.topic}" if several else str(topic.topic),
            topic.mode,
            topic.state,
            str(topic.messages),
            "-" if age is None else f"{age:.1f}",
            str(topic.reconnects),
            str(sum(topic.parse_errors.values())),
        )
    strategies = _table("strategy", "state", "klines", "ticks", "signals", "errors")
    for strategy in status.strategies:
        state = "running" if strategy.enabled else f"disabled: {strategy.last_error}"
        counts = (strategy.klines, strategy.ticks, strategy.signals, strategy.errors)
        strategies.add_row(strategy.name, state, *map(str, counts))
    trouble = _stream_trouble(status.health)
    streams_note = [Text(f"streams {trouble}", style="yellow")] if trouble else []
    risk = Text("risk: " + _risk_text(status), style="bold red" if status.risk.killed else "")
    recent = status.risk.recent_rejections[-3:]
    lines = [Text(f"  rejected {r.signal.strategy} {r.signal.symbol}: {r.detail}", style="yellow") for r in recent]
    return Group(header, markets, streams, *streams_note, strategies, risk, *lines)


def _table(*columns: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 else "right", no_wrap=True)
    return table


async def show_live(engine: TradingEngine, console: Console, *, interval: float = 1.0) -> None:
    """Redraw the engine's status every ``interval`` seconds until cancelled."""
    if console.is_terminal:
        await _redraw(engine, console, interval)
    else:
        await _print_lines(engine, console, interval)


async def _redraw(engine: TradingEngine, console: Console, interval: float) -> None:
    # auto_refresh=False: rich would otherwise redraw from a thread of its own.
    with Live(console=console, auto_refresh=False, vertical_overflow="visible") as live:
        while True:
            status = engine.status()
            if status is not None:
                live.update(render_status(status), refresh=True)
            await anyio.sleep(interval)


async def _print_lines(engine: TradingEngine, console: Console, interval: float) -> None:
    while True:
        await anyio.sleep(interval)
        status = engine.status()
        if status is not None:
            console.print(status_line(status), markup=False, highlight=False, soft_wrap=True)


def format_summary(summary: RunSummary) -> str:
    """The text printed when a run ends."""
    portfolio, risk = summary.portfolio, summary.risk
    rejected = ", ".join(f"{reason.value} {count}" for reason, count in sorted(risk.rejections.items()))
    errors = ", ".join(f"{name} {count}" for name, count in summary.strategy_errors.items())
    fraction = portfolio.max_drawdown_fraction * 100
    rows = [
        ("trades", f"{summary.trades} this run ({portfolio.fills} in the journal)"),
        ("fees", _money(portfolio.fees)),
        ("realised PnL", _signed(portfolio.realised_pnl)),
        ("unrealised PnL", _signed(portfolio.unrealised_pnl)),
        ("equity", f"{_money(portfolio.equity)} (started with {_money(portfolio.starting_cash)})"),
        ("max drawdown", f"{_money(portfolio.max_drawdown)} ({fraction:.2f}%)"),
        ("reconnects", str(summary.reconnects)),
        (
            "rejections",
            f"{risk.total_rejections} this run"
            + (f" ({rejected})" if rejected else "")
            + f", {summary.journaled_rejections} in the journal",
        ),
        ("strategy errors", errors or "none"),
        ("journal", str(summary.journal)),
    ]
    if risk.killed:
        rows.insert(0, ("kill switch", kill_text(risk)))
    width = max(len(name) for name, _ in rows)
    lines = [f"tradeloop run: stopped by {summary.stopped_by} after {summary.elapsed:.1f} s"]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)
