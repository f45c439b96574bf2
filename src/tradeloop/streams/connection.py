"""One resilient WebSocket session to one market of an exchange, carrying up to N topics.

The connection task loops: connect (bounded) → subscribe every topic (paced) → read → on any
failure close (shielded, bounded), back off with full jitter, reconnect and resubscribe. Within a
session three tasks share one nursery, so ending the session ends them all:

- the reader decodes each batch of frames, answers heartbeats at once and hands data to topics;
  handing over never waits on a consumer (each subscriber's buffer applies its own policy), so
  one stuck consumer cannot stall the socket, its heartbeats or its other topics (on asyncio
  that work runs in the socket's own callback and the reader task only waits for the end:
  :meth:`~tradeloop.streams.transport.WebSocket.pump`);
- the writer sends sub/unsub requests, at most the exchange's (and the config's) rate per second;
- the watchdog ends the session when no frame (pings included), or no market data while topics
  are subscribed, arrived for ``stall_timeout``.

A session also ends by plan: a little before the exchange's ``connection_lifetime`` (Binance
cuts every socket after 24 h), or when the server announces it will close the socket (a
``Reconnect`` event). Then the socket is handed over without a gap (:class:`_Handover`): a second
socket opens and subscribes every topic while the first keeps delivering, and each topic switches
to the new socket at a push both sockets delivered, so its subscribers see every push once, in
order. The old socket closes once every topic has switched (or, once the new socket had time to
subscribe them all, after ``stall_timeout``: a topic that pushed nothing in that time had nothing
to lose). If the server closes the old socket first (as it announced), the new one carries on at
once and the topics that had not switched count as interrupted. If the new socket cannot open, the
old one is replaced the plain way (close, reconnect at once), and kline topics treat the switch as an
interruption, so candles that closed during it come from REST.

The exchange supplies the URL and a sans-IO codec; the :class:`~tradeloop.streams.transport.Transport`
supplies sockets and maps every library error to ``TransportError``. This module never parses a
frame itself.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from contextlib import AsyncExitStack
from functools import partial
from typing import Any, TypeVar

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
from ..models import Kline, Tick
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
_HANDOVER_QUEUE = 4096
"""Pushes of one topic the new socket may deliver before the old socket catches up with them."""

Item = TypeVar("Item", bound=Kline | Tick)


class _Socket:
    """One open WebSocket of a connection, with its own subscriptions and liveness times.

    A handover has two at once, so nothing about subscribing lives on the connection itself.
    """

    def __init__(
        self, ws: WebSocket, codec: WsCodec, closing: AsyncExitStack, topics: Sequence[Topic], now: float
    ) -> None:
        self.ws = ws
        self.codec = codec
        self._closing = closing
        # Ordered sets of requests still to send (dicts keep insertion order).
        self.to_subscribe: dict[Topic, None] = dict.fromkeys(topics)
        self.to_unsubscribe: dict[Topic, None] = {}
        self.subscribed: set[Topic] = set()
        self.pending_acks: dict[str, Topic] = {}
        self.requests_waiting = anyio.Event()
        self.last_message_time = now
        self.last_data_time = now
        """Last market-data push: a socket that only pings is stalled too."""
        self.ended_by_server = False
        """The server closed it after announcing the replacement (it is being handed over)."""

    def add(self, topic: Topic) -> None:
        self.to_unsubscribe.pop(topic, None)
        if topic not in self.subscribed:
            self.to_subscribe[topic] = None
        self.requests_waiting.set()

    def remove(self, topic: Topic) -> None:
        self.to_subscribe.pop(topic, None)
        if topic in self.subscribed:
            self.to_unsubscribe[topic] = None
            self.requests_waiting.set()

    async def aclose(self) -> None:
        """Close the socket (the transport shields and bounds the closing handshake)."""
        await self._closing.aclose()


class _Handover:
    """Which socket feeds each topic while an old socket hands its topics to a new one.

    Both sockets deliver the same pushes for a while. A topic keeps taking the old socket's pushes
    until the two streams are seen to overlap, then takes only the new socket's. They overlap when
    the old socket delivers a push the new socket has already delivered (the topic continues with
    what the new one delivered after it), or when the new socket delivers a push the old one has
    delivered (the new one is level or behind: the topic continues with the new one's pushes the
    old one has not delivered). The server may write each push to the old socket first, and a loop
    callback may then always read the old copy first, so waiting for the new copy to lead would
    never switch; a new socket that subscribed late may stay pushes behind. Nothing is lost or repeated, and
    no sequence number is needed: pushes are compared whole, event time included, except a tick
    that carries the exchange's update id (Binance's book ticker, whose spot time is only the
    receive time), which is compared by that id.
    """

    def __init__(self, old: _Socket, new: _Socket) -> None:
        self.old = old
        self.new = new
        self.switched: set[Topic] = set()
        self._queued: dict[Topic, deque[Any]] = {}  # a topic queues one kind: Kline or Tick
        self._old_recent: dict[Topic, dict[object, None]] = {}
        """What identifies the pushes each topic took from the old socket (the newest
        :data:`_HANDOVER_QUEUE`)."""
        self._catching_up: dict[Topic, dict[object, None]] = {}
        """Switched topics whose new socket is still delivering pushes the old one delivered."""
        self.complete = anyio.Event()
        self.old_gone = False
        """The old socket ended first (its server closed it as announced): every topic takes the
        new one's pushes at once, and those that had not switched count as interrupted."""

    def admit(
        self, socket: _Socket, topic: Topic, items: Sequence[Item], topics: Mapping[Topic, object]
    ) -> Sequence[Item]:
        """What of ``items``, pushed on ``topic`` through ``socket``, the topic publishes."""
        if topic in self.switched or self.old_gone:
            if socket is not self.new:
                return ()
            return self._past_the_old(topic, items) if topic in self._catching_up else items
        queued: deque[Item] = self._queued.setdefault(topic, deque(maxlen=_HANDOVER_QUEUE))
        if socket is self.new:
            delivered = self._old_recent.get(topic)
            if delivered and any(_same_push(item) in delivered for item in items):
                self._switch(topic, topics)  # level with the old stream, or behind it
                self._catching_up[topic] = delivered
                return self._past_the_old(topic, items)
            queued.extend(items)
            return ()
        for index, item in enumerate(items):
            key = _same_push(item)
            if any(_same_push(pending) == key for pending in queued):
                while _same_push(queued.popleft()) != key:
                    pass
                self._switch(topic, topics)
                return [*items[: index + 1], *queued]
        delivered = self._old_recent.setdefault(topic, {})
        for item in items:
            delivered[_same_push(item)] = None
        while len(delivered) > _HANDOVER_QUEUE:
            del delivered[next(iter(delivered))]
        return items

    def _past_the_old(self, topic: Topic, items: Sequence[Item]) -> Sequence[Item]:
        """The new socket's ``items`` from the first the old socket did not deliver on."""
        delivered = self._catching_up[topic]
        for index, item in enumerate(items):
            if _same_push(item) not in delivered:
                del self._catching_up[topic]
                return items[index:]
        return ()

    def _switch(self, topic: Topic, topics: Mapping[Topic, object]) -> None:
        self.switched.add(topic)
        self._queued.pop(topic, None)
        self._old_recent.pop(topic, None)
        if all(t in self.switched for t in topics):
            self.complete.set()

    def old_ended(self) -> None:
        self.old_gone = True
        self._queued.clear()
        self._old_recent.clear()
        self.complete.set()

    def unswitched(self, topics: Mapping[Topic, object]) -> list[Topic]:
        return [t for t in topics if t not in self.switched]


def _same_push(item: Kline | Tick) -> object:
    """What two sockets' copies of one push have in common: all of it, or a tick's update id."""
    if type(item) is Tick and item.update_id is not None:
        return item.update_id
    return item


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
        self._sockets: list[_Socket] = []
        """The open sockets: one, or two during a handover."""
        self._handover: _Handover | None = None
        self._cancel_scope = anyio.CancelScope()
        self._now = HotPath().current_time  # called for every batch of frames

    # -- topics -----------------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self.config.max_topics_per_socket or self.exchange.max_topics_per_socket

    def add_topic(self, stream: KlineTopic | TickTopic) -> None:
        self.topics[stream.topic] = stream
        for socket in self._sockets:
            socket.add(stream.topic)

    def remove_topic(self, topic: Topic) -> None:
        self.topics.pop(topic, None)
        for socket in self._sockets:
            socket.remove(topic)

    def close(self) -> None:
        """End the connection task (the socket is closed on the way out)."""
        self._cancel_scope.cancel()

    # -- the task ---------------------------------------------------------------------------------

    async def run(self) -> None:
        backoff = Backoff(self.config.reconnect_delay, self.config.reconnect_delay_max)
        successor: _Socket | None = None
        with self._cancel_scope:
            while True:
                started = anyio.current_time()
                # Taken, not kept: a session that fails has closed the socket it was handed, so
                # the next one must open a new socket, not serve the closed one again.
                handed_over, successor = successor, None
                try:
                    successor = await self._session(handed_over)
                    # A session that returns ended by plan: carry on at once with the socket it
                    # handed its topics to, or (if none could open) a new one.
                    self.rotations += 1
                    if successor is None:
                        self._interrupt_topics()
                    continue
                except* _SESSION_ERRORS as group:
                    for exc in leaves(group):
                        self.error_history.record(type(exc).__name__, exc)
                        covered = self._log_throttle.admit(f"session:{type(exc).__name__}")
                        if covered is not None:
                            log.warning(
                                "%s %s socket #%d failed (%d time(s) since the last report): %s",
                                self.exchange_name,
                                self.market,
                                self.connection_id,
                                covered,
                                exc,
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

    async def _open(self) -> _Socket:
        """Connect a socket that will subscribe every topic; TransportError if it cannot open."""
        closing = AsyncExitStack()
        async with AsyncExitStack() as on_failure:
            on_failure.push_async_callback(closing.aclose)
            ws = await closing.enter_async_context(self._transport.connect(self.url))
            socket = _Socket(ws, self.exchange.new_codec(self.socket_key), closing, tuple(self.topics), self._now())
            on_failure.pop_all()
        self.last_message_time = socket.last_message_time
        return socket

    async def _session(self, socket: _Socket | None) -> _Socket | None:
        """Serve one socket (``socket``, handed over by the previous session, or a new one) until it
        fails (raises) or is replaced by plan: then return the socket it handed over to, if any."""
        if socket is None:
            self.state = "connecting"
            socket = await self._open()
        self._sockets.append(socket)
        successor: _Socket | None = None
        try:
            self.state = "open"
            replace = anyio.Event()
            async with anyio.create_task_group() as nursery:
                nursery.start_soon(self._write_requests, socket)
                nursery.start_soon(self._watchdog, socket)
                nursery.start_soon(self._read_until_handed_over, socket, replace)
                lifetime = self.exchange.connection_lifetime
                with anyio.move_on_after(lifetime * _ROTATE_AT if lifetime else math.inf):
                    await replace.wait()
                replace.set()  # by the clock too: from here on the old socket may end without failing the session
                successor = await self._hand_over(socket)
                nursery.cancel_scope.cancel()
            return successor
        except BaseException:
            if successor is not None:
                with anyio.CancelScope(shield=True):
                    await successor.aclose()
            raise
        finally:
            self.state = "closing"
            self._sockets.remove(socket)
            await socket.aclose()

    async def _hand_over(self, old: _Socket) -> _Socket | None:
        """Open the next socket and move every topic to it while ``old`` still delivers (see
        :class:`_Handover`); None if it could not open (the caller replaces ``old`` plainly)."""
        if self._transport.kind != "wsproto":
            return None  # trio-websocket's socket lives in a nursery of its own session
        try:
            new = await self._open()
        except TransportError as exc:
            self.error_history.record(type(exc).__name__, exc)
            log.warning("%s: could not open the socket to hand over to (%s): replacing it plainly", self.url, exc)
            return None
        self._sockets.append(new)
        handover = self._handover = _Handover(old, new)
        if old.ended_by_server:
            handover.old_ended()
        try:
            async with anyio.create_task_group() as nursery:
                nursery.start_soon(self._write_requests, new)
                nursery.start_soon(self._read, new, anyio.Event())
                # Subscribing takes its paced time; then every topic pushing at all shows an overlap
                # within a stall timeout.
                with anyio.move_on_after(len(self.topics) * self._subscribe_interval + self.config.stall_timeout):
                    await handover.complete.wait()
                nursery.cancel_scope.cancel()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await new.aclose()
            raise
        finally:
            self._handover = None
            self._sockets.remove(new)
        for topic in handover.unswitched(self.topics):
            self.topics[topic].interrupted()  # pushed nothing both sockets saw: nothing to lose but klines
        return new

    async def _read_until_handed_over(self, socket: _Socket, replace: anyio.Event) -> None:
        """:meth:`_read` for a session's own socket. Once its replacement is under way, the server
        closing it (as it announced) ends only this reader: the handover carries on with the new
        socket instead of failing the session into a reconnect with backoff."""
        try:
            await self._read(socket, replace)
        except TransportError as exc:
            if not replace.is_set():
                raise
            log.info("%s closed while being replaced (%s): the new socket carries on", self.url, exc)
            socket.ended_by_server = True
            handover = self._handover
            if handover is not None and handover.old is socket:
                handover.old_ended()

    async def _read(self, socket: _Socket, replace: anyio.Event) -> None:
        """Hand every push to its topic (:meth:`_on_batch`) until the socket fails.

        A batch is handed over whole before anything is awaited, so cancelling the reader (at
        the end of a handover) loses nothing: the socket keeps what it has not handed over yet.
        """
        await socket.ws.pump(partial(self._on_batch, socket, replace))

    def _on_batch(self, socket: _Socket, replace: anyio.Event, batch: list[bytes | str]) -> list[str]:
        """Decode a batch of frames and hand each push to its topic; set ``replace`` when the server
        announces its close; return the heartbeat replies. Never waits: on asyncio it runs in the
        socket's own callback (see :meth:`~tradeloop.streams.transport.WebSocket.pump`)."""
        topics = self.topics
        codec = socket.codec
        self.messages_received += len(batch)
        self.last_message_time = socket.last_message_time = now = self._now()
        replies: list[str] = []
        for frame in batch:
            try:
                event = codec.decode(frame)
            except ProtocolError as exc:
                self._on_parse_error(exc)
                continue
            if isinstance(event, KlineBatch):
                stream = topics.get(event.topic)
                if isinstance(stream, KlineTopic):
                    self._on_good_data(socket, now)
                    handover = self._handover
                    klines = (
                        event.klines if handover is None else handover.admit(socket, stream.topic, event.klines, topics)
                    )
                    if klines:
                        stream.offer(klines)
            elif isinstance(event, TickUpdate):
                stream = topics.get(event.topic)
                if isinstance(stream, TickTopic):
                    self._on_good_data(socket, now)
                    handover = self._handover
                    if handover is None:
                        stream.publish(event.tick)
                    else:
                        for tick in handover.admit(socket, stream.topic, (event.tick,), topics):
                            stream.publish(tick)
            elif isinstance(event, Heartbeat):
                replies.append(event.reply)
            elif isinstance(event, SubscriptionAck):
                socket.pending_acks.pop(event.request_id, None)
            elif isinstance(event, ErrorReply):
                self._on_error_reply(socket, event)
            elif isinstance(event, Reconnect):
                log.info("%s announced its close (%s): replacing the socket", self.url, event.reason)
                replace.set()
        return replies

    async def _write_requests(self, socket: _Socket) -> None:
        while True:
            if not (socket.to_subscribe or socket.to_unsubscribe):
                socket.requests_waiting = anyio.Event()
                await socket.requests_waiting.wait()
                continue
            if socket.to_unsubscribe:
                topic = next(iter(socket.to_unsubscribe))
                del socket.to_unsubscribe[topic]
                socket.subscribed.discard(topic)
                request_id, text = socket.codec.unsubscribe(topic)
                await socket.ws.send_text(text)
            else:
                topic = next(iter(socket.to_subscribe))
                del socket.to_subscribe[topic]
                if not socket.subscribed:
                    socket.last_data_time = anyio.current_time()  # data is due from now on
                socket.subscribed.add(topic)
                request_id, text = socket.codec.subscribe(topic)
                socket.pending_acks[request_id] = topic
                try:
                    await socket.ws.send_text(text)
                except BaseException:
                    # Not (wholly) sent: a handover's writer cancelled mid-send, or the socket
                    # failed. The topic is to subscribe again, not counted as subscribed: the next
                    # writer on this socket asks for it (or the socket's failure replaces it).
                    socket.pending_acks.pop(request_id, None)
                    socket.subscribed.discard(topic)
                    socket.to_subscribe[topic] = None
                    raise
            await anyio.sleep(self._subscribe_interval)

    async def _watchdog(self, socket: _Socket) -> None:
        """End the session when no frame arrived for ``stall_timeout``, or no market data did
        while topics are subscribed (BingX keeps pinging a socket whose pushes have stopped)."""
        timeout = self.config.stall_timeout
        while True:
            now = anyio.current_time()
            if now >= socket.last_message_time + timeout:
                raise StallError(f"no frame for {timeout:g} s on {self.url}")
            deadline = socket.last_message_time + timeout
            if socket.subscribed:
                if now >= socket.last_data_time + timeout:
                    raise StallError(f"no market data for {timeout:g} s on {self.url} (pings only)")
                deadline = min(deadline, socket.last_data_time + timeout)
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
            log.warning(
                "%s: skipped %d malformed frame(s) (%s) since the last report: %s", self.url, covered, kind, exc
            )
        if self._consecutive_parse_errors > self.config.max_parse_frame_retries and not self._parse_fallback:
            self._parse_fallback = True
            self._fallback_changed()

    def _interrupt_topics(self) -> None:
        for stream in self.topics.values():
            stream.interrupted()

    def _on_good_data(self, socket: _Socket, now: float) -> None:
        socket.last_data_time = now
        self._consecutive_parse_errors = 0
        if self._consecutive_failures:
            self._consecutive_failures = 0
            self._set_connect_fallback(False)
        if self._parse_fallback:
            self._good_frames_since_fallback += 1
            if self._good_frames_since_fallback >= self.config.fallback_recovery_frames:
                self._parse_fallback = False
                self._fallback_changed()

    def _on_error_reply(self, socket: _Socket, reply: ErrorReply) -> None:
        self.error_replies += 1
        topic = socket.pending_acks.pop(reply.request_id, None)
        where = f" for {topic}" if topic else ""
        self.error_history.record(f"error_reply:{reply.code}", f"{reply.message}{where}")
        if topic is None or topic not in self.topics:
            log.error("%s rejected a request%s: code %d %s", self.url, where, reply.code, reply.message)
            return
        socket.subscribed.discard(topic)
        if reply.transient:
            log.warning(
                "%s: subscription to %s refused for now (code %d %s); asking again",
                self.url,
                topic,
                reply.code,
                reply.message,
            )
            socket.to_subscribe[topic] = None
            socket.requests_waiting.set()
            return
        self.remove_topic(topic)
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
