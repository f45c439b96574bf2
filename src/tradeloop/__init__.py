"""tradeloop: crypto market data over WebSockets into a Trio trading loop."""

from __future__ import annotations

from .exchanges import (
    Exchange,
    ExchangeError,
    ProtocolError,
    Topic,
    TopicKind,
    available_exchanges,
    create_exchange,
    register_exchange,
)
from .models import Kline, Tick
from .symbols import TIMEFRAMES, Market, parse_symbol

__all__ = [
    "TIMEFRAMES",
    "Exchange",
    "ExchangeError",
    "Kline",
    "Market",
    "ProtocolError",
    "Tick",
    "Topic",
    "TopicKind",
    "available_exchanges",
    "create_exchange",
    "parse_symbol",
    "register_exchange",
]
