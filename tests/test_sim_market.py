"""The simulator's market model, configuration and fault switches (no I/O)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tradeloop.sim import FAULT_NAMES, Faults, RestDown, SimConfig
from tradeloop.sim.faults import Hostile
from tradeloop.sim.market import MarketModel, symbol_spec
from tradeloop.symbols import TIMEFRAMES, candle_open_time, next_open_time

START = 1_700_000_000_000 - 1_700_000_000_000 % 86_400_000  # a UTC midnight
MINUTE = 60_000


def model(seed: int = 0, symbols: tuple[str, ...] = ("BTC-USDT", "ETH-USDT", "PEPE-USDT")) -> MarketModel:
    return MarketModel(symbols, seed=seed, step_ms=1000, first_step_ms=START)


def closes(m: MarketModel, symbol: str, minutes: int) -> list[int]:
    now = START + minutes * MINUTE
    return [m.candle(symbol, "1m", START + i * MINUTE, now).close for i in range(minutes)]  # type: ignore[union-attr]


def test_same_seed_same_series_whatever_is_asked_first() -> None:
    first, second = model(), model()
    second.candle("BTC-USDT", "1h", START, START + 3_600_000)  # generate in another order
    assert closes(first, "BTC-USDT", 30) == closes(second, "BTC-USDT", 30)
    assert closes(first, "BTC-USDT", 30) != closes(model(seed=1), "BTC-USDT", 30)
    assert closes(first, "BTC-USDT", 30) != closes(first, "ETH-USDT", 30)


def test_tick_and_lot_sizes_look_real() -> None:
    assert (symbol_spec("BTC-USDT").tick_size, symbol_spec("BTC-USDT").lot_size) == (
        Decimal("0.1"),
        Decimal("0.0001"),
    )
    assert symbol_spec("ETH-USDT").tick_size == Decimal("0.01")
    other = symbol_spec("PEPE-USDT")
    assert other == symbol_spec("PEPE-USDT")
    assert 0.05 <= other.start_price <= 500
    significant = len(str(int(other.start_price))) + other.price_decimals
    assert 5 <= significant <= 7
    m = model()
    candle = m.sim_candle("BTC-USDT", "1m", m.candle("BTC-USDT", "1m", START, START + MINUTE))  # type: ignore[arg-type]
    assert candle.close.as_tuple().exponent == -1
    assert candle.volume.as_tuple().exponent == -4


@pytest.mark.parametrize("bad", ["btc-usdt", "BTCUSDT", "BTC/USDT", "", "BTC-USDT-X"])
def test_bad_symbol_ids_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="BASE-QUOTE"):
        symbol_spec(bad)


@pytest.mark.parametrize("timeframe", ["3m", "5m", "15m", "1h", "4h", "1d", "1w", "1M"])
def test_bigger_candles_aggregate_the_one_minute_candles(timeframe: str) -> None:
    m = model()
    now = START + 3 * 86_400_000 + 12_345
    for open_time in m.open_times(timeframe, None, None, now, 3):
        big = m.candle("BTC-USDT", timeframe, open_time, now)
        assert big is not None
        minutes = [
            m.candle("BTC-USDT", "1m", t, now)
            for t in range(open_time, min(next_open_time(timeframe, open_time), now + 1), MINUTE)
        ]
        parts = [part for part in minutes if part is not None]
        assert big.open_time == candle_open_time(timeframe, big.open_time)
        assert (big.open, big.close) == (parts[0].open, parts[-1].close)
        assert big.high == max(p.high for p in parts) and big.low == min(p.low for p in parts)
        assert big.volume == sum(p.volume for p in parts) and big.quote == sum(p.quote for p in parts)
        assert big.trades == sum(p.trades for p in parts)


def test_forming_candle_grows_to_the_same_final_value_as_a_fresh_computation() -> None:
    streamed, fresh = model(), model()
    open_time = START + 10 * MINUTE
    seen = []
    for second in range(0, 62):
        values = streamed.candle("ETH-USDT", "1m", open_time, open_time + second * 1000)
        assert values is not None
        seen.append(values)
    assert [v.trades for v in seen[:60]] == list(range(1, 61))
    assert seen[59] == seen[61]  # fixed once its time has passed
    assert streamed.is_complete("1m", seen[59]) and not streamed.is_complete("1m", seen[58])
    assert fresh.candle("ETH-USDT", "1m", open_time, open_time + 10 * MINUTE) == seen[59]
    assert all(v.low <= min(v.open, v.close) and v.high >= max(v.open, v.close) for v in seen)


def test_open_times_page_like_an_exchange() -> None:
    m = model()
    now = START + 100 * MINUTE + 30_000
    assert m.open_times("1m", None, None, now, 3) == [START + i * MINUTE for i in (98, 99, 100)]
    assert m.open_times("1m", START + 5 * MINUTE + 1, None, now, 2) == [START + 6 * MINUTE, START + 7 * MINUTE]
    assert m.open_times("1m", None, START + 10 * MINUTE, now, 2) == [START + 9 * MINUTE, START + 10 * MINUTE]
    assert m.open_times("1m", START - 5 * MINUTE, None, now, 1) == [START]  # no data before the history
    assert m.open_times("1m", None, START - 1, now, 5) == []
    assert m.open_times("1M", None, None, now, 5) == [candle_open_time("1M", START)]


def test_candles_of_every_timeframe_exist_at_the_start() -> None:
    m = model()
    for timeframe in TIMEFRAMES:
        assert m.candle("BTC-USDT", timeframe, candle_open_time(timeframe, START), START) is not None


def test_ticker_covers_the_last_24_hours() -> None:
    m = model(symbols=("BTC-USDT",))
    now = START + 25 * 3_600_000 + 30_500
    ticker = m.ticker("BTC-USDT", now)
    first = now - 86_400_000 + 500  # steps strictly after now - 24h
    assert ticker.open_time == first
    assert ticker.last == m.candle("BTC-USDT", "1m", candle_open_time("1m", now), now).close  # type: ignore[union-attr]
    hours = [m.candle("BTC-USDT", "1h", t, now) for t in range(START + 3_600_000, now, 3_600_000)]
    assert ticker.high >= max(h.high for h in hours[1:-1] if h) and ticker.low <= min(h.low for h in hours[1:-1] if h)
    assert ticker.ask == ticker.bid + 1 and ticker.bid == ticker.last
    assert m.ticker("BTC-USDT", now) is ticker  # cached until the next step


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("symbols", "BTC-USDT", "non-empty list"),
        ("symbols", [], "non-empty list"),
        ("symbols", ["BTC/USDT"], "BASE-QUOTE"),
        ("step_seconds", 7, "divides one minute"),
        ("step_seconds", 0.0005, "divides one minute"),
        ("push_interval", 0, "push_interval"),
        ("pong_timeout", -1, "pong_timeout"),
        ("max_topics_per_socket", 0, "max_topics_per_socket"),
    ],
)
def test_bad_config_is_a_clear_value_error(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimConfig(**{field: value})  # type: ignore[arg-type]


def switches(faults: Faults) -> tuple[object, ...]:
    return faults.malformed_rate, faults.batch_klines, faults.stalled, faults.rest_down, faults.sends_pings


def test_faults_switch_by_name_and_clear() -> None:
    dropped = []

    def drop_all() -> int:
        dropped.append(1)
        return 3

    faults = Faults(0, drop_all)
    faults.set("malformed_rate", "0.25")
    faults.set("batch_klines")
    faults.set("stall", "silent")
    faults.set("rest_down", "close")
    faults.set("stop_pings")
    faults.set("hostile_ws", "gzip_bomb")
    faults.set("hostile_rest", "HUGE")
    assert (faults.hostile_ws, faults.hostile_rest) == (Hostile.GZIP_BOMB, Hostile.HUGE)
    assert faults.malformed_rate == 0.25 and faults.batch_klines
    assert faults.stalled and not faults.sends_pings
    assert faults.rest_down is RestDown.CLOSE
    faults.set("drop_all")
    assert dropped == [1]
    faults.set("clear")
    assert switches(faults) == (0.0, False, False, None, True)
    assert faults.hostile_ws is faults.hostile_rest is None
    faults.stall(pings=True)
    assert faults.sends_pings


@pytest.mark.parametrize(
    ("name", "value"),
    [("nope", None), ("malformed_rate", "2"), ("duplicate_rate", "x"), ("batch_klines", "maybe"),
     ("rest_down", "404"), ("drop_all", "1"), ("hostile_ws", "huge"), ("hostile_rest", "bomb")],
)  # fmt: skip
def test_bad_fault_names_and_values_are_value_errors(name: str, value: str | None) -> None:
    with pytest.raises(ValueError, match=name):
        Faults(0, lambda: 0).set(name, value)
    assert "drop_all" in FAULT_NAMES


def test_fault_rates_are_checked_when_set() -> None:
    faults = Faults(0, lambda: 0)
    with pytest.raises(ValueError, match="reorder_rate"):
        faults.reorder_rate = 1.5
    faults.reorder_rate = 1
    assert faults.reorder_rate == 1.0
