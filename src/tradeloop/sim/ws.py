"""The simulator's WebSocket server: ``/swap-market`` and ``/market`` on one port.

Per connection, one task reads requests and pongs, one is the only writer (it drains a bounded
queue of ready-made frames, a batch per write) and one sends heartbeats. A single publisher task
wakes every ``push_interval`` and builds each subscribed topic's frame once (N subscribers share
one gzip stream). A full queue means either that the server is busy (the publisher waits for the
writer, so pushes slow down and ticks are skipped, nobody is cut off) or that the client stopped
reading: a connection whose socket takes nothing for ``slow_client_timeout`` with a full queue, or
for ``send_timeout`` at all, is closed and counted, so a slow client delays the others once, briefly.
Like every duration of the simulator, these are in the event loop's (maybe virtual) seconds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import anyio.abc

from ..errors import InvalidValueError
from ..exchanges.base import ProtocolError
from ..exchanges.limits import DEFAULT_LIMITS, check_json_depth
from ..symbols import Market, candle_open_time, validate_timeframe
from .config import SimClock, SimConfig, SimStats
from .faults import Faults, hostile_frame
from .listening import Listener, serve
from .market import CandleValues, MarketModel, SymbolSpec, TickerValues
from .protocol import (
    SWAP_PING,
    TOO_MANY_TOPICS,
    MalformedKind,
    Payload,
    PushKind,
    SimTopic,
    ack,
    error,
    gzip_frame,
    kline_payload,
    malformed_frame,
    parse_data_type,
    spot_ping,
    tick_payload,
)
from .websocket import ServerWebSocket, WebSocketClosed

__all__ = ["WsHub"]

logger = logging.getLogger(__name__)

PATHS = {"/swap-market": Market.SWAP, "/market": Market.SPOT}
HANDSHAKE_TIMEOUT = 60.0
WRITE_BATCH = 256
"""Frames a writer takes from its queue per wake-up (and sends in one write)."""
CLOSE_TIMEOUT = 1.0
"""How long a graceful close waits for the client's close frame before dropping TCP."""
GOING_AWAY = 1001


@dataclass(eq=False)
class _TopicState:
    """One topic with subscribers and what it last pushed (shared by all its subscribers)."""

    topic: SimTopic
    subscribers: dict[_Connection, None] = field(default_factory=dict)
    last_open: int | None = None
    """Open time of the newest candle pushed (kline topics)."""
    final_sent: bool = False
    """Whether that candle's final value has been pushed."""
    previous: bytes | None = None
    """The last clean frame pushed: what a reordering fault resends stale."""
    bursting: bool = False


class WsHub:
    """Every WebSocket connection and topic of one simulator, and the publisher feeding them."""

    final_pushed_once = False
    """Whether a candle's final value is pushed once and never again (Binance: the ``"x": true``
    push is the last of its candle); BingX repeats it until the next candle opens."""

    def __init__(self, config: SimConfig, model: MarketModel, clock: SimClock, stats: SimStats) -> None:
        self.config = config
        self.model = model
        self.clock = clock
        self.stats = stats
        self.faults = Faults(config.seed, self.drop_all)
        self.symbols = frozenset(config.symbols)
        self._topics: dict[tuple[Market, str], _TopicState] = {}
        self._connections: set[_Connection] = set()
        self._all_closed = anyio.Event()
        self._all_closed.set()
        self._stop_accepting: Callable[[], None] | None = None

    # -- serving --------------------------------------------------------------------------------

    async def serve(
        self, listener: Listener, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Accept connections until cancelled; :meth:`close_all` stops accepting first."""
        async with anyio.create_task_group() as connections, anyio.create_task_group() as accepting:
            self._stop_accepting = accepting.cancel_scope.cancel
            accepting.start_soon(serve, listener, self.handle, connections)
            task_status.started()

    async def handle(self, stream: anyio.abc.ByteStream) -> None:
        """Serve one client: handshake, then the session, until it or the simulator ends."""
        ws = ServerWebSocket(stream)
        connection: _Connection | None = None
        try:
            try:
                with anyio.fail_after(HANDSHAKE_TIMEOUT):
                    connection = self.connection_for(ws, await ws.receive_request())
                    if connection is None:
                        await ws.reject(404, b"404 page not found")
                        return
                    await ws.accept()
            except (TimeoutError, WebSocketClosed) as exc:
                logger.debug("websocket handshake failed: %r", exc)
                return
            self._opened(connection)
            try:
                await connection.run()
            finally:
                self._closed(connection)
                with anyio.CancelScope(shield=True):
                    await connection.close_transport()
        finally:
            if connection is not None:  # also when the handshake failed after the connection was made
                connection.stop_queue()
            await anyio.aclose_forcefully(stream)

    # -- the dialect: BingX's here; the Binance hub overrides these -----------------------------

    def connection_for(self, ws: ServerWebSocket, target: str) -> _Connection | None:
        """The connection a handshake to ``target`` (path and query) opens; None: answer 404."""
        market = PATHS.get(target.partition("?")[0])
        return None if market is None else _Connection(self, ws, market)

    def encode(self, topic: SimTopic, payload: Payload) -> bytes:
        """The frame carrying ``payload`` (BingX: a gzip stream in a binary frame)."""
        return gzip_frame(payload)

    def malformed(self, topic: SimTopic, payload: Payload, kind: MalformedKind) -> bytes:
        return malformed_frame(topic, payload, kind)

    def kline_payload(self, topic: SimTopic, spec: SymbolSpec, candles: list[CandleValues], now_ms: int) -> Payload:
        return kline_payload(topic, spec, candles, now_ms)

    def tick_payload(self, topic: SimTopic, spec: SymbolSpec, ticker: TickerValues, now_ms: int) -> Payload:
        return tick_payload(topic, spec, ticker, now_ms)

    def batches_klines(self, topic: SimTopic) -> bool:
        """Whether a kline push of ``topic`` may carry several candles (BingX swap: a list)."""
        return topic.market is Market.SWAP

    def _opened(self, connection: _Connection) -> None:
        self._connections.add(connection)
        self._all_closed = anyio.Event()
        self.stats.connections_open += 1
        self.stats.connections_total += 1

    def _closed(self, connection: _Connection) -> None:
        for data_type in list(connection.topics):
            self.unsubscribe(connection, data_type)
        connection.stop_queue()
        self._connections.discard(connection)
        self.stats.connections_open -= 1
        if not self._connections:
            self._all_closed.set()
        logger.debug("connection %s closed: %s", connection.name, connection.close_reason)

    def drop_all(self) -> int:
        """Abort every connection (the ``drop_all`` fault); returns how many."""
        connections = list(self._connections)
        for connection in connections:
            connection.close("dropped by fault injection", abort=True)
        self.stats.dropped += len(connections)
        return len(connections)

    async def close_all(self) -> None:
        """Stop accepting and close every connection with 1001 (going away), bounded."""
        if self._stop_accepting is not None:
            self._stop_accepting()
        for connection in list(self._connections):
            connection.close("simulator shutting down", code=GOING_AWAY)
        with anyio.move_on_after(CLOSE_TIMEOUT):
            await self._all_closed.wait()
        for connection in list(self._connections):
            connection.close("simulator shutting down", abort=True)
        with anyio.move_on_after(2 * CLOSE_TIMEOUT):
            await self._all_closed.wait()

    # -- subscriptions --------------------------------------------------------------------------

    def subscribe(self, connection: _Connection, topic: SimTopic) -> None:
        key = (topic.market, topic.data_type)
        state = self._topics.get(key)
        if state is None:
            state = self._topics[key] = _TopicState(topic)
        if connection not in state.subscribers:
            state.subscribers[connection] = None
            connection.topics[topic.data_type] = topic
            self.stats.subscriptions += 1

    def unsubscribe(self, connection: _Connection, data_type: str) -> None:
        if connection.topics.pop(data_type, None) is None:
            return
        key = (connection.market, data_type)
        state = self._topics[key]
        del state.subscribers[connection]
        self.stats.subscriptions -= 1
        if not state.subscribers:
            del self._topics[key]

    # -- publishing -----------------------------------------------------------------------------

    async def publish_forever(self) -> None:
        """Push every subscribed topic on the ``push_interval`` grid (missed ticks are skipped)."""
        push_ms = max(1, round(self.config.push_ms * self.clock.speed))  # push_interval is in real seconds
        tick = -(-self.clock.now_ms() // push_ms) * push_ms
        while True:
            await anyio.sleep_until(self.clock.deadline(tick))
            if not self.faults.stalled:
                await self.publish(tick)
            tick = max(tick + push_ms, (self.clock.now_ms() // push_ms + 1) * push_ms)

    async def publish(self, now_ms: int) -> None:
        """Build and queue one push of every subscribed topic, as of ``now_ms``."""
        for state in list(self._topics.values()):
            if state.bursting or not state.subscribers:
                continue
            frames = self._frames(state, now_ms)
            for connection in list(state.subscribers):
                for frame in frames:
                    await connection.send(frame)

    def _frames(self, state: _TopicState, now_ms: int) -> list[bytes]:
        """This tick's frames of one topic, faults applied."""
        faults = self.faults
        if faults.hostile_ws is not None:
            faults.hostile_sent += 1
            return [hostile_frame(faults.hostile_ws)]
        frames: list[bytes] = []
        for payload, rollover in self._updates(state, now_ms):
            clean = self.encode(state.topic, payload)
            if faults.roll(faults.malformed_rate):
                frames.append(self.malformed(state.topic, payload, faults.next_malformed_kind()))
            else:
                frames.append(clean)
            if faults.roll(faults.duplicate_rate):
                frames.append(frames[-1])
            stale = state.previous
            if stale is not None and ((rollover and faults.reorder_rate > 0) or faults.roll(faults.reorder_rate)):
                frames.append(stale)
            state.previous = clean
        return frames

    def _updates(self, state: _TopicState, now_ms: int) -> list[tuple[Payload, bool]]:
        """The payloads one topic pushes now, each with whether it opens a new candle."""
        topic = state.topic
        spec = self.model.spec(topic.symbol_id)
        if topic.kind is not PushKind.KLINE:
            return [(self.tick_payload(topic, spec, self.model.ticker(topic.symbol_id, now_ms), now_ms), False)]
        assert topic.timeframe is not None
        symbol_id, timeframe = topic.symbol_id, topic.timeframe
        updates: list[tuple[Payload, bool]] = []
        current_open = candle_open_time(timeframe, now_ms)
        previous_open = state.last_open
        if previous_open is not None and previous_open < current_open and not state.final_sent:
            # The last push of that candle missed its last step(s): push its final value first,
            # so the last update of every candle is the truth REST serves.
            state.final_sent = True
            final = self.model.candle(symbol_id, timeframe, previous_open, now_ms)
            if final is not None and not self.faults.skip_final_update:
                updates.append((self.kline_payload(topic, spec, [final], now_ms), False))
        values = self.model.candle(symbol_id, timeframe, current_open, now_ms)
        if values is None:
            return updates
        complete = self.model.is_complete(timeframe, values)
        repeat = state.final_sent and state.last_open == current_open
        if complete and (self.faults.skip_final_update or (repeat and self.final_pushed_once)):
            return updates
        candles = [values]
        if self.faults.batch_klines and self.batches_klines(topic):
            before = self.model.candle(symbol_id, timeframe, candle_open_time(timeframe, current_open - 1), now_ms)
            if before is not None:
                candles.insert(0, before)
        rollover = previous_open is not None and previous_open < current_open
        updates.append((self.kline_payload(topic, spec, candles, now_ms), rollover))
        state.last_open = current_open
        state.final_sent = complete
        return updates

    async def burst(self, symbol_id: str, timeframe: str, count: int, *, market: Market | str = Market.SWAP) -> None:
        """Send ``count`` distinct updates of the current candle to every subscriber of the topic.

        Update i (1..count) has close price i, so a receiver can check order and completeness.
        Faults do not apply and the topic's regular pushes pause meanwhile; each subscriber gets
        the frames as fast as it reads them (one whose socket takes nothing for ``send_timeout``
        is closed as too slow).
        """
        market = Market(market)
        validate_timeframe(timeframe)
        spec = self.model.spec(symbol_id)
        if not isinstance(count, int) or count < 1:
            raise InvalidValueError(f"invalid burst count {count!r}: expected a positive integer")
        states = [
            state
            for state in self._topics.values()
            if state.topic.market is market
            and state.topic.kind is PushKind.KLINE
            and state.topic.symbol_id == symbol_id
            and state.topic.timeframe == timeframe
        ]
        now_ms = self.clock.now_ms()
        current = self.model.candle(symbol_id, timeframe, candle_open_time(timeframe, now_ms), now_ms)
        if not states or current is None:
            return
        unit = 10**spec.price_decimals

        def build(topic: SimTopic, base: CandleValues) -> list[bytes]:
            frames = []
            for number in range(1, count + 1):
                price = number * unit
                values = replace(base, close=price, high=max(base.high, price), low=min(base.low, price))
                frames.append(self.encode(topic, self.kline_payload(topic, spec, [values], now_ms)))
            return frames

        for state in states:
            state.bursting = True
        try:
            async with anyio.create_task_group() as nursery:
                for state in states:
                    frames = await anyio.to_thread.run_sync(build, state.topic, current)
                    for connection in list(state.subscribers):
                        nursery.start_soon(connection.send_all_waiting, frames)
        finally:
            for state in states:
                state.bursting = False


class _Connection:
    """One client socket: its subscriptions, outgoing queue, heartbeat state and closing reason."""

    text_frames = False
    """Whether frames go out as text (Binance) rather than binary (BingX's gzip streams)."""

    def __init__(self, hub: WsHub, ws: ServerWebSocket, market: Market) -> None:
        self.hub = hub
        self.ws = ws
        self.market = market
        self.number = hub.stats.connections_total + 1
        self.name = f"{market.value}#{self.number}"
        self.topics: dict[str, SimTopic] = {}
        config = hub.config
        self._queue_in, self._queue_out = anyio.create_memory_object_stream[bytes](config.send_queue_size)
        self._scope = anyio.CancelScope()
        self._frame_scope = anyio.CancelScope()
        """Shields the batch being written from a graceful close (a half frame breaks the stream)."""
        self.close_reason: str | None = None
        self._close_code = 1000
        self._abort = False
        self._writing_since: float | None = None
        """Loop time the writer started the batch it is writing (None: not writing)."""
        self._ping_since: float | None = None
        """Loop time of the oldest ping not answered yet."""
        self._ping_ids: deque[str] = deque(maxlen=16)
        self._ping_counter = 0

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        with self._scope:
            async with anyio.create_task_group() as nursery:
                nursery.start_soon(self._writer)
                nursery.start_soon(self._heartbeat)
                await self._reader()
                self.close("client closed")

    def close(self, reason: str, *, code: int = 1000, abort: bool = False) -> None:
        """End the connection: gracefully with ``code`` (the batch being written is finished
        first), or by aborting TCP at once. The first reason wins; an abort overrides a pending
        graceful close.
        """
        if self.close_reason is None:
            self.close_reason = reason
            self._close_code = code
        if abort:
            self._abort = True
            self._frame_scope.cancel()
        self._scope.cancel()

    async def close_transport(self) -> None:
        """Unless aborting, send a close frame and wait (bounded) for the client's. Call shielded;
        the caller closes TCP afterwards either way.
        """
        if not self._abort:
            with anyio.move_on_after(CLOSE_TIMEOUT), contextlib.suppress(WebSocketClosed):
                await self.ws.close(self._close_code, self.close_reason)
                await self.ws.wait_closed()

    def stop_queue(self) -> None:
        """Close both ends of the outgoing queue (anyio warns about a stream left open): frames
        sent from now on are dropped. Idempotent."""
        self._queue_in.close()
        self._queue_out.close()

    # -- writing --------------------------------------------------------------------------------

    async def send(self, frame: bytes) -> None:
        """Queue a frame for the writer (pushes, acks, pings).

        With the queue full, wait for the writer to drain it (the server is busy: the publisher
        slows down and skips ticks), unless the client stopped reading, i.e. its socket has
        accepted nothing for ``slow_client_timeout``: then it is closed as too slow.
        """
        patience = self.hub.config.slow_client_timeout
        try:
            while self.close_reason is None:
                try:
                    self._queue_in.send_nowait(frame)
                    return
                except anyio.WouldBlock:
                    pass
                if self._writing_since is not None and anyio.current_time() - self._writing_since >= patience:
                    self._too_slow(f"queue full and socket stalled for {patience} s")
                    return
                with anyio.move_on_after(patience / 4) as waiting:
                    await self._queue_in.send(frame)
                if not waiting.cancelled_caught:
                    return
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # the connection is closing: nothing more goes out

    async def send_all_waiting(self, frames: list[bytes]) -> None:
        """Queue ``frames`` as fast as the client reads them (bursts): only the writer's
        ``send_timeout`` cuts a client off here.

        Frames go in without a checkpoint until the queue is full, so the writer wakes to a batch
        (up to WRITE_BATCH frames, one write) rather than to each frame: with a client that keeps
        up, a wake-up per frame made the burst cost ~25 us of CPU per frame instead of ~4 us.
        """
        try:
            for frame in frames:
                try:
                    self._queue_in.send_nowait(frame)
                except anyio.WouldBlock:
                    await self._queue_in.send(frame)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # the connection closed during the burst

    def _too_slow(self, why: str) -> None:
        if self.close_reason is None:
            self.hub.stats.slow_closed += 1
            logger.warning("closing slow connection %s: %s", self.name, why)
        self.close(f"too slow: {why}", abort=True)

    async def _writer(self) -> None:
        """Write queued frames, a batch per wake-up (one cancel scope per batch, not per frame)."""
        stats, timeout = self.hub.stats, self.hub.config.send_timeout
        async for first in self._queue_out:
            batch = [first]
            with contextlib.suppress(anyio.WouldBlock, anyio.EndOfStream):
                while len(batch) < WRITE_BATCH:
                    batch.append(self._queue_out.receive_nowait())
            with anyio.CancelScope(shield=True) as self._frame_scope:
                if self._abort:
                    return
                self._writing_since = anyio.current_time()
                with anyio.move_on_after(timeout) as timer:
                    try:
                        await self.ws.send_frames(batch, text=self.text_frames)
                    except WebSocketClosed:
                        self.close("client closed")
                        return
                    stats.frames_sent += len(batch)
                self._writing_since = None
            if timer.cancelled_caught:
                self._too_slow(f"socket blocked for {timeout} s")
                return
            if self._frame_scope.cancelled_caught:
                return

    # -- reading --------------------------------------------------------------------------------

    async def _reader(self) -> None:
        while True:
            try:
                message = await self.ws.receive_message()
            except WebSocketClosed:
                return
            if message is None:
                return
            if isinstance(message, bytes):
                try:
                    message = message.decode()
                except UnicodeDecodeError:
                    await self._reply_error("", "invalid params")
                    continue
            await self._on_text(message)

    async def _on_text(self, text: str) -> None:
        swap = self.market is Market.SWAP
        if swap and text == "Pong":
            self._on_pong(None)
            return
        try:
            check_json_depth(text, DEFAULT_LIMITS.max_json_depth)  # json.loads recurses per level
            request: Any = json.loads(text)
        except (ProtocolError, ValueError):
            request = None
        if not isinstance(request, dict):
            await self._reply_error("", "invalid params")
            return
        if not swap and "pong" in request:
            self._on_pong(request["pong"])
            return
        request_id = request.get("id", "")
        req_type = request.get("reqType", None if swap else "sub")
        data_type = request.get("dataType")
        if req_type not in ("sub", "unsub") or not isinstance(data_type, str) or not data_type:
            await self._reply_error(request_id, "invalid params")
            return
        try:
            topic = parse_data_type(self.market, data_type, self.hub.symbols)
        except ValueError as exc:
            await self._reply_error(request_id, f"invalid params: {exc}")
            return
        if req_type == "unsub":
            self.hub.unsubscribe(self, data_type)
        elif data_type not in self.topics and len(self.topics) >= self.hub.config.max_topics_per_socket:
            limit = self.hub.config.max_topics_per_socket
            await self._reply_error(request_id, f"more than {limit} topics on one connection", code=TOO_MANY_TOPICS)
            return
        else:
            self.hub.subscribe(self, topic)
        await self.send(gzip_frame(ack(self.market, request_id, self.hub.clock.now_ms())))

    async def _reply_error(self, request_id: Any, message: str, *, code: int | None = None) -> None:
        self.hub.stats.request_errors += 1
        payload = error(self.market, request_id, message, self.hub.clock.now_ms(), code=code)
        await self.send(gzip_frame(payload))

    def _on_pong(self, ping_id: Any) -> None:
        self.hub.stats.pongs_received += 1
        if self.hub.faults.ignore_pongs:
            return
        if self.market is Market.SPOT and ping_id not in self._ping_ids:
            logger.debug("connection %s: pong for an unknown ping %r", self.name, ping_id)
            return
        self._ping_since = None

    # -- heartbeat ------------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        config, faults = self.hub.config, self.hub.faults
        next_ping = anyio.current_time() + config.ping_interval
        while True:
            wake = next_ping if self._ping_since is None else min(next_ping, self._ping_since + config.pong_timeout)
            await anyio.sleep_until(wake)
            now = anyio.current_time()
            if self._ping_since is not None and now >= self._ping_since + config.pong_timeout:
                self.hub.stats.pong_timeouts += 1
                self.close("pong timeout")
                return
            if now >= next_ping:
                next_ping += config.ping_interval * max(1, math.ceil((now - next_ping) / config.ping_interval))
                if faults.sends_pings:
                    await self._ping()

    async def _ping(self) -> None:
        if self.market is Market.SWAP:
            frame = SWAP_PING
        else:
            self._ping_counter += 1
            ping_id = f"{self.hub.config.seed & 0xFFFFFFFF:08x}{self.number:08x}{self._ping_counter:016x}"
            self._ping_ids.append(ping_id)
            frame = spot_ping(ping_id, self.hub.clock.now_ms())
        if self._ping_since is None:
            self._ping_since = anyio.current_time()
        self.hub.stats.pings_sent += 1
        await self.send(frame)
