"""Each risk limit rejects what it should, with its reason; the kill switch flattens and stops."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
import trio
from trio.testing import MockClock

from tradeloop.models import Fill, Kline, Side, Signal, Tick
from tradeloop.trading.portfolio import PortfolioManager
from tradeloop.trading.risk import Rejection, RejectReason, RiskLimits, RiskManager

D = Decimal
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
NO_LIMITS = RiskLimits(max_tick_age=None, max_orders_per_minute=None)


@pytest.fixture
def mock_clock() -> MockClock:
    return MockClock(autojump_threshold=0)


def make(limits: RiskLimits = NO_LIMITS, cash: str = "10000") -> tuple[PortfolioManager, RiskManager]:
    portfolio = PortfolioManager(D(cash))
    return portfolio, RiskManager(limits, portfolio)


def mark(portfolio: PortfolioManager, risk: RiskManager, price: str, symbol: str = BTC, day: int = 0) -> None:
    tick = Tick("bingx", symbol, 1_700_006_400_000 + day * 86_400_000, D(price), D(price), D(price))
    portfolio.on_tick(tick)
    risk.after_mark(tick.time)


def hold(target: str, symbol: str = BTC, strategy: str = "s1") -> Signal:
    return Signal("bingx", symbol, "test", target=D(target), strategy=strategy)


def buy(quantity: str, symbol: str = BTC, strategy: str = "s1") -> Signal:
    return Signal("bingx", symbol, "test", side=Side.BUY, quantity=D(quantity), strategy=strategy)


async def rejected(risk: RiskManager, signal: Signal, reason: RejectReason) -> Rejection:
    result = await risk.submit(signal)
    assert isinstance(result, Rejection), result
    assert result.reason is reason
    assert risk.state().rejections[reason] >= 1
    return result


async def test_targets_are_per_strategy_and_signals_in_place_do_nothing() -> None:
    portfolio, risk = make()
    mark(portfolio, risk, "100")
    assert isinstance(await risk.submit(hold("2", strategy="a")), Fill)
    assert isinstance(await risk.submit(hold("-1", strategy="b")), Fill)
    assert portfolio.position("bingx", BTC).quantity == 1
    assert await risk.submit(hold("2", strategy="a")) is None
    fill = await risk.submit(hold("0", strategy="a"))
    assert isinstance(fill, Fill) and (fill.side, fill.quantity, fill.strategy) == (Side.SELL, D(2), "a")
    assert portfolio.strategy_positions() == {("b", "bingx", BTC): D(-1)}
    state = risk.state()
    assert (state.signals, state.orders, state.unchanged, state.total_rejections) == (4, 3, 1, 0)


async def test_no_market_data() -> None:
    _, risk = make()
    rejection = await rejected(risk, buy("1"), RejectReason.NO_MARKET_DATA)
    assert BTC in rejection.detail


async def test_stale_market_data(mock_clock: MockClock) -> None:
    portfolio, risk = make(RiskLimits(max_tick_age=5.0, max_orders_per_minute=None))
    mark(portfolio, risk, "100")
    await trio.sleep(4)
    assert isinstance(await risk.submit(buy("1")), Fill)
    await trio.sleep(2)
    rejection = await rejected(risk, buy("1"), RejectReason.STALE_MARKET_DATA)
    assert "max_tick_age" in rejection.detail
    mark(portfolio, risk, "100")
    assert isinstance(await risk.submit(buy("1")), Fill)


async def test_a_signal_from_a_candle_newer_ones_replaced_opens_nothing() -> None:
    # Found by an outside look: an engine taking over a Redis stream with a backlog traded each
    # candle's signal at the current price, round trips in the same millisecond.
    portfolio, risk = make(RiskLimits(max_tick_age=None, max_orders_per_minute=None, max_candle_lag=3))
    mark(portfolio, risk, "100")  # the market is at 1_700_006_400_000 (a candle boundary)

    def candle(opens_minutes_before: int) -> Kline:
        open_time = 1_700_006_400_000 - opens_minutes_before * 60_000
        return Kline("bingx", BTC, "1m", open_time, D(100), D(100), D(100), D(100), D(1), closed=True)

    def signal(made: Signal) -> Signal:
        return replace(made, strategy="s")

    assert isinstance(await risk.submit(signal(Signal.buy(candle(1), D(1), "the last closed"))), Fill)
    assert isinstance(await risk.submit(signal(Signal.buy(candle(3), D(1), "two candles late"))), Fill)
    rejection = await rejected(risk, signal(Signal.buy(candle(4), D(1), "three late")), RejectReason.STALE_SIGNAL)
    assert "closed at 2023-11-14 23:57:00 UTC; the market is at 2023-11-15 00:00:00 UTC, 3 candle(s) on" in (
        rejection.detail
    )
    fill = await risk.submit(signal(Signal.hold(candle(10), D(0), "out, however late")))
    assert isinstance(fill, Fill) and fill.side is Side.SELL  # getting out is never refused
    assert isinstance(await risk.submit(buy("1")), Fill)  # a signal of no candle is not judged so
    books, lenient = make(RiskLimits(max_tick_age=None, max_orders_per_minute=None, max_candle_lag=None))
    mark(books, lenient, "100")
    assert isinstance(await lenient.submit(signal(Signal.buy(candle(100), D(1), "no limit"))), Fill)


async def test_a_late_signal_still_gets_a_strategy_out() -> None:
    # Found by a second review: a late flip was refused whole (the long stayed open), and a late
    # exit was refused when another strategy held the other side (judged on the net position).
    portfolio, risk = make(RiskLimits(max_tick_age=None, max_orders_per_minute=None, max_candle_lag=3))
    mark(portfolio, risk, "100")
    late = Kline("bingx", BTC, "1m", 1_700_006_400_000 - 10 * 60_000, D(1), D(1), D(1), D(1), D(1), closed=True)
    assert isinstance(await risk.submit(hold("1", strategy="a")), Fill)
    assert isinstance(await risk.submit(hold("-1", strategy="b")), Fill)
    flip = await risk.submit(replace(Signal.hold(late, D(-1), "short, late"), strategy="a"))
    assert isinstance(flip, Fill) and flip.quantity == 1  # closed, not reversed
    assert isinstance(await risk.submit(replace(Signal.hold(late, D(0), "out, late"), strategy="b")), Fill)
    assert portfolio.strategy_positions() == {}


async def test_max_order_notional() -> None:
    portfolio, risk = make(RiskLimits(max_order_notional=D("500"), max_tick_age=None))
    mark(portfolio, risk, "100")
    assert isinstance(await risk.submit(buy("5")), Fill)
    rejection = await rejected(risk, buy("5.01"), RejectReason.MAX_ORDER_NOTIONAL)
    assert "501" in rejection.detail


async def test_max_position_allows_reducing() -> None:
    portfolio, risk = make(RiskLimits(max_position_notional=D("1000"), max_tick_age=None))
    mark(portfolio, risk, "100")
    assert isinstance(await risk.submit(hold("10")), Fill)
    await rejected(risk, hold("11"), RejectReason.MAX_POSITION)
    await rejected(risk, hold("-21", strategy="s2"), RejectReason.MAX_POSITION)  # through zero to -11
    assert isinstance(await risk.submit(hold("-20", strategy="s2")), Fill)  # to -10
    assert isinstance(await risk.submit(hold("0", strategy="s2")), Fill)
    mark(portfolio, risk, "200")  # the position is now worth 2000, over the limit, but may shrink
    assert isinstance(await risk.submit(hold("4")), Fill)
    await rejected(risk, hold("6"), RejectReason.MAX_POSITION)


async def test_max_gross_exposure() -> None:
    portfolio, risk = make(RiskLimits(max_gross_exposure=D("1500"), max_tick_age=None))
    mark(portfolio, risk, "100")
    mark(portfolio, risk, "50", ETH)
    assert isinstance(await risk.submit(hold("10")), Fill)
    assert isinstance(await risk.submit(hold("-10", ETH)), Fill)  # 1000 + 500
    rejection = await rejected(risk, hold("-11", ETH), RejectReason.MAX_GROSS_EXPOSURE)
    assert "1550" in rejection.detail


async def test_order_rate(mock_clock: MockClock) -> None:
    portfolio, risk = make(RiskLimits(max_orders_per_minute=3, max_tick_age=None))
    for _ in range(3):
        mark(portfolio, risk, "100")
        assert isinstance(await risk.submit(buy("1")), Fill)
        await trio.sleep(10)
    await rejected(risk, buy("1"), RejectReason.ORDER_RATE)
    await trio.sleep(30.5)  # the first order leaves the 60 s window
    assert isinstance(await risk.submit(buy("1")), Fill)
    await rejected(risk, buy("1"), RejectReason.ORDER_RATE)
    assert risk.state().rejections == {RejectReason.ORDER_RATE: 2}


async def test_drawdown_kill_switch_flattens_and_stops() -> None:
    portfolio, risk = make(RiskLimits(max_drawdown=D("0.05"), max_tick_age=None), cash="1000")
    mark(portfolio, risk, "100")
    mark(portfolio, risk, "20", ETH)
    assert isinstance(await risk.submit(hold("5", strategy="a")), Fill)
    assert isinstance(await risk.submit(hold("-10", ETH, strategy="b")), Fill)
    mark(portfolio, risk, "110")  # equity 1050: the peak
    mark(portfolio, risk, "101")  # 1005: down 4.3%
    assert not risk.killed.is_set()
    mark(portfolio, risk, "99")  # 995: down 5.2%
    assert risk.killed.is_set()
    assert risk.kill_reason is not None and "max_drawdown" in risk.kill_reason
    fills = await risk.flatten()
    assert {(f.symbol, f.side, f.quantity) for f in fills} == {(BTC, Side.SELL, D(5)), (ETH, Side.BUY, D(10))}
    assert all(p.quantity == 0 for p in portfolio.positions())
    assert portfolio.strategy_positions() == {}
    rejection = await rejected(risk, hold("1", strategy="a"), RejectReason.KILL_SWITCH)
    assert "max_drawdown" in rejection.detail
    state = risk.state()
    assert state.killed and state.orders == 4


async def test_daily_loss_counts_from_the_day_start() -> None:
    portfolio, risk = make(RiskLimits(max_daily_loss=D("100"), max_tick_age=None), cash="1000")
    mark(portfolio, risk, "100")
    assert isinstance(await risk.submit(hold("10")), Fill)
    mark(portfolio, risk, "91")  # -90 today
    mark(portfolio, risk, "91", day=1)  # a new day starts at 910
    mark(portfolio, risk, "82", day=1)  # -90 today
    assert not risk.killed.is_set()
    mark(portfolio, risk, "81.9", day=1)  # -91: still fine; the limit is 100
    mark(portfolio, risk, "80.9", day=1)  # -101
    assert risk.killed.is_set() and "max_daily_loss" in (risk.kill_reason or "")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_order_notional", D(-1)),
        ("max_position_notional", "lots"),
        ("max_gross_exposure", D("Infinity")),
        ("max_daily_loss", True),
        ("max_drawdown", D("1.5")),
        ("max_tick_age", 0),
        ("max_orders_per_minute", 0.5),
    ],
)
def test_bad_limits_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        RiskLimits(**{field: value})  # type: ignore[arg-type]


async def test_a_drawdown_just_over_its_limit_says_so_in_percent() -> None:
    portfolio, risk = make(RiskLimits(max_drawdown=D("0.01"), max_tick_age=None, max_orders_per_minute=None))
    mark(portfolio, risk, "100")
    assert isinstance(await risk.submit(hold("100")), Fill)  # all in: 100 x 100
    mark(portfolio, risk, "98.9999")  # down 100.01 of 10,000: 1.0001%
    assert risk.kill_reason == "drawdown 1.0001% (100.01 from the peak 10000.00) exceeds max_drawdown 1%"
