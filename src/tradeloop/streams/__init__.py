"""Exchange-agnostic streaming: resilient connections, the StreamManager, fan-out and health."""

from __future__ import annotations

from .config import StreamConfig
from .errors import ErrorRecord
from .fanout import SlowConsumerPolicy, SubscriberHealth, Subscription
from .health import ConnectionHealth, StreamHealth, TopicHealth
from .manager import StreamManager

__all__ = [
    "ConnectionHealth",
    "ErrorRecord",
    "SlowConsumerPolicy",
    "StreamConfig",
    "StreamHealth",
    "StreamManager",
    "SubscriberHealth",
    "Subscription",
    "TopicHealth",
]
