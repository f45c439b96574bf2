"""Binance REST: where the public endpoints live and how to read their replies.

Pure functions from a response (HTTP status and body bytes) to values, so every quirk is tested
with the documented bodies alone; the HTTP calls themselves live on :class:`~.Binance`.

Errors (BINANCE.md §3.4): a reply outside 2xx carries ``{"code": -1121, "msg": …}``, an
:class:`ExchangeError` (:class:`RateLimitedError` for HTTP 429/418 or code -1003); a 5xx without a
JSON body is an ExchangeError carrying the HTTP status, so a caller can tell "retry later" from
"we are broken"; a successful body that cannot be read is a :class:`ProtocolError`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final

import msgspec

from ...errors import InvalidValueError, preview
from ...models import Kline, Tick
from ...symbols import Market
from ..base import ErrorKind, ExchangeError, ProtocolError, RateLimitedError
from ..bingx.rest import _fields  # one rule for both exchanges' reply fields
from ..bingx.wire import to_decimal, to_time
from ..limits import DEFAULT_LIMITS, check_json_depth
from .wire import EXCHANGE, JSON, optional_decimal

__all__ = [
    "MAX_KLINES",
    "PATHS",
    "RATE_LIMIT_CODE",
    "Endpoint",
    "check_listed",
    "parse_body",
    "parse_exchange_info",
    "parse_klines",
    "parse_ticker",
]

MAX_KLINES: Final[dict[Market, int]] = {Market.SPOT: 1000, Market.SWAP: 1500}
"""Most candles one klines request returns (§3.1)."""

RATE_LIMIT_CODE: Final = -1003
_RATE_LIMIT_STATUSES: Final = frozenset({418, 429})


class Endpoint(StrEnum):
    KLINES = "klines"
    TICKER = "ticker"
    EXCHANGE_INFO = "exchange_info"


PATHS: Final[dict[tuple[Market, Endpoint], str]] = {
    (Market.SPOT, Endpoint.KLINES): "/api/v3/klines",
    (Market.SWAP, Endpoint.KLINES): "/fapi/v1/klines",
    (Market.SPOT, Endpoint.TICKER): "/api/v3/ticker/24hr",
    (Market.SWAP, Endpoint.TICKER): "/fapi/v1/ticker/24hr",
    (Market.SPOT, Endpoint.EXCHANGE_INFO): "/api/v3/exchangeInfo",
    (Market.SWAP, Endpoint.EXCHANGE_INFO): "/fapi/v1/exchangeInfo",
}
"""Every REST path tradeloop calls (§3), under the market's REST origin."""

_UNREADABLE: Final = object()


def parse_body(body: bytes, *, status: int = 200, max_depth: int = DEFAULT_LIMITS.max_json_depth) -> Any:
    """The decoded body of a successful reply; raise the error the reply stands for otherwise
    (ProtocolError ``TOO_DEEP`` for JSON nested beyond ``max_depth``, checked before decoding)."""
    check_json_depth(body, max_depth)
    try:
        decoded = JSON.decode(body)
    except (msgspec.DecodeError, UnicodeError):
        decoded = _UNREADABLE
    if 200 <= status < 300:
        if decoded is _UNREADABLE:
            raise ProtocolError(ErrorKind.BAD_JSON, f"HTTP {status} body is not JSON: {preview(body)}")
        return decoded
    code = decoded.get("code") if type(decoded) is dict else None
    message = decoded.get("msg") if type(decoded) is dict else None
    text = message if type(message) is str else f"HTTP {status}: {preview(body)}"
    if status in _RATE_LIMIT_STATUSES or code == RATE_LIMIT_CODE:
        raise RateLimitedError(code if type(code) is int else status, text)
    if type(code) is int:
        raise ExchangeError(code, text)
    raise ExchangeError(status, text)


def parse_klines(
    body: bytes, symbol: str, timeframe: str, *, status: int = 200, max_depth: int = DEFAULT_LIMITS.max_json_depth
) -> list[Kline]:
    """Candles of a klines reply, oldest first, one per open time; every one but the newest closed.

    Rows are 12-element arrays ``[open time, o, h, l, c, volume, close time, …]`` of strings and
    integers (§3.1). The newest row of a "latest" query is the candle still forming (pitfall 7), and
    a reply carries no server time to tell, so the newest is never called closed here.
    """
    rows = parse_body(body, status=status, max_depth=max_depth)
    with _fields("klines"):
        if type(rows) is not list:
            raise TypeError(f"the klines reply should be a list of rows, got {preview(body)}")
        candles = {candle[0]: candle for candle in map(_candle, rows)}
    ordered = sorted(candles.values())
    last = len(ordered) - 1
    return [Kline(EXCHANGE, symbol, timeframe, *candle, closed=index < last) for index, candle in enumerate(ordered)]


_Candle = tuple[int, Any, Any, Any, Any, Any]
"""Open time, then open/high/low/close/volume as Decimals (``Any`` so ``*candle`` fits Kline)."""


def _candle(row: Any) -> _Candle:
    if type(row) is not list or len(row) < 6:
        raise TypeError(f"a kline row should be an array [open time, o, h, l, c, v, …], got {row!r}")
    return (
        to_time(row[0], "open time"),
        to_decimal(row[1], "open"),
        to_decimal(row[2], "high"),
        to_decimal(row[3], "low"),
        to_decimal(row[4], "close"),
        to_decimal(row[5], "volume"),
    )


def parse_ticker(
    body: bytes, symbol: str, *, status: int = 200, max_depth: int = DEFAULT_LIMITS.max_json_depth
) -> Tick:
    """The 24h ticker of one symbol (``symbol`` given in the request: the body is one object).

    The tick's time is ``closeTime``, the end of the statistics window. Spot adds the best bid and
    ask (``bidPrice``, ``bidQty``, …); USDⓈ-M has none (§3.3).
    """
    row = parse_body(body, status=status, max_depth=max_depth)
    with _fields("ticker"):
        if type(row) is not dict:
            raise TypeError(f"the ticker reply should be an object, got {preview(body)}")
        return Tick(
            EXCHANGE,
            symbol,
            to_time(row["closeTime"], "closeTime"),
            to_decimal(row["lastPrice"], "lastPrice"),
            bid=optional_decimal(row, "bidPrice"),
            ask=optional_decimal(row, "askPrice"),
            bid_size=optional_decimal(row, "bidQty"),
            ask_size=optional_decimal(row, "askQty"),
            volume_24h=to_decimal(row["volume"], "volume"),
        )


def parse_exchange_info(
    market: Market, body: bytes, *, status: int = 200, max_depth: int = DEFAULT_LIMITS.max_json_depth
) -> dict[str, str]:
    """Every symbol id the market lists, with its status (``TRADING``, ``BREAK``, …; §3.2).

    On USDⓈ-M only perpetuals count (``contractType`` ``PERPETUAL``): a dated future shares no id
    with a unified ``BASE/QUOTE:QUOTE`` symbol. Ids are upper case.
    """
    info = parse_body(body, status=status, max_depth=max_depth)
    with _fields("exchangeInfo"):
        if type(info) is not dict:
            raise TypeError(f"the exchangeInfo reply should be an object, got {preview(body)}")
        symbols: dict[str, str] = {}
        for entry in info["symbols"]:
            symbol_id, state = entry["symbol"], entry.get("status", entry.get("contractStatus"))
            if type(symbol_id) is not str or type(state) is not str:
                raise TypeError(f"symbol entry should carry string 'symbol' and 'status', got {entry!r}")
            if market is Market.SWAP and entry.get("contractType", "PERPETUAL") != "PERPETUAL":
                continue
            symbols[symbol_id] = state
        return symbols


def check_listed(market: Market, symbols: dict[str, str], symbol: str, symbol_id: str) -> None:
    """InvalidValueError unless ``symbol_id`` is listed on ``market`` (any status but delisted)."""
    if symbol_id not in symbols:
        where = "spot" if market is Market.SPOT else "USDⓈ-M perpetual"
        raise InvalidValueError(
            f"unknown symbol {symbol!r}: Binance lists no {where} market {symbol_id!r} "
            f"(Binance would acknowledge the subscription and never push)"
        )
