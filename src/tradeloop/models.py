"""Small frozen value types that flow through tradeloop's channels.

Prices and sizes are :class:`~decimal.Decimal` built from the exchange's own text (swap sends
strings, spot sends JSON numbers whose literal text we keep), so nothing is rounded on the way in
and profit and loss reconcile exactly with the fills.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

__all__ = ["Kline", "Tick"]


@dataclass(frozen=True, slots=True)
class Kline:
    """One candle, or one update of the candle still forming.

    ``closed`` is set exactly once per candle, on its final value: the stream layer infers it (BingX
    sends no closed flag), so strategies can act on ``closed`` klines only.
    """

    exchange: str
    symbol: str
    timeframe: str
    open_time: int
    """Candle open time, milliseconds since the Unix epoch (UTC)."""
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    closed: bool = False


@dataclass(frozen=True, slots=True)
class Tick:
    """The market's latest price for a symbol, with the best bid and ask where the feed knows them.

    A 24h ticker fills every field; a last-price feed only ``last``; a book ticker only the bid
    and ask side. Fields a feed does not carry are ``None``.
    """

    exchange: str
    symbol: str
    time: int
    """Event time, milliseconds since the Unix epoch (UTC)."""
    last: Decimal | None
    bid: Decimal | None = None
    ask: Decimal | None = None
    bid_size: Decimal | None = None
    ask_size: Decimal | None = None
    volume_24h: Decimal | None = None
