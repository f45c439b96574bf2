"""One upstream topic: what its data source feeds and what its subscribers get.

Two kinds, two classes. A :class:`TickTopic` publishes each tick as it comes. A :class:`KlineTopic`
runs pushes and REST rows through the pure :class:`~tradeloop.streams.closer.CandleCloser`
(exactly one closed candle per candle, in order, gaps fetched first) and owns the task that does
the closer's REST work. Either way, publishing never waits: the socket's reader calls
:meth:`TickTopic.publish` / :meth:`KlineTopic.offer` inline, and each subscriber's buffer applies
its own policy (:mod:`tradeloop.streams.fanout`).

WebSocket pushes and REST polls (fallback mode, fetch-only exchanges) feed the same state, so a
consumer sees one continuous stream whichever path delivered the data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import anyio
import httpx
import msgspec

from .._backend import HotPath
from ..errors import InvalidValueError, SubscriptionError
from ..exchanges.base import Exchange, Topic
from ..models import Kline, Tick
from ..symbols import next_open_time
from .backlog import KlineBacklog
from .backoff import Backoff
from .closer import CandleCloser, FetchRange
from .config import StreamConfig
from .errors import ErrorHistory, LogThrottle
from .fanout import FanOut, SlowConsumerPolicy, Subscription, parse_policy

__all__ = ["KlineTopic", "TickTopic", "TopicStream"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class TopicStream(Generic[T]):
    """State, diagnostics and subscribers shared by both kinds of topic."""

    def __init__(
        self,
        exchange_name: str,
        exchange: Exchange,
        topic: Topic,
        config: StreamConfig,
        http: httpx.AsyncClient,
        on_empty: Callable[[], None],
    ) -> None:
        self.exchange_name = exchange_name
        self.exchange = exchange
        self.topic = topic
        self.config = config
        self.http = http
        self.fanout: FanOut[T] = FanOut(on_empty)
        self.mode = "ws" if exchange.supports_push else "rest"
        self.messages = 0
        self.last_message_time: float | None = None
        self.rest_errors = 0
        self.watch_errors = 0
        """Failed watch loops (:mod:`.watcher`: a client that owns its socket)."""
        self.error_history = ErrorHistory()
        self.poll_scope: anyio.CancelScope | None = None
        self.rejection: SubscriptionError | None = None
        self._log_throttle = LogThrottle()
        self._now = HotPath().current_time  # called for every push

    def __str__(self) -> str:
        return f"{self.exchange_name} {self.topic}"

    def interrupted(self) -> None:
        """The feed may have lost pushes; only klines care (a lost tick is just a lost tick)."""

    # -- REST, shared by polling, validation and the kline closer -------------------------------

    def count_rest_error(self, what: str, exc: BaseException) -> None:
        """Record a failed REST call: counted, kept in the history, logged at most once a minute."""
        self.rest_errors += 1
        self._record_failure("rest", what, exc)

    def count_watch_error(self, exc: BaseException) -> None:
        """Record a failed watch loop of a client that owns its socket (:mod:`.watcher`), as
        :meth:`count_rest_error` does a REST call: a stream error, not a REST one."""
        self.watch_errors += 1
        self._record_failure("watch", "watch", exc)

    def _record_failure(self, kind: str, what: str, exc: BaseException) -> None:
        self.error_history.record(kind, exc)
        covered = self._log_throttle.admit(what)
        if covered is not None:
            log.warning("%s: %s failed (%d time(s) since the last report): %r", self, what, covered, exc)

    async def validate(self) -> None:
        """Ask the exchange whether it serves this topic; a refusal ends the subscription.

        Retried with backoff while the exchange cannot be reached; returns once it has answered.
        """
        backoff = Backoff(self.config.rest_retry_delay, self.config.rest_retry_delay_max)
        while True:
            try:
                with anyio.fail_after(self.config.rest_timeout):
                    await self.exchange.check_symbol(self.http, self.topic.symbol)
                return
            except InvalidValueError as exc:
                self.reject(None, str(exc))
                return
            except Exception as exc:  # a foreign client may raise anything; it is one failed call
                self.count_rest_error("validation", exc)
            await backoff.sleep_after_failure()

    def reject(self, code: int | None, message: str) -> None:
        """The exchange refused the topic: every subscriber's next ``receive()`` raises."""
        self.rejection = SubscriptionError(self.exchange_name, str(self.topic), code, message)
        self.error_history.record("rejected", self.rejection)
        log.warning("%s", self.rejection)
        self.fanout.close(self.rejection)

    async def poll(self, interval: float) -> None:
        """Poll REST every ``interval`` seconds, feeding the same path as WebSocket pushes.

        Any exception of the client's fetch (a foreign client may raise anything) is one failed
        poll: counted, logged at most once a minute, retried with backoff; it never ends the stream.
        """
        backoff = Backoff(self.config.rest_retry_delay, self.config.rest_retry_delay_max)
        while True:
            try:
                with anyio.fail_after(self.config.rest_timeout):
                    await self._poll_once()
            except Exception as exc:
                self.count_rest_error("REST poll", exc)
                await backoff.sleep_after_failure(minimum=interval)
                continue
            backoff.reset()
            await anyio.sleep(interval)

    async def _poll_once(self) -> None:
        raise NotImplementedError

    def _received(self) -> None:
        self.messages += 1
        self.last_message_time = self._now()

    def close(self) -> None:
        """End the topic: every subscriber's iteration ends once it has drained its buffer."""
        self.fanout.close()


class TickTopic(TopicStream[Tick]):
    """A tick feed: each tick goes to every subscriber as it comes."""

    def subscribe(self, policy: SlowConsumerPolicy | str, buffer: int, name: str | None) -> Subscription[Tick]:
        return self.fanout.subscribe(policy, buffer, name=name)

    def publish(self, tick: Tick) -> None:
        self._received()
        self.fanout.publish(tick)

    async def _poll_once(self) -> None:
        self.publish(await self.exchange.fetch_ticker(self.http, self.topic.symbol))


class KlineTopic(TopicStream[Kline]):
    """A kline feed: pushes and REST rows through the candle closer, REST work in :meth:`run`."""

    def __init__(
        self,
        exchange_name: str,
        exchange: Exchange,
        topic: Topic,
        config: StreamConfig,
        http: httpx.AsyncClient,
        on_empty: Callable[[], None],
    ) -> None:
        super().__init__(exchange_name, exchange, topic, config, http, on_empty)
        assert topic.timeframe is not None
        self.timeframe = topic.timeframe
        # An exchange with a closed flag closes its candles itself; a close inferred from a newer
        # candle then means its final push was lost, and is confirmed like any other close while
        # confirm_closed_candles is on. With it off, such a close carries the last values pushed.
        self.closer = CandleCloser(
            self.timeframe, confirm_closes=config.confirm_closed_candles, max_queued=config.kline_buffer * 4
        )
        self._page_size = exchange.kline_page_size(topic.market)
        self._fetch_wanted = anyio.Event()

    def subscribe(
        self, policy: SlowConsumerPolicy | str, buffer: int, closed_only: bool, name: str | None
    ) -> Subscription[Kline]:
        accepts = _is_closed if closed_only else None
        policy = parse_policy(policy)
        if policy is not SlowConsumerPolicy.BLOCK:
            return self.fanout.subscribe(policy, buffer, accepts, name=name)
        backlog = KlineBacklog(self.fanout.next_name(name), buffer, accepts, self.timeframe, self.fetch_closed)
        return self.fanout.add(backlog)

    def interrupted(self) -> None:
        self.closer.interrupted()

    def offer(self, klines: Sequence[Kline]) -> None:
        """Pushed updates (``closed`` False) or REST rows (``closed`` True = final); never waits."""
        self._received()
        self._publish(self.closer.feed(klines))
        if self.closer.fetch_needed is not None:
            self._fetch_wanted.set()

    def _publish(self, klines: list[Kline]) -> None:
        publish = self.fanout.publish
        for kline in klines:
            publish(kline)

    async def run(self) -> None:
        """The topic's task: the closer's REST work, for as long as the topic lives."""
        while True:
            await self._fetch_wanted.wait()
            self._fetch_wanted = anyio.Event()
            while (request := self.closer.fetch_needed) is not None:
                self._publish(self.closer.fetched(await self._answer(request)))

    async def _answer(self, request: FetchRange) -> list[Kline] | None:
        """Rows for ``request``: a gap is retried until REST answers, a confirmation gives up."""
        backoff = Backoff(self.config.rest_retry_delay, self.config.rest_retry_delay_max)
        while True:
            try:
                return await self._fetch_pages(request.start, request.until)
            except Exception as exc:  # a foreign client may raise anything; it is one failed call
                self.count_rest_error("REST klines", exc)
                if not request.required and backoff.attempt + 1 >= self.config.confirm_attempts:
                    return None
            await backoff.sleep_after_failure()

    async def fetch_closed(self, start: int, until: int) -> list[Kline]:
        """The closed candles opening in ``[start, until)``, retried until REST answers.

        Used by ``block`` subscribers re-fetching what their backlog evicted, in their own task.
        """
        rows = await self._answer(FetchRange(start, until, required=True, streamed=None))
        assert rows is not None
        newest_closed = self.closer.last_closed_open
        return [
            row if row.closed else msgspec.structs.replace(row, closed=True)
            for row in rows
            if newest_closed is not None and row.open_time <= newest_closed
        ]

    async def _fetch_pages(self, start: int, until: int) -> list[Kline]:
        rows: list[Kline] = []
        cursor = start
        while cursor < until:
            with anyio.fail_after(self.config.rest_timeout):
                page = await self.exchange.fetch_klines(
                    self.http, self.topic.symbol, self.timeframe, start_ms=cursor, end_ms=until - 1,
                    limit=self._page_size,
                )
            page = [k for k in page if cursor <= k.open_time < until]
            if not page:
                break
            rows.extend(page)
            cursor = next_open_time(self.timeframe, page[-1].open_time)
            if len(page) < self._page_size:
                break
        return rows

    async def _poll_once(self) -> None:
        closer = self.closer
        if closer.current is not None:
            start: int | None = closer.current.open_time
        elif closer.last_closed_open is not None:
            start = next_open_time(self.timeframe, closer.last_closed_open)
        else:
            start = None
        rows = await self.exchange.fetch_klines(
            self.http, self.topic.symbol, self.timeframe, start_ms=start, limit=self._page_size if start else 2
        )
        if rows:
            self.offer(rows)


def _is_closed(kline: Kline) -> bool:
    return kline.closed
