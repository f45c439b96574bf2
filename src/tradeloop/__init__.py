"""tradeloop: crypto market data over WebSockets into a Trio trading loop.

The names most programs need are here; each subpackage has the rest:
:mod:`tradeloop.exchanges` (registry, BingX, Binance, ccxt), :mod:`tradeloop.streams` (StreamManager, health),
:mod:`tradeloop.trading` (strategies, risk, portfolio, engine), :mod:`tradeloop.sim` (the
embedded BingX-compatible exchange).

tradeloop logs through the ``tradeloop`` logger and leaves where the lines go to the program (a
``NullHandler``, as the logging docs ask of libraries): an error it raises is not also printed.
"""

from __future__ import annotations

import logging

from .errors import ForeignLoopError, InvalidValueError, SubscriptionError, TradeloopError
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
from .exchanges.binance import Binance
from .exchanges.bingx import BingX
from .models import Fill, Kline, Order, Position, Side, Signal, Tick
from .sim import open_simulator
from .streams import MarketData, SlowConsumerPolicy, StreamConfig, StreamHealth, StreamManager, Subscription
from .symbols import TIMEFRAMES, Market, parse_symbol
from .trading import EngineConfig, RiskLimits, Strategy, TradingEngine, load_config

__all__ = [
    "TIMEFRAMES",
    "Binance",
    "BingX",
    "EngineConfig",
    "Exchange",
    "ExchangeError",
    "Fill",
    "ForeignLoopError",
    "InvalidValueError",
    "Kline",
    "Market",
    "MarketData",
    "Order",
    "Position",
    "ProtocolError",
    "RiskLimits",
    "Side",
    "Signal",
    "SlowConsumerPolicy",
    "Strategy",
    "StreamConfig",
    "StreamHealth",
    "StreamManager",
    "Subscription",
    "SubscriptionError",
    "Tick",
    "Topic",
    "TopicKind",
    "TradeloopError",
    "TradingEngine",
    "available_exchanges",
    "create_exchange",
    "load_config",
    "open_simulator",
    "parse_symbol",
    "register_exchange",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
