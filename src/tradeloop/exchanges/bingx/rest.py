"""BingX REST: where the public endpoints live and how to read their replies.

Pure functions from a response (HTTP status and body bytes) to values, so every quirk is tested
with the documented bodies alone; the HTTP calls themselves live on :class:`~.BingX`.

Errors follow ccxt's rule of reading the body whatever the HTTP status (BINGX.md §3): a non-zero
``code`` is an :class:`ExchangeError` (:class:`RateLimitedError` for 100410 or HTTP 429), a body
that cannot be read is a :class:`ProtocolError` — except that a 5xx without a JSON body is an
ExchangeError carrying the HTTP status, so a caller can tell "retry later" from "we are broken".
A body nested deeper than ``max_depth`` is a ProtocolError (``TOO_DEEP``) before it is decoded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Any, Final

import msgspec

from ...errors import InvalidValueError, preview
from ...models import Kline, Tick
from ...symbols import Market, next_open_time
from ..base import ErrorKind, ExchangeError, ProtocolError, RateLimitedError
from ..limits import DEFAULT_LIMITS, check_json_depth
from .wire import EXCHANGE, JSON, bingx_id, to_decimal, to_time

__all__ = [
    "MAX_KLINES",
    "PATHS",
    "RATE_LIMIT_CODE",
    "Endpoint",
    "parse_envelope",
    "parse_klines",
    "parse_server_time",
    "parse_ticker",
]

MAX_KLINES: Final = 1440
"""Most candles one klines request may ask for (both markets)."""

RATE_LIMIT_CODE: Final = 100410


class Endpoint(StrEnum):
    KLINES = "klines"
    TICKER = "ticker"
    SERVER_TIME = "server_time"


PATHS: Final[dict[tuple[Market, Endpoint], str]] = {
    (Market.SWAP, Endpoint.KLINES): "/openApi/swap/v3/quote/klines",
    (Market.SPOT, Endpoint.KLINES): "/openApi/spot/v2/market/kline",
    (Market.SWAP, Endpoint.TICKER): "/openApi/swap/v2/quote/ticker",
    (Market.SPOT, Endpoint.TICKER): "/openApi/spot/v1/ticker/24hr",
    (Market.SWAP, Endpoint.SERVER_TIME): "/openApi/swap/v2/server/time",
}
"""Every REST path tradeloop calls (BINGX.md §3; spot paths churn, pitfall 13: change them here)."""


_UNREADABLE: Final = object()
_MAX_DEPTH: Final = DEFAULT_LIMITS.max_json_depth


def parse_envelope(body: bytes, *, status: int = 200, max_depth: int = _MAX_DEPTH) -> dict[str, Any]:
    """The decoded envelope of a successful reply; raise the error the reply stands for otherwise."""
    check_json_depth(body, max_depth)
    try:
        envelope = JSON.decode(body)
    except (msgspec.DecodeError, UnicodeError):
        envelope = _UNREADABLE
    if type(envelope) is dict and type(code := envelope.get("code")) is int:
        message = envelope.get("msg")
        message = message if type(message) is str else ""
        if code == RATE_LIMIT_CODE or status == 429:
            raise RateLimitedError(code or status, message)
        if code != 0:
            raise ExchangeError(code, message)
        if not 200 <= status < 300:
            raise ExchangeError(status, f"HTTP {status} with a success body: {preview(body)}")
        return envelope
    if status == 429:
        raise RateLimitedError(status, f"HTTP 429: {preview(body)}")
    if status >= 500 and envelope is _UNREADABLE:
        raise ExchangeError(status, f"HTTP {status}: {preview(body)}")
    if envelope is _UNREADABLE:
        raise ProtocolError(ErrorKind.BAD_JSON, f"HTTP {status} body is not JSON: {preview(body)}")
    raise ProtocolError(ErrorKind.BAD_FIELD, f"HTTP {status} body has no integer 'code': {preview(body)}")


def parse_klines(
    market: Market, body: bytes, symbol: str, timeframe: str, *, status: int = 200, max_depth: int = _MAX_DEPTH
) -> list[Kline]:
    """Candles of a klines reply, oldest first, one per open time, ``closed`` decided.

    Swap rows are objects of strings with ``time`` = open time; spot rows are arrays of JSON
    numbers ``[open time, o, h, l, c, v, close time, quote volume]``, newest first. Every candle
    but the newest is closed; the newest is closed only if the envelope's server ``timestamp``
    (spot sends one) has reached the next candle's open time.
    """
    envelope = parse_envelope(body, status=status, max_depth=max_depth)
    where = PATHS[(market, Endpoint.KLINES)]
    with _fields(where):
        rows = envelope["data"]
        if type(rows) is not list:
            raise TypeError(f"'data' should be a list of candles, got {rows!r}")
        read = _swap_candle if market is Market.SWAP else _spot_candle
        candles = {candle[0]: candle for candle in map(read, rows)}
        server_time = to_time(envelope["timestamp"], "timestamp") if "timestamp" in envelope else None
    ordered = sorted(candles.values())
    newest_closed = (
        bool(ordered) and server_time is not None and next_open_time(timeframe, ordered[-1][0]) <= server_time
    )
    last = len(ordered) - 1
    return [
        Kline(EXCHANGE, symbol, timeframe, *candle, closed=index < last or newest_closed)
        for index, candle in enumerate(ordered)
    ]


_Candle = tuple[int, Any, Any, Any, Any, Any]
"""Open time, then open/high/low/close/volume as Decimals (``Any`` so ``*candle`` fits Kline)."""


def _swap_candle(row: Any) -> _Candle:
    if type(row) is not dict:
        raise TypeError(f"a swap candle should be an object, got {row!r}")
    return (
        to_time(row["time"], "time"),
        to_decimal(row["open"], "open"),
        to_decimal(row["high"], "high"),
        to_decimal(row["low"], "low"),
        to_decimal(row["close"], "close"),
        to_decimal(row["volume"], "volume"),
    )


def _spot_candle(row: Any) -> _Candle:
    if type(row) is not list or len(row) < 6:
        raise TypeError(f"a spot candle should be an array [open time, o, h, l, c, v, …], got {row!r}")
    return (
        to_time(row[0], "open time"),
        to_decimal(row[1], "open"),
        to_decimal(row[2], "high"),
        to_decimal(row[3], "low"),
        to_decimal(row[4], "close"),
        to_decimal(row[5], "volume"),
    )


def parse_ticker(market: Market, body: bytes, symbol: str, *, status: int = 200, max_depth: int = _MAX_DEPTH) -> Tick:
    """The 24h ticker of ``symbol`` from a ticker reply (swap: an object, spot: a list of them).

    The tick's time is the envelope's server ``timestamp`` (spot). Swap sends none, and its
    ``closeTime`` can lag by tens of seconds (BINGX.md §6.8), so it gets the later of
    ``openTime``/``closeTime``: the latest instant the reply vouches for.
    """
    envelope = parse_envelope(body, status=status, max_depth=max_depth)
    _, symbol_id = bingx_id(symbol)
    with _fields(PATHS[(market, Endpoint.TICKER)]):
        data = envelope["data"]
        rows = data if type(data) is list else [data]
        row = next((row for row in rows if type(row) is dict and row.get("symbol") == symbol_id), None)
        if row is None:
            raise InvalidValueError(f"no ticker for {symbol_id!r} in the reply")
        if "timestamp" in envelope:
            time = to_time(envelope["timestamp"], "timestamp")
        else:
            time = max(to_time(row["openTime"], "openTime"), to_time(row["closeTime"], "closeTime"))
        return Tick(
            EXCHANGE,
            symbol,
            time,
            to_decimal(row["lastPrice"], "lastPrice"),
            bid=to_decimal(row["bidPrice"], "bidPrice"),
            ask=to_decimal(row["askPrice"], "askPrice"),
            bid_size=to_decimal(row["bidQty"], "bidQty"),
            ask_size=to_decimal(row["askQty"], "askQty"),
            volume_24h=to_decimal(row["volume"], "volume"),
        )


def parse_server_time(body: bytes, *, status: int = 200, max_depth: int = _MAX_DEPTH) -> int:
    """Server time in epoch milliseconds from a server-time reply."""
    envelope = parse_envelope(body, status=status, max_depth=max_depth)
    with _fields(PATHS[(Market.SWAP, Endpoint.SERVER_TIME)]):
        return to_time(envelope["data"]["serverTime"], "serverTime")


@contextmanager
def _fields(where: str) -> Iterator[None]:
    """Report a missing or mistyped field of a reply from ``where`` as a ProtocolError."""
    try:
        yield
    except KeyError as exc:
        raise ProtocolError(ErrorKind.BAD_FIELD, f"missing field {exc}", topic=where) from None
    except (TypeError, ValueError, IndexError) as exc:
        raise ProtocolError(ErrorKind.BAD_FIELD, str(exc), topic=where) from None
