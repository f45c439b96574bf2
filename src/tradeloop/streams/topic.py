"""One upstream topic: turns pushes and REST rows into the stream consumers rely on.

BingX sends no closed flag and repeats updates of the open candle, may duplicate or reorder them,
and loses whatever was pushed while a socket was down. A kline topic therefore keeps a little
state: the candle currently forming and the open time of the last closed candle delivered. From
that it guarantees, for every subscriber: each candle's updates, then exactly one ``closed=True``
kline per candle, in open-time order, with the candles missed during an outage fetched over REST
before live updates continue.

WebSocket pushes and REST polls (fallback mode) feed the same state through one inbox, so the
consumer sees one continuous stream whichever path delivered the data.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence

import httpx
import msgspec
import trio

from ..exchanges.base import Exchange, ExchangeError, ProtocolError, Topic, TopicKind
from ..models import Kline, Tick
from ..symbols import next_open_time
from .backoff import full_jitter_delay
from .config import StreamConfig
from .errors import ErrorHistory
from .fanout import FanOut

__all__ = ["TopicStream"]

log = logging.getLogger(__name__)

_REST_PAGE = 1440
_Batch = tuple[int, Sequence[Kline]]
"""Klines as they arrived, with the feed epoch they arrived in."""
RestError = (ExchangeError, ProtocolError, httpx.HTTPError)


class TopicStream:
    """State, diagnostics and subscribers of one (exchange, topic)."""

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
        # Only one of the two is used, chosen by the topic's kind; both exist so each is typed.
        self.kline_fanout: FanOut[Kline] = FanOut(on_empty)
        self.tick_fanout: FanOut[Tick] = FanOut(on_empty)
        self.mode = "ws" if exchange.supports_push else "rest"
        self.messages = 0
        self.last_message_time: float | None = None
        self.closed_candles = 0
        self.stale_updates = 0
        self.duplicate_updates = 0
        self.backfilled_candles = 0
        self.unconfirmed_closes = 0
        self.rest_errors = 0
        self.error_history = ErrorHistory()
        self.current: Kline | None = None
        self.last_closed_open: int | None = None
        self._feed_epoch = 0
        """Interruptions of the feed so far: between pushes of two epochs, updates may have been lost."""
        self._current_epoch = 0
        """The epoch ``current`` arrived in."""
        self.poll_scope: trio.CancelScope | None = None
        self._queued = 0
        """Batches in the inbox or being applied: later updates must wait behind them."""
        self._rng = random.Random()
        inbox_size = max(config.kline_buffer, 1)
        # Each batch carries the epoch it arrived in: an interruption is placed in arrival order.
        self._inbox_send, self._inbox_receive = trio.open_memory_channel[_Batch](inbox_size)

    @property
    def is_kline(self) -> bool:
        return self.topic.kind is TopicKind.KLINE

    # -- ticks: published inline by whoever received them --------------------------------------

    async def publish_tick(self, tick: Tick) -> None:
        self.messages += 1
        self.last_message_time = trio.current_time()
        await self.tick_fanout.publish(tick)

    # -- klines: queued to the topic's own task, which may wait on REST --------------------------

    def interrupted(self) -> None:
        """The feed may have lost pushes: its socket failed, or a frame could not be read.

        The candle forming then may have moved on unseen, up to its final value, so its last
        update is no close to fall back on when REST cannot confirm it: closing it needs REST,
        as a gap does.
        """
        self._feed_epoch += 1

    async def offer_klines(self, klines: Sequence[Kline]) -> None:
        """Queue updates (WebSocket: ``closed`` False) or REST rows (``closed`` True = final)."""
        self.messages += 1
        self.last_message_time = trio.current_time()
        current = self.current
        if (
            not self._queued
            and current is not None
            and all(k.open_time == current.open_time and not k.closed for k in klines)
        ):
            # The common case, an update of the open candle with nothing queued ahead of it:
            # deliver inline rather than pay a task switch through the topic's inbox.
            for kline in klines:
                await self._publish_update(kline, self._feed_epoch)
            return
        self._queued += 1
        batch = (self._feed_epoch, klines)
        try:
            self._inbox_send.send_nowait(batch)
        except trio.WouldBlock:
            await self._inbox_send.send(batch)
        except trio.ClosedResourceError:
            # The topic was dropped (last subscriber left, or shutdown) after this frame was read.
            pass

    async def run_klines(self) -> None:
        """The topic's task: apply queued klines in order. Lives until the topic is dropped."""
        inbox = self._inbox_receive
        async for first in inbox:
            batch: _Batch | None = first
            # Apply everything already queued before waiting again: one wake-up per backlog, not
            # per push, so a burst drains and updates go back to the inline path (measured: 32k
            # to 80k pushes/s on the burst benchmark).
            while batch is not None:
                epoch, klines = batch
                for kline in klines:
                    await self._apply(kline, epoch)
                self._queued -= 1
                try:
                    batch = inbox.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    batch = None

    async def _apply(self, kline: Kline, epoch: int) -> None:
        timeframe = self.topic.timeframe
        assert timeframe is not None
        if self.last_closed_open is not None and kline.open_time <= self.last_closed_open:
            self.stale_updates += 1
            return
        current = self.current
        if current is not None:
            if kline.open_time < current.open_time:
                self.stale_updates += 1
                return
            if kline.open_time > current.open_time:
                stale = epoch != self._current_epoch
                await self._close_until(current.open_time, kline.open_time, current, stale=stale)
        elif self.last_closed_open is not None:
            expected = next_open_time(timeframe, self.last_closed_open)
            if kline.open_time > expected:
                await self._close_until(expected, kline.open_time, None)
        if kline.closed:
            await self._deliver_closed(kline)
            return
        await self._publish_update(kline, epoch)

    async def _publish_update(self, kline: Kline, epoch: int) -> None:
        current = self.current
        if current is not None and kline.volume < current.volume and kline.open_time == current.open_time:
            # A candle's volume only grows: this update is older than the one we have (reordered).
            self.stale_updates += 1
            return
        self._current_epoch = epoch  # a repeat after an interruption shows the candle is current too
        if current == kline:
            self.duplicate_updates += 1
            return
        self.current = kline
        await self.kline_fanout.publish(kline)

    async def _close_until(self, start: int, until: int, streamed: Kline | None, *, stale: bool = False) -> None:
        """Deliver, closed and in order, every candle opening in ``[start, until)``.

        ``streamed`` is the last pushed update of the candle opening at ``start``, if we have one;
        ``stale`` says the feed was interrupted after it. REST provides the final values; a gap
        (missed candles, or a stale update) must come from REST, so it is retried until it
        succeeds, while a mere confirmation gives up after a few attempts and delivers the
        streamed values.
        """
        timeframe = self.topic.timeframe
        assert timeframe is not None
        gap = streamed is None or stale or next_open_time(timeframe, start) < until
        if not gap and not self.config.confirm_closed_candles:
            assert streamed is not None
            await self._deliver_closed(streamed)
            return
        rows = await self._fetch_range(start, until, required=gap)
        if rows is None:
            assert streamed is not None
            self.unconfirmed_closes += 1
            await self._deliver_closed(streamed)
            return
        if streamed is not None and (not rows or rows[0].open_time != start):
            rows.insert(0, streamed)
        for row in rows:
            if streamed is None or row.open_time != streamed.open_time:
                self.backfilled_candles += 1
            await self._deliver_closed(row)

    async def _fetch_range(self, start: int, until: int, *, required: bool) -> list[Kline] | None:
        timeframe = self.topic.timeframe
        assert timeframe is not None
        attempt = 0
        while True:
            try:
                return await self._fetch_pages(start, until)
            except (*RestError, trio.TooSlowError) as exc:  # no answer within rest_timeout, too
                attempt += 1
                self.rest_errors += 1
                self.error_history.record("rest", exc)
                log.warning("REST klines for %s failed (attempt %d): %s", self.topic, attempt, exc)
                if not required and attempt >= self.config.confirm_attempts:
                    return None
            await trio.sleep(
                full_jitter_delay(
                    attempt, self.config.rest_retry_delay, self.config.rest_retry_delay_max, self._rng
                )
            )

    async def _fetch_pages(self, start: int, until: int) -> list[Kline]:
        timeframe = self.topic.timeframe
        assert timeframe is not None
        rows: list[Kline] = []
        cursor = start
        while cursor < until:
            with trio.fail_after(self.config.rest_timeout):
                page = await self.exchange.fetch_klines(
                    self.http, self.topic.symbol, timeframe, start_ms=cursor, end_ms=until - 1, limit=_REST_PAGE
                )
            page = [k for k in page if cursor <= k.open_time < until]
            if not page:
                break
            rows.extend(page)
            cursor = next_open_time(timeframe, page[-1].open_time)
            if len(page) < _REST_PAGE:
                break
        return rows

    async def _deliver_closed(self, kline: Kline) -> None:
        if self.last_closed_open is not None and kline.open_time <= self.last_closed_open:
            self.stale_updates += 1
            return
        if not kline.closed:
            kline = msgspec.structs.replace(kline, closed=True)
        self.last_closed_open = kline.open_time
        if self.current is not None and self.current.open_time <= kline.open_time:
            self.current = None
        self.closed_candles += 1
        await self.kline_fanout.publish(kline)

    # -- REST polling: fallback mode and fetch-only exchanges -------------------------------------

    async def poll(self, interval: float) -> None:
        """Poll REST every ``interval`` seconds, feeding the same path as WebSocket pushes."""
        attempt = 0
        while True:
            try:
                with trio.fail_after(self.config.rest_timeout):
                    await self._poll_once()
            except (*RestError, trio.TooSlowError) as exc:
                attempt += 1
                self.rest_errors += 1
                self.error_history.record("rest", exc)
                log.warning("REST poll of %s failed (attempt %d): %s", self.topic, attempt, exc)
                await trio.sleep(
                    max(
                        interval,
                        full_jitter_delay(
                            attempt, self.config.rest_retry_delay, self.config.rest_retry_delay_max, self._rng
                        ),
                    )
                )
                continue
            attempt = 0
            await trio.sleep(interval)

    async def _poll_once(self) -> None:
        if not self.is_kline:
            await self.publish_tick(await self.exchange.fetch_ticker(self.http, self.topic.symbol))
            return
        timeframe = self.topic.timeframe
        assert timeframe is not None
        if self.current is not None:
            start: int | None = self.current.open_time
        elif self.last_closed_open is not None:
            start = next_open_time(timeframe, self.last_closed_open)
        else:
            start = None
        rows = await self.exchange.fetch_klines(
            self.http, self.topic.symbol, timeframe, start_ms=start, limit=_REST_PAGE if start else 2
        )
        if rows:
            await self.offer_klines(rows)

    # -- diagnostics ------------------------------------------------------------------------------

    @property
    def subscriber_count(self) -> int:
        return len(self.kline_fanout) + len(self.tick_fanout)

    def close(self) -> None:
        """End the topic: its task finishes and every subscriber's iteration ends."""
        self._inbox_send.close()
        self.kline_fanout.close()
        self.tick_fanout.close()
