"""Fuzzing the inputs the codec tests do not cover: REST reply bodies and the config file.

Whatever arrives, a REST parser returns well-formed values or raises one of the documented errors
(:class:`ProtocolError`, :class:`ExchangeError`) with a short message saying what was wrong; a
config file loads into a usable config or raises ValueError naming the file or field. Nothing
else may escape (no TypeError, OverflowError, RecursionError, UnicodeDecodeError...).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import bingx_frames as frames
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bingx_codec import json_values, mutate, paths, structure_depth

from tradeloop.exchanges import DEFAULT_LIMITS, ErrorKind, ExchangeError, ProtocolError
from tradeloop.exchanges.bingx.rest import parse_klines, parse_server_time, parse_ticker
from tradeloop.models import Kline, Tick
from tradeloop.streams import StreamConfig
from tradeloop.symbols import Market
from tradeloop.trading import EngineConfig, load_config
from tradeloop.trading.config import MAX_CONFIG_DEPTH, MAX_CONFIG_SIZE

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_MESSAGE = 600
"""An error message quotes the offending input, bounded: a 1 MB body is no 1 MB message."""

# --- REST bodies ---------------------------------------------------------------------------------

Parse = Callable[[bytes, int], object]

PARSERS: dict[str, tuple[Parse, bytes]] = {
    "swap klines": (
        lambda body, status: parse_klines(Market.SWAP, body, "KNC/USDT:USDT", "1h", status=status),
        frames.R1_SWAP_KLINES,
    ),
    "spot klines": (
        lambda body, status: parse_klines(Market.SPOT, body, "BTC/USDT", "1m", status=status),
        frames.R2_SPOT_KLINES,
    ),
    "spot monthly klines": (
        lambda body, status: parse_klines(Market.SPOT, body, "BTC/USDT", "1M", status=status),
        frames.R2_SPOT_KLINES,
    ),
    "swap ticker": (
        lambda body, status: parse_ticker(Market.SWAP, body, "SFP/USDT:USDT", status=status),
        frames.R3_SWAP_TICKER,
    ),
    "spot ticker": (
        lambda body, status: parse_ticker(Market.SPOT, body, "BTC/USDT", status=status),
        frames.R4_SPOT_TICKER,
    ),
    "server time": (lambda body, status: parse_server_time(body, status=status), frames.R5_SERVER_TIME),
}

statuses = st.sampled_from([200, 200, 200, 400, 403, 404, 418, 429, 500, 503, 504]) | st.integers(100, 599)
long_values = st.sampled_from(["x" * 5000, "9" * 5000, "1e99999999", "-0", "NaN", "Infinity", 2**80, -1, 2**63])
rest_values = json_values | long_values | st.lists(long_values, max_size=3)


def parse_or_documented_error(name: str, body: bytes, status: int) -> None:
    parse, _ = PARSERS[name]
    try:
        result = parse(body, status)
    except ProtocolError as exc:
        assert isinstance(exc.kind, ErrorKind)
        assert str(exc).startswith(f"{exc.kind.value}: ") and len(str(exc)) <= MAX_MESSAGE, str(exc)[:2000]
        return
    except ExchangeError as exc:
        assert type(exc.code) is int and isinstance(exc.message, str)
        assert len(str(exc)) <= MAX_MESSAGE, str(exc)[:2000]
        return
    assert 200 <= status < 300, "a reply with an error status must not parse"
    if isinstance(result, list):
        assert all(isinstance(k, Kline) for k in result)
        open_times = [k.open_time for k in result]
        assert open_times == sorted(set(open_times)), "oldest first, one per open time"
        assert all(k.closed for k in result[:-1])
        assert all(v.is_finite() for k in result for v in (k.open, k.high, k.low, k.close, k.volume))
    elif isinstance(result, Tick):
        assert result.last is not None and result.last.is_finite()
    else:
        assert type(result) is int and result >= 0


@FUZZ
@given(name=st.sampled_from(sorted(PARSERS)), body=st.binary(max_size=400), status=statuses)
def test_fuzz_rest_random_bytes(name: str, body: bytes, status: int) -> None:
    parse_or_documented_error(name, body, status)


@FUZZ
@given(name=st.sampled_from(sorted(PARSERS)), value=rest_values, status=statuses)
def test_fuzz_rest_random_json(name: str, value: Any, status: int) -> None:
    parse_or_documented_error(name, json.dumps(value).encode(), status)
    parse_or_documented_error(name, json.dumps({"code": 0, "msg": "", "data": value}).encode(), status)
    parse_or_documented_error(name, json.dumps({"code": 80014, "msg": value, "data": {}}).encode(), status)


@FUZZ
@given(name=st.sampled_from(sorted(PARSERS)), status=statuses, data=st.data())
def test_fuzz_rest_mutated_documented_bodies(name: str, status: int, data: st.DataObject) -> None:
    value = json.loads(PARSERS[name][1])
    path = data.draw(st.sampled_from(list(paths(value))))
    mutated = mutate(value, path, data.draw(rest_values), data.draw(st.booleans()))
    parse_or_documented_error(name, json.dumps(mutated).encode(), status)


@FUZZ
@given(name=st.sampled_from(sorted(PARSERS)), status=statuses, data=st.data())
def test_fuzz_rest_truncated_and_flipped_bodies(name: str, status: int, data: st.DataObject) -> None:
    body = PARSERS[name][1]
    parse_or_documented_error(name, body[: data.draw(st.integers(0, len(body)))], status)
    flipped = bytearray(body)
    flipped[data.draw(st.integers(0, len(body) - 1))] ^= data.draw(st.integers(1, 255))
    parse_or_documented_error(name, bytes(flipped), status)


@FUZZ
@given(
    name=st.sampled_from(sorted(PARSERS)),
    status=statuses,
    extra=st.integers(min_value=24, max_value=40),
    data=st.data(),
)
def test_fuzz_rest_nesting_depth_at_the_limit(name: str, status: int, extra: int, data: st.DataObject) -> None:
    """A node of a documented body nested ``extra`` levels deeper: TOO_DEEP exactly when the body
    passes the default limit of 32 levels, whatever the status, and the usual answer otherwise."""
    value = json.loads(PARSERS[name][1])
    path = data.draw(st.sampled_from(list(paths(value))))
    nested: Any = data.draw(rest_values.filter(lambda v: not isinstance(v, list | dict)))
    for _ in range(extra):
        nested = data.draw(st.sampled_from([[nested], {"code": nested}]))
    body = json.dumps(mutate(value, path, nested, False)).encode()
    too_deep = structure_depth(json.loads(body)) > DEFAULT_LIMITS.max_json_depth
    try:
        PARSERS[name][0](body, status)
    except ProtocolError as exc:
        assert (exc.kind is ErrorKind.TOO_DEEP) == too_deep, exc
        return
    except ExchangeError:
        pass
    assert not too_deep
    parse_or_documented_error(name, body, status)


# --- the config file -----------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "starting_cash": 10_000,
    "fee_rate": 0.0005,
    "slippage": "0.0001",
    "journal": "journal.sqlite",
    "snapshot_interval": 10,
    "exchanges": {"bingx": {"ws_url": "ws://127.0.0.1:1/swap-market", "rest_url": "http://127.0.0.1:2"}},
    "risk": {
        "max_position_notional": 2500,
        "max_gross_exposure": "6000",
        "max_order_notional": 1000,
        "max_daily_loss": 500.5,
        "max_drawdown": 0.2,
        "max_tick_age": 10.0,
        "max_orders_per_minute": 10,
    },
    "streams": {
        "transport": "wsproto",
        "stall_timeout": 40,
        "reconnect_delay": 5.0,
        "max_topics_per_socket": 100,
        "kline_buffer": 1024,
        "confirm_closed_candles": True,
    },
    "strategies": [
        {
            "type": "sma_crossover",
            "symbols": ["BTC/USDT:USDT"],
            "fast": 5,
            "slow": 20,
            "size": 250,
            "timeframe": "1m",
            "allow_short": False,
            "quantity_step": "0.001",
        },
        {
            "type": "breakout",
            "name": "b",
            "exchange": "BingX",
            "symbols": ["ETH/USDT:USDT"],
            "lookback": 10,
            "size": 250,
            "source": "tick",
        },
    ],
}

toml_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["", "1m", "7m", "bingx", "BTC/USDT:USDT", "BTCUSDT", "1e999999", "NaN", "-1", "sma_crossover"])
    | st.datetimes(timezones=st.none() | st.just(UTC))
)
toml_values = st.recursive(
    toml_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)


def toml_value(value: Any) -> str:
    """``value`` as a TOML value (inline tables and arrays for containers)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string with ASCII escapes is a TOML basic string
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    return "{" + ", ".join(f"{json.dumps(key)} = {toml_value(item)}" for key, item in value.items()) + "}"


def toml_document(config: dict[str, Any]) -> str:
    return "\n".join(f"{json.dumps(key)} = {toml_value(value)}" for key, value in config.items()) + "\n"


def load_or_value_error(text: str | bytes) -> EngineConfig | None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "tradeloop.toml"
        if isinstance(text, str):
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
        else:
            path.write_bytes(text)
        try:
            config = load_config(path)
        except ValueError as exc:
            message = str(exc)
            assert message.startswith(("config", "cannot read config file")), message
            assert len(message) <= MAX_MESSAGE + len(str(path)), message[:2000]
            return None
    check_usable(config)
    return config


def check_usable(config: EngineConfig) -> None:
    """What loaded must be what the types promise: the engine trusts a validated config."""
    for field in fields(StreamConfig):
        value = getattr(config.streams, field.name)
        if field.type == "bool":
            assert type(value) is bool, (field.name, value)
        elif field.type in ("int", "int | None"):
            optional = value is None and field.type == "int | None"
            assert optional or (type(value) is int and value > 0), (field.name, value)
        elif field.type == "float":
            assert type(value) in (int, float) and 0 < value < math.inf, (field.name, value)
    assert config.snapshot_interval > 0
    assert all(
        isinstance(v, Decimal) and v.is_finite() for v in (config.starting_cash, config.fee_rate, config.slippage)
    )


@FUZZ
@given(text=st.text(max_size=400))
def test_fuzz_config_random_text(text: str) -> None:
    load_or_value_error(text)


@FUZZ
@given(blob=st.binary(max_size=200))
def test_fuzz_config_random_bytes(blob: bytes) -> None:
    load_or_value_error(blob)


def config_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return [prefix, *paths(value, prefix)] if prefix else list(paths(value, prefix))


@FUZZ
@given(data=st.data())
def test_fuzz_config_mutated_fields(data: st.DataObject) -> None:
    config = json.loads(json.dumps(BASE))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(list(paths(config))))
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "add":
            parent = config
            for key in path[:-1]:
                parent = parent[key]
            if isinstance(parent, dict):
                parent[data.draw(st.text(max_size=12))] = data.draw(toml_values)
            continue
        mutate(config, path, data.draw(toml_values), action == "delete")
    load_or_value_error(toml_document(config))


def test_the_base_config_loads() -> None:
    """The fuzzed configs start from a valid one, so what they find is what the mutation broke."""
    config = load_or_value_error(toml_document(BASE))
    assert config is not None and len(config.strategies) == 2


def test_a_config_file_that_is_not_utf8_names_the_file() -> None:
    load_or_value_error(b'starting_cash = 10000\njournal = "\xff\xfe"\n')


def test_deeply_nested_config_is_a_value_error() -> None:
    load_or_value_error("x = " + "[" * 100_000 + "]" * 100_000 + "\n")


@pytest.mark.parametrize("excess", [-1, 0, 1])
def test_config_file_size_at_the_limit(excess: int) -> None:
    document = toml_document(BASE)
    padding = MAX_CONFIG_SIZE + excess - len(document.encode()) - 2
    config = load_or_value_error(document + "#" + "x" * padding + "\n")
    assert (config is None) == (excess > 0)


def test_a_huge_config_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    with path.open("wb") as file:
        file.truncate(300_000_000)  # sparse: no disk used, and load_config reads 1 MiB of it
    with pytest.raises(ValueError, match=r"^config file .* is larger than 1048576 bytes"):
        load_config(path)


@FUZZ
@given(
    depth=st.integers(min_value=1, max_value=3000),
    containers=st.lists(st.sampled_from(["[", "{a = "]), min_size=1, max_size=3),
    field=st.sampled_from(["starting_cash", "journal", "risk", "exchanges"]),
)
def test_fuzz_config_nesting_depth(depth: int, containers: list[str], field: str) -> None:
    """Values nested up to past the parser's recursion limit: a config or a one-line ValueError."""
    openings = "".join(containers[level % len(containers)] for level in range(depth))
    closings = "".join("]" if opening == "[" else "}" for opening in reversed(openings.replace("{a = ", "{")))
    config = {key: value for key, value in BASE.items() if key != field}
    load_or_value_error(toml_document(config) + f"{field} = {openings}1{closings}\n")


@pytest.mark.parametrize("arrays", [MAX_CONFIG_DEPTH - 1, MAX_CONFIG_DEPTH])
def test_config_nesting_at_the_limit(tmp_path: Path, arrays: int) -> None:
    """The document is a table: ``x = [[…]]`` with n arrays nests n + 1 deep."""
    path = tmp_path / "nested.toml"
    path.write_text(toml_document(BASE) + "x = " + "[" * arrays + "]" * arrays + "\n")
    too_deep = arrays + 1 > MAX_CONFIG_DEPTH
    with pytest.raises(ValueError, match="nested deeper than 16 levels" if too_deep else "unknown field 'x'"):
        load_config(path)
