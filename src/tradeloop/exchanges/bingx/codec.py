"""BingX's WebSocket protocol, sans-IO: one frame in, one event out; requests as text.

Server frames are gzip streams (BINGX.md §1.2), pushes are routed by ``dataType`` (§2), and the
two markets differ in heartbeat dialect, ack shape, number encoding and kline layout, all of which
one codec per market handles here. Nothing in this module does I/O, so it is tested with bytes.

This is the hot path (tens of thousands of frames a second), hence: each ``dataType`` is mapped to
a ready-made route once and looked up in a dict afterwards; fields are read by direct indexing and
a shape error (``KeyError``, ``TypeError``, …) is turned into :class:`ProtocolError` in one place
instead of checking every access; symbols are never re-parsed per frame.

Every frame is decoded within :class:`~tradeloop.exchanges.limits.PeerLimits` (inflated size, JSON
depth), so no frame, however hostile, costs more than those bounds or raises anything else than
ProtocolError.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Final

import msgspec

from ...errors import InvalidValueError, preview
from ...models import Kline, Tick
from ...symbols import Market, candle_open_time
from ..base import (
    ErrorKind,
    ErrorReply,
    Event,
    Heartbeat,
    KlineBatch,
    ProtocolError,
    SubscriptionAck,
    TickUpdate,
    Topic,
    TopicKind,
)
from ..limits import DEFAULT_LIMITS, PeerLimits, check_json_depth, gunzip
from .wire import (
    EXCHANGE,
    JSON,
    bingx_id,
    lettered_kline,
    timeframe_from_ws,
    to_decimal,
    to_time,
    unified_symbol,
    ws_interval,
)

__all__ = ["BingXCodec", "data_type"]

Route = Callable[[dict[str, Any]], Event]
"""Turns one decoded push of a known dataType into its event."""

_SUFFIXES: Final[dict[TopicKind, str]] = {
    TopicKind.TICKER: "ticker",
    TopicKind.LAST_PRICE: "lastPrice",
    TopicKind.MARK_PRICE: "markPrice",
    TopicKind.BOOK_TICKER: "bookTicker",
}
_KINDS: Final[dict[str, TopicKind]] = {suffix: kind for kind, suffix in _SUFFIXES.items()}
_KLINE_PREFIX: Final = "kline_"

_MAX_ROUTES: Final = 1024
"""Routes cached per codec; a socket carries at most 200 topics, so this only bounds a rogue server."""

_REQUEST_IDS: Final = itertools.count(1)
"""Request ids unique within the process, so an ack can never be matched to another socket's request."""

_PONG: Final = Heartbeat("Pong")
_encode: Final = msgspec.json.Encoder(decimal_format="number").encode


def data_type(topic: Topic) -> str:
    """The BingX ``dataType`` of ``topic`` (on its own market's socket).

    Raises ValueError for what BingX cannot serve: coin-margined swaps, mark price on spot.
    """
    market, symbol_id = bingx_id(topic.symbol)
    if topic.kind is TopicKind.KLINE:
        assert topic.timeframe is not None  # Topic guarantees a timeframe for klines
        return f"{symbol_id}@{_KLINE_PREFIX}{ws_interval(market, topic.timeframe)}"
    if topic.kind is TopicKind.MARK_PRICE and market is Market.SPOT:
        raise InvalidValueError(f"topic {topic}: mark_price is a swap feed, BingX has no mark price for spot symbols")
    return f"{symbol_id}@{_SUFFIXES[topic.kind]}"


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class BingXCodec:
    """The protocol of one BingX socket of ``market`` (swap or spot); implements ``WsCodec``.

    ``now_ms`` stamps the one push that carries no time at all (spot ``@lastPrice``) with the
    receive time; tests pass a fixed clock. ``limits`` bounds each frame's inflated size and
    JSON depth.
    """

    __slots__ = ("_max_depth", "_max_size", "_now_ms", "_routes", "market")

    def __init__(
        self, market: Market, *, now_ms: Callable[[], int] = _wall_clock_ms, limits: PeerLimits = DEFAULT_LIMITS
    ) -> None:
        self.market = Market(market)
        self._now_ms = now_ms
        self._max_size = limits.max_frame_size
        self._max_depth = limits.max_json_depth
        self._routes: dict[str, Route] = {}

    def subscribe(self, topic: Topic) -> tuple[str, str]:
        return self._request("sub", topic)

    def unsubscribe(self, topic: Topic) -> tuple[str, str]:
        return self._request("unsub", topic)

    def _request(self, req_type: str, topic: Topic) -> tuple[str, str]:
        channel = data_type(topic)
        if topic.market is not self.market:
            raise InvalidValueError(
                f"topic {topic} is a {topic.market.value} topic, this socket is {self.market.value}"
            )
        if channel not in self._routes:
            self._routes[channel] = self._route(topic)
        request_id = str(next(_REQUEST_IDS))
        text = _encode({"id": request_id, "reqType": req_type, "dataType": channel}).decode()
        return request_id, text

    def decode(self, frame: bytes | str) -> Event:
        """Decode one server frame: bytes are a gzip stream (the server's framing), str is plain text.

        Raises only ProtocolError: also for a frame inflating beyond ``max_frame_size``
        (``TOO_LARGE``) or nesting JSON beyond ``max_json_depth`` (``TOO_DEEP``), which the JSON
        decoder would answer with RecursionError. Bytes after the first gzip member are ignored.
        """
        if isinstance(frame, str):
            if frame == "Ping":
                return _PONG
            if len(frame) > self._max_size:
                raise ProtocolError(
                    ErrorKind.TOO_LARGE, f"text frame of {len(frame)} characters, over {self._max_size}"
                )
            text: bytes | str = frame
        else:
            text = gunzip(frame, self._max_size)
            if text == b"Ping":
                return _PONG
        check_json_depth(text, self._max_depth)
        try:
            message = JSON.decode(text)
        except (msgspec.DecodeError, UnicodeError) as exc:
            raise _undecodable(text, exc) from None
        if type(message) is not dict:
            raise ProtocolError(ErrorKind.BAD_FIELD, f"expected a JSON object, got {preview(text)}")

        code = message.get("code")
        if code:
            return _error_reply(message, code)
        channel = message.get("dataType")
        if not channel:
            channel = _implied_data_type(message)
            if channel is None:
                return _control(message, code, text)
        elif type(channel) is not str:
            raise ProtocolError(ErrorKind.BAD_FIELD, f"dataType should be a string, got {channel!r}")
        route = self._routes.get(channel) or self._route_of(channel)
        try:
            return route(message)
        except KeyError as exc:
            raise ProtocolError(ErrorKind.BAD_FIELD, f"missing field {exc}", topic=channel) from None
        except (TypeError, ValueError, IndexError) as exc:
            raise ProtocolError(ErrorKind.BAD_FIELD, str(exc), topic=channel) from None

    def _route_of(self, channel: str) -> Route:
        """Route for a dataType we did not subscribe through this codec (e.g. first push after a restart)."""
        try:
            topic = self._topic_of(channel)
        except ValueError as exc:
            raise ProtocolError(ErrorKind.UNKNOWN_TOPIC, str(exc), topic=channel) from None
        route = self._route(topic)
        if len(self._routes) < _MAX_ROUTES:
            self._routes[channel] = route
        return route

    def _topic_of(self, channel: str) -> Topic:
        symbol_id, at, suffix = channel.partition("@")
        if not at:
            raise InvalidValueError(f"dataType {channel!r} has no '@'")
        symbol = unified_symbol(self.market, symbol_id)
        if suffix.startswith(_KLINE_PREFIX):
            return Topic(TopicKind.KLINE, symbol, timeframe_from_ws(self.market, suffix[len(_KLINE_PREFIX) :]))
        topic_kind = _KINDS.get(suffix)
        if topic_kind is None or (topic_kind is TopicKind.MARK_PRICE and self.market is Market.SPOT):
            raise InvalidValueError(f"dataType {channel!r} is not a {self.market.value} feed tradeloop decodes")
        return Topic(topic_kind, symbol)

    def _route(self, topic: Topic) -> Route:
        if topic.kind is TopicKind.KLINE:
            assert topic.timeframe is not None  # Topic guarantees a timeframe for klines
            parse = _swap_klines if self.market is Market.SWAP else _spot_kline
            return partial(parse, topic, topic.timeframe)
        if topic.kind is TopicKind.LAST_PRICE:
            return partial(_last_price, topic, self._now_ms)
        return partial(_TICK_PARSERS[topic.kind], topic)


def _swap_klines(topic: Topic, timeframe: str, message: dict[str, Any]) -> KlineBatch:
    """Swap kline push: ``data`` is a list of candles, ``T`` each one's open time (BINGX.md §2.3).

    The 2023 docs showed ``data`` as one object whose ``T`` looked like a close time
    (``…779999``); that form is accepted and its ``T`` aligned down to the candle's open time.
    """
    data = message["data"]
    symbol = topic.symbol
    if type(data) is not list:
        open_time = candle_open_time(timeframe, to_time(data["T"], "T"))
        return KlineBatch(topic, (_swap_candle(symbol, timeframe, data, open_time),))
    if len(data) == 1:  # the usual push: skip the batch machinery
        candle = data[0]
        return KlineBatch(topic, (_swap_candle(symbol, timeframe, candle, to_time(candle["T"], "T")),))
    if not data:
        raise InvalidValueError("kline push with an empty data list")
    klines = [_swap_candle(symbol, timeframe, candle, to_time(candle["T"], "T")) for candle in data]
    klines.sort(key=_open_time)
    return KlineBatch(topic, tuple(klines))


def _swap_candle(symbol: str, timeframe: str, candle: dict[str, Any], open_time: int) -> Kline:
    return Kline(
        EXCHANGE,
        symbol,
        timeframe,
        open_time,
        to_decimal(candle["o"], "o"),
        to_decimal(candle["h"], "h"),
        to_decimal(candle["l"], "l"),
        to_decimal(candle["c"], "c"),
        to_decimal(candle["v"], "v"),
    )


def _open_time(kline: Kline) -> int:
    return kline.open_time


def _spot_kline(topic: Topic, timeframe: str, message: dict[str, Any]) -> KlineBatch:
    """Spot kline push: one candle in ``data.K``, ``t`` its open time (BINGX.md §2.4)."""
    return KlineBatch(topic, (lettered_kline(EXCHANGE, topic.symbol, timeframe, message["data"]["K"]),))


def _ticker(topic: Topic, message: dict[str, Any]) -> TickUpdate:
    """24h ticker (swap strings, spot numbers); time is ``E``: swap ``C`` lags it (BINGX.md §6.8)."""
    data = message["data"]
    tick = Tick(
        EXCHANGE,
        topic.symbol,
        to_time(data["E"], "E"),
        to_decimal(data["c"], "c"),
        bid=to_decimal(data["B"], "B"),
        ask=to_decimal(data["A"], "A"),
        bid_size=to_decimal(data["b"], "b"),
        ask_size=to_decimal(data["a"], "a"),
        volume_24h=to_decimal(data["v"], "v"),
    )
    return TickUpdate(topic, tick)


def _last_price(topic: Topic, now_ms: Callable[[], int], message: dict[str, Any]) -> TickUpdate:
    """Last trade price. Spot's push has no ``E`` (JK capture), so fall back to the envelope's
    ``timestamp`` and then to the receive time."""
    data = message["data"]
    if "E" in data:
        event_time = to_time(data["E"], "E")
    elif "timestamp" in message:
        event_time = to_time(message["timestamp"], "timestamp")
    else:
        event_time = now_ms()
    return TickUpdate(topic, Tick(EXCHANGE, topic.symbol, event_time, to_decimal(data["c"], "c")))


def _mark_price(topic: Topic, message: dict[str, Any]) -> TickUpdate:
    """Swap mark price: ``p`` becomes the tick's ``last``."""
    data = message["data"]
    return TickUpdate(topic, Tick(EXCHANGE, topic.symbol, to_time(data["E"], "E"), to_decimal(data["p"], "p")))


def _book_ticker(topic: Topic, message: dict[str, Any]) -> TickUpdate:
    """Best bid/ask. Letter case is the ticker's inverted: ``b``/``a`` prices, ``B``/``A`` sizes."""
    data = message["data"]
    tick = Tick(
        EXCHANGE,
        topic.symbol,
        to_time(data["E"], "E"),
        None,
        bid=to_decimal(data["b"], "b"),
        ask=to_decimal(data["a"], "a"),
        bid_size=to_decimal(data["B"], "B"),
        ask_size=to_decimal(data["A"], "A"),
    )
    return TickUpdate(topic, tick)


_TICK_PARSERS: Final[dict[TopicKind, Callable[[Topic, dict[str, Any]], TickUpdate]]] = {
    TopicKind.TICKER: _ticker,
    TopicKind.MARK_PRICE: _mark_price,
    TopicKind.BOOK_TICKER: _book_ticker,
}


def _implied_data_type(message: dict[str, Any]) -> str | None:
    """The dataType of a push that lacks one: ccxt saw spot tickers so (BINGX.md §2.5)."""
    data = message.get("data")
    if type(data) is dict and data.get("e") == "24hTicker" and type(data.get("s")) is str and data["s"]:
        return f"{data['s']}@{_SUFFIXES[TopicKind.TICKER]}"
    return None


def _control(message: dict[str, Any], code: object, text: bytes | str) -> Event:
    """A message that is not a push: a spot heartbeat or a subscription ack."""
    if "ping" in message:
        reply = {"pong": message["ping"]}
        if "time" in message:
            reply["time"] = message["time"]
        return Heartbeat(_encode(reply).decode())
    request_id = message.get("id")
    if type(code) is int and message.get("data") is None and type(request_id) is str and request_id:
        return SubscriptionAck(request_id)
    raise ProtocolError(ErrorKind.BAD_FIELD, f"unrecognised message {preview(text)}")


def _error_reply(message: dict[str, Any], code: object) -> ErrorReply:
    request_id = message.get("id") or ""
    text = message.get("msg") or ""
    if type(code) is not int or type(request_id) is not str or type(text) is not str:
        raise ProtocolError(ErrorKind.BAD_FIELD, f"malformed error reply: code={code!r} id={request_id!r}")
    return ErrorReply(request_id, code, text, transient=code in _TRANSIENT_CODES)


_TRANSIENT_CODES = frozenset({80012, 100410, 100500})
"""Service unavailable, frequency limit, internal error (BINGX.md §3): worth asking again."""


def _undecodable(text: bytes | str, exc: Exception) -> ProtocolError:
    """Tell text that is not UTF-8 (or, as str, not encodable to it) from UTF-8 that is not JSON."""
    try:
        if isinstance(text, bytes):
            text.decode()
        else:
            text.encode()
    except UnicodeError:
        return ProtocolError(ErrorKind.BAD_UTF8, f"frame is not valid UTF-8: {preview(text)}")
    return ProtocolError(ErrorKind.BAD_JSON, f"frame is not JSON ({exc}): {preview(text)}")
