"""Exchange-agnostic streaming: resilient connections, the StreamManager, fan-out and health."""

from __future__ import annotations

from .config import StreamConfig
from .errors import ErrorRecord
from .fanout import SlowConsumerPolicy, SubscriberHealth, Subscription
from .health import ConnectionHealth, StreamHealth, TopicHealth
from .manager import StreamManager
from .seam import candles_between
from .source import MarketData, MarketDataFactory, TickKind

__all__ = [
    "ConnectionHealth",
    "ErrorRecord",
    "MarketData",
    "MarketDataFactory",
    "SlowConsumerPolicy",
    "StreamConfig",
    "StreamHealth",
    "StreamManager",
    "SubscriberHealth",
    "Subscription",
    "TickKind",
    "TopicHealth",
    "candles_between",
]
