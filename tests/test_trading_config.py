"""Engine configuration: TOML and Python forms, and errors that name the field."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from tradeloop import Kline, Signal, Tick
from tradeloop.exchanges.bingx import BingX
from tradeloop.trading import Breakout, EngineConfig, SmaCrossover, TradingEngine, load_config
from tradeloop.trading.config import config_from_mapping

BTC = "BTC/USDT:USDT"

FULL = """
starting_cash = 5000
fee_rate = 0.0005
slippage = "0.0001"
journal = "books.sqlite"
snapshot_interval = 2.5

[exchanges.BingX]
ws_url = "ws://127.0.0.1:1/swap-market"
rest_url = "http://127.0.0.1:2"

[risk]
max_order_notional = 1000
max_drawdown = 0.2
max_orders_per_minute = 10

[streams]
stall_timeout = 20

[[strategies]]
type = "sma_crossover"
symbols = ["BTC/USDT:USDT"]
fast = 5
slow = 20
size = 250

[[strategies]]
type = "breakout"
name = "eth-breakout"
exchange = "BINGX"
symbols = ["ETH/USDT:USDT"]
lookback = 10
size = 250
source = "tick"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tradeloop.toml"
    path.write_text(text)
    return path


def test_a_full_toml_config(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert list(config.clients) == ["bingx"]
    client = config.clients["bingx"]
    assert isinstance(client, BingX) and client.rest_url == "http://127.0.0.1:2"
    figures = (config.starting_cash, config.fee_rate, config.slippage)
    assert figures == (Decimal(5000), Decimal("0.0005"), Decimal("0.0001"))
    assert config.journal == tmp_path / "books.sqlite"
    assert config.snapshot_interval == 2.5
    assert config.risk.max_order_notional == Decimal(1000) and config.risk.max_drawdown == Decimal("0.2")
    assert config.streams.stall_timeout == 20
    sma, breakout = config.strategies
    assert isinstance(sma, SmaCrossover) and (sma.name, sma.fast, sma.slow) == ("sma_crossover", 5, 20)
    assert isinstance(breakout, Breakout) and breakout.exchange == "bingx" and breakout.timeframe is None
    assert config.strategy_exchange(sma) == "bingx"
    TradingEngine(config)


def test_overrides_replace_fields(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL), journal=tmp_path / "other.sqlite")
    assert config.journal == tmp_path / "other.sqlite"


def test_python_config_normalises_exchange_names() -> None:
    strategy = SmaCrossover(symbols=[BTC], size=100)
    config = EngineConfig(exchanges={" BingX ": {"rest_url": "http://127.0.0.1:9"}}, strategies=[strategy])
    assert list(config.clients) == ["bingx"]
    assert config.journal == Path("tradeloop-journal.sqlite")


BASE = {
    "exchanges": {"bingx": {}},
    "strategies": [{"type": "sma_crossover", "symbols": [BTC], "size": 100}],
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strategy": []}, "unknown field 'strategy'"),
        (
            {"exchanges": {"kraken": {}}},
            "exchanges.kraken': unknown exchange 'kraken': expected one of binance, bingx, or any ccxt exchange as",
        ),
        ({"exchanges": {"bingx": {"wss_url": "x"}}}, "exchanges.bingx': unknown field 'wss_url'"),
        ({"exchanges": {"bingx": {"rest_url": 5}}}, "field 'rest_url' must be a URL string"),
        ({"exchanges": {"bingx": {"poll": True}}}, "exchanges.bingx': unknown field 'poll'"),
        ({"exchanges": {"ccxt:okx": {"poll": "yes"}}}, "ccxt:okx': field 'poll' must be true or false, got 'yes'"),
        ({"exchanges": {}}, "field 'exchanges'"),
        ({"strategies": []}, "field 'strategies': at least one"),
        ({"strategies": [{"symbols": [BTC]}]}, "strategies[0]': 'type' is missing"),
        ({"strategies": [{"type": "grid", "size": 1}]}, "strategies[0]': unknown strategy type 'grid'"),
        ({"strategies": [{"type": "breakout", "symbols": [BTC], "size": 1, "fast": 2}]}, "unknown parameter 'fast'"),
        ({"strategies": [{"type": "breakout", "symbols": [BTC], "size": -1}]}, "parameter 'size' must be"),
        (
            {"strategies": [{"type": "breakout", "symbols": [BTC], "size": 1, "exchange": "okx"}]},
            "exchange 'okx' is not configured",
        ),
        (
            {"strategies": [{"type": "breakout", "symbols": [BTC], "size": 1}] * 2},
            "strategy name 'breakout' is used twice",
        ),
        (
            {"strategies": [{"type": "breakout", "symbols": ["BTCUSDT"], "size": 1}]},
            "strategies[0]': Breakout: parameter 'symbols': invalid symbol 'BTCUSDT': expected a unified symbol",
        ),
        ({"risk": {"max_order_notional": -1}}, "config [risk]: risk limit 'max_order_notional' must be a number >= 0"),
        ({"risk": {"max_leverage": 3}}, "config [risk]: unknown field 'max_leverage'"),
        ({"streams": {"stall_timeout": 0}}, "config [streams]: StreamConfig.stall_timeout must be positive"),
        ({"starting_cash": -100}, "field 'starting_cash': expected a number >= 0"),
        ({"fee_rate": "a lot"}, "field 'fee_rate'"),
        ({"snapshot_interval": 0}, "field 'snapshot_interval'"),
        ({"journal": 3}, "field 'journal'"),
        (
            {"exchanges": {"bingx": {"rest_url": "ftp://127.0.0.1:8766"}}},
            "exchanges.bingx': invalid BingX rest_url 'ftp://127.0.0.1:8766': expected https://",
        ),
        (
            {"exchanges": {"bingx": {"ws_url": "ws://127.0.0.1:99999/swap-market"}}},
            "exchanges.bingx': invalid BingX ws_url 'ws://127.0.0.1:99999/swap-market': port out of range",
        ),
        (
            {"exchanges": {"ccxt:bingx": {"rest_url": "foo"}}},
            "exchanges.ccxt:bingx': invalid ccxt:bingx rest_url 'foo': expected https://",
        ),
    ],
)
def test_errors_name_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        config_from_mapping({**BASE, **change})


class _OwnStrategy:
    """A strategy of the user's own: EngineConfig checks its symbols and timeframe itself."""

    name = "own"
    warmup = 0

    def __init__(self, symbols: tuple[str, ...], timeframe: str | None) -> None:
        self.symbols = symbols
        self.timeframe = timeframe

    def on_kline(self, kline: Kline) -> list[Signal]:
        return []

    def on_tick(self, tick: Tick) -> list[Signal]:
        return []


@pytest.mark.parametrize(
    ("symbols", "timeframe", "message"),
    [
        (("BTC-USDT",), "1m", "'strategies[0]' (strategy 'own'): invalid symbol 'BTC-USDT': expected a unified symbol"),
        ((BTC,), "7m", "'strategies[0]' (strategy 'own'): invalid timeframe '7m': expected one of 1m, 3m"),
    ],
)
def test_a_strategy_of_ones_own_is_named_with_its_bad_symbol_or_timeframe(
    symbols: tuple[str, ...], timeframe: str, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        EngineConfig(exchanges={"bingx": {}}, strategies=[_OwnStrategy(symbols, timeframe)])


def test_symbols_given_as_one_string_are_named() -> None:
    strategy = _OwnStrategy(BTC, "1m")  # type: ignore[arg-type]  # the mistake: a string, not a tuple
    with pytest.raises(ValueError, match=re.escape("symbols must be a list or tuple of unified symbols, got 'BTC")):
        EngineConfig(exchanges={"bingx": {}}, strategies=[strategy])


def test_a_strategy_lacking_a_method_is_told_which() -> None:
    class NoTicks:
        name, symbols, timeframe, warmup = "no-ticks", (BTC,), "1m", 0

        def on_kline(self, kline: Kline) -> list[Signal]:
            return []

    with pytest.raises(ValueError, match=re.escape("strategies[0]': NoTicks is not a Strategy: it lacks on_tick (")):
        EngineConfig(exchanges={"bingx": {}}, strategies=[NoTicks()])  # type: ignore[list-item]


def test_missing_file_and_bad_toml_are_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(write(tmp_path, "starting_cash = = 3"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fee_rate": 0.5}, "config: fee_rate 0.5 = 50% per fill; expected 0 to 1%"),
        ({"fee_rate": "0.0101"}, "fee_rate 0.0101 = 1.01% per fill"),
        ({"slippage": 0.2}, "config: slippage 0.2 = 20% of the price; expected 0 to 5%"),
        ({"starting_cash": 0}, "field 'starting_cash': expected an amount > 0"),
        ({"risk": {"max_drawdown": 1.5}}, "'max_drawdown' 1.5 = 150% of the peak; expected a fraction above 0"),
        ({"risk": {"max_daily_loss": 0}}, "'max_daily_loss' 0 would stop every order"),
        ({"risk": {"max_order_notional": "0"}}, "'max_order_notional' 0 would stop every order"),
    ],
)
def test_fractions_are_checked_against_sane_ranges_in_their_unit(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        config_from_mapping({**BASE, **change})


def test_the_bounds_themselves_are_allowed() -> None:
    config = config_from_mapping({**BASE, "fee_rate": 0.01, "slippage": 0.05, "risk": {"max_drawdown": 1}})
    assert (config.fee_rate, config.slippage, config.risk.max_drawdown) == (
        Decimal("0.01"),
        Decimal("0.05"),
        Decimal(1),
    )
