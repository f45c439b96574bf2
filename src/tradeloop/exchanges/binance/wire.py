"""How Binance spells things, shared by the WebSocket codec and the REST parsers.

Symbols: spot and USDⓈ-M use the same id (``BTCUSDT``) and the host or path decides the market
(BINANCE.md §1.1, pitfall 8), so a bare id is ambiguous and every mapping takes the market.
Stream names use the lower-case id, payloads and REST the upper-case one. Timeframes are spelled
as tradeloop spells them (``1m`` … ``1M``; §2.2). Prices and sizes are decimal strings (§2.3).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Final

from ...errors import InvalidValueError
from ...symbols import Market, parse_symbol
from ..bingx.wire import JSON, to_decimal

__all__ = [
    "EXCHANGE",
    "JSON",
    "QUOTE_ASSETS",
    "Socket",
    "binance_id",
    "optional_decimal",
    "split_id",
    "unified_symbol",
]

EXCHANGE: Final = "binance"

QUOTE_ASSETS: Final = (
    "USDT", "USDC", "FDUSD", "TUSD", "BUSD", "DAI", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "JPY", "USD",
)  # fmt: skip
"""Quote assets an id may end with, longest match first among equals: how an id is split when
only the id is known (a push for a stream this codec did not subscribe, a bare id from a user)."""

_BARE_ID: Final = re.compile(r"^[A-Za-z0-9]{2,40}$")


class Socket(StrEnum):
    """Which Binance socket a stream needs: spot has one, USDⓈ-M routes streams by category.

    USDⓈ-M serves klines, tickers and mark price under ``/market`` and the book ticker and depth
    under ``/public`` since 2026 (BINANCE.md §1.1, pitfall 1): a stream on the other path is
    acknowledged and never pushes.
    """

    SPOT = "spot"
    USDM_MARKET = "usdm/market"
    USDM_PUBLIC = "usdm/public"

    @property
    def market(self) -> Market:
        return Market.SPOT if self is Socket.SPOT else Market.SWAP

    @property
    def path(self) -> str:
        """The socket's path prefix under its origin (``/stream`` or ``/ws`` is appended)."""
        return {Socket.SPOT: "", Socket.USDM_MARKET: "/market", Socket.USDM_PUBLIC: "/public"}[self]


def binance_id(symbol: str) -> tuple[Market, str]:
    """The market and Binance id of a unified symbol: ``BTC/USDT:USDT`` -> ``(SWAP, "BTCUSDT")``.

    Raises InvalidValueError for a bare id (``BTCUSDT`` names a spot pair and a perpetual at once),
    a malformed symbol, and coin-margined swaps (COIN-M lives on another API tradeloop does not speak).
    """
    if isinstance(symbol, str) and _BARE_ID.match(symbol) and "/" not in symbol:
        raise InvalidValueError(ambiguous_id_message(symbol))
    info = parse_symbol(symbol)
    if info.settle is not None and info.settle != info.quote:
        raise InvalidValueError(
            f"unsupported symbol {symbol!r}: Binance is supported for spot pairs such as 'BTC/USDT' and "
            "USDⓈ-M perpetuals settled in their quote currency such as 'BTC/USDT:USDT'; COIN-M is not"
        )
    return info.market, f"{info.base}{info.quote}"


def ambiguous_id_message(text: str) -> str:
    """Why a bare Binance id (or BingX's ``BTC-USDT``) is refused, naming the two unified
    symbols it may mean, and quoting ``text`` as the user wrote it."""
    upper = text.replace("-", "").upper()
    try:
        base, quote = split_id(upper)
    except InvalidValueError:
        base, quote = "BASE", "QUOTE"
    return (
        f"ambiguous symbol {text!r}: Binance uses the id {upper!r} for a spot pair and a USDⓈ-M perpetual; "
        f"write '{base}/{quote}' (spot) or '{base}/{quote}:{quote}' (USDⓈ-M)"
    )


def split_id(symbol_id: str) -> tuple[str, str]:
    """``BTCUSDT`` -> ``("BTC", "USDT")`` by the known quote assets; InvalidValueError otherwise."""
    for quote in sorted(QUOTE_ASSETS, key=len, reverse=True):
        base = symbol_id[: -len(quote)]
        if symbol_id.endswith(quote) and base:
            return base, quote
    raise InvalidValueError(
        f"cannot split Binance id {symbol_id!r} into base and quote: expected it to end with one of "
        f"{', '.join(QUOTE_ASSETS)}"
    )


def optional_decimal(fields: dict[str, Any], key: str) -> Any:
    """``fields[key]`` as a Decimal, or None where the market does not send it (USDⓈ-M has no book
    in its tickers). ``Any`` so it fits a Tick's optional fields."""
    return to_decimal(fields[key], key) if key in fields else None


def update_id(value: object) -> int:
    """A book ticker's update id ``u``: a non-negative JSON integer; else InvalidValueError."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise InvalidValueError(f"field 'u' should be a non-negative integer, got {value!r}")


def unified_symbol(market: Market, symbol_id: str) -> str:
    """The unified symbol of Binance id ``symbol_id`` (upper case) on ``market``; ValueError if malformed."""
    base, quote = split_id(symbol_id)
    pair = f"{base}/{quote}"
    return parse_symbol(pair if market is Market.SPOT else f"{pair}:{quote}").unified
