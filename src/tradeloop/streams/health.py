"""Health is data: a typed, immutable snapshot of every connection and topic."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..exchanges.base import Topic
from .errors import ErrorRecord
from .fanout import SubscriberHealth

__all__ = ["ConnectionHealth", "StreamHealth", "TopicHealth"]


@dataclass(frozen=True, slots=True)
class ConnectionHealth:
    exchange: str
    market: str
    url: str
    connection_id: int
    state: str
    """idle, connecting, open, closing or backoff."""
    topics: int
    messages: int
    last_message_age: float | None
    """Seconds since the last frame (pings included), None before the first."""
    reconnects: int
    last_reconnect_age: float | None
    use_rest_fallback: bool
    parse_errors: Mapping[str, int]
    error_replies: int
    recent_errors: tuple[ErrorRecord, ...]
    rotations: int = 0
    """Planned replacements of the socket (its lifetime ran out, or the server announced its
    close), handed over without a gap: not counted in ``reconnects``."""


@dataclass(frozen=True, slots=True)
class TopicHealth:
    exchange: str
    topic: Topic
    mode: str
    """"ws", "watch" (a client that owns its socket, such as ccxt.pro through the adapter) or "rest"
    (fallback polling, or a fetch-only exchange)."""
    state: str
    messages: int
    last_message_age: float | None
    reconnects: int
    """Reconnects of the socket carrying this topic."""
    parse_errors: Mapping[str, int]
    """Parse errors on that socket, by kind (a malformed frame names no reliable topic)."""
    closed_candles: int
    backfilled_candles: int
    stale_updates: int
    duplicate_updates: int
    unconfirmed_closes: int
    rest_errors: int
    recent_errors: tuple[ErrorRecord, ...]
    subscribers: tuple[SubscriberHealth, ...]
    queue_overflows: int = 0
    """Times pushes piled up behind a REST fetch past their bound and were dropped (then fetched)."""
    watch_errors: int = 0
    """Failed watch loops of a client that owns its socket (``mode`` "watch": ccxt.pro through the
    adapter), each a dropped socket or a stream error, retried with backoff. 0 on topics fed by
    tradeloop's own sockets, whose failures count in ``reconnects`` and ``parse_errors``."""

    @property
    def lag(self) -> int:
        """The largest backlog of any subscriber."""
        return max((s.lag for s in self.subscribers), default=0)

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self.subscribers)

    @property
    def refetched(self) -> int:
        return sum(s.refetched for s in self.subscribers)


@dataclass(frozen=True, slots=True)
class StreamHealth:
    connections: tuple[ConnectionHealth, ...]
    topics: tuple[TopicHealth, ...]

    @property
    def total_reconnects(self) -> int:
        return sum(c.reconnects for c in self.connections)

    @property
    def recent_errors(self) -> list[ErrorRecord]:
        """Every error the connections and topics still keep, oldest first, each once (a topic's
        health repeats its socket's errors)."""
        records = [e for c in self.connections for e in c.recent_errors]
        records += [e for t in self.topics for e in t.recent_errors]
        return sorted(dict.fromkeys(records), key=lambda record: record.time)

    @property
    def last_error(self) -> ErrorRecord | None:
        """The newest error any connection or topic still keeps (None: none)."""
        records = self.recent_errors
        return records[-1] if records else None

    @property
    def waiting(self) -> bool:
        """Some socket is not open, or some topic has had no message yet: data is not flowing.
        (A topic another engine of a Redis group owns, "standby", is not waited for.)"""
        return any(c.state != "open" for c in self.connections) or any(
            not t.messages for t in self.topics if t.state != "standby"
        )

    @property
    def total_parse_errors(self) -> int:
        return sum(sum(c.parse_errors.values()) for c in self.connections)
