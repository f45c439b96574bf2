"""Tuning knobs of the stream layer, with the defaults a BingX user needs."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ..errors import InvalidValueError
from .transport import TransportName

__all__ = ["StreamConfig"]


@dataclass(frozen=True, slots=True)
class StreamConfig:
    transport: TransportName = "wsproto"
    """WebSocket implementation: "wsproto" (fast path, default) or "trio-websocket" (reference)."""
    connect_timeout: float = 10.0
    """Bound on opening a socket (TCP, TLS and the WebSocket handshake): TLS failures can hang."""
    close_timeout: float = 2.0
    """Bound on the closing handshake; after it the TCP stream is closed regardless."""
    stall_timeout: float = 40.0
    """A socket with no frame at all (pings count) for this long is treated as dead."""
    reconnect_delay: float = 5.0
    """Base of the exponential backoff; each delay is drawn uniformly from [0, base * 2**n] (full jitter)."""
    reconnect_delay_max: float = 60.0
    healthy_after: float = 30.0
    """A session that lasted this long resets the backoff."""
    subscribe_rate: float = 10.0
    """Subscription requests per second per socket (BingX asks for at most 10/s)."""
    max_topics_per_socket: int | None = None
    """Defaults to the exchange's own limit (BingX: 200)."""
    message_queue_size: int = 1024
    """trio-websocket's internal queue; our reader drains it at once, the size only absorbs bursts."""
    max_parse_frame_retries: int = 3
    """More malformed frames in a row than this and the socket's topics fall back to REST polling."""
    fallback_after_failures: int = 3
    """Failed connection attempts in a row before the socket's topics fall back to REST polling."""
    fallback_recovery_frames: int = 20
    """Good frames in a row after which a parse-error fallback switches back to the WebSocket."""
    rest_poll_interval: float = 2.0
    """Polling period in REST fallback mode and for fetch-only exchanges."""
    rest_timeout: float = 10.0
    rest_retry_delay: float = 1.0
    rest_retry_delay_max: float = 30.0
    confirm_closed_candles: bool = True
    """Fetch each closed candle over REST before delivering it: BingX has no closed flag and its last
    push of a candle may be up to a second before the close (or never arrive). Off, a close the
    exchange did not flag (its final push was lost) carries the last values pushed, which may not
    be the candle's final ones."""
    confirm_attempts: int = 3
    """REST attempts to confirm a close before delivering the streamed values as they are."""
    kline_buffer: int = 1024
    tick_buffer: int = 16

    def __post_init__(self) -> None:
        if self.transport not in ("wsproto", "trio-websocket"):
            raise InvalidValueError(f"invalid transport {self.transport!r}: expected 'wsproto' or 'trio-websocket'")
        # Checked by declared type: a config file can put any TOML value here, and a bool is an
        # int to Python, a NaN compares false to everything, a float buffer size fails only later.
        for field in fields(self):
            value = getattr(self, field.name)
            problem = _problem(str(field.type), value)
            if problem is not None:
                raise InvalidValueError(f"StreamConfig.{field.name} must be {problem}, got {value!r}")


def _problem(declared: str, value: object) -> str | None:
    """What ``value`` fails to be as a field declared ``declared``, None if it is fine."""
    if declared == "bool":
        return None if isinstance(value, bool) else "true or false"
    if declared == "int | None" and value is None:
        return None
    if declared in ("int", "int | None"):
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return None
        return "positive, a whole number"
    if declared == "float":
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf:
            return None
        return "positive, a finite number"
    return None
