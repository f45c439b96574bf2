"""How BingX spells things, shared by the WebSocket codec and the REST parsers.

Symbols: BingX names a pair ``BTC-USDT`` on both markets and lets the socket (or REST path) say
which market is meant, so the mapping to unified symbols always takes the market. Timeframes:
REST and the swap socket use the unified spelling (``1m`` … ``1M``), the spot socket its own
(``1min``, ``60min``, ``1day``; BINGX.md §2.2).

Values: swap sends numbers as strings, spot as JSON numbers. :data:`JSON` turns JSON numbers with
a fraction or exponent into :class:`~decimal.Decimal` from their literal text (integers stay
``int``), so :func:`to_decimal` sees only ``str``, ``Decimal`` or ``int`` and nothing is rounded.
The helpers raise ``TypeError`` / ``ValueError`` naming the field; the codec and the REST parsers
turn those into :class:`~tradeloop.exchanges.base.ProtocolError` with the topic or endpoint.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Final

import msgspec

from ...errors import InvalidValueError
from ...models import Kline
from ...symbols import TIMEFRAMES, Market, parse_symbol, validate_timeframe

__all__ = [
    "EXCHANGE",
    "JSON",
    "bingx_id",
    "lettered_kline",
    "timeframe_from_ws",
    "to_decimal",
    "to_time",
    "unified_symbol",
    "ws_interval",
]

EXCHANGE: Final = "bingx"

JSON: Final = msgspec.json.Decoder(float_hook=Decimal)
"""Decodes any JSON value; fractional numbers become exact Decimals, integers stay ints."""

_SPOT_WS_INTERVALS: Final[dict[str, str]] = {
    "1m": "1min",
    "3m": "3min",
    "5m": "5min",
    "15m": "15min",
    "30m": "30min",
    "1h": "60min",
    "2h": "2hour",
    "4h": "4hour",
    "6h": "6hour",
    "8h": "8hour",
    "12h": "12hour",
    "1d": "1day",
    "3d": "3day",
    "1w": "1week",
    "1M": "1mon",  # the docs' spelling; JK sends "1month", which we also accept on the way in
}

_WS_TIMEFRAMES: Final[dict[Market, dict[str, str]]] = {
    Market.SWAP: {timeframe: timeframe for timeframe in TIMEFRAMES},
    Market.SPOT: {**{ws: tf for tf, ws in _SPOT_WS_INTERVALS.items()}, "1month": "1M"},
}


def bingx_id(symbol: str) -> tuple[Market, str]:
    """The market and BingX id of a unified symbol: ``BTC/USDT:USDT`` -> ``(SWAP, "BTC-USDT")``.

    Raises ValueError for a malformed symbol and for coin-margined swaps (settle != quote), which
    live on another BingX socket and API that tradeloop does not speak.
    """
    info = parse_symbol(symbol)
    if info.settle is not None and info.settle != info.quote:
        raise InvalidValueError(
            f"unsupported symbol {symbol!r}: BingX is supported for spot pairs such as 'BTC/USDT' and "
            "USDT-margined swaps settled in their quote currency such as 'BTC/USDT:USDT'; "
            "coin-margined swaps are not"
        )
    return info.market, f"{info.base}-{info.quote}"


def unified_symbol(market: Market, bingx_id: str) -> str:
    """The unified symbol of BingX id ``bingx_id`` on ``market``; ValueError if malformed."""
    base, _, quote = bingx_id.partition("-")
    pair = f"{base}/{quote}"
    return parse_symbol(pair if market is Market.SPOT else f"{pair}:{quote}").unified


def ws_interval(market: Market, timeframe: str) -> str:
    """How ``market``'s socket spells ``timeframe`` in a kline dataType."""
    validate_timeframe(timeframe)
    return _SPOT_WS_INTERVALS[timeframe] if market is Market.SPOT else timeframe


def timeframe_from_ws(market: Market, interval: str) -> str:
    """The unified timeframe of a kline interval as ``market``'s socket spells it."""
    try:
        return _WS_TIMEFRAMES[market][interval]
    except KeyError:
        allowed = ", ".join(_WS_TIMEFRAMES[market])
        raise InvalidValueError(
            f"unknown {market.value} kline interval {interval!r}: expected one of {allowed}"
        ) from None


def to_decimal(value: object, name: str) -> Decimal:
    """A finite Decimal from a string, a JSON number (Decimal) or an int; else ValueError/TypeError.

    ``bool`` is rejected although Python counts it as an int: ``true`` is never a price.
    """
    if isinstance(value, str):
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise InvalidValueError(f"field {name!r} is not a number: {value!r}") from None
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    else:
        raise TypeError(f"field {name!r} should be a number, got {value!r}")
    if number.is_finite():
        return number
    raise InvalidValueError(f"field {name!r} is not finite: {value!r}")


_MAX_TIME_MS: Final = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z: the last instant calendar arithmetic (``datetime``) can represent."""


def to_time(value: object, name: str) -> int:
    """A time in epoch milliseconds: a JSON integer from 0 to year 9999, nothing else."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_TIME_MS:
        return value
    raise InvalidValueError(f"field {name!r} should be epoch milliseconds (an integer up to year 9999), got {value!r}")


def lettered_kline(
    exchange: str, symbol: str, timeframe: str, candle: dict[str, object], *, closed: bool = False
) -> Kline:
    """A candle spelled with Binance's letters, ``t`` (open time) ``o h l c v``, as BingX's spot
    kline push (``data.K``) and Binance's kline event (``k``) both spell it."""
    return Kline(
        exchange,
        symbol,
        timeframe,
        to_time(candle["t"], "t"),
        to_decimal(candle["o"], "o"),
        to_decimal(candle["h"], "h"),
        to_decimal(candle["l"], "l"),
        to_decimal(candle["c"], "c"),
        to_decimal(candle["v"], "v"),
        closed,
    )
