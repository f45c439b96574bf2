"""What every exchange provides to the exchange-agnostic stream layer.

An exchange is three things: where its sockets and REST API live, a sans-IO WebSocket codec
(text or bytes in, typed events out, requests as text; no I/O, so it is tested with bytes alone),
and a few REST calls used for gap backfill, fallback polling and fetch-only streams.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Protocol

import httpx
import msgspec

from ..errors import InvalidValueError, TradeloopError
from ..models import Kline, Tick
from ..symbols import Market, normalize_symbol, parse_symbol, validate_timeframe

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
    "Reconnect",
    "SubscriptionAck",
    "TickUpdate",
    "Topic",
    "TopicKind",
    "WsCodec",
    "kline_query",
    "tick_kind",
    "within",
]


QueryParams = dict[str, str | int]


class TopicKind(StrEnum):
    KLINE = "kline"
    TICKER = "ticker"
    LAST_PRICE = "last_price"
    MARK_PRICE = "mark_price"
    BOOK_TICKER = "book_ticker"


def tick_kind(kind: str, *, for_klines: str) -> TopicKind:
    """The tick feed named ``kind``; InvalidValueError naming the allowed ones, or ``for_klines``
    (where the caller sends kline streams) when ``kind`` is ``"kline"``."""
    allowed = ", ".join(k.value for k in TopicKind if k is not TopicKind.KLINE)
    try:
        topic_kind = TopicKind(kind)
    except ValueError:
        raise InvalidValueError(f"invalid tick kind {kind!r}: expected one of {allowed}") from None
    if topic_kind is TopicKind.KLINE:
        raise InvalidValueError(f"invalid tick kind 'kline': {for_klines}, or one of {allowed}")
    return topic_kind


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
    """A frame or body larger than its limit once decompressed (:class:`~tradeloop.exchanges.limits.PeerLimits`)."""
    TOO_DEEP = "too_deep"
    """JSON nested deeper than its limit (:class:`~tradeloop.exchanges.limits.PeerLimits`)."""


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
    """Updates of one kline topic, oldest first.

    ``closed`` is False unless the exchange marks final values itself
    (:attr:`Exchange.pushes_closed_flag`, e.g. Binance's ``"x": true``); otherwise the stream decides.
    """

    topic: Topic
    klines: tuple[Kline, ...]


class TickUpdate(msgspec.Struct, frozen=True, gc=False):
    topic: Topic
    tick: Tick


class Reconnect(msgspec.Struct, frozen=True, gc=False):
    """The server announced it will close this socket soon (Binance's ``serverShutdown``):
    open a new one and move the topics there now, rather than lose pushes to the close."""

    reason: str


# Events are msgspec Structs, like Kline and Tick: one is built per frame.
Event = Heartbeat | SubscriptionAck | ErrorReply | KlineBatch | TickUpdate | Reconnect


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


def kline_query(symbol_id: str, timeframe: str, limit: int, start_ms: int | None, end_ms: int | None) -> QueryParams:
    """The query of a klines request as BingX and Binance both spell it (``symbol``, ``interval``,
    ``limit``, ``startTime``, ``endTime``); InvalidValueError for a bad timeframe or a reversed range."""
    validate_timeframe(timeframe)
    if start_ms is not None and end_ms is not None and start_ms > end_ms:
        raise InvalidValueError(f"invalid range: start_ms {start_ms} is after end_ms {end_ms}")
    params: QueryParams = {"symbol": symbol_id, "interval": timeframe, "limit": limit}
    if start_ms is not None:
        params["startTime"] = start_ms
    if end_ms is not None:
        params["endTime"] = end_ms
    return params


def within(klines: list[Kline], start_ms: int | None, end_ms: int | None) -> list[Kline]:
    """The ``klines`` opening in ``[start_ms, end_ms]``: the server is asked for the range, and
    filtering again keeps :meth:`Exchange.fetch_klines`' contract if it answers wider."""
    return [
        kline
        for kline in klines
        if (start_ms is None or kline.open_time >= start_ms) and (end_ms is None or kline.open_time <= end_ms)
    ]


class Exchange(ABC):
    """An exchange's URLs, codec and REST calls: everything the stream layer needs to know of it.

    What differs between exchanges is an attribute or method here, with BingX's behaviour as the
    default, so the stream layer never branches on an exchange's name.
    """

    name: ClassVar[str]
    """Registry name, lower case."""
    max_topics_per_socket: ClassVar[int] = 200
    """Streams one socket may carry (BingX: 200; Binance documents 1024)."""
    max_subscriptions_per_second: ClassVar[float] = 10.0
    """Requests a client may send on one socket per second, over a strict sliding window
    (BingX: 10; Binance: 5 incoming messages per second, pongs included)."""
    supports_push: ClassVar[bool] = True
    """False for a fetch-only client: its streams are served by a REST poller."""
    pushes_closed_flag: ClassVar[bool] = False
    """Whether kline pushes say when a candle is final (Binance's ``"x": true``; the codec then
    emits that push with ``closed=True``). When True the final push *is* the closed candle and
    needs no REST confirmation; REST is still needed for candles missed while a socket was down.
    BingX sends no such flag: a candle closes when a newer one opens, confirmed over REST.
    The stream layer reads each kline's ``closed`` field, not this attribute: it states the codec's
    contract, so that nothing in ``streams/`` branches on an exchange."""
    connection_lifetime: ClassVar[float | None] = None
    """Seconds after which the server cuts every socket (Binance: 24 h), or None if it does not.
    A client should open a replacement socket, resubscribe and close the old one a little before."""

    def socket_key(self, topic: Topic) -> Hashable:
        """Which socket ``topic`` must be subscribed on: topics with equal keys may share a socket.

        The default is the topic's market (BingX: one socket per market). Binance's USDⓈ-M routes
        klines and tickers to ``/market`` and the book ticker to ``/public``, so it has two keys
        for that market. Pass the key to :meth:`ws_url` and :meth:`new_codec`.
        """
        return topic.market

    @abstractmethod
    def ws_url(self, key: Hashable) -> str:
        """WebSocket URL of the socket ``key`` (a :meth:`socket_key`; a Market is always accepted)."""

    @abstractmethod
    def new_codec(self, key: Hashable) -> WsCodec:
        """A fresh codec for one socket of ``key`` (a :meth:`socket_key`; a Market is always accepted)."""

    def check_topic(self, topic: Topic) -> None:  # noqa: B027 - accepting every topic is a valid default
        """Raise ValueError if this exchange cannot serve ``topic``."""

    @classmethod
    def normalize_symbol(cls, text: str) -> str:
        """The unified symbol a user means by ``text`` on this exchange (CLI input); InvalidValueError
        if it is malformed or ambiguous. The default also reads ``BASE-QUOTE`` as the USDT-M style swap."""
        return normalize_symbol(text)

    @classmethod
    def url_options(cls, market: Market, *, ws_url: str | None, rest_url: str | None) -> dict[str, str]:
        """Constructor options pointing the client at ``ws_url`` / ``rest_url`` (as a user gives them,
        e.g. ``tradeloop watch --ws-url``) for a symbol of ``market``; None leaves the default.
        BingX takes one WebSocket URL per market (``ws_url`` swap, ``spot_ws_url`` spot)."""
        options: dict[str, str] = {}
        if ws_url:
            options["ws_url" if market is Market.SWAP else "spot_ws_url"] = ws_url
        if rest_url:
            options["rest_url"] = rest_url
        return options

    def kline_page_size(self, market: Market) -> int:
        """Most candles one REST klines request returns on ``market`` (BingX: 1440 on both);
        :meth:`fetch_klines` never returns more, so a caller pages with this size."""
        return 1440

    async def check_symbol(self, http: httpx.AsyncClient, symbol: str) -> None:  # noqa: B027 - trusting is a valid default
        """Raise InvalidValueError if the exchange does not list ``symbol`` (a unified symbol).

        For exchanges that acknowledge a subscription to an unknown symbol and then stay silent
        (Binance): call before subscribing and turn the error into a SubscriptionError. The
        default trusts the exchange to reject unknown symbols itself (BingX answers with an
        error). May do REST I/O (raising ExchangeError, ProtocolError or httpx errors).
        """

    async def validate_symbols(self, http: httpx.AsyncClient, symbols: Iterable[str]) -> None:
        """:meth:`check_symbol` for each of ``symbols``; the first unknown one raises."""
        for symbol in symbols:
            await self.check_symbol(http, symbol)

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
