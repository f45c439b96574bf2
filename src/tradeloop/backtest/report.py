"""The backtest report: ``report.json``, ``equity.png`` and the printed summary.

Figures, per strategy and in total (money as exact decimal strings, ratios as floats rounded to
six places, so the same inputs give a byte-identical ``report.json``):

- ``trades``: fills; ``fees``: their fees; ``realised_pnl``: closed FIFO lots; ``unrealised_pnl``:
  open lots at the last marks; ``net_pnl = realised + unrealised - fees``.
- Equity curve (``equity``: [time, equity] pairs): the starting cash at the start, then one
  point per virtual day (the engine's daily journal snapshot, valued at that moment's marks) and
  the final one. A strategy's curve is the starting cash plus its own PnL, as if it had the account
  alone (the account nets strategies that trade one instrument).
- ``max_drawdown``: the largest fall of equity from a previous peak, in quote currency and as a
  fraction of that peak. In total it is the engine's own figure, tracked at every mark; per
  strategy it comes from the daily curve.
- ``sharpe`` and ``sortino``: from daily returns ``r_d = E_d / E_(d-1) - 1`` of the curve (``E_0``
  = starting cash), risk-free rate 0, annualised with sqrt(365) (crypto trades every day):
  ``sharpe = mean(r) / stdev(r) * sqrt(365)`` (sample standard deviation),
  ``sortino = mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(365)``; null with fewer than two returns
  or a zero denominator.
- ``exposure``: the fraction of the backtest's time with a position open.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

from ..models import Fill
from ..trading.portfolio import Instrument, _Book
from .runner import BacktestResult

__all__ = ["FILL_MODEL", "PlotUnavailable", "build_report", "format_summary", "plot_equity", "write_report"]

FILL_MODEL = (
    "one tick per candle at its open (bid = ask = last = open); an order placed on a closed candle "
    "fills at the next candle's open, moved against the order by the slippage fraction, paying the fee "
    "fraction of its notional; the intra-candle path is unknown to a backtest"
)
_ZERO = Decimal(0)
_DAYS_PER_YEAR = 365


class PlotUnavailable(Exception):
    """matplotlib is not installed (the ``tradeloop[plot]`` extra)."""


def iso(time_ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC (``2026-01-01T00:00:00Z``)."""
    moment = datetime.fromtimestamp(time_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds" if time_ms % 1000 else "seconds").replace("+00:00", "Z")


def _money(value: Decimal) -> str:
    return format(value, "f")


def _ratio(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 6)


@dataclass
class _Books:
    """One strategy's (or the account's) FIFO books, fees and time in the market."""

    books: dict[Instrument, _Book] = field(default_factory=dict)
    fees: Decimal = _ZERO
    trades: int = 0
    open_since: int | None = None
    time_in_market: int = 0
    curve: list[Decimal] = field(default_factory=list)

    def apply(self, fill: Fill) -> None:
        self.books.setdefault((fill.exchange, fill.symbol), _Book()).apply(fill.signed_quantity, fill.price)
        self.fees += fill.fee
        self.trades += 1
        holding = any(book.lots for book in self.books.values())
        if holding and self.open_since is None:
            self.open_since = fill.time
        elif not holding and self.open_since is not None:
            self.time_in_market += fill.time - self.open_since
            self.open_since = None

    @property
    def realised(self) -> Decimal:
        return sum((book.realised for book in self.books.values()), _ZERO)

    def unrealised(self, marks: dict[Instrument, Decimal]) -> Decimal:
        return sum(
            (book.quantity * marks[key] - book.cost for key, book in self.books.items() if book.lots and key in marks),
            _ZERO,
        )

    def exposure(self, start_ms: int, end_ms: int) -> float:
        """The fraction of ``[start_ms, end_ms)`` with a position open; 0 for an empty period (a
        backtest stopped by Ctrl-C before its first candle)."""
        if end_ms <= start_ms:
            return 0.0
        held = self.time_in_market + (0 if self.open_since is None else end_ms - self.open_since)
        return held / (end_ms - start_ms)


def _drawdown(curve: Sequence[Decimal]) -> tuple[Decimal, Decimal]:
    """Largest fall from a previous peak: (amount, fraction of that peak)."""
    peak, amount, fraction = curve[0], _ZERO, _ZERO
    for value in curve:
        peak = max(peak, value)
        amount = max(amount, peak - value)
        if peak > 0:
            fraction = max(fraction, (peak - value) / peak)
    return amount, fraction


def daily_returns(curve: Sequence[Decimal]) -> list[float]:
    return [float(after / before - 1) for before, after in pairwise(curve) if before]


def sharpe(returns: Sequence[float]) -> float | None:
    if len(returns) < 2:
        return None
    mean = sum(returns) / len(returns)
    variance = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    return mean / math.sqrt(variance) * math.sqrt(_DAYS_PER_YEAR) if variance > 0 else None


def sortino(returns: Sequence[float]) -> float | None:
    if len(returns) < 2:
        return None
    mean = sum(returns) / len(returns)
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    return mean / downside * math.sqrt(_DAYS_PER_YEAR) if downside > 0 else None


def _figures(
    books: _Books, marks: dict[Instrument, Decimal], curve: list[Decimal], start: int, end: int
) -> dict[str, Any]:
    realised, unrealised = books.realised, books.unrealised(marks)
    returns = daily_returns(curve)
    amount, fraction = _drawdown(curve)
    return {
        "trades": books.trades,
        "fees": _money(books.fees),
        "realised_pnl": _money(realised),
        "unrealised_pnl": _money(unrealised),
        "net_pnl": _money(realised + unrealised - books.fees),
        "max_drawdown": _money(amount),
        "max_drawdown_fraction": _ratio(float(fraction)),
        "sharpe": _ratio(sharpe(returns)),
        "sortino": _ratio(sortino(returns)),
        "exposure": _ratio(books.exposure(start, end)),
    }


def build_report(result: BacktestResult, *, data: str) -> dict[str, Any]:
    """Every figure of the backtest as JSON-ready values (see the module docs)."""
    config, summary = result.config, result.summary
    cash = config.starting_cash
    names = [strategy.name for strategy in config.strategies]
    per_strategy = {name: _Books(curve=[cash]) for name in names}
    total = _Books(curve=[cash])
    fills = iter(result.fills)
    pending = next(fills, None)
    marks: dict[Instrument, Decimal] = {}
    for point in result.equity:
        while pending is not None and pending.time <= point.time:
            per_strategy.setdefault(pending.strategy, _Books(curve=[cash])).apply(pending)
            total.apply(pending)
            pending = next(fills, None)
        marks = point.marks
        total.curve.append(point.equity)
        for books in per_strategy.values():
            books.curve.append(cash + books.realised + books.unrealised(marks) - books.fees)
    start, end = result.start_ms, result.end_ms
    totals = _figures(total, marks, total.curve, start, end)
    portfolio = summary.portfolio
    totals |= {
        "max_drawdown": _money(portfolio.max_drawdown),
        "max_drawdown_fraction": _ratio(float(portfolio.max_drawdown_fraction)),
        "starting_cash": _money(cash),
        "final_equity": _money(portfolio.equity),
        "return": _ratio(float(portfolio.equity / cash - 1)) if cash else None,
    }
    return {
        "backtest": {
            "from": iso(start),
            "to": iso(end),
            "data": data,
            "candles": result.candles,
            "stopped_by": summary.stopped_by,
            "kill_switch": summary.risk.kill_reason,
            "fill_model": FILL_MODEL,
            "fee_rate": _money(config.fee_rate),
            "slippage": _money(config.slippage),
        },
        "total": totals,
        "strategies": {
            name: _figures(books, marks, books.curve, start, end) for name, books in per_strategy.items()
        },
        "rejections": {reason.value: count for reason, count in sorted(summary.risk.rejections.items())},
        "strategy_errors": dict(summary.strategy_errors),
        "equity": [[iso(start), _money(cash)]] + [[iso(point.time), _money(point.equity)] for point in result.equity],
    }


def write_report(report: dict[str, Any], path: Path) -> None:
    """``report.json``: the same report gives the same bytes."""
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def format_summary(report: dict[str, Any], files: Iterable[Path]) -> str:
    """The text printed when a backtest ends."""
    run, total = report["backtest"], report["total"]

    def signed(text: str) -> str:
        return f"{Decimal(text):+,.2f}"

    def number(value: float | None, percent: bool = False) -> str:
        if value is None:
            return "-"
        return f"{value * 100:.2f}%" if percent else f"{value:.2f}"

    rows = [
        ("trades", f"{total['trades']:,}"),
        ("fees", f"{Decimal(total['fees']):,.2f}"),
        ("realised PnL", signed(total["realised_pnl"])),
        ("unrealised PnL", signed(total["unrealised_pnl"])),
        ("equity", f"{Decimal(total['final_equity']):,.2f} ({number(total['return'], True)} on "
                   f"{Decimal(total['starting_cash']):,.2f})"),
        ("max drawdown", f"{Decimal(total['max_drawdown']):,.2f} ({number(total['max_drawdown_fraction'], True)})"),
        ("sharpe / sortino", f"{number(total['sharpe'])} / {number(total['sortino'])}"),
        ("exposure", number(total["exposure"], True)),
    ]
    if run["kill_switch"]:
        rows.insert(0, ("kill switch", run["kill_switch"]))
    if report["rejections"]:
        rows.append(("rejections", ", ".join(f"{reason} {count}" for reason, count in report["rejections"].items())))
    for name, figures in report["strategies"].items():
        rows.append(
            (
                f"  {name}",
                f"{figures['trades']:,} trades, net {signed(figures['net_pnl'])}, fees "
                f"{Decimal(figures['fees']):,.2f}, sharpe {number(figures['sharpe'])}, "
                f"exposure {number(figures['exposure'], True)}",
            )
        )
    rows.append(("report", ", ".join(str(path) for path in files)))
    width = max(len(name) for name, _ in rows)
    lines = [
        f"tradeloop backtest: {run['from']} to {run['to']}, {run['candles']:,} candles, stopped by {run['stopped_by']}"
    ]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)


def plot_equity(report: dict[str, Any], path: Path) -> None:
    """``equity.png``: the equity curve over its drawdown."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable("equity.png needs matplotlib: pip install 'tradeloop[plot]'") from None
    times = [datetime.fromisoformat(moment.replace("Z", "+00:00")) for moment, _ in report["equity"]]
    equity = [float(value) for _, value in report["equity"]]
    peaks = [max(equity[: index + 1]) for index in range(len(equity))]
    drawdown = [(value - peak) / peak * 100 if peak else 0.0 for value, peak in zip(equity, peaks, strict=True)]
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6), height_ratios=(3, 1))
    top.plot(times, equity, label="total", linewidth=1.5)
    top.set_ylabel("equity")
    top.set_title(f"backtest {report['backtest']['from']} to {report['backtest']['to']}")
    top.grid(alpha=0.3)
    top.legend(loc="upper left")
    bottom.fill_between(times, drawdown, 0, color="tab:red", alpha=0.4)
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
