"""The simulator's settings, its clock and its counters.

Time is the event loop's clock (``anyio.current_time``) mapped to epoch milliseconds, so a test
running under a virtual clock (``trio.testing.MockClock``, looptime on asyncio) drives the market
(candles, pings, timeouts) as fast as it likes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import anyio

from ..errors import InvalidValueError
from ..models import Kline
from .history import check_history
from .market import symbol_spec

__all__ = ["EXCHANGES", "SimClock", "SimConfig", "SimStats"]

EXCHANGES = ("bingx", "binance")
"""The dialects the simulator speaks."""


@dataclass
class SimConfig:
    """How the embedded exchange behaves; every field has a production-like default.

    Durations are seconds of the event loop's clock: simulated seconds under a mock or scaled clock. Market
    time (candles, REST history) runs ``speed`` times faster than that clock; push, ping and pong
    intervals and timeouts do not.
    """

    symbols: Sequence[str] = ("BTC-USDT", "ETH-USDT")
    """BASE-QUOTE ids (BingX's spelling, also for Binance); each is served on both swap and spot."""
    exchange: str = "bingx"
    """Which exchange's dialect the servers speak: ``bingx`` or ``binance`` (one market model)."""
    speed: float = 1.0
    """Market time runs this many times faster than the loop's clock: at 60, a one-minute candle
    closes every real second and REST history follows."""
    seed: int = 0
    start_ms: int | None = None
    """Epoch ms of the simulator's start (loop time when it opened); None: the wall clock then."""
    step_seconds: float = 1.0
    """Market model step: a new price every step. Must divide one minute."""
    push_interval: float = 1.0
    """Seconds between two pushes of one topic (kline, ticker, ...)."""
    ping_interval: float = 5.0
    """Server heartbeat period (BingX docs: 5 s; production: about 30 s)."""
    pong_timeout: float = 30.0
    """Close a socket whose oldest unanswered ping is this old (undocumented on BingX)."""
    history_seconds: float = 3600.0
    """Market history generated before the start, served over REST as warm-up data."""
    max_topics_per_socket: int = 200
    send_queue_size: int = 4096
    """Frames queued per connection before pushes wait for its writer."""
    send_timeout: float = 10.0
    """A connection whose socket accepts nothing for this long is closed as too slow."""
    slow_client_timeout: float = 1.0
    """A connection whose queue is full and whose socket has accepted nothing for this long is
    closed as too slow (pushes to the other connections wait that long at most)."""
    connection_lifetime: float | None = None
    """Binance dialect: close every socket this many seconds after it opened (production: 24 h,
    BINANCE.md §1.5); None: never."""
    max_messages_per_second: int = 5
    """Binance dialect: incoming messages (requests and pongs) a socket may send within any one
    second before it is closed with 1008 "Too many requests" (spot's documented budget)."""
    history: Mapping[str, Sequence[Kline]] = field(default_factory=dict)
    """Candles to replay instead of the random walk, by BingX symbol id (each must be in
    ``symbols``); see :mod:`tradeloop.sim.history`. The market then begins at their first open
    time, and ``start_ms`` defaults to ``history_seconds`` after it."""

    def __post_init__(self) -> None:
        if isinstance(self.symbols, str) or not self.symbols:
            raise InvalidValueError(f"invalid symbols {self.symbols!r}: expected a non-empty list such as ['BTC-USDT']")
        self.symbols = tuple(dict.fromkeys(self.symbols))
        if self.exchange not in EXCHANGES:
            raise InvalidValueError(f"invalid exchange {self.exchange!r}: the simulator speaks {', '.join(EXCHANGES)}")
        if isinstance(self.speed, bool) or not isinstance(self.speed, int | float) or not 0 < self.speed < math.inf:
            raise InvalidValueError(f"invalid speed {self.speed!r}: expected a positive factor such as 1, 10 or 60")
        for symbol_id in self.symbols:
            symbol_spec(symbol_id)
        step_ms = round(self.step_seconds * 1000)
        if step_ms <= 0 or 60_000 % step_ms or not math.isclose(step_ms, self.step_seconds * 1000):
            raise InvalidValueError(
                f"invalid step_seconds {self.step_seconds!r}: expected a whole number of milliseconds "
                "that divides one minute (e.g. 0.01, 0.5, 1, 5, 15, 60)"
            )
        for name in ("push_interval", "ping_interval", "pong_timeout", "send_timeout", "slow_client_timeout"):
            value = getattr(self, name)
            if not value >= 0.001:
                raise InvalidValueError(f"invalid {name} {value!r}: expected a number of seconds >= 0.001")
        if self.connection_lifetime is not None and not self.connection_lifetime >= 0.001:
            raise InvalidValueError(
                f"invalid connection_lifetime {self.connection_lifetime!r}: expected seconds >= 0.001 or None"
            )
        if not self.history_seconds >= 0:
            raise InvalidValueError(f"invalid history_seconds {self.history_seconds!r}: expected >= 0")
        if self.history:
            unknown = sorted(set(self.history) - set(self.symbols))
            if unknown:
                raise InvalidValueError(f"history of {unknown[0]!r}: not one of the symbols {list(self.symbols)}")
            first_open = check_history(self.history, self.step_ms)
            if self.start_ms is None:
                self.start_ms = first_open + round(self.history_seconds * 1000)
        for name in ("max_topics_per_socket", "send_queue_size", "max_messages_per_second"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidValueError(f"invalid {name} {value!r}: expected a positive integer")

    @property
    def step_ms(self) -> int:
        return round(self.step_seconds * 1000)

    @property
    def history_start_ms(self) -> int | None:
        """The first open time of the replayed history (None without one)."""
        return min((candles[0].open_time for candles in self.history.values()), default=None)

    @property
    def push_ms(self) -> int:
        return max(1, round(self.push_interval * 1000))


@dataclass(frozen=True, slots=True)
class SimClock:
    """Loop time <-> epoch milliseconds: ``loop_zero`` (loop seconds) is ``start_ms``, and market
    time runs ``speed`` times faster than the loop's clock."""

    start_ms: int
    loop_zero: float
    speed: float = 1.0

    @classmethod
    def starting_now(cls, start_ms: int | None, speed: float = 1.0) -> SimClock:
        if start_ms is None:
            start_ms = int(time.time() * 1000)
        return cls(start_ms, anyio.current_time(), speed)

    def now_ms(self) -> int:
        return self.start_ms + round((anyio.current_time() - self.loop_zero) * 1000 * self.speed)

    def deadline(self, epoch_ms: int) -> float:
        """The loop time at which the simulator's clock reads ``epoch_ms``."""
        return self.loop_zero + (epoch_ms - self.start_ms) / 1000 / self.speed


@dataclass
class SimStats:
    """Live counters of the simulator: ``connections_open`` and ``subscriptions`` are current
    levels, every other field only grows."""

    connections_open: int = 0
    connections_total: int = 0
    subscriptions: int = 0
    """(connection, topic) pairs currently subscribed."""
    frames_sent: int = 0
    """WebSocket frames written to sockets (pushes, acks, errors, pings)."""
    pings_sent: int = 0
    pongs_received: int = 0
    request_errors: int = 0
    """Error envelopes sent in reply to requests."""
    slow_closed: int = 0
    """Connections closed because they could not keep up."""
    pong_timeouts: int = 0
    dropped: int = 0
    """Connections aborted by :meth:`Faults.drop_all`."""
    rest_requests: int = 0
