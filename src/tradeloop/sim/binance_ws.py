"""The simulator's WebSocket server in Binance's dialect: both markets' paths on one port.

Spot is served on ``/ws`` and ``/stream``, USDⓈ-M on ``/market/…`` and ``/public/…`` (BINANCE.md
§1.1); ``/ws/<stream>/…`` and ``/stream?streams=…`` subscribe in the URL, and a trailing segment
that names no stream (ccxt's connection index, ``/ws/0``) is accepted and ignored. Frames are JSON
text; requests are ``SUBSCRIBE``, ``UNSUBSCRIBE``, ``LIST_SUBSCRIPTIONS``, ``SET_PROPERTY`` and
``GET_PROPERTY`` with ``{"result": …, "id": …}`` replies; heartbeats are RFC 6455 pings whose
pongs must echo the payload; more than ``max_messages_per_second`` incoming messages within one
second close the socket with 1008. Everything else (queues, the publisher, faults) is the BingX
hub's, through its dialect hooks.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import deque
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import anyio

from ..symbols import Market
from .binance_protocol import (
    binance_id,
    combined_frame,
    error_reply,
    kline_data,
    malformed_frame,
    parse_stream,
    shutdown_frame,
    tick_data,
    unwrap,
)
from .config import SimClock, SimConfig, SimStats
from .market import CandleValues, MarketModel, SymbolSpec, TickerValues
from .protocol import MalformedKind, Payload, SimTopic
from .websocket import ServerWebSocket, WebSocketClosed
from .ws import GOING_AWAY, WsHub, _Connection

__all__ = ["BinanceHub"]

logger = logging.getLogger(__name__)

_PREFIXES: Final[dict[str, tuple[Market, bool | None]]] = {
    "": (Market.SPOT, None),
    "/market": (Market.SWAP, False),
    "/public": (Market.SWAP, True),
}
"""Path prefix -> (market, whether it is USDⓈ-M's ``/public`` category; None on spot)."""

_METHODS: Final = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
POLICY_VIOLATION: Final = 1008
_MAX_ID_TEXT: Final = 36


class BinanceHub(WsHub):
    """Every Binance-dialect connection and topic, fed by the shared publisher."""

    final_pushed_once = True

    def __init__(self, config: SimConfig, model: MarketModel, clock: SimClock, stats: SimStats) -> None:
        super().__init__(config, model, clock, stats)
        self.ids = {binance_id(symbol_id).lower(): symbol_id for symbol_id in config.symbols}

    def connection_for(self, ws: ServerWebSocket, target: str) -> _Connection | None:
        url = urlsplit(target)
        for prefix, (market, public) in _PREFIXES.items():
            for kind in ("/ws", "/stream"):
                base = prefix + kind
                if url.path == base or url.path.startswith(base + "/"):
                    named = [part for part in url.path[len(base) :].split("/") if part]
                    named += [name for value in parse_qs(url.query).get("streams", []) for name in value.split("/")]
                    return _BinanceConnection(self, ws, market, public, combined=kind == "/stream", named=named)
        return None

    def encode(self, topic: SimTopic, payload: Payload) -> bytes:
        return combined_frame(topic, payload)

    def malformed(self, topic: SimTopic, payload: Payload, kind: MalformedKind) -> bytes:
        return malformed_frame(topic, payload, kind)

    def kline_payload(self, topic: SimTopic, spec: SymbolSpec, candles: list[CandleValues], now_ms: int) -> Payload:
        (candle,) = candles
        assert topic.timeframe is not None
        return kline_data(topic, spec, candle, now_ms, self.model.is_complete(topic.timeframe, candle))

    def tick_payload(self, topic: SimTopic, spec: SymbolSpec, ticker: TickerValues, now_ms: int) -> Payload:
        return tick_data(topic, spec, ticker, now_ms)

    def batches_klines(self, topic: SimTopic) -> bool:
        return False

    async def server_shutdown(self, grace: float) -> None:
        """A server restart: spot sockets get ``serverShutdown`` (BINANCE.md §1.5), then after
        ``grace`` seconds every socket is closed with 1001 (going away)."""
        notice = shutdown_frame(self.clock.now_ms())
        connections = list(self._connections)
        for connection in connections:
            if connection.market is Market.SPOT:
                await connection.send(notice)
        await anyio.sleep(grace)
        for connection in connections:
            connection.close("server shutdown", code=GOING_AWAY)


class _BinanceConnection(_Connection):
    """One Binance socket: raw (``/ws``) or combined (``/stream``), with its message budget."""

    text_frames = True

    def __init__(
        self,
        hub: BinanceHub,
        ws: ServerWebSocket,
        market: Market,
        public: bool | None,
        *,
        combined: bool,
        named: list[str],
    ) -> None:
        super().__init__(hub, ws, market)
        self.binance = hub
        self.public = public
        self.combined = combined
        self.silent: dict[str, None] = {}
        """Streams acknowledged that push nothing (unknown symbol, wrong path), for LIST_SUBSCRIPTIONS."""
        self._named = named
        self._received: deque[float] = deque()
        ws.on_pong = self._on_rfc_pong

    async def run(self) -> None:
        for name in self._named:
            # ccxt's connection index (/ws/0) and other segments that name no stream are ignored
            with contextlib.suppress(ValueError):
                self._subscribe(name)
        lifetime = self.hub.config.connection_lifetime
        async with anyio.create_task_group() as nursery:
            if lifetime is not None:
                nursery.start_soon(self._expire, lifetime)
            await super().run()
            nursery.cancel_scope.cancel()

    async def _expire(self, lifetime: float) -> None:
        await anyio.sleep(lifetime)
        self.close(f"connection lifetime of {lifetime:g} s reached", code=GOING_AWAY)

    async def send(self, frame: bytes) -> None:
        await super().send(frame if self.combined else unwrap(frame))

    # -- requests ---------------------------------------------------------------------------------

    def _over_budget(self) -> bool:
        """Count one incoming message; True (and close with 1008) past the per-second budget."""
        now = anyio.current_time()
        received = self._received
        received.append(now)
        while received and received[0] <= now - 1.0:
            received.popleft()
        if len(received) > self.hub.config.max_messages_per_second:
            self.close("Too many requests", code=POLICY_VIOLATION)
            return True
        return False

    async def _on_text(self, text: str) -> None:
        if self._over_budget():
            return
        try:
            request: Any = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            await self._reply_error(None, "Invalid JSON: expected value at line 1 column 1", code=3)
            return
        if not isinstance(request, dict):
            await self._reply_error(None, "Invalid request: expected an object", code=2)
            return
        request_id = request.get("id")
        if not self._valid_id(request_id):
            await self._reply_error(None, "Invalid request: request ID must be an unsigned integer", code=2)
            return
        method = request.get("method")
        if method not in _METHODS:
            await self._reply_error(request_id, f"Invalid request: unknown variant {method!r}", code=2)
            return
        params = request.get("params", [])
        if not isinstance(params, list):
            await self._reply_error(request_id, "Invalid request: params must be an array", code=2)
            return
        try:
            result = self._apply(method, params)
        except ValueError as exc:
            await self._reply_error(request_id, str(exc), code=2)
            return
        await self.send(json.dumps({"result": result, "id": request_id}, separators=(",", ":")).encode())

    def _valid_id(self, request_id: object) -> bool:
        """USDⓈ-M takes unsigned integers only; spot also signed ones, short strings and null (§1.4)."""
        if isinstance(request_id, int) and not isinstance(request_id, bool):
            return request_id >= 0 or self.market is Market.SPOT
        if self.market is not Market.SPOT:
            return False
        return request_id is None or (
            isinstance(request_id, str) and request_id.isalnum() and len(request_id) <= _MAX_ID_TEXT
        )

    def _apply(self, method: str, params: list[Any]) -> Any:
        if method == "SUBSCRIBE":
            for name in params:
                self._subscribe(name)
            return None
        if method == "UNSUBSCRIBE":
            for name in params:
                if isinstance(name, str):
                    self.silent.pop(name, None)
                    self.hub.unsubscribe(self, name)
            return None
        if method == "LIST_SUBSCRIPTIONS":
            return [*self.topics, *self.silent]
        if params[:1] != ["combined"]:
            raise ValueError("Unknown property")
        if method == "GET_PROPERTY":
            return self.combined
        if len(params) != 2 or not isinstance(params[1], bool):
            raise ValueError("Invalid value type: expected Boolean")
        self.combined = params[1]
        return None

    def _subscribe(self, name: object) -> None:
        ref = parse_stream(self.market, self.public, name, self.binance.ids)
        limit = self.hub.config.max_topics_per_socket
        if ref.name not in self.topics and ref.name not in self.silent and len(self.topics) + len(self.silent) >= limit:
            raise ValueError(f"Invalid request: more than {limit} streams on one connection")
        if ref.topic is None:
            self.silent[ref.name] = None
        else:
            self.hub.subscribe(self, ref.topic)

    async def _reply_error(self, request_id: Any, message: str, *, code: int | None = None) -> None:
        self.hub.stats.request_errors += 1
        await self.send(error_reply(request_id, 2 if code is None else code, message))

    # -- heartbeat --------------------------------------------------------------------------------

    def _on_rfc_pong(self, payload: bytes) -> None:
        if not self._over_budget():
            self._on_pong(payload.decode(errors="replace"))

    def _on_pong(self, ping_id: Any) -> None:
        self.hub.stats.pongs_received += 1
        if self.hub.faults.ignore_pongs or ping_id not in self._ping_ids:
            return
        self._ping_since = None

    async def _ping(self) -> None:
        self._ping_counter += 1
        ping_id = f"{self.number:08x}{self._ping_counter:08x}"
        self._ping_ids.append(ping_id)
        if self._ping_since is None:
            self._ping_since = anyio.current_time()
        self.hub.stats.pings_sent += 1
        with anyio.move_on_after(self.hub.config.send_timeout):
            try:
                await self.ws.ping(ping_id.encode())
            except WebSocketClosed:
                self.close("client closed")
