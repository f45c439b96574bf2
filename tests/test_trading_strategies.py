"""Reference strategies, their parameter checks, and the coordinator's isolation of a failing strategy."""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal

import pytest
import trio

import tradeloop.trading.strategy as strategy_module
from tradeloop.models import Kline, Signal, Tick
from tradeloop.trading.strategies import Breakout, SmaCrossover, create_strategy
from tradeloop.trading.strategy import Strategy, StrategyCoordinator

D = Decimal
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


def candle(close: str, minute: int, symbol: str = BTC, closed: bool = True) -> Kline:
    price = D(close)
    return Kline("bingx", symbol, "1m", minute * 60_000, price, price, price, price, D(1), closed)


def tick(last: str, symbol: str = BTC) -> Tick:
    return Tick("bingx", symbol, 0, D(last))


def targets(signals: Iterable[Signal]) -> list[Decimal | None]:
    return [signal.target for signal in signals]


def test_sma_crossover_holds_long_above_and_flat_below() -> None:
    sma = SmaCrossover(symbols=[BTC], fast=2, slow=3, size="1000")
    prices = ["100", "100", "100", "110", "120", "100", "80", "90", "120"]
    signals = [sma.on_kline(candle(price, minute)) for minute, price in enumerate(prices)]
    assert [targets(s) for s in signals] == [[], [], [], [D("9.0909")], [], [], [D(0)], [], [D("8.3333")]]
    assert sma.warmup == 3 and sma.timeframe == "1m"
    assert sma.on_tick(tick("1")) == []  # candle mode ignores ticks


def test_breakout_on_ticks_goes_short_when_allowed() -> None:
    breakout = Breakout(symbols=[BTC, ETH], lookback=2, size="100", source="tick", allow_short=True)
    assert breakout.timeframe is None and breakout.warmup == 0
    seen = [targets(breakout.on_tick(tick(price))) for price in ["10", "11", "12", "11", "9", "8"]]
    assert seen == [[], [], [D("8.3333")], [], [D("-11.1111")], []]
    assert targets(breakout.on_tick(tick("50", ETH))) == []  # each symbol has its own series


def test_tick_mode_falls_back_to_the_midpoint() -> None:
    sma = SmaCrossover(symbols=[BTC], fast=1, slow=2, size="10", source="tick")
    for price in ("1", "2"):
        sma.on_tick(Tick("bingx", BTC, 0, None, D(price), D(price)))
    assert targets(sma.on_tick(Tick("bingx", BTC, 0, None, D("2"), D("4")))) == [D("3.3333")]


@pytest.mark.parametrize(
    ("kind", "params", "named"),
    [
        ("sma_crossover", {"fast": 5, "slow": 5}, "fast"),
        ("sma_crossover", {"fast": 0}, "fast"),
        ("sma_crossover", {"slow": "30"}, "slow"),
        ("sma_crossover", {"size": -1}, "size"),
        ("breakout", {"lookback": 0}, "lookback"),
        ("breakout", {"source": "candles"}, "source"),
        ("breakout", {"timeframe": "7m"}, "timeframe"),
        ("breakout", {"symbols": "BTC/USDT"}, "symbols"),
        ("breakout", {"symbols": ["btc-usdt"]}, "btc-usdt"),
        ("breakout", {"quantity_step": "0"}, "quantity_step"),
        ("breakout", {"allow_short": "yes"}, "allow_short"),
        ("breakout", {"window": 3}, "window"),
        ("martingale", {}, "martingale"),
    ],
)
def test_bad_parameters_are_named(kind: str, params: dict[str, object], named: str) -> None:
    full = {"symbols": [BTC], "size": "100", **params}
    with pytest.raises(ValueError, match=re.escape(named)):
        create_strategy(kind, full)


class Exploding:
    name = "exploding"
    symbols = (BTC,)
    timeframe = "1m"
    warmup = 0

    def on_kline(self, kline: Kline) -> list[Signal]:
        if kline.open_time >= 2 * 60_000:
            raise ZeroDivisionError("boom")
        return []

    def on_tick(self, tick: Tick) -> list[Signal]:
        return []


class Liar(Exploding):
    name = "liar"

    def on_kline(self, kline: Kline) -> list[Signal]:
        return [Signal.hold(candle("1", 0, ETH), D(1), "not my symbol")]


async def run_coordinator(
    strategies: list[Strategy], market: list[Kline | Tick], history: Iterable[Kline] = ()
) -> tuple[StrategyCoordinator, list[Signal]]:
    market_tx, market_rx = trio.open_memory_channel[Kline | Tick](0)
    signal_tx, signal_rx = trio.open_memory_channel[Signal](0)
    coordinator = StrategyCoordinator(strategies, signal_tx)
    coordinator.warm_up(history)
    received: list[Signal] = []

    async def feed() -> None:
        async with market_tx:
            for item in market:
                await market_tx.send(item)

    async def collect() -> None:
        async with signal_rx:
            async for signal in signal_rx:
                received.append(signal)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(coordinator.run, market_rx)
        nursery.start_soon(feed)
        nursery.start_soon(collect)
    return coordinator, received


async def test_a_raising_strategy_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    sma = SmaCrossover(symbols=[BTC], fast=1, slow=2, size="100", name="sma")
    market: list[Kline | Tick] = [candle(p, m) for m, p in enumerate(["10", "10", "20", "5", "30", "1"])]
    coordinator, signals = await run_coordinator([Exploding(), Liar(), sma], market)
    assert [s.target for s in signals] == [D(5), D(0), D("3.3333"), D(0)]
    assert {s.strategy for s in signals} == {"sma"}
    status = {s.name: s for s in coordinator.status()}
    assert (status["exploding"].enabled, status["exploding"].errors, status["exploding"].klines) == (False, 1, 3)
    assert status["exploding"].last_error == "ZeroDivisionError: boom"
    assert not status["liar"].enabled and "does not trade" in (status["liar"].last_error or "")
    assert status["sma"].enabled and status["sma"].signals == 4
    assert "'exploding' failed" in caplog.text


async def test_only_closed_candles_once_each_after_warm_up() -> None:
    sma = SmaCrossover(symbols=[BTC], fast=1, slow=2, size="100")
    history = [candle("10", 0), candle("10", 1), candle("20", 2)]  # would signal long: discarded
    market: list[Kline | Tick] = [
        candle("20", 2),  # the overlap with history
        candle("1", 3, closed=False),
        candle("30", 3),
        candle("5", 4),
        tick("1"),
    ]
    coordinator, signals = await run_coordinator([sma], market, history)
    assert targets(signals) == [D(0)]
    assert coordinator.status()[0].klines == 5


def test_duplicate_strategy_names_are_refused() -> None:
    send, receive = trio.open_memory_channel[Signal](0)
    twins = [Breakout(name="twin", symbols=[BTC], size=size) for size in (1, 2)]
    with send, receive, pytest.raises(ValueError, match=r"repeated: twin$"):
        StrategyCoordinator([Exploding(), *twins], send)


async def test_the_docstring_strategy_runs() -> None:
    """The module docstring promises a strategy in about 20 lines: run exactly that code."""
    doc = strategy_module.__doc__ or ""
    code = doc.split("A complete one::\n", 1)[1].split("\nPass it in", 1)[0]
    lines = [line[4:] for line in code.splitlines()]
    assert sum(1 for line in lines if line.strip()) <= 20
    namespace: dict[str, object] = {}
    exec("\n".join(lines), namespace)
    strategy = namespace["BuyTheDip"]()  # type: ignore[operator]
    assert isinstance(strategy, Strategy)
    market: list[Kline | Tick] = [candle("100", 0), candle("98", 1), candle("99", 2)]
    _, signals = await run_coordinator([strategy], market)
    assert targets(signals) == [D("0.01"), D(0)]


def test_a_refused_signal_returns_the_view_to_what_is_held() -> None:
    sma = SmaCrossover(symbols=[BTC], fast=1, slow=2, size="1000", source="tick", allow_short=True)
    assert sma.on_tick(tick("100")) == sma.on_tick(tick("100")) == []
    (long,) = sma.on_tick(tick("101"))
    (short,) = sma.on_tick(tick("99"))  # the flip the risk manager refuses
    assert long.target is not None and long.target > 0 and short.target is not None and short.target < 0
    sma.on_rejected(short, long.target)
    assert sma.on_tick(tick("102")) == []  # long again: it still holds its long, nothing to do
    (again,) = sma.on_tick(tick("98"))  # short again: the flip is asked for again
    assert again.target is not None and again.target < 0


def test_a_refusal_of_a_superseded_signal_changes_nothing() -> None:
    sma = SmaCrossover(symbols=[BTC], fast=1, slow=2, size="1000", source="tick", allow_short=True)
    assert sma.on_tick(tick("100")) == sma.on_tick(tick("100")) == []
    (long,) = sma.on_tick(tick("101"))
    (short,) = sma.on_tick(tick("99"))
    assert short.target is not None and short.target < 0
    sma.on_rejected(long, D(0))  # the older signal's refusal arrives after the newer one was sent
    assert sma.on_tick(tick("98")) == []  # still short: the newer target stands


def test_a_copy_the_source_refuses_is_not_counted_as_seen() -> None:
    # A Redis source refuses a stale copy of a candle it handed over and later delivers afresh:
    # the fresh copy must not be dropped as a repeat of the refused one.
    seen: list[int] = []

    class Recorder(SmaCrossover):
        def on_kline(self, kline: Kline) -> list[Signal]:
            seen.append(kline.open_time // 60_000)
            return []

    signal_tx, _ = trio.open_memory_channel[Signal](0)
    coordinator = StrategyCoordinator([Recorder(symbols=[BTC], fast=1, slow=2, size="1")], signal_tx)
    stale, fresh = candle("1", 1), candle("1", 1)
    coordinator.admit = lambda kline: kline is not stale
    coordinator.warm_up([candle("1", 0), stale, fresh, candle("1", 1), candle("1", 2)])
    assert seen == [0, 1, 2]  # the stale copy skipped, the fresh one taken, a repeat of it dropped
