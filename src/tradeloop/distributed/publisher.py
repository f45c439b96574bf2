"""The collector side: every closed candle and every tick of a market-data source, into Redis.

One :class:`Publisher` reads a :class:`~tradeloop.streams.MarketData` (a
:class:`~tradeloop.streams.StreamManager` holding the exchange sockets) and appends to one Redis
stream per topic (see :mod:`.keys`):

- Closed candles get the entry ID ``<open_time_ms>-0``. When a collector starts it first backfills
  over the exchange's REST the candles newer than the stream's last entry, so a collector restart
  leaves no gap; a candle that is already in the stream (the backfill overlapping live data, or a
  re-published candle) is refused by Redis, which we count as ``duplicates``, never twice.
- Ticks get IDs assigned by Redis.
- Whatever waited in a subscription while the last append ran goes in one pipelined round trip
  (up to :attr:`PublishSettings.batch`): one XADD per round trip capped a collector at about
  1,300 candles/s here, pipelined it carries about 14,000 (``benchmarks/bench_redis.py``).
- Streams are trimmed on every append with ``MAXLEN ~`` (approximate, so Redis trims whole
  nodes cheaply): :attr:`PublishSettings.kline_maxlen` candles (default 100,000: 69 days of 1m)
  and :attr:`PublishSettings.tick_maxlen` ticks (default 10,000).
- The collector's health goes to the hash ``<prefix>:collector:<name>`` every
  :attr:`PublishSettings.health_interval` seconds and expires after three missed updates, so a
  dead collector's hash disappears.

Redis going away (restart, network) is waited out: each append is retried with backoff until it
succeeds, and meanwhile the candle subscriptions (``block`` policy) hold the candles, so nothing
is lost. Raises :class:`~.client.RedisError` for anything else Redis refuses.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import TypeVar

import anyio
import anyio.abc
import coredis.exceptions
import httpx
from coredis.tokens import PureToken

from ..errors import TradeloopError
from ..models import Kline, Tick
from ..streams import MarketData, StreamHealth, Subscription, candles_between
from ..streams.errors import describe
from ..streams.fanout import SubscriptionEnded, SubscriptionWouldBlock
from ..symbols import next_open_time
from .client import RedisClient, RedisUnavailable, redis_errors, until_available
from .keys import StreamKey, collector_key, encode_entry, kline_entry_id, open_time_of
from .settings import PublisherStats, PublishSettings, PublishTopics

__all__ = ["PublishSettings", "PublishTopics", "Publisher", "PublisherStats"]

log = logging.getLogger(__name__)

_FINAL_HEALTH_TIMEOUT = 2.0
"""Seconds the last health report may take as the collector stops (Redis may be away)."""

T = TypeVar("T")

_DUPLICATE_ID = "equal or smaller than the target stream top item"


class Publisher:
    """Appends a source's closed candles and ticks to Redis streams. Run it with :meth:`run`."""

    def __init__(self, redis: RedisClient, source: MarketData, settings: PublishSettings | None = None) -> None:
        self._redis = redis
        self._source = source
        self.settings = settings or PublishSettings()
        self.stats = PublisherStats()

    async def run(
        self, topics: Sequence[PublishTopics], *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Publish until cancelled; ``task_status.started()`` once every topic is subscribed."""
        prefix = self.settings.prefix
        candle_streams: list[tuple[StreamKey, Subscription[Kline]]] = []
        tick_streams: list[tuple[StreamKey, Subscription[Tick]]] = []
        try:
            for spec in topics:
                for symbol in spec.symbols:
                    for timeframe in spec.timeframes:
                        key = StreamKey.kline(spec.exchange, symbol, timeframe, prefix)
                        subscription = self._source.klines(spec.exchange, symbol, timeframe, closed_only=True)
                        candle_streams.append((key, subscription))
                    if spec.ticks:
                        key = StreamKey.tick(spec.exchange, symbol, spec.tick_kind, prefix)
                        tick_streams.append((key, self._source.ticks(spec.exchange, symbol, kind=spec.tick_kind)))
            async with anyio.create_task_group() as tasks:
                for key, candles in candle_streams:
                    tasks.start_soon(self._publish_klines, key, candles)
                for key, ticks in tick_streams:
                    tasks.start_soon(self._publish_ticks, key, ticks)
                tasks.start_soon(self._report_health)
                task_status.started()
        finally:
            for _, subscription in candle_streams:
                subscription.close()
            for _, tick_subscription in tick_streams:
                tick_subscription.close()

    async def _publish_klines(self, key: StreamKey, candles: Subscription[Kline]) -> None:
        # Live candles wait in the subscription while the backfill runs; any overlap is refused.
        last = await self._last_open_time(key)
        topic = key.topic
        assert topic.timeframe is not None
        try:
            history = await self._source.fetch_klines(
                key.exchange, topic.symbol, topic.timeframe, limit=self.settings.backfill
            )
        except (httpx.HTTPError, TradeloopError, TimeoutError) as exc:  # REST down at start: go on live
            # Not fatal: the seam below fetches what closed since the stream's last candle once
            # the first live candle arrives (a stream without one starts at the live candles).
            log.error("%s: the start backfill failed (%s); publishing live candles", key, describe(exc))
            history = []
        missing = [kline for kline in history if last is None or kline.open_time > last]
        for first in range(0, len(missing), self.settings.batch):
            batch = missing[first : first + self.settings.batch]
            self.stats.backfilled += await self._append(key, batch, history=True)
        if missing:
            last = missing[-1].open_time
        async for kline in candles:
            batch = [kline, *_waiting(candles, self.settings.batch - 1)]
            if last is not None and kline.open_time > next_open_time(topic.timeframe, last):
                # A candle closed after the backfill's fetch and before the first push.
                seam = await candles_between(
                    self._source, key.exchange, topic.symbol, topic.timeframe, after=last, before=kline.open_time
                )
                if seam:
                    self.stats.backfilled += await self._append(key, seam)
            await self._append(key, batch)
            last = batch[-1].open_time if last is None else max(last, batch[-1].open_time)

    async def _last_open_time(self, key: StreamKey) -> int | None:
        entries = await until_available(
            lambda: self._redis.xrevrange(str(key), count=1), f"XREVRANGE {key}", on_retry=self._count_retry
        )
        return open_time_of(entries[0].identifier) if entries else None

    async def _publish_ticks(self, key: StreamKey, ticks: Subscription[Tick]) -> None:
        async for tick in ticks:
            await self._append(key, [tick, *_waiting(ticks, self.settings.batch - 1)])

    async def _append(self, key: StreamKey, items: Sequence[Kline] | Sequence[Tick], *, history: bool = False) -> int:
        """Append ``items`` in one pipelined round trip (``history``: the start's backfill, see
        :mod:`.keys`); returns how many were new.

        Candles carry their entry ID, so a candle the stream already has is refused by Redis and
        counted in ``duplicates``; ticks get Redis's IDs (a retry after a lost reply may append a
        tick twice: harmless for marks, unlike candles).
        """
        is_kline = key.topic.timeframe is not None
        maxlen = self.settings.kline_maxlen if is_kline else self.settings.tick_maxlen

        async def attempt() -> list[bool]:
            async with self._redis.pipeline(transaction=False, raise_on_error=False) as pipe:
                requests = [
                    pipe.xadd(
                        str(key),
                        encode_entry(item, history=history),
                        identifier=kline_entry_id(item) if isinstance(item, Kline) else None,
                        trim_strategy=PureToken.MAXLEN,
                        trim_operator=PureToken.APPROXIMATELY,
                        threshold=maxlen,
                    )
                    for item in items
                ]
            return [await _appended(request) for request in requests]

        outcomes = await until_available(attempt, f"XADD {key}", on_retry=self._count_retry)
        added = sum(outcomes)
        if is_kline:
            self.stats.klines += added
            self.stats.duplicates += len(outcomes) - added
        else:
            self.stats.ticks += added
        return added

    def _count_retry(self, error: RedisUnavailable) -> None:
        self.stats.redis_retries += 1

    async def _report_health(self) -> None:
        try:
            while True:
                await self._write_health()
                await anyio.sleep(self.settings.health_interval)
        finally:
            # Once more as the collector stops, so the hash ends with its final counts (an
            # operator, or a test, reading it then saw the counts of up to an interval before).
            with anyio.move_on_after(_FINAL_HEALTH_TIMEOUT, shield=True):
                await self._write_health()

    async def _write_health(self) -> None:
        key = collector_key(self.settings.collector, self.settings.prefix)
        fields = health_fields(self.stats, self._source.health())
        try:
            with redis_errors(f"HSET {key}"):
                await self._redis.hset(key, fields)
                await self._redis.pexpire(key, round(self.settings.health_interval * 3000))
        except RedisUnavailable as exc:
            # Health is best effort: the next report carries the same counters.
            self.stats.redis_retries += 1
            log.warning("collector health not written: %s", exc)


async def _appended(request: Awaitable[object]) -> bool:
    """The outcome of one pipelined XADD: True if appended, False if the stream had that ID."""
    try:
        await request
    except coredis.exceptions.ResponseError as exc:
        if _DUPLICATE_ID not in str(exc):
            raise
        return False
    return True


def _waiting(subscription: Subscription[T], limit: int) -> list[T]:
    """Up to ``limit`` items already waiting in ``subscription`` (batched into one round trip)."""
    items: list[T] = []
    while len(items) < limit:
        try:
            items.append(subscription.receive_nowait())
        except (SubscriptionWouldBlock, SubscriptionEnded):
            break
    return items


def health_fields(stats: PublisherStats, health: StreamHealth) -> dict[str, str]:
    """The collector's health hash: counters, and the streams' health as JSON per topic."""
    topics = [
        {
            "exchange": topic.exchange,
            "topic": str(topic.topic),
            "mode": topic.mode,
            "state": topic.state,
            "messages": topic.messages,
            "last_message_age": topic.last_message_age,
            "reconnects": topic.reconnects,
            "parse_errors": dict(topic.parse_errors),
            "lag": topic.lag,
            "dropped": topic.dropped,
        }
        for topic in health.topics
    ]
    return {
        "time_ms": str(time.time_ns() // 1_000_000),
        "klines": str(stats.klines),
        "backfilled": str(stats.backfilled),
        "duplicates": str(stats.duplicates),
        "ticks": str(stats.ticks),
        "redis_retries": str(stats.redis_retries),
        "reconnects": str(health.total_reconnects),
        "parse_errors": str(health.total_parse_errors),
        "topics": json.dumps(topics),
    }
