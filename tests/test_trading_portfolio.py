"""Paper execution and the books: every figure reconciles exactly with the fills and the marks."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeloop.models import Fill, Order, Side, Tick
from tradeloop.trading.portfolio import PortfolioManager, fill_price, mark_price

D = Decimal
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


def tick(symbol: str = BTC, last: str | None = "100", bid: str | None = None, ask: str | None = None) -> Tick:
    def number(text: str | None) -> Decimal | None:
        return None if text is None else D(text)

    return Tick("bingx", symbol, 1_700_000_000_000, number(last), number(bid), number(ask))


async def trade(portfolio: PortfolioManager, side: Side, quantity: str, symbol: str = BTC) -> Fill:
    order = Order(portfolio.new_order_id(), "bingx", symbol, side, D(quantity), "test", "because")
    return await portfolio.execute(order)


def reconcile(portfolio: PortfolioManager, fills: list[Fill], marks: dict[str, Decimal]) -> None:
    """Recompute cash and equity from nothing but the fills and the marks."""
    cash = portfolio.starting_cash - sum((f.signed_quantity * f.price + f.fee for f in fills), D(0))
    held: dict[str, Decimal] = {}
    for f in fills:
        held[f.symbol] = held.get(f.symbol, D(0)) + f.signed_quantity
    equity = cash + sum((quantity * marks[symbol] for symbol, quantity in held.items()), D(0))
    assert portfolio.cash == cash
    assert portfolio.equity == equity
    assert portfolio.fees == sum((f.fee for f in fills), D(0))
    assert portfolio.starting_cash + portfolio.realised_pnl + portfolio.unrealised_pnl - portfolio.fees == equity
    for position in portfolio.positions():
        assert position.quantity == held[position.symbol]


def test_fill_price_uses_the_touch_then_last() -> None:
    book = tick(last="100", bid="99", ask="101")
    assert fill_price(book, Side.BUY, D("0.01")) == D("102.01")
    assert fill_price(book, Side.SELL, D("0.01")) == D("98.01")
    assert fill_price(tick(last="100"), Side.BUY, D(0)) == D("100")
    assert fill_price(tick(last=None), Side.SELL, D(0)) is None
    assert mark_price(tick(last=None, bid="99", ask="100")) == D("99.5")


async def test_fifo_lots_realise_exactly() -> None:
    portfolio = PortfolioManager(D("10000"), fee_rate=D("0.001"))
    portfolio.on_tick(tick(last="100"))
    await trade(portfolio, Side.BUY, "2")
    portfolio.on_tick(tick(last="110"))
    await trade(portfolio, Side.BUY, "1")
    portfolio.on_tick(tick(last="120"))
    await trade(portfolio, Side.SELL, "2")  # closes the 100 lot: realises 2 × 20
    position = portfolio.position("bingx", BTC)
    assert position.quantity == 1
    assert position.realised_pnl == D("40")
    assert position.cost == D("110")
    assert position.average_entry == D("110")
    assert position.unrealised_pnl == D("10")
    assert portfolio.fees == D("0.2") + D("0.11") + D("0.24")
    portfolio.on_tick(tick(last="90"))
    reconcile(portfolio, portfolio.fills, {BTC: D("90")})


async def test_short_and_flip_through_zero() -> None:
    portfolio = PortfolioManager(D("1000"))
    portfolio.on_tick(tick(last="50"))
    await trade(portfolio, Side.SELL, "3")
    portfolio.on_tick(tick(last="40"))
    await trade(portfolio, Side.BUY, "5")  # covers 3 (+30), then long 2 @ 40
    position = portfolio.position("bingx", BTC)
    assert (position.quantity, position.realised_pnl, position.cost) == (D(2), D(30), D(80))
    assert portfolio.equity == D("1030")
    reconcile(portfolio, portfolio.fills, {BTC: D("40")})


async def test_drawdown_is_tracked_on_every_mark() -> None:
    portfolio = PortfolioManager(D("1000"))
    portfolio.on_tick(tick(last="100"))
    await trade(portfolio, Side.BUY, "1")
    for price in ("150", "90", "120"):
        portfolio.on_tick(tick(last=price))
    assert portfolio.peak_equity == D("1050")
    assert portfolio.max_drawdown == D("60")
    assert portfolio.snapshot().max_drawdown_fraction == D("60") / D("1050")


async def test_execute_needs_a_price() -> None:
    portfolio = PortfolioManager(D("1000"))
    with pytest.raises(RuntimeError, match="no price"):
        await trade(portfolio, Side.BUY, "1")
    assert portfolio.fills == []


def test_bad_books_parameters_are_named() -> None:
    with pytest.raises(ValueError, match="fee_rate"):
        PortfolioManager(D("1000"), fee_rate=D("-0.1"))
    with pytest.raises(ValueError, match="starting_cash"):
        PortfolioManager(D("NaN"))


_prices = st.decimals(min_value=D("0.01"), max_value=D("100000"), places=2)
_steps = st.lists(
    st.tuples(
        st.sampled_from([BTC, ETH]),
        _prices,
        _prices,
        st.sampled_from(list(Side)),
        st.decimals(min_value=D("0.001"), max_value=D("50"), places=3),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(steps=_steps, fee_rate=st.sampled_from([D(0), D("0.0005"), D("0.001")]))
async def test_pnl_reconciles_exactly_with_fills_and_marks(
    steps: list[tuple[str, Decimal, Decimal, Side, Decimal]], fee_rate: Decimal
) -> None:
    portfolio = PortfolioManager(D("100000"), fee_rate=fee_rate, slippage=D("0.0002"))
    marks: dict[str, Decimal] = {}
    for symbol, bid, spread, side, quantity in steps:
        portfolio.on_tick(tick(symbol, last=str(bid), bid=str(bid), ask=str(bid + spread)))
        marks[symbol] = bid
        await trade(portfolio, side, str(quantity), symbol)
        reconcile(portfolio, portfolio.fills, marks)
    assert portfolio.max_drawdown >= 0
    assert portfolio.peak_equity >= portfolio.equity
