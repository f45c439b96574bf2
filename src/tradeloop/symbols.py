"""Unified symbols and timeframes: parse, validate, and do candle-time arithmetic.

Symbols follow the ccxt convention users already know: ``BTC/USDT`` is a spot pair and
``BTC/USDT:USDT`` a linear perpetual swap settled in USDT. How an exchange spells them (BingX:
``BTC-USDT`` plus a socket per market) lives in that exchange's module, not here.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from .errors import InvalidValueError

__all__ = [
    "TIMEFRAMES",
    "Market",
    "SymbolInfo",
    "candle_open_time",
    "next_open_time",
    "normalize_symbol",
    "parse_symbol",
    "timeframe_ms",
    "utc_text",
    "validate_timeframe",
]


class Market(StrEnum):
    SWAP = "swap"
    SPOT = "spot"


_MINUTE = 60_000
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR

TIMEFRAMES: dict[str, int] = {
    "1m": _MINUTE,
    "3m": 3 * _MINUTE,
    "5m": 5 * _MINUTE,
    "15m": 15 * _MINUTE,
    "30m": 30 * _MINUTE,
    "1h": _HOUR,
    "2h": 2 * _HOUR,
    "4h": 4 * _HOUR,
    "6h": 6 * _HOUR,
    "8h": 8 * _HOUR,
    "12h": 12 * _HOUR,
    "1d": _DAY,
    "3d": 3 * _DAY,
    "1w": 7 * _DAY,
    "1M": 31 * _DAY,  # nominal: months are calendar months, see next_open_time
}
"""Every supported timeframe and its nominal length in milliseconds."""

# Weekly candles open on Monday 00:00 UTC; the Unix epoch was a Thursday.
_WEEK_ORIGIN_MS = 4 * _DAY

_ASSET = r"[A-Z0-9]{1,20}"
_UNIFIED = re.compile(rf"^({_ASSET})/({_ASSET})(?::({_ASSET}))?$")
_DASHED_ID = re.compile(rf"^({_ASSET})-({_ASSET})$")


@dataclass(frozen=True, slots=True)
class SymbolInfo:
    base: str
    quote: str
    settle: str | None

    @property
    def market(self) -> Market:
        return Market.SPOT if self.settle is None else Market.SWAP

    @property
    def unified(self) -> str:
        pair = f"{self.base}/{self.quote}"
        return pair if self.settle is None else f"{pair}:{self.settle}"


def parse_symbol(symbol: str) -> SymbolInfo:
    """Parse a unified symbol such as ``BTC/USDT`` (spot) or ``BTC/USDT:USDT`` (swap).

    Raises ValueError naming the bad value and the accepted forms.
    """
    match = _UNIFIED.match(symbol) if isinstance(symbol, str) else None
    if match is None:
        raise InvalidValueError(
            f"invalid symbol {symbol!r}: expected a unified symbol such as 'BTC/USDT' (spot) "
            "or 'BTC/USDT:USDT' (USDT-margined swap), upper-case letters and digits"
        )
    base, quote, settle = match.groups()
    return SymbolInfo(base, quote, settle)


def normalize_symbol(text: str) -> str:
    """Unify what a user typed: a unified symbol is kept, a ``BASE-QUOTE`` id means the USDT-M style
    swap settled in the quote currency (``BTC-USDT`` → ``BTC/USDT:USDT``), the common meaning of a
    bare id on derivatives exchanges."""
    match = _DASHED_ID.match(text) if isinstance(text, str) else None
    if match is not None:
        base, quote = match.groups()
        return f"{base}/{quote}:{quote}"
    return parse_symbol(text).unified


def validate_timeframe(timeframe: str) -> str:
    """Return ``timeframe`` if supported, else raise ValueError listing the supported ones."""
    if not isinstance(timeframe, str) or timeframe not in TIMEFRAMES:
        raise InvalidValueError(f"invalid timeframe {timeframe!r}: expected one of {', '.join(TIMEFRAMES)}")
    return timeframe


def timeframe_ms(timeframe: str) -> int:
    """Nominal candle length in milliseconds (a month counts 31 days)."""
    return TIMEFRAMES[validate_timeframe(timeframe)]


def candle_open_time(timeframe: str, time_ms: int) -> int:
    """Open time of the candle of ``timeframe`` that contains ``time_ms`` (UTC calendar)."""
    length = timeframe_ms(timeframe)
    if timeframe == "1M":
        moment = datetime.fromtimestamp(time_ms / 1000, tz=UTC)
        return calendar.timegm((moment.year, moment.month, 1, 0, 0, 0)) * 1000
    if timeframe == "1w":
        return time_ms - (time_ms - _WEEK_ORIGIN_MS) % length
    return time_ms - time_ms % length


def utc_text(time_ms: int) -> str:
    """A moment in Unix milliseconds as people read it: ``2026-01-02 03:04:05 UTC``."""
    return datetime.fromtimestamp(time_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def next_open_time(timeframe: str, open_time: int) -> int:
    """Open time of the candle after the one opening at ``open_time``."""
    if timeframe == "1M":
        moment = datetime.fromtimestamp(open_time / 1000, tz=UTC)
        year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
        return calendar.timegm((year, month, 1, 0, 0, 0)) * 1000
    return open_time + timeframe_ms(timeframe)
