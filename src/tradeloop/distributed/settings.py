"""The distributed layer's settings, URLs and counters: plain values, no Redis client.

They live apart from the client so that reading a config (``[data]``, ``[publish]``) or starting
``tradeloop`` does not import coredis, which alone took 0.38 s of the 0.63 s ``import tradeloop``
took here; the client is imported when a collector or a Redis-fed engine starts.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from ..errors import InvalidValueError
from ..streams.source import TickKind
from .keys import DEFAULT_PREFIX

__all__ = [
    "PublishSettings",
    "PublishTopics",
    "PublisherStats",
    "RedisSourceSettings",
    "RedisTimeouts",
    "check_redis_url",
    "redacted_url",
]


@dataclass(frozen=True, slots=True)
class RedisTimeouts:
    """Seconds (of the running backend's clock) allowed for each step talking to Redis."""

    connect: float = 5.0
    command: float = 10.0
    """One command's reply (a blocking read adds its own block time to this)."""


def redacted_url(url: str) -> str:
    """``url`` without its password, for logs, health and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    # The host and port as written, not parts.port: a URL refused for its bad port is redacted too.
    netloc = f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc))


def check_redis_url(url: str) -> None:
    """InvalidValueError, with any password redacted, unless ``url`` is a usable Redis URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise InvalidValueError(
            f"invalid Redis URL {redacted_url(url)!r}: expected redis://[:password@]host[:port][/db] or rediss://..."
        )
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise InvalidValueError(f"invalid Redis URL {redacted_url(url)!r}: the database must be a number, got {db!r}")
    try:
        parts.port  # noqa: B018 (urlsplit checks the port lazily)
    except ValueError:
        raise InvalidValueError(f"invalid Redis URL {redacted_url(url)!r}: bad port") from None


@dataclass(frozen=True, slots=True)
class RedisSourceSettings:
    """Where and how an engine reads market data from Redis (the config's ``[data]`` table)."""

    source: str
    """``redis://[:password@]host[:port][/db]`` or ``rediss://...`` (TLS)."""
    group: str = "tradeloop"
    """Engines with the same group share the kline streams (each stream goes to one of them)."""
    consumer: str = field(default_factory=socket.gethostname)
    """This engine's name in the group; keep it across restarts to resume where it stopped."""
    prefix: str = DEFAULT_PREFIX
    lease_ttl: float = 10.0
    """Seconds (Redis server clock) a dead engine keeps its streams; renewed every third of it."""
    read_wait: float = 1.0
    """Seconds a read waits at the server for new entries; 0 polls every ``poll_interval`` instead
    (for simulated clocks, whose time the server cannot follow)."""
    poll_interval: float = 0.1
    batch: int = 100
    """Entries per read."""
    connect_timeout: float = 5.0
    command_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.source, str):
            raise InvalidValueError(f"data source {self.source!r}: expected a redis:// or rediss:// URL")
        check_redis_url(self.source)  # now, with the config: the engine opens its journal before connecting
        for name in ("group", "consumer", "prefix"):
            _check_name("data setting", name, getattr(self, name))
        for name in ("lease_ttl", "poll_interval", "connect_timeout", "command_timeout"):
            _check_seconds(name, getattr(self, name), minimum=0.001)
        _check_seconds("read_wait", self.read_wait, minimum=0.0)
        _check_count("data setting", "batch", self.batch)

    @property
    def timeouts(self) -> RedisTimeouts:
        return RedisTimeouts(connect=self.connect_timeout, command=self.command_timeout)


def _check_seconds(name: str, value: object, *, minimum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= minimum:
        raise InvalidValueError(f"data setting {name!r}: expected seconds >= {minimum:g}, got {value!r}")


@dataclass(frozen=True, slots=True)
class PublishTopics:
    """What one collector publishes: candles of ``timeframes`` and/or ticks of ``symbols``."""

    exchange: str
    symbols: Sequence[str]
    timeframes: Sequence[str] = ()
    ticks: bool = False
    tick_kind: TickKind = "ticker"

    def __post_init__(self) -> None:
        if isinstance(self.symbols, str) or not self.symbols:
            raise InvalidValueError(f"name at least one symbol to publish, got {self.symbols!r}")
        if not self.timeframes and not self.ticks:
            raise InvalidValueError("nothing to publish: give at least one timeframe, or ticks")


@dataclass(frozen=True, slots=True)
class PublishSettings:
    prefix: str = DEFAULT_PREFIX
    collector: str = "collector"
    """This collector's name: its health hash is ``<prefix>:collector:<name>``."""
    kline_maxlen: int = 100_000
    tick_maxlen: int = 10_000
    backfill: int = 1000
    """Closed candles fetched over REST at start to close the gap since the stream's last entry."""
    batch: int = 500
    """Most entries appended in one pipelined round trip (what waited while the last one ran)."""
    health_interval: float = 5.0

    def __post_init__(self) -> None:
        for name in ("prefix", "collector"):
            _check_name("publish setting", name, getattr(self, name))
        for name in ("kline_maxlen", "tick_maxlen", "backfill", "batch"):
            _check_count("publish setting", name, getattr(self, name))
        interval = self.health_interval
        if isinstance(interval, bool) or not isinstance(interval, int | float) or not interval > 0:
            raise InvalidValueError(f"publish setting 'health_interval': expected seconds > 0, got {interval!r}")


@dataclass(slots=True)
class PublisherStats:
    klines: int = 0
    """Closed candles appended (backfilled ones included)."""
    backfilled: int = 0
    duplicates: int = 0
    """Candles Redis already had (refused by entry ID): counted, not published twice."""
    ticks: int = 0
    redis_retries: int = 0


def _check_name(kind: str, name: str, value: object) -> None:
    """A part of Redis keys: a non-empty string (an empty prefix made keys like ``:kline:...``)."""
    if not isinstance(value, str) or not value:
        raise InvalidValueError(f"{kind} {name!r}: expected a non-empty string, got {value!r}")


def _check_count(kind: str, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidValueError(f"{kind} {name!r}: expected a positive integer, got {value!r}")
