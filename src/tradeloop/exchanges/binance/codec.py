"""Binance's WebSocket protocol, sans-IO: one frame in, one event out; requests as text.

Frames are JSON text (BINANCE.md §1.2). A combined socket (``/stream``) wraps each push as
``{"stream": …, "data": …}``, a raw one (``/ws``) sends the event itself; replies to requests are
never wrapped, so the codec accepts both and routes pushes by their own ``e`` (event type) and
``s`` (symbol), which works on either. Heartbeats are RFC 6455 control frames the transport
answers, so this codec never sees them. Nothing here does I/O: it is tested with text alone.

Topics are cached per (event type, symbol id, interval), so the unified symbol is parsed once per
topic, not once per frame; a shape error (``KeyError``, ``TypeError``, …) becomes
:class:`ProtocolError` in one place instead of a check per field.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any, Final

import msgspec

from ...errors import InvalidValueError, preview
from ...models import Tick
from ...symbols import Market, validate_timeframe
from ..base import (
    ErrorKind,
    ErrorReply,
    Event,
    KlineBatch,
    ProtocolError,
    Reconnect,
    SubscriptionAck,
    TickUpdate,
    Topic,
    TopicKind,
)
from ..bingx.codec import _undecodable  # one rule for both exchanges' JSON text
from ..bingx.wire import lettered_kline, to_decimal, to_time
from ..limits import DEFAULT_LIMITS, PeerLimits, check_json_depth
from .wire import EXCHANGE, JSON, Socket, binance_id, optional_decimal, unified_symbol, update_id

__all__ = ["BinanceCodec", "socket_of", "stream_name"]

_SUFFIXES: Final[dict[TopicKind, str]] = {
    TopicKind.TICKER: "ticker",
    TopicKind.LAST_PRICE: "miniTicker",
    TopicKind.MARK_PRICE: "markPrice@1s",
    TopicKind.BOOK_TICKER: "bookTicker",
}
"""Stream suffix per tick kind. The last price comes from the mini ticker (``c``, with an event
time), the mark price from the 1-second mark price stream (USDⓈ-M only)."""

_EVENT_KINDS: Final[dict[str, TopicKind]] = {
    "kline": TopicKind.KLINE,
    "24hrTicker": TopicKind.TICKER,
    "24hrMiniTicker": TopicKind.LAST_PRICE,
    "markPriceUpdate": TopicKind.MARK_PRICE,
    "bookTicker": TopicKind.BOOK_TICKER,
}

_MAX_TOPICS: Final = 4096
"""Topics cached per codec; a socket carries at most 1024 streams, so this only bounds a rogue server."""

_REQUEST_IDS: Final = itertools.count(1)
"""Request ids unique within the process (unsigned integers: USDⓈ-M accepts nothing else, §1.4),
so an ack can never be matched to another socket's request."""

_encode: Final = msgspec.json.Encoder().encode


def stream_name(topic: Topic) -> str:
    """The Binance stream of ``topic``: lower-case id, ``@``, channel (``btcusdt@kline_1m``).

    Raises InvalidValueError for what Binance cannot serve here: a bare id, COIN-M, mark price on spot.
    """
    market, symbol_id = binance_id(topic.symbol)
    if topic.kind is TopicKind.KLINE:
        assert topic.timeframe is not None  # Topic guarantees a timeframe for klines
        return f"{symbol_id.lower()}@kline_{topic.timeframe}"
    if topic.kind is TopicKind.MARK_PRICE and market is Market.SPOT:
        raise InvalidValueError(f"topic {topic}: mark_price is a USDⓈ-M feed, Binance has no mark price for spot")
    return f"{symbol_id.lower()}@{_SUFFIXES[topic.kind]}"


def socket_of(topic: Topic) -> Socket:
    """The socket ``topic``'s stream flows on (USDⓈ-M: book ticker on ``/public``, the rest on ``/market``)."""
    if topic.market is Market.SPOT:
        return Socket.SPOT
    return Socket.USDM_PUBLIC if topic.kind is TopicKind.BOOK_TICKER else Socket.USDM_MARKET


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class BinanceCodec:
    """The protocol of one Binance socket (spot, USDⓈ-M ``/market`` or ``/public``); a ``WsCodec``.

    ``now_ms`` stamps the one push that carries no time (spot's book ticker, §2.5) with the
    receive time; tests pass a fixed clock.
    """

    __slots__ = ("_max_depth", "_now_ms", "_topics", "market", "socket")

    def __init__(
        self, socket: Socket, *, now_ms: Callable[[], int] = _wall_clock_ms, limits: PeerLimits = DEFAULT_LIMITS
    ) -> None:
        self.socket = Socket(socket)
        self.market = self.socket.market
        self._now_ms = now_ms
        self._max_depth = limits.max_json_depth
        self._topics: dict[tuple[TopicKind, str, str | None], Topic] = {}

    def subscribe(self, topic: Topic) -> tuple[str, str]:
        return self._request("SUBSCRIBE", topic)

    def unsubscribe(self, topic: Topic) -> tuple[str, str]:
        return self._request("UNSUBSCRIBE", topic)

    def _request(self, method: str, topic: Topic) -> tuple[str, str]:
        stream = stream_name(topic)
        wanted = socket_of(topic)
        if wanted is not self.socket:
            raise InvalidValueError(
                f"topic {topic} flows on Binance's {wanted.value} socket, this one is {self.socket.value}"
            )
        request_id = next(_REQUEST_IDS)
        return str(request_id), _encode({"method": method, "params": [stream], "id": request_id}).decode()

    def decode(self, frame: bytes | str) -> Event:
        """Decode one server frame (text; bytes are read as UTF-8 JSON too). Raises only ProtocolError:
        also for JSON nested beyond ``max_json_depth`` (``TOO_DEEP``), checked before decoding.

        Frame size is bounded below this layer: the transport refuses a message over its cap from
        the frame header (Binance sends no compressed frames, so the size on the wire is the size).
        """
        check_json_depth(frame, self._max_depth)
        try:
            message = JSON.decode(frame)
        except (msgspec.DecodeError, UnicodeError) as exc:
            raise _undecodable(frame, exc) from None
        if type(message) is not dict:
            raise ProtocolError(ErrorKind.BAD_FIELD, f"expected a JSON object, got {preview(frame)}")
        data = message.get("data")
        if type(data) is dict and "stream" in message:
            message = data  # a combined socket's wrapper: the event inside says everything
        event_type = message.get("e")
        try:
            if event_type is None:
                return self._untyped(message, frame)
            if event_type == "serverShutdown":
                return Reconnect(f"serverShutdown at {message.get('E')!r}")
            kind = _EVENT_KINDS.get(event_type) if type(event_type) is str else None
            if kind is None:
                raise ProtocolError(ErrorKind.UNKNOWN_TOPIC, f"event type {event_type!r} is not one tradeloop decodes")
            return self._push(kind, message)
        except KeyError as exc:
            raise ProtocolError(ErrorKind.BAD_FIELD, f"missing field {exc}", topic=str(event_type)) from None
        except (TypeError, ValueError, IndexError) as exc:
            raise ProtocolError(ErrorKind.BAD_FIELD, str(exc), topic=str(event_type)) from None

    def _untyped(self, message: dict[str, Any], frame: bytes | str) -> Event:
        """A message without ``e``: a reply to a request, or spot's book ticker (no ``e``, §2.5)."""
        if "result" in message:
            return SubscriptionAck(_request_id(message.get("id")))
        error = message.get("error")
        if type(error) is dict:  # the shape observed live (§1.4)
            return _error_reply(error, message.get("id"))
        if "code" in message and "msg" in message:  # the shape documented
            return _error_reply(message, message.get("id"))
        if "u" in message and "b" in message and "s" in message:
            return self._push(TopicKind.BOOK_TICKER, message)
        raise ProtocolError(ErrorKind.BAD_FIELD, f"unrecognised message {preview(frame)}")

    def _push(self, kind: TopicKind, data: dict[str, Any]) -> Event:
        symbol_id = data["s"]
        if type(symbol_id) is not str:
            raise TypeError(f"field 's' should be a string, got {symbol_id!r}")
        if kind is TopicKind.KLINE:
            candle = data["k"]
            interval = candle["i"]
            topic = self._topic(kind, symbol_id, interval)
            closed = candle.get("x", False)
            if type(closed) is not bool:
                raise TypeError(f"field 'x' should be true or false, got {closed!r}")
            return KlineBatch(topic, (lettered_kline(EXCHANGE, topic.symbol, interval, candle, closed=closed),))
        topic = self._topic(kind, symbol_id, None)
        return TickUpdate(topic, _TICK_PARSERS[kind](self, topic, data))

    def _topic(self, kind: TopicKind, symbol_id: str, interval: object) -> Topic:
        key = (kind, symbol_id, interval if type(interval) is str else None)
        topic = self._topics.get(key)
        if topic is not None:
            return topic
        if kind is TopicKind.KLINE and type(interval) is not str:
            raise TypeError(f"field 'i' should be an interval string, got {interval!r}")
        try:
            if kind is TopicKind.KLINE:
                validate_timeframe(str(interval))
            topic = Topic(kind, unified_symbol(self.market, symbol_id), key[2])
        except InvalidValueError as exc:
            raise ProtocolError(ErrorKind.UNKNOWN_TOPIC, str(exc), topic=symbol_id) from None
        if len(self._topics) < _MAX_TOPICS:
            self._topics[key] = topic
        return topic

    # -- tick pushes ----------------------------------------------------------------------------

    def _ticker(self, topic: Topic, data: dict[str, Any]) -> Tick:
        """24h ticker: spot carries the best bid/ask (``b``/``a`` prices, ``B``/``A`` sizes),
        USDⓈ-M does not (§2.4); spot's ``x`` is a price, not a flag."""
        return Tick(
            EXCHANGE,
            topic.symbol,
            to_time(data["E"], "E"),
            to_decimal(data["c"], "c"),
            bid=optional_decimal(data, "b"),
            ask=optional_decimal(data, "a"),
            bid_size=optional_decimal(data, "B"),
            ask_size=optional_decimal(data, "A"),
            volume_24h=to_decimal(data["v"], "v"),
        )

    def _mini_ticker(self, topic: Topic, data: dict[str, Any]) -> Tick:
        return Tick(
            EXCHANGE,
            topic.symbol,
            to_time(data["E"], "E"),
            to_decimal(data["c"], "c"),
            volume_24h=to_decimal(data["v"], "v"),
        )

    def _mark_price(self, topic: Topic, data: dict[str, Any]) -> Tick:
        return Tick(EXCHANGE, topic.symbol, to_time(data["E"], "E"), to_decimal(data["p"], "p"))

    def _book_ticker(self, topic: Topic, data: dict[str, Any]) -> Tick:
        """Best bid/ask; spot's push has no time, so it gets the receive time (§2.5), and its
        update id ``u`` says which push it is."""
        event_time = to_time(data["E"], "E") if "E" in data else self._now_ms()
        return Tick(
            EXCHANGE,
            topic.symbol,
            event_time,
            None,
            bid=to_decimal(data["b"], "b"),
            ask=to_decimal(data["a"], "a"),
            bid_size=to_decimal(data["B"], "B"),
            ask_size=to_decimal(data["A"], "A"),
            update_id=update_id(data["u"]),
        )


_TICK_PARSERS: Final[dict[TopicKind, Callable[[BinanceCodec, Topic, dict[str, Any]], Tick]]] = {
    TopicKind.TICKER: BinanceCodec._ticker,
    TopicKind.LAST_PRICE: BinanceCodec._mini_ticker,
    TopicKind.MARK_PRICE: BinanceCodec._mark_price,
    TopicKind.BOOK_TICKER: BinanceCodec._book_ticker,
}


def _request_id(value: object) -> str:
    """A request id as the stream layer keys it: our ids are unsigned integers; spot also allows
    strings, and some errors carry none (``""``)."""
    if value is None:
        return ""
    if type(value) is int or type(value) is str:
        return str(value)
    raise TypeError(f"field 'id' should be an integer or a string, got {value!r}")


def _error_reply(error: dict[str, Any], request_id: object) -> ErrorReply:
    code, text = error.get("code"), error.get("msg")
    if type(code) is not int or type(text) is not str:
        raise TypeError(f"malformed error reply: code={code!r} msg={text!r}")
    return ErrorReply(_request_id(request_id), code, text)
