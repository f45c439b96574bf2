"""ccxt's rows and ticker dicts as tradeloop's Kline and Tick (pure functions, no I/O).

ccxt hands out floats. A float's ``repr`` is the shortest text that reads back as the same float,
so ``Decimal(repr(x))`` recovers the exchange's own digits (``0.1`` stays ``0.1``, not
``0.1000000000000000055…``): the Decimal a native client would have built from the wire text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from ...models import Kline, Tick
from ..base import ErrorKind, ProtocolError

__all__ = ["to_decimal", "to_klines", "to_tick"]


def to_decimal(value: object, field: str) -> Decimal:
    """``value`` (a float, int or numeric text from ccxt) as a Decimal; ProtocolError otherwise."""
    if isinstance(value, float):
        text = repr(value)
    elif isinstance(value, int | str) and not isinstance(value, bool):
        text = str(value)
    else:
        raise ProtocolError(ErrorKind.BAD_FIELD, f"{field} is {value!r}, expected a number")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ProtocolError(ErrorKind.BAD_FIELD, f"{field} is {value!r}, expected a number") from None
    if not number.is_finite():
        raise ProtocolError(ErrorKind.BAD_FIELD, f"{field} is {value!r}, expected a finite number")
    return number


def _optional(value: object, field: str) -> Decimal | None:
    return None if value is None else to_decimal(value, field)


def to_klines(
    exchange: str, symbol: str, timeframe: str, rows: Sequence[Sequence[Any]], *, closed_before_newest: bool
) -> list[Kline]:
    """ccxt OHLCV rows ``[timestamp, open, high, low, close, volume]`` as Klines, in their order.

    ``closed_before_newest``: every row but the last is final (a REST answer, per
    :meth:`~tradeloop.exchanges.Exchange.fetch_klines`); else none is (pushes: the closer decides).
    A missing volume (some exchanges' ccxt rows carry ``None``) reads as zero.
    """
    klines = []
    last = len(rows) - 1
    for index, row in enumerate(rows):
        if len(row) < 6 or not isinstance(row[0], int) or isinstance(row[0], bool):
            raise ProtocolError(ErrorKind.BAD_FIELD, f"OHLCV row {list(row)!r}: expected [timestamp, o, h, l, c, v]")
        klines.append(
            Kline(
                exchange,
                symbol,
                timeframe,
                row[0],
                to_decimal(row[1], "open"),
                to_decimal(row[2], "high"),
                to_decimal(row[3], "low"),
                to_decimal(row[4], "close"),
                Decimal(0) if row[5] is None else to_decimal(row[5], "volume"),
                closed=closed_before_newest and index < last,
            )
        )
    return klines


def to_tick(exchange: str, symbol: str, ticker: Mapping[str, Any], now_ms: int) -> Tick:
    """A ccxt ticker dict as a Tick; a ticker without a timestamp is stamped ``now_ms``."""
    timestamp = ticker.get("timestamp")
    return Tick(
        exchange,
        symbol,
        timestamp if isinstance(timestamp, int) and not isinstance(timestamp, bool) else now_ms,
        _optional(ticker.get("last"), "last"),
        bid=_optional(ticker.get("bid"), "bid"),
        ask=_optional(ticker.get("ask"), "ask"),
        bid_size=_optional(ticker.get("bidVolume"), "bidVolume"),
        ask_size=_optional(ticker.get("askVolume"), "askVolume"),
        volume_24h=_optional(ticker.get("baseVolume"), "baseVolume"),
    )
