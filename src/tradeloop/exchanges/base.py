"""What every exchange provides to the exchange-agnostic stream layer.

An exchange is three things: where its sockets and REST API live, a sans-IO WebSocket codec
(text or bytes in, typed events out, requests as text; no I/O, so it is tested with bytes alone),
and a few REST calls used for gap backfill, fallback polling and fetch-only streams.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Protocol

import httpx
import msgspec

from ..errors import InvalidValueError, TradeloopError
from ..models import Kline, Tick
from ..symbols import Market, parse_symbol, validate_timeframe

__all__ = [
    "ErrorKind",
    "ErrorReply",
    "Event",
    "Exchange",
    "ExchangeError",
    "Heartbeat",
    "KlineBatch",
    "ProtocolError",
    "RateLimitedError",
    "SubscriptionAck",
    "TickUpdate",
    "Topic",
    "TopicKind",
    "WsCodec",
]


class TopicKind(StrEnum):
    KLINE = "kline"
    TICKER = "ticker"
    LAST_PRICE = "last_price"
    MARK_PRICE = "mark_price"
    BOOK_TICKER = "book_ticker"


@dataclass(frozen=True, slots=True)
class Topic:
    """One upstream subscription: a kind of feed for a unified symbol (and timeframe, for klines)."""

    kind: TopicKind
    symbol: str
    timeframe: str | None = None

    def __post_init__(self) -> None:
        parse_symbol(self.symbol)
        if self.kind is TopicKind.KLINE:
            if self.timeframe is None:
                raise InvalidValueError(f"kline topic for {self.symbol!r} needs a timeframe")
            validate_timeframe(self.timeframe)
        elif self.timeframe is not None:
            raise InvalidValueError(f"{self.kind.value} topic takes no timeframe, got {self.timeframe!r}")

    @property
    def market(self) -> Market:
        return parse_symbol(self.symbol).market

    def __str__(self) -> str:
        suffix = f":{self.timeframe}" if self.timeframe else ""
        return f"{self.kind.value}:{self.symbol}{suffix}"


class ErrorKind(StrEnum):
    """Why a frame could not be decoded; the stream layer counts parse errors per kind."""

    BAD_GZIP = "bad_gzip"
    BAD_UTF8 = "bad_utf8"
    BAD_JSON = "bad_json"
    UNKNOWN_TOPIC = "unknown_topic"
    BAD_FIELD = "bad_field"
    """A field is missing or has the wrong type or value."""
    TOO_LARGE = "too_large"
    """A frame or body larger than its limit once decompressed (:class:`~.limits.PeerLimits`)."""
    TOO_DEEP = "too_deep"
    """JSON nested deeper than its limit (:class:`~.limits.PeerLimits`)."""


_MAX_QUOTED = 200
"""Longest text an error message takes from the wire (a field, a dataType, the server's ``msg``)."""


def _bounded(text: str) -> str:
    """``text`` cut to a readable length: an error quoting a 1 MB field must not be a 1 MB log
    line, nor a 1 MB entry in an error history."""
    return text if len(text) <= _MAX_QUOTED else f"{text[:_MAX_QUOTED]}… ({len(text)} characters)"


class ProtocolError(TradeloopError):
    """A frame or response body that does not follow the exchange's protocol.

    The only exception a codec raises on bad input: the stream layer counts it by ``kind``, skips
    the frame and carries on.
    """

    def __init__(self, kind: ErrorKind, message: str, *, topic: str | None = None) -> None:
        super().__init__(f"{kind.value}: {_bounded(message)}" + (f" (topic {_bounded(topic)})" if topic else ""))
        self.kind = kind
        self.topic = topic


class ExchangeError(TradeloopError):
    """The exchange answered a request with an error code (REST or WebSocket)."""

    def __init__(self, code: int, message: str) -> None:
        message = _bounded(message)
        super().__init__(f"exchange error {code}: {message}")
        self.code = code
        self.message = message


class RateLimitedError(ExchangeError):
    """The exchange asked us to slow down (HTTP 429, BingX code 100410)."""


class Heartbeat(msgspec.Struct, frozen=True, gc=False):
    """The server pinged; send ``reply`` back as a text frame at once."""

    reply: str


class SubscriptionAck(msgspec.Struct, frozen=True, gc=False):
    request_id: str


class ErrorReply(msgspec.Struct, frozen=True, gc=False):
    """The server rejected a request (``request_id`` may be empty)."""

    request_id: str
    code: int
    message: str
    transient: bool = False
    """The refusal says "not now" (rate limit, server busy): the request is sent again later."""


class KlineBatch(msgspec.Struct, frozen=True, gc=False):
    """Updates of one kline topic, oldest first; ``closed`` is always False (the stream decides)."""

    topic: Topic
    klines: tuple[Kline, ...]


class TickUpdate(msgspec.Struct, frozen=True, gc=False):
    topic: Topic
    tick: Tick


# Events are msgspec Structs, like Kline and Tick: one is built per frame.
Event = Heartbeat | SubscriptionAck | ErrorReply | KlineBatch | TickUpdate


class WsCodec(Protocol):
    """Sans-IO WebSocket protocol of one market of an exchange."""

    def subscribe(self, topic: Topic) -> tuple[str, str]:
        """Return ``(request_id, text frame)`` subscribing to ``topic``."""
        ...

    def unsubscribe(self, topic: Topic) -> tuple[str, str]:
        """Return ``(request_id, text frame)`` unsubscribing from ``topic``."""
        ...

    def decode(self, frame: bytes | str) -> Event:
        """Decode one server frame; raise only :class:`ProtocolError` on bad input."""
        ...


class Exchange(ABC):
    """An exchange's URLs, codec and REST calls: everything the stream layer needs to know of it."""

    name: ClassVar[str]
    """Registry name, lower case."""
    max_topics_per_socket: ClassVar[int] = 200
    max_subscriptions_per_second: ClassVar[float] = 10.0
    supports_push: ClassVar[bool] = True
    """False for a fetch-only client: its streams are served by a REST poller."""
    pushes_closed_flag: ClassVar[bool] = False
    """True when a kline push says that its candle closed (Binance's ``"x": true``): closes then
    need no REST confirmation. BingX has no such flag."""

    def kline_page_size(self, market: Market) -> int:
        """Most klines one REST request returns in ``market`` (pages of backfills)."""
        return 1440

    async def validate_topic(self, http: httpx.AsyncClient, topic: Topic) -> None:  # noqa: B027 - optional hook
        """Raise InvalidValueError (naming what is wrong) if the exchange does not list ``topic``'s symbol.

        For exchanges that acknowledge a subscription to an unknown symbol and then stay silent;
        one that rejects it on the socket needs nothing here. Any other exception is a failed call,
        retried by the stream layer.
        """

    @abstractmethod
    def ws_url(self, market: Market) -> str:
        """WebSocket URL of ``market``."""

    @abstractmethod
    def new_codec(self, market: Market) -> WsCodec:
        """A fresh codec for one socket of ``market``."""

    def check_topic(self, topic: Topic) -> None:  # noqa: B027 - accepting every topic is a valid default
        """Raise ValueError if this exchange cannot serve ``topic``."""

    @abstractmethod
    async def fetch_klines(
        self,
        http: httpx.AsyncClient,
        symbol: str,
        timeframe: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[Kline]:
        """Candles opening in ``[start_ms, end_ms]``, oldest first, one per open time.

        Every candle but the newest the server returned has ``closed=True``; the newest is the one
        still forming unless a later one exists. Raises ExchangeError / RateLimitedError on an
        error reply, ProtocolError on a body that cannot be parsed, httpx errors on transport failure.
        """

    @abstractmethod
    async def fetch_ticker(self, http: httpx.AsyncClient, symbol: str) -> Tick:
        """The 24h ticker of ``symbol`` as a Tick."""
