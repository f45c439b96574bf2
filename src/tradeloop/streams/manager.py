"""StreamManager: owns one nursery in which every connection, poller and topic task lives.

Task tracking is the nursery and shutdown is cancelling it: leaving ``async with
StreamManager.open(...)`` (or an error in any stream task) ends every stream, closes every socket
within the connection's close bound, and ends every subscriber's iteration.

Several subscribers to the same topic share one upstream subscription; the last one closing its
channel unsubscribes upstream and, when a socket has no topic left, closes it. A topic the exchange
rejects is released upstream, and each of its subscribers' ``receive()`` raises
:class:`~tradeloop.errors.SubscriptionError`.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable, Mapping
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import httpx
import sniffio

from .._groups import single_error
from ..errors import ForeignLoopError, InvalidValueError
from ..exchanges import Exchange, normalize_exchange_name
from ..exchanges.base import ErrorReply, Topic, TopicKind, tick_kind
from ..models import Kline, Tick
from ..symbols import parse_symbol
from .config import StreamConfig
from .connection import Connection
from .fanout import SlowConsumerPolicy, Subscription, check_buffer, parse_policy
from .health import ConnectionHealth, StreamHealth, TopicHealth
from .source import TickKind
from .topic import KlineTopic, TickTopic
from .transport import Transport
from .watcher import watch_topic, watching

__all__ = ["StreamManager"]

log = logging.getLogger(__name__)

class StreamManager:
    """Subscriptions to market data of one or more exchanges. Create it with :meth:`open`."""

    def __init__(
        self,
        exchanges: Mapping[str, Exchange],
        config: StreamConfig,
        http: httpx.AsyncClient,
        nursery: anyio.abc.TaskGroup,
        transport: Transport | None = None,
    ) -> None:
        self._exchanges = dict(exchanges)
        self.config = config
        self._http = http
        self._nursery = nursery
        self._transport = transport or Transport(
            config.transport,
            connect_timeout=config.connect_timeout,
            close_timeout=config.close_timeout,
            message_queue_size=config.message_queue_size,
        )
        self._topics: dict[tuple[str, Topic], KlineTopic | TickTopic] = {}
        self._topic_scopes: dict[tuple[str, Topic], anyio.CancelScope] = {}
        self._connections: dict[tuple[str, Hashable], list[Connection]] = {}
        self._topic_connection: dict[tuple[str, Topic], Connection] = {}
        self._connection_ids = itertools.count(1)
        # The event loop (and so the thread) that opened the manager owns its tasks and sockets.
        self._owner_thread = threading.current_thread()
        self._owner_loop = sniffio.current_async_library()

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        exchanges: Mapping[str, Exchange] | Iterable[Exchange],
        config: StreamConfig | None = None,
        *,
        http: httpx.AsyncClient | None = None,
        transport: Transport | None = None,
    ) -> AsyncIterator[StreamManager]:
        """Run a manager for ``exchanges`` (a mapping name → client, or clients keyed by ``.name``).

        ``http`` is the client used for REST; by default the manager owns one. ``transport`` opens
        the WebSockets (by default one built from ``config``; a test may pass one over in-memory
        streams).

        An exception raised in the body of the ``async with`` leaves it as itself, not wrapped in
        an ExceptionGroup (several at once still leave as a group); Ctrl-C leaves as
        KeyboardInterrupt. Raises InvalidValueError for an empty ``exchanges``.
        """
        config = config or StreamConfig()
        if isinstance(exchanges, Mapping):
            named = {normalize_exchange_name(name): client for name, client in exchanges.items()}
        else:
            named = {normalize_exchange_name(client.name): client for client in exchanges}
        if not named:
            raise InvalidValueError("StreamManager needs at least one exchange")
        with single_error():
            async with _http_client(http, config) as client, anyio.create_task_group() as nursery:
                manager = cls(named, config, client, nursery, transport)
                try:
                    yield manager
                finally:
                    manager._close_all()
                    nursery.cancel_scope.cancel()

    # -- subscribing ------------------------------------------------------------------------------

    def klines(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        *,
        policy: SlowConsumerPolicy | str = SlowConsumerPolicy.BLOCK,
        closed_only: bool = False,
        buffer: int | None = None,
        name: str | None = None,
    ) -> Subscription[Kline]:
        """Updates of each candle, then one ``closed=True`` kline per candle, in order, no gaps.

        ``policy`` says what happens when this consumer falls behind (it never holds up the
        socket or other consumers): ``block`` (default) keeps every closed candle, re-fetching over
        REST what outgrew ``buffer``, and coalesces open-candle updates to the newest; ``latest``
        keeps the newest ``buffer`` items; ``drop`` drops new items while full. ``name`` labels the
        subscriber in :meth:`health`. Raises InvalidValueError for a bad exchange, symbol,
        timeframe, policy or buffer; the subscription raises SubscriptionError if the exchange
        rejects it. The first candle is the one forming at the topic's first push: history
        fetched when subscribing may end a candle earlier, and :func:`candles_between` fetches
        what lies between.
        """
        self._check_owner()
        # Checked before the topic exists: a refused subscriber must not leave a topic streaming for no one.
        policy = parse_policy(policy)
        buffer = check_buffer(self.config.kline_buffer if buffer is None else buffer)
        stream = self._stream(exchange, Topic(TopicKind.KLINE, symbol, timeframe))
        assert isinstance(stream, KlineTopic)
        return stream.subscribe(policy, buffer, closed_only, name)

    def ticks(
        self,
        exchange: str,
        symbol: str,
        *,
        kind: TickKind = "ticker",
        policy: SlowConsumerPolicy | str = SlowConsumerPolicy.LATEST,
        buffer: int | None = None,
        name: str | None = None,
    ) -> Subscription[Tick]:
        """Ticks of ``symbol``: the 24h ticker by default, or last price, mark price, book ticker.

        ``policy``: ``latest`` (default) keeps the newest ``buffer`` ticks; ``block`` is a bounded
        buffer too (a tick cannot be re-fetched) that drops the oldest when full; ``drop`` drops new
        ticks while full. Every drop is counted in :meth:`health`. Raises InvalidValueError for a
        bad argument; the subscription raises SubscriptionError if the exchange rejects it.
        """
        self._check_owner()
        topic_kind = tick_kind(kind, for_klines="use klines() for candles")
        policy = parse_policy(policy)
        buffer = check_buffer(self.config.tick_buffer if buffer is None else buffer)
        stream = self._stream(exchange, Topic(topic_kind, symbol))
        assert isinstance(stream, TickTopic)
        return stream.subscribe(policy, buffer, name)

    async def fetch_klines(self, exchange: str, symbol: str, timeframe: str, *, limit: int = 100) -> list[Kline]:
        """The newest ``limit`` closed candles over REST, oldest first (strategy warm-up)."""
        self._check_owner()
        topic = Topic(TopicKind.KLINE, symbol, timeframe)
        client = self._exchange(exchange)
        with anyio.fail_after(self.config.rest_timeout):
            rows = await client.fetch_klines(self._http, topic.symbol, timeframe, limit=limit + 1)
        return [k for k in rows if k.closed][-limit:]

    def _check_owner(self) -> None:
        """Raise ForeignLoopError unless called from the thread whose event loop opened the manager.

        A call from elsewhere would start tasks on a loop that is not running there (or race it):
        asyncio and Trio objects are not thread-safe. Checked where a call starts work, not per
        received item (the hot path).
        """
        here = threading.current_thread()
        if here is not self._owner_thread:
            raise ForeignLoopError(
                f"this StreamManager belongs to the {self._owner_loop} event loop of thread "
                f"{self._owner_thread.name!r}, not thread {here.name!r}: call it from that loop (hand work "
                "to it with asyncio.run_coroutine_threadsafe, trio.from_thread.run or anyio.from_thread.run)"
            )

    def _exchange(self, name: str) -> Exchange:
        key = normalize_exchange_name(name)
        try:
            return self._exchanges[key]
        except KeyError:
            raise InvalidValueError(
                f"unknown exchange {name!r}: this manager serves {', '.join(sorted(self._exchanges))}"
            ) from None

    def _stream(self, exchange_name: str, topic: Topic) -> KlineTopic | TickTopic:
        name = normalize_exchange_name(exchange_name)
        client = self._exchange(name)
        key = (name, topic)
        stream = self._topics.get(key)
        if stream is not None:
            return stream
        client.check_topic(topic)
        parse_symbol(topic.symbol)
        if client.supports_push:
            Transport.check_url(client.ws_url(client.socket_key(topic)))
        kind = KlineTopic if topic.kind is TopicKind.KLINE else TickTopic
        stream = kind(name, client, topic, self.config, self._http, lambda: self._release(key))
        self._topics[key] = stream
        scope = anyio.CancelScope()
        self._topic_scopes[key] = scope
        self._nursery.start_soon(self._run_topic, scope, key, stream)
        if client.supports_push:
            log.info("%s %s: streaming over WebSocket", name, topic)
            self._assign_connection(stream)
        elif watching(client, topic) is not None:
            log.info("%s %s: streaming from the client's own watch loop (run by the topic's task)", name, topic)
        else:
            log.info("%s %s: no push stream, polling REST every %g s", name, topic, self.config.rest_poll_interval)
            self._start_polling(stream)
        return stream

    async def _run_topic(
        self, scope: anyio.CancelScope, key: tuple[str, Topic], stream: KlineTopic | TickTopic
    ) -> None:
        """The topic's task: ask the exchange whether it lists the topic, then do the closer's REST
        work, and run the client's watch loop if it watches the topic itself."""
        with scope:
            await stream.validate()
            if stream.rejection is not None:
                self._release(key)
                return
            async with anyio.create_task_group() as nursery:
                if (watcher := watching(stream.exchange, stream.topic)) is not None:
                    nursery.start_soon(watch_topic, stream, watcher)
                if isinstance(stream, KlineTopic):
                    nursery.start_soon(stream.run)

    def _assign_connection(self, stream: KlineTopic | TickTopic) -> None:
        socket_key = stream.exchange.socket_key(stream.topic)
        pool = self._connections.setdefault((stream.exchange_name, socket_key), [])
        connection = next((c for c in pool if len(c.topics) < c.capacity), None)
        if connection is None:
            connection = Connection(
                stream.exchange_name,
                stream.exchange,
                socket_key,
                stream.topic.market,
                self.config,
                self._transport,
                self._on_fallback_change,
                self._on_rejected,
                next(self._connection_ids),
            )
            pool.append(connection)
            self._nursery.start_soon(connection.run)
        connection.add_topic(stream)
        self._topic_connection[(stream.exchange_name, stream.topic)] = connection
        if connection.use_rest_fallback:
            self._start_polling(stream)

    def _on_rejected(self, connection: Connection, topic: Topic, reply: ErrorReply) -> None:
        stream = self._topics.get((connection.exchange_name, topic))
        if stream is not None:
            stream.reject(reply.code, reply.message)
            self._release((connection.exchange_name, topic))

    def _release(self, key: tuple[str, Topic]) -> None:
        """Release the upstream subscription: the last subscriber left, or the exchange rejected it."""
        stream = self._topics.pop(key, None)
        if stream is None:
            return
        self._topic_scopes.pop(key).cancel()
        if stream.poll_scope is not None:  # a fetch-only exchange's poller too: nobody reads it now
            stream.poll_scope.cancel()
        stream.close()
        connection = self._topic_connection.pop(key, None)
        if connection is not None:
            connection.remove_topic(stream.topic)
            if not connection.topics:
                connection.close()
                self._connections[(stream.exchange_name, connection.socket_key)].remove(connection)

    # -- REST fallback ----------------------------------------------------------------------------

    def _on_fallback_change(self, connection: Connection) -> None:
        for stream in connection.topics.values():
            if connection.use_rest_fallback:
                self._start_polling(stream)
            else:
                self._stop_polling(stream)

    def _start_polling(self, stream: KlineTopic | TickTopic) -> None:
        if stream.poll_scope is not None:
            return
        stream.mode = "rest"
        stream.poll_scope = anyio.CancelScope()
        self._nursery.start_soon(_run_in_scope, stream.poll_scope, stream.poll, self.config.rest_poll_interval)

    def _stop_polling(self, stream: KlineTopic | TickTopic) -> None:
        if stream.poll_scope is None or not stream.exchange.supports_push:
            return
        stream.poll_scope.cancel()
        stream.poll_scope = None
        stream.mode = "ws"

    # -- health and shutdown ----------------------------------------------------------------------

    def health(self) -> StreamHealth:
        self._check_owner()
        now = anyio.current_time()
        connections = tuple(
            _connection_health(c, now) for pool in self._connections.values() for c in pool
        )
        topics = tuple(
            _topic_health(stream, self._topic_connection.get(key), now) for key, stream in self._topics.items()
        )
        return StreamHealth(connections, topics)

    def _close_all(self) -> None:
        for stream in self._topics.values():
            stream.close()


async def _run_in_scope(scope: anyio.CancelScope, function: Callable[..., Awaitable[object]], *args: object) -> None:
    with scope:
        await function(*args)


@asynccontextmanager
async def _http_client(http: httpx.AsyncClient | None, config: StreamConfig) -> AsyncIterator[httpx.AsyncClient]:
    if http is not None:
        yield http
        return
    async with httpx.AsyncClient(timeout=config.rest_timeout) as client:
        yield client


def _age(now: float, then: float | None) -> float | None:
    return None if then is None else now - then


def _connection_health(connection: Connection, now: float) -> ConnectionHealth:
    return ConnectionHealth(
        exchange=connection.exchange_name,
        market=connection.market.value,
        url=connection.url,
        connection_id=connection.connection_id,
        state=connection.state,
        topics=len(connection.topics),
        messages=connection.messages_received,
        last_message_age=_age(now, connection.last_message_time),
        reconnects=connection.reconnect_count,
        last_reconnect_age=_age(now, connection.last_reconnect),
        use_rest_fallback=connection.use_rest_fallback,
        parse_errors=dict(connection.parse_frame_errors),
        error_replies=connection.error_replies,
        recent_errors=connection.error_history.recent(),
        rotations=connection.rotations,
    )


def _topic_health(stream: KlineTopic | TickTopic, connection: Connection | None, now: float) -> TopicHealth:
    errors = stream.error_history.recent()
    if connection is not None:
        errors = tuple(sorted(errors + connection.error_history.recent(), key=lambda e: e.time))[-10:]
    closer = stream.closer if isinstance(stream, KlineTopic) else None
    return TopicHealth(
        exchange=stream.exchange_name,
        topic=stream.topic,
        mode=stream.mode,
        state=connection.state if connection is not None else "polling",
        messages=stream.messages,
        last_message_age=_age(now, stream.last_message_time),
        reconnects=connection.reconnect_count if connection is not None else 0,
        parse_errors=dict(connection.parse_frame_errors) if connection is not None else {},
        closed_candles=closer.closed_candles if closer else 0,
        backfilled_candles=closer.backfilled_candles if closer else 0,
        stale_updates=closer.stale_updates if closer else 0,
        duplicate_updates=closer.duplicate_updates if closer else 0,
        unconfirmed_closes=closer.unconfirmed_closes if closer else 0,
        rest_errors=stream.rest_errors,
        recent_errors=errors,
        subscribers=stream.fanout.health(),
        queue_overflows=closer.queue_overflows if closer else 0,
        watch_errors=stream.watch_errors,
    )
