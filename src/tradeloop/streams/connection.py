"""One resilient WebSocket session to one market of an exchange, carrying up to N topics.

The connection task loops: connect (bounded) → subscribe every topic (paced) → read → on any
failure close (shielded, bounded), back off with full jitter, reconnect and resubscribe. Within a
session three tasks share one nursery, so ending the session ends them all:

- the reader decodes each batch of frames, answers heartbeats at once and hands data to topics;
  handing over never waits on a consumer (each subscriber's buffer applies its own policy), so
  one stuck consumer cannot stall the socket, its heartbeats or its other topics;
- the writer sends sub/unsub requests, at most the exchange's (and the config's) rate per second;
- the watchdog ends the session when no frame (pings included), or no market data while topics
  are subscribed, arrived for ``stall_timeout``.

A session also ends by plan, and is replaced at once with no backoff: a little before the
exchange's ``connection_lifetime`` (Binance cuts every socket after 24 h), or when the server
announces it will close the socket (a ``Reconnect`` event). Kline topics treat the switch as an
interruption, so candles that closed during it come from REST; ticks pushed in the moment
between the two sockets are not seen.

The exchange supplies the URL and a sans-IO codec; the :class:`~tradeloop.streams.transport.Transport`
supplies sockets and maps every library error to ``TransportError``. This module never parses a
frame itself.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Hashable

import anyio

from .._backend import HotPath
from .._groups import leaves
from ..errors import TradeloopError
from ..exchanges.base import (
    ErrorReply,
    Exchange,
    Heartbeat,
    KlineBatch,
    ProtocolError,
    Reconnect,
    SubscriptionAck,
    TickUpdate,
    Topic,
    WsCodec,
)
from ..symbols import Market
from .backoff import Backoff
from .config import StreamConfig
from .errors import ErrorHistory, LogThrottle
from .topic import KlineTopic, TickTopic
from .transport import Transport, TransportError, WebSocket

__all__ = ["Connection", "StallError"]

log = logging.getLogger(__name__)


class StallError(TradeloopError):
    """No frame (or no market data) arrived for ``stall_timeout`` seconds: the socket is treated as dead."""


# What ends a session and is answered with a reconnect; anything else is a bug and propagates.
_SESSION_ERRORS = (TransportError, StallError)
_ROTATE_AT = 0.98
"""Fraction of the exchange's connection lifetime after which the socket is replaced (24 h → 23.5 h)."""


class Connection:
    """A socket's topics and diagnostics; :meth:`run` is its task."""

    def __init__(
        self,
        exchange_name: str,
        exchange: Exchange,
        socket_key: Hashable,
        market: Market,
        config: StreamConfig,
        transport: Transport,
        on_fallback_change: Callable[[Connection], None],
        on_rejected: Callable[[Connection, Topic, ErrorReply], None],
        connection_id: int = 0,
    ) -> None:
        self.exchange_name = exchange_name
        self.exchange = exchange
        self.socket_key = socket_key
        """Which socket of the exchange this is (:meth:`Exchange.socket_key` of its topics)."""
        self.market = market
        self.config = config
        self.url = exchange.ws_url(socket_key)
        self.connection_id = connection_id
        self.topics: dict[Topic, KlineTopic | TickTopic] = {}
        self.state = "idle"
        # Diagnostics: all initialised here, never lazily.
        self.error_history = ErrorHistory(100)
        self.parse_frame_errors: Counter[str] = Counter()
        self.reconnect_count = 0
        self.rotations = 0
        """Planned replacements: the socket's lifetime ran out, or the server announced its close."""
        self.last_reconnect: float | None = None
        """anyio.current_time() of the last reconnect attempt."""
        self.use_rest_fallback = False
        self.messages_received = 0
        self.last_message_time: float | None = None
        self.last_data_time: float | None = None
        """Last market-data push: a socket that only pings is stalled too."""
        self.error_replies = 0
        self._transport = transport
        self._subscribe_interval = 1.0 / min(config.subscribe_rate, exchange.max_subscriptions_per_second)
        self._log_throttle = LogThrottle()
        self._consecutive_parse_errors = 0
        self._good_frames_since_fallback = 0
        self._parse_fallback = False
        self._connect_fallback = False
        self._consecutive_failures = 0
        self._on_fallback_change = on_fallback_change
        self._on_rejected = on_rejected
        # Ordered sets of requests still to send in this session (dicts keep insertion order).
        self._to_subscribe: dict[Topic, None] = {}
        self._to_unsubscribe: dict[Topic, None] = {}
        self._subscribed: set[Topic] = set()
        self._pending_acks: dict[str, Topic] = {}
        self._requests_waiting = anyio.Event()
        self._cancel_scope = anyio.CancelScope()
        self._now = HotPath().current_time  # called for every batch of frames

    # -- topics -----------------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self.config.max_topics_per_socket or self.exchange.max_topics_per_socket

    def add_topic(self, stream: KlineTopic | TickTopic) -> None:
        self.topics[stream.topic] = stream
        self._to_unsubscribe.pop(stream.topic, None)
        if stream.topic not in self._subscribed:
            self._to_subscribe[stream.topic] = None
        self._requests_waiting.set()

    def remove_topic(self, topic: Topic) -> None:
        self.topics.pop(topic, None)
        self._to_subscribe.pop(topic, None)
        if topic in self._subscribed:
            self._to_unsubscribe[topic] = None
            self._requests_waiting.set()

    def close(self) -> None:
        """End the connection task (the socket is closed on the way out)."""
        self._cancel_scope.cancel()

    # -- the task ---------------------------------------------------------------------------------

    async def run(self) -> None:
        backoff = Backoff(self.config.reconnect_delay, self.config.reconnect_delay_max)
        with self._cancel_scope:
            while True:
                started = anyio.current_time()
                try:
                    await self._session()
                    self.rotations += 1  # a session that returns ended by plan: replace it at once
                    self._interrupt_topics()
                    continue
                except* _SESSION_ERRORS as group:
                    for exc in leaves(group):
                        self.error_history.record(type(exc).__name__, exc)
                        covered = self._log_throttle.admit(f"session:{type(exc).__name__}")
                        if covered is not None:
                            log.warning(
                                "%s %s socket #%d failed (%d time(s) since the last report): %s",
                                self.exchange_name, self.market, self.connection_id, covered, exc,
                            )
                self._interrupt_topics()
                if anyio.current_time() - started >= self.config.healthy_after:
                    backoff.reset()
                self._consecutive_failures += 1
                if self._consecutive_failures > self.config.fallback_after_failures:
                    self._set_connect_fallback(True)
                self.state = "backoff"
                await backoff.sleep_after_failure()
                self.reconnect_count += 1
                self.last_reconnect = anyio.current_time()

    async def _session(self) -> None:
        self.state = "connecting"
        async with self._transport.connect(self.url) as ws, anyio.create_task_group() as nursery:
            try:
                self.state = "open"
                self.last_message_time = self.last_data_time = anyio.current_time()
                self._subscribed.clear()
                self._pending_acks.clear()
                self._to_unsubscribe.clear()
                self._to_subscribe = dict.fromkeys(self.topics)
                codec = self.exchange.new_codec(self.socket_key)
                nursery.start_soon(self._write_requests, ws, codec)
                nursery.start_soon(self._watchdog)
                lifetime = self.exchange.connection_lifetime
                with anyio.move_on_after(lifetime * _ROTATE_AT if lifetime else math.inf):
                    await self._read(ws, codec)
            finally:
                self.state = "closing"
                nursery.cancel_scope.cancel()

    async def _read(self, ws: WebSocket, codec: WsCodec) -> None:
        topics = self.topics
        while True:
            batch = await ws.receive_batch()
            self.messages_received += len(batch)
            self.last_message_time = self._now()
            for frame in batch:
                try:
                    event = codec.decode(frame)
                except ProtocolError as exc:
                    self._on_parse_error(exc)
                    continue
                if isinstance(event, KlineBatch):
                    stream = topics.get(event.topic)
                    if isinstance(stream, KlineTopic):
                        self._on_good_data()
                        stream.offer(event.klines)
                elif isinstance(event, TickUpdate):
                    stream = topics.get(event.topic)
                    if isinstance(stream, TickTopic):
                        self._on_good_data()
                        stream.publish(event.tick)
                elif isinstance(event, Heartbeat):
                    await ws.send_text(event.reply)
                elif isinstance(event, SubscriptionAck):
                    self._pending_acks.pop(event.request_id, None)
                elif isinstance(event, ErrorReply):
                    self._on_error_reply(event)
                elif isinstance(event, Reconnect):
                    log.info("%s announced its close (%s): replacing the socket", self.url, event.reason)
                    return

    async def _write_requests(self, ws: WebSocket, codec: WsCodec) -> None:
        while True:
            if not (self._to_subscribe or self._to_unsubscribe):
                self._requests_waiting = anyio.Event()
                await self._requests_waiting.wait()
                continue
            if self._to_unsubscribe:
                topic = next(iter(self._to_unsubscribe))
                del self._to_unsubscribe[topic]
                self._subscribed.discard(topic)
                request_id, text = codec.unsubscribe(topic)
            else:
                topic = next(iter(self._to_subscribe))
                del self._to_subscribe[topic]
                if not self._subscribed:
                    self.last_data_time = anyio.current_time()  # data is due from now on
                self._subscribed.add(topic)
                request_id, text = codec.subscribe(topic)
                self._pending_acks[request_id] = topic
            await ws.send_text(text)
            await anyio.sleep(self._subscribe_interval)

    async def _watchdog(self) -> None:
        """End the session when no frame arrived for ``stall_timeout``, or no market data did
        while topics are subscribed (BingX keeps pinging a socket whose pushes have stopped)."""
        timeout = self.config.stall_timeout
        while True:
            assert self.last_message_time is not None and self.last_data_time is not None
            now = anyio.current_time()
            if now >= self.last_message_time + timeout:
                raise StallError(f"no frame for {timeout:g} s on {self.url}")
            deadline = self.last_message_time + timeout
            if self._subscribed:
                if now >= self.last_data_time + timeout:
                    raise StallError(f"no market data for {timeout:g} s on {self.url} (pings only)")
                deadline = min(deadline, self.last_data_time + timeout)
            await anyio.sleep_until(deadline)

    # -- diagnostics and fallback -----------------------------------------------------------------

    def _on_parse_error(self, exc: ProtocolError) -> None:
        kind = exc.kind.value
        self.parse_frame_errors[kind] += 1
        self.error_history.record(f"parse:{kind}", exc)
        self._consecutive_parse_errors += 1
        self._interrupt_topics()  # the lost frame names no reliable topic
        self._good_frames_since_fallback = 0
        covered = self._log_throttle.admit(f"parse:{kind}")
        if covered is not None:
            log.warning("%s: skipped %d malformed frame(s) (%s) since the last report: %s", self.url, covered, kind,
                        exc)
        if self._consecutive_parse_errors > self.config.max_parse_frame_retries and not self._parse_fallback:
            self._parse_fallback = True
            self._fallback_changed()

    def _interrupt_topics(self) -> None:
        for stream in self.topics.values():
            stream.interrupted()

    def _on_good_data(self) -> None:
        self.last_data_time = self.last_message_time
        self._consecutive_parse_errors = 0
        if self._consecutive_failures:
            self._consecutive_failures = 0
            self._set_connect_fallback(False)
        if self._parse_fallback:
            self._good_frames_since_fallback += 1
            if self._good_frames_since_fallback >= self.config.fallback_recovery_frames:
                self._parse_fallback = False
                self._fallback_changed()

    def _on_error_reply(self, reply: ErrorReply) -> None:
        self.error_replies += 1
        topic = self._pending_acks.pop(reply.request_id, None)
        where = f" for {topic}" if topic else ""
        self.error_history.record(f"error_reply:{reply.code}", f"{reply.message}{where}")
        if topic is None or topic not in self.topics:
            log.error("%s rejected a request%s: code %d %s", self.url, where, reply.code, reply.message)
            return
        self._subscribed.discard(topic)
        if reply.transient:
            log.warning("%s: subscription to %s refused for now (code %d %s); asking again", self.url, topic,
                        reply.code, reply.message)
            self._to_subscribe[topic] = None
            self._requests_waiting.set()
            return
        self.topics.pop(topic)
        self._on_rejected(self, topic, reply)

    def _set_connect_fallback(self, enabled: bool) -> None:
        if self._connect_fallback != enabled:
            self._connect_fallback = enabled
            self._fallback_changed()

    def _fallback_changed(self) -> None:
        enabled = self._parse_fallback or self._connect_fallback
        if enabled != self.use_rest_fallback:
            self.use_rest_fallback = enabled
            log.warning(
                "%s %s socket #%d: REST fallback %s",
                self.exchange_name,
                self.market,
                self.connection_id,
                "on" if enabled else "off",
            )
            self._on_fallback_change(self)
