"""The engine side: a :class:`~tradeloop.streams.MarketData` read from Redis streams.

Engines of one *group* share topics, not entries: a strategy must see every candle of the
streams it reads (an SMA with every second candle is wrong), so each kline stream goes whole to
one engine of the group at a time.

Topic assignment. Every engine that subscribes a kline stream registers in the sorted set
``<prefix>:members:<group>:<stream>`` (score: its registration's expiry on the Redis server's
clock) and renews that every third of :attr:`RedisSourceSettings.lease_ttl`. The owner is chosen
by rendezvous hashing over the live members (highest ``sha256(member, stream)``), so every engine
computes the same owner without talking to the others, and a member joining or leaving moves
only the streams it wins or held. The owner holds the lease ``<prefix>:lease:<group>:<stream>``
(``SET NX PX lease_ttl``, renewed with the membership); an engine reads a stream only while it
holds the lease, and hands it over when it is no longer the chosen owner: it stops reading,
acknowledges what its strategies processed, and deletes the lease, after which the chosen engine
takes it. A dead engine's lease and membership expire after ``lease_ttl``.

Delivery. Kline streams are read with a consumer group named after the engine group
(``XREADGROUP``). A new group starts at the stream's end: its engines warm up from the stream's
history and trade the candles that close from then on (replaying months of candles as live ones
would trade on stale prices). An engine keeps its consumer name across restarts. On taking a
stream the engine first claims every pending entry of the group (``XAUTOCLAIM``: entries a dead
or departed engine read but did not acknowledge), delivers its pending entries in order, then new
ones. An entry is acknowledged (``XACK``) only after the engine's strategies processed the candle
(the trading engine calls :meth:`RedisMarketData.mark_processed` once every strategy reading it
has handled it), and the same Lua step
records the newest processed open time in ``<prefix>:progress:<group>:<stream>``. So after a
crash of either side every closed candle reaches a strategy exactly once: the collector's entry
IDs make publishing idempotent, the group keeps the position, pending entries are redelivered,
and the engine's coordinator drops repeats by open time. Warm-up history
(:meth:`RedisMarketData.fetch_klines`) ends with the newest processed candle.

Gaps. Candles are consecutive, so an entry more than one timeframe after the previous one means
entries were trimmed before this group read them (or deleted): the missing candles are fetched
from the exchange's REST when the source was given that exchange's client, otherwise
:class:`MarketDataGapError` is raised. Never a silent gap. A candle filled over REST counts as
processed like an entry (its open time becomes the group's progress), so a restart or a
hand-over does not fill and trade it again.

Copies. A hand-over leaves the candles this engine read but had not processed in its
subscribers' buffers; they are refused by identity (:meth:`RedisMarketData.should_process`), so
the engine that takes the stream over, this one included, processes fresh copies instead.

Ticks are marks, not work: every engine reads every tick stream it subscribes (``XREAD``, from
the newest entry on), with the ``latest`` slow-consumer policy by default.

Redis going away is waited out (reads and acknowledgements are retried with backoff); it raises
:class:`~.client.RedisError` for anything else Redis refuses.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, cast

import anyio
import anyio.abc
import httpx
from coredis.exceptions import StreamDuplicateConsumerGroupError
from coredis.response.types import StreamEntry
from coredis.tokens import PureToken

from .._backend import HotPath, WakeupEvent
from ..errors import TradeloopError
from ..exchanges import Exchange, normalize_exchange_name
from ..exchanges.base import TopicKind
from ..models import Kline, Tick
from ..streams import SlowConsumerPolicy, StreamHealth, Subscription
from ..streams.backoff import full_jitter_delay
from ..streams.fanout import FanOut
from ..streams.health import ConnectionHealth, TopicHealth
from ..streams.source import TickKind
from ..symbols import next_open_time, timeframe_ms
from .client import (
    RedisClient,
    RedisError,
    RedisGroupLost,
    RedisUnavailable,
    log_retry,
    open_redis,
    redacted_url,
    redis_errors,
    until_available,
)
from .keys import EntryError, StreamKey, consumer_key, decode_kline, decode_tick, is_history, open_time_of
from .settings import RedisSourceSettings

__all__ = ["MarketDataGapError", "RedisMarketData", "RedisSourceSettings", "rendezvous_owner"]

log = logging.getLogger(__name__)

_CLOSE_TIMEOUT = 5.0
_HANDED_OVER_KEPT = 10_000
_REST_LIMIT = 1000

# KEYS: members, lease; ARGV: me, ttl ms. Registers ``me`` until now + ttl (server clock), drops
# expired members, renews the lease if it is ours; returns the lease holder ("" if none) and the
# live members.
_HEARTBEAT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now_ms + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
local holder = redis.call('GET', KEYS[2])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[2], ttl) end
return {holder or '', redis.call('ZRANGE', KEYS[1], 0, -1)}
"""

# KEYS: stream, progress; ARGV: group, open time, entry IDs (none for candles filled over REST).
# Acknowledges the entries and records the newest processed open time in the same step, so the
# two never disagree after a crash.
_ACKNOWLEDGE = """
local acked = 0
if #ARGV > 2 then acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 3)) end
local current = tonumber(redis.call('GET', KEYS[2]) or '-1')
if tonumber(ARGV[2]) > current then redis.call('SET', KEYS[2], ARGV[2]) end
return acked
"""

# KEYS: the consumer name's key; ARGV: this engine's token, ttl in ms. Takes or renews the name
# unless another engine's token holds it; 1 if ours.
_CLAIM_NAME = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: lease (or a consumer name's key); ARGV: me. Deletes it only if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class MarketDataGapError(TradeloopError):
    """Candles are missing from a stream (trimmed before this group read them) and cannot be
    fetched from the exchange: the consumer stops rather than hide the gap.
    """


def rendezvous_owner(members: Iterable[str], stream: str) -> str | None:
    """The member that owns ``stream``: the highest hash of (member, stream); None if no member."""
    return max(members, key=lambda member: hashlib.sha256(f"{member}\0{stream}".encode()).digest(), default=None)


class _Counters:
    __slots__ = (
        "duplicates",
        "entries",
        "gap_filled",
        "groups_lost",
        "history",
        "last_time",
        "parse_errors",
        "rest_errors",
    )

    def __init__(self) -> None:
        self.entries = 0
        self.groups_lost = 0
        self.history = 0
        self.parse_errors = 0
        self.duplicates = 0
        self.gap_filled = 0
        self.rest_errors = 0
        self.last_time: float | None = None


class _KlineStream:
    """One kline stream of this engine: membership, lease, reading and acknowledgements."""

    def __init__(self, source: RedisMarketData, key: StreamKey) -> None:
        self.source = source
        self.key = key
        self.name = str(key)
        assert key.topic.timeframe is not None
        self.timeframe = key.topic.timeframe
        settings = source.settings
        self.lease_key = key.derived("lease", settings.group)
        self.members_key = key.derived("members", settings.group)
        self.progress_key = key.derived("progress", settings.group)
        self.fanout: FanOut[Kline] = FanOut(on_empty=self.stop)
        self.scope = anyio.CancelScope()
        self.owned = False
        self.resumed = anyio.Event()
        """Set once this engine holds the stream and knows where its group stands."""
        self.resume_end: str | None = None
        """XREVRANGE end of the candles the group already processed (warm-up history); None: none."""
        self.previous: int | None = None
        """Open time of the last candle handed on (or processed by the group before)."""
        self.history_first = False
        """The group has processed nothing yet (no progress recorded): history entries (a
        collector's start backfill) that come before the first live one are skipped."""
        self.delivered: dict[int, bytes | None] = {}
        """Candles handed on in this tenure and not yet acknowledged, by open time: their entry
        IDs, or None for a candle filled over REST (no entry to acknowledge, progress to record)."""
        self.copies: dict[int, Kline] = {}
        """The very objects handed on in this tenure, by open time (see :attr:`handed_over`)."""
        self.handed_over: OrderedDict[int, Kline] = OrderedDict()
        """Copies handed on in an earlier tenure and unprocessed when it ended: they may still sit
        in a subscriber's buffer, and another engine (or this one's next tenure, with a fresh
        copy) processes their candles. Told apart by identity, so a fresh copy of the same candle
        is processed; the newest :data:`_HANDED_OVER_KEPT` are kept (older ones left the buffers
        long ago)."""
        self.processed: list[int] = []
        self.to_another = False
        """This tenure ends because another engine takes the stream."""
        self.processed_up_to: int | None = None
        """The newest candle this engine processed and acknowledged, across tenures: where its
        group stands should Redis lose the group's progress with its data."""
        self.ack_wanted: WakeupEvent = source.hot.new_event()
        self.counters = _Counters()

    def stop(self) -> None:
        self.scope.cancel()

    async def run(self) -> None:
        with self.scope:
            try:
                while True:
                    await self._wait_for_lease()
                    try:
                        async with anyio.create_task_group() as tenure:
                            tenure.start_soon(self._keep_lease, tenure.cancel_scope)
                            tenure.start_soon(self._read, tenure.cancel_scope)
                            tenure.start_soon(self._acknowledge_forever)
                    finally:
                        await self._hand_over()
            finally:
                self.fanout.close()
                with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True), _logged(f"leaving {self.members_key}"):
                    await self.source.redis.zrem(self.members_key, [self.source.settings.consumer])

    # -- lease ------------------------------------------------------------------------------------

    async def _heartbeat(self) -> tuple[str, list[str]]:
        settings = self.source.settings
        ttl_ms = round(settings.lease_ttl * 1000)
        reply = await until_available(
            lambda: self.source.redis.eval(_HEARTBEAT, [self.members_key, self.lease_key], [settings.consumer, ttl_ms]),
            f"heartbeat {self.lease_key}",
            on_retry=self.source.count_retry,
        )
        holder, members = cast(list[Any], reply)
        return _text(holder), [_text(member) for member in members]

    def _chosen(self, members: list[str]) -> bool:
        return rendezvous_owner(members, self.name) == self.source.settings.consumer

    async def _wait_for_lease(self) -> None:
        me = self.source.settings.consumer
        while True:
            holder, members = await self._heartbeat()
            if holder == me:
                return  # ours from before a restart, still unexpired
            if holder:
                self.processed_up_to = None  # another engine processes it now (see _hand_over)
            elif self._chosen(members):
                acquired = await until_available(
                    functools.partial(
                        self.source.redis.set,
                        self.lease_key,
                        me,
                        condition=PureToken.NX,
                        px=round(self.source.settings.lease_ttl * 1000),
                    ),
                    f"SET {self.lease_key}",
                    on_retry=self.source.count_retry,
                )
                if acquired:
                    return
            await anyio.sleep(self.source.renew_interval)

    async def _keep_lease(self, tenure: anyio.CancelScope) -> None:
        me = self.source.settings.consumer
        while True:
            await anyio.sleep(self.source.renew_interval)
            holder, members = await self._heartbeat()
            if holder != me:
                log.warning("%s: lease lost to %r; stopping reading", self.name, holder or "nobody")
                self.to_another = bool(holder)
                break
            if not self._chosen(members):
                log.info("%s: handing over to %s", self.name, rendezvous_owner(members, self.name))
                self.to_another = True
                break
        tenure.cancel()

    async def _hand_over(self) -> None:
        """Stop handing on candles, acknowledge the processed ones, then give up the lease.

        The tenure's copies are refused before the first await (a strategy must not process what
        the next owner will), and its bookkeeping is cleared even when the acknowledgement does
        not get through: a candle processed but not acknowledged is then delivered again (the
        engine's coordinator drops it as a repeat), never held back as already handed on.
        """
        self.owned = False
        self.resumed = anyio.Event()
        for open_time, copy in self.copies.items():
            self.handed_over[open_time] = copy
            self.handed_over.move_to_end(open_time)
        while len(self.handed_over) > _HANDED_OVER_KEPT:
            self.handed_over.popitem(last=False)
        self.copies.clear()
        try:
            with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True) as scope:
                await self._acknowledge()
                await self._leave_progress()
                me = self.source.settings.consumer
                with _logged(f"releasing {self.lease_key}"):
                    await self.source.redis.eval(_RELEASE, [self.lease_key], [me])
        finally:
            self.delivered.clear()
            self.processed.clear()
            if self.to_another:
                # Its processing from now on is not ours to see: what this engine processed no
                # longer says where the group stands (recovering a lost group from it would
                # rewind the group, and candles would be processed again; a review's repro).
                self.processed_up_to = None
                self.to_another = False
        if scope.cancelled_caught:
            log.error("%s: hand-over took over %.0f s; the lease expires by itself", self.name, _CLOSE_TIMEOUT)

    # -- acknowledgements -------------------------------------------------------------------------

    def should_process(self, kline: Kline) -> bool:
        """False for a copy this engine handed on in a tenure that ended, or is ending (from the
        hand-over's first step), unprocessed: another engine, or this one's fresh copy,
        processes the candle."""
        return self.handed_over.get(kline.open_time) is not kline

    def mark_processed(self, kline: Kline) -> None:
        if self.copies.get(kline.open_time) is kline:
            self.processed.append(kline.open_time)
            self.ack_wanted.set()

    async def _acknowledge_forever(self) -> None:
        while True:
            await self.ack_wanted.wait()
            self.ack_wanted = self.source.hot.new_event()
            await self._acknowledge()

    async def _acknowledge(self) -> None:
        """XACK the processed entries. They are forgotten only once Redis confirmed, so an
        acknowledgement cut short (cancelled, Redis down) is repeated by the hand-over (XACK is
        idempotent).
        """
        taken = len(self.processed)
        done = [t for t in self.processed[:taken] if t in self.delivered]
        if done:
            ids = [entry for entry in (self.delivered[t] for t in done) if entry is not None]
            await until_available(
                lambda: self._record_progress(max(done), ids), f"XACK {self.name}", on_retry=self.source.count_retry
            )
            for t in done:
                del self.delivered[t]
                self.copies.pop(t, None)  # gone already once a hand-over began
            newest = max(done)
            if self.processed_up_to is None or newest > self.processed_up_to:
                self.processed_up_to = newest
        del self.processed[:taken]

    # -- reading ----------------------------------------------------------------------------------

    async def _read(self, tenure: anyio.CancelScope) -> None:
        try:
            await self._read_group_entries()
        except RedisGroupLost as exc:
            # Redis lost its data, our lease with it: end the tenure (never read without the
            # lease, or two engines could read the stream); the next one recovers the group.
            log.error("%s", exc)
            tenure.cancel()

    async def _leave_progress(self) -> None:
        """Make sure the group's progress is at least what this engine processed (a no-op unless
        Redis lost it): the engine that takes the stream next then fills what Redis lost from
        there. Found by a third review: after a data loss a standby could take the stream for a
        moment, starting at the stream's end, and the candles of the outage were skipped."""
        processed = self.processed_up_to
        if processed is None:
            return
        with _logged(f"SET {self.progress_key}"):
            await self._record_progress(processed)

    def _record_progress(self, newest: int, ids: Sequence[bytes] = ()) -> Awaitable[Any]:
        """Acknowledge ``ids`` and raise the group's progress to ``newest`` if it is behind, in
        one step (:data:`_ACKNOWLEDGE`)."""
        return self.source.redis.eval(
            _ACKNOWLEDGE, [self.name, self.progress_key], [self.source.settings.group, newest, *ids]
        )

    async def _recover_lost_group(self) -> None:
        """The group's progress is gone although this engine processed candles of it: Redis lost
        its data (restarted without persistence, or the stream was deleted). The group, created
        reading the stream from its start, gets this engine's last processed candle as its
        progress: the candles after it are handed on once (those before, the collector's
        backfill included, are repeats), and a gap to them is fetched over REST.

        Found by an outside look (the owning engine ended with NOGROUP) and a review (recovering
        from the last candle *handed on*, not processed, lost the ones still in a buffer; and a
        heartbeat noticing first recreated the group at the stream's end, skipping the outage's
        candles). Not covered: a stream that moves to another engine as the data is lost; that
        engine does not know where the group stood.
        """
        self.counters.groups_lost += 1
        processed = self.processed_up_to
        assert processed is not None
        log.error(
            "%s: the consumer group's progress was gone or behind this engine's (did Redis lose its data?); "
            "going on after the candle at %s", self.name, processed
        )
        await until_available(
            lambda: self._record_progress(processed), f"SET {self.progress_key}", on_retry=self.source.count_retry
        )

    async def _read_group_entries(self) -> None:
        redis = self.source.redis
        settings = self.source.settings
        await self._ensure_group()
        await self._find_resume_point()
        self.owned = True
        self.resumed.set()
        # Claim what departed consumers read but did not acknowledge (we hold the lease: all of it).
        cursor = b"0-0"
        while True:
            reply = await until_available(
                functools.partial(
                    redis.xautoclaim,
                    self.name,
                    settings.group,
                    settings.consumer,
                    0,
                    cursor,
                    count=settings.batch,
                    justid=True,
                ),
                f"XAUTOCLAIM {self.name}",
                on_retry=self.source.count_retry,
            )
            cursor = reply[0]
            if cursor in (b"0-0", "0-0"):
                break
        # Our pending entries (claimed or from before a restart), in ID order, then new ones. A
        # read whose reply was lost may still have moved entries into our pending list, so after
        # a failed read we go through that list again before reading new entries.
        position = b"0"
        failures = 0
        while True:
            try:
                entries = await self._read_group(position, wait=position == b">")
            except RedisUnavailable as exc:
                failures += 1
                self.source.count_retry(exc)
                log_retry(exc, failures, f"XREADGROUP {self.name}")
                await anyio.sleep(full_jitter_delay(failures, 0.05, 2.0))
                position = b"0"
                continue
            failures = 0
            # Entries skipped (history, repeats, unreadable, trimmed) are acknowledged together
            # after the batch: one round trip, not one per entry (a start backfill is 1000).
            skipped: list[bytes] = []
            for entry_id, fields in entries:
                await self._deliver(entry_id, fields, skipped)
            if skipped:
                await self._ack_ids(skipped)
            if position != b">":
                position = entries[-1][0] if entries else b">"

    async def _ensure_group(self) -> None:
        """Create the group unless it exists. A new group reads the candles that close from then
        on (from the stream's end), unless this engine processed candles of it before: Redis lost
        it, and it reads the stream from its start (see _recover_lost_group)."""
        first_entry = "$" if self.processed_up_to is None else "0"
        try:
            await until_available(
                lambda: self.source.redis.xgroup_create(
                    self.name, self.source.settings.group, first_entry, mkstream=True
                ),
                f"XGROUP CREATE {self.name}",
                on_retry=self.source.count_retry,
            )
        except RedisError as exc:
            if not isinstance(exc.__cause__, StreamDuplicateConsumerGroupError):
                raise

    async def _find_resume_point(self) -> None:
        """Where the group stands: after the newest candle it processed, else after its pending
        entries' predecessor, else where the group was created (the stream's end then).
        """
        redis = self.source.redis
        group = self.source.settings.group
        progress = await until_available(
            lambda: redis.get(self.progress_key), f"GET {self.progress_key}", on_retry=self.source.count_retry
        )
        if progress is not None and (self.processed_up_to is None or int(progress) >= self.processed_up_to):
            self.processed_up_to = int(progress)  # where the group stands, should Redis lose it
        elif self.processed_up_to is not None:
            # The progress is gone or behind what this engine processed: Redis lost its data, or
            # restored an older copy. (Not keyed on creating the group: a tenure cancelled between
            # XGROUP CREATE and its reply leaves a group this engine did not see created.)
            await self._recover_lost_group()
            progress = str(self.processed_up_to).encode()
        # Skipping history writes no progress, so an engine stopped part-way through a start
        # backfill skips the rest of it when it comes back.
        self.history_first = progress is None
        if progress is not None:
            self.previous = int(progress)
            self.resume_end = f"{self.previous}-0"
            return
        pending = await until_available(
            lambda: redis.xpending(self.name, group), f"XPENDING {self.name}", on_retry=self.source.count_retry
        )
        first_pending = getattr(pending, "minimum_identifier", None)
        if first_pending:
            self.previous = open_time_of(first_pending) - timeframe_ms(self.timeframe)
            self.resume_end = f"({_text(first_pending)}"
            return
        groups = await until_available(
            lambda: redis.xinfo_groups(self.name), f"XINFO GROUPS {self.name}", on_retry=self.source.count_retry
        )
        for info in groups:
            if _text(cast(bytes, info[b"name"])) == group:
                last = _text(cast(bytes, info[b"last-delivered-id"]))
                self.previous = None if last == "0-0" else open_time_of(last)
                self.resume_end = None if last == "0-0" else last
                return

    async def _read_group(self, position: bytes, *, wait: bool) -> list[tuple[bytes, dict[bytes, bytes] | None]]:
        settings = self.source.settings
        block = round(settings.read_wait * 1000) if wait and settings.read_wait > 0 else None
        with redis_errors(f"XREADGROUP {self.name}"):
            reply = await self.source.redis.xreadgroup(
                settings.group, settings.consumer, {self.name: position}, count=settings.batch, block=block
            )
        entries = [] if not reply else list(reply.get(self.name.encode(), ()))
        if wait and not entries and block is None:
            await anyio.sleep(settings.poll_interval)
        return [_entry(entry) for entry in entries]

    async def _deliver(self, entry_id: bytes, fields: dict[bytes, bytes] | None, skipped: list[bytes]) -> None:
        """Hand on the candle of one entry, or add the entry to ``skipped`` (to acknowledge)."""
        if fields is None:
            # A pending entry that was trimmed away: the open-time check below reports the gap.
            skipped.append(entry_id)
            return
        try:
            kline = decode_kline(fields)
        except EntryError as exc:
            self.counters.parse_errors += 1
            log.error("%s: entry %s skipped: %s", self.name, _text(entry_id), exc)
            skipped.append(entry_id)
            return
        if kline.open_time in self.delivered:
            # Handed on already in this tenure (a pending list read again after a failure): not
            # again, but the stream is past it.
            if self.previous is None or kline.open_time > self.previous:
                self.previous = kline.open_time
            return
        if self.history_first:
            if is_history(fields):
                # The group began at an empty stream: a collector's start backfill is warm-up
                # history, not candles to trade on prices hours old.
                self.counters.history += 1
                self.previous = kline.open_time
                skipped.append(entry_id)
                return
            self.history_first = False
        if self.previous is not None and kline.open_time <= self.previous:
            self.counters.duplicates += 1
            skipped.append(entry_id)
            return
        if self.previous is not None:
            expected = next_open_time(self.timeframe, self.previous)
            if kline.open_time > expected:
                await self._fill_gap(expected, kline.open_time)
        self.delivered[kline.open_time] = entry_id
        self.copies[kline.open_time] = kline
        self.counters.entries += 1
        self.counters.last_time = self.source.hot.current_time()
        self.previous = kline.open_time
        await self.fanout.publish_when_room(kline)

    async def _ack_ids(self, ids: Sequence[bytes]) -> None:
        group = self.source.settings.group
        await until_available(
            lambda: self.source.redis.xack(self.name, group, ids), f"XACK {self.name}", on_retry=self.source.count_retry
        )

    async def _fill_gap(self, first_missing: int, next_present: int) -> None:
        """Hand on the candles in [first_missing, next_present) from the exchange's REST."""
        exchange = self.key.exchange
        missing = (next_present - first_missing) // timeframe_ms(self.timeframe)
        where = f"{self.name}: candles {first_missing} to {next_present} (exclusive) are missing"
        client = self.source.exchanges.get(exchange)
        if client is None:
            raise MarketDataGapError(f"{where}; configure exchange {exchange!r} so they are fetched over its REST")
        if missing > _REST_LIMIT:
            raise MarketDataGapError(f"{where}: {missing} candles, more than the {_REST_LIMIT} REST backfills")
        try:
            with anyio.fail_after(self.source.settings.command_timeout):
                rows = await client.fetch_klines(
                    self.source.http,
                    self.key.topic.symbol,
                    self.timeframe,
                    start_ms=first_missing,
                    # Up to the candle we have: the newest candle of a reply counts as still open.
                    end_ms=next_present,
                    limit=missing + 1,
                )
        except (httpx.HTTPError, TradeloopError, TimeoutError) as exc:
            self.counters.rest_errors += 1
            raise MarketDataGapError(f"{where} and REST failed: {exc}") from exc
        candles = [k for k in rows if k.closed and first_missing <= k.open_time < next_present]
        if [k.open_time for k in candles] != [first_missing + i * timeframe_ms(self.timeframe) for i in range(missing)]:
            raise MarketDataGapError(f"{where} and REST returned {len(candles)} of the {missing}")
        log.warning("%s; %d fetched over REST", where, missing)
        for kline in candles:
            if kline.open_time in self.delivered:
                self.previous = kline.open_time  # handed on already in this tenure
                continue
            self.counters.gap_filled += 1
            self.previous = kline.open_time
            # Processed like any candle: its open time becomes the group's progress, so a restart
            # or a hand-over does not fill (and trade) the same gap again.
            self.delivered[kline.open_time] = None
            self.copies[kline.open_time] = kline
            await self.fanout.publish_when_room(kline)

    def health(self, now: float) -> TopicHealth:
        return _topic_health(self.key, "owner" if self.owned else "standby", self.counters, self.fanout, now)


class _TickStream:
    """One tick stream, read whole by this engine from its newest entry on."""

    def __init__(self, source: RedisMarketData, key: StreamKey) -> None:
        self.source = source
        self.key = key
        self.name = str(key)
        self.fanout: FanOut[Tick] = FanOut(on_empty=self.stop)
        self.scope = anyio.CancelScope()
        self.counters = _Counters()

    def stop(self) -> None:
        self.scope.cancel()

    async def run(self) -> None:
        redis = self.source.redis
        settings = self.source.settings
        with self.scope:
            try:
                newest = await until_available(
                    lambda: redis.xrevrange(self.name, count=1),
                    f"XREVRANGE {self.name}",
                    on_retry=self.source.count_retry,
                )
                position = _bytes(newest[0].identifier) if newest else b"0-0"
                while True:
                    block = round(settings.read_wait * 1000) if settings.read_wait > 0 else None
                    reply = await until_available(
                        functools.partial(redis.xread, {self.name: position}, count=settings.batch, block=block),
                        f"XREAD {self.name}",
                        on_retry=self.source.count_retry,
                    )
                    entries = [_entry(e) for e in reply.get(self.name.encode(), ())] if reply else []
                    for entry_id, fields in entries:
                        position = entry_id
                        try:
                            tick = decode_tick(fields or {})
                        except EntryError as exc:
                            self.counters.parse_errors += 1
                            log.error("%s: entry %s skipped: %s", self.name, _text(entry_id), exc)
                            continue
                        self.counters.entries += 1
                        self.counters.last_time = self.source.hot.current_time()
                        await self.fanout.publish_when_room(tick)
                    if not entries and block is None:
                        await anyio.sleep(settings.poll_interval)
            finally:
                self.fanout.close()

    def health(self, now: float) -> TopicHealth:
        return _topic_health(self.key, "reading", self.counters, self.fanout, now)


class _ConsumerName:
    """This engine's hold on its ``consumer`` name within its group, for as long as it runs.

    Two engines started with the same name would each take the other's leases for their own and
    read the same streams under one name, each getting part of the candles (an outside look saw
    an SMA fed every other candle, on both engines). So each engine holds a key with a token of
    its own, renewed with the leases; an engine whose name another running engine holds waits
    for the key to expire (the holder may have been killed: its key outlives it by up to
    ``lease_ttl``), then refuses to start.
    """

    def __init__(self, source: RedisMarketData) -> None:
        self.source = source
        settings = source.settings
        self.key = consumer_key(settings.group, settings.consumer, settings.prefix)
        self.token = secrets.token_hex(16)

    async def _held(self) -> bool:
        ttl_ms = round(self.source.settings.lease_ttl * 1000)
        reply = await until_available(
            lambda: self.source.redis.eval(_CLAIM_NAME, [self.key], [self.token, ttl_ms]),
            f"claiming {self.key}",
            on_retry=self.source.count_retry,
        )
        return bool(reply)

    def _taken(self, why: str) -> RedisError:
        settings = self.source.settings
        return RedisError(
            f"consumer name {settings.consumer!r} of group {settings.group!r} {why}: give each engine its own "
            "consumer name"
        )

    async def claim(self) -> None:
        """Raises RedisError if another engine holds the name for twice ``lease_ttl``: a key
        nobody renews expires within ``lease_ttl``. Redis being away is waited out, not counted
        against the name."""
        waited_for = 2 * self.source.settings.lease_ttl
        held_since: float | None = None
        while not await self._held():
            now = anyio.current_time()
            if held_since is None:
                held_since = now
                log.warning("%s is held; waiting up to %.0f s (an engine by that name killed?)", self.key, waited_for)
            elif now - held_since >= waited_for:
                raise self._taken("is in use by another running engine")
            await anyio.sleep(self.source.renew_interval)  # polling: Redis tells no one when a key expires

    async def keep(self) -> None:
        """Renew the name; raise RedisError if another engine took it meanwhile (ours expired
        while this engine stalled or Redis was away)."""
        while True:
            await anyio.sleep(self.source.renew_interval)
            if not await self._held():
                raise self._taken("was taken by another engine while this one could not renew it for lease_ttl")

    async def release(self) -> None:
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True), _logged(f"releasing {self.key}"):
            await self.source.redis.eval(_RELEASE, [self.key], [self.token])


class RedisMarketData:
    """Market data from Redis streams, for the engine. Create it with :meth:`open`."""

    def __init__(
        self,
        settings: RedisSourceSettings,
        redis: RedisClient,
        http: httpx.AsyncClient,
        tasks: anyio.abc.TaskGroup,
        exchanges: Mapping[str, Exchange],
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.http = http
        self.exchanges = {normalize_exchange_name(name): client for name, client in exchanges.items()}
        self._tasks = tasks
        self.hot = HotPath()
        """The running backend's clock and events, bound once (see :mod:`tradeloop._backend`)."""
        self._klines: dict[StreamKey, _KlineStream] = {}
        self._ticks: dict[StreamKey, _TickStream] = {}
        self.redis_retries = 0
        self.renew_interval = settings.lease_ttl / 3

    @classmethod
    @asynccontextmanager
    async def open(
        cls, settings: RedisSourceSettings, exchanges: Mapping[str, Exchange] | None = None
    ) -> AsyncIterator[RedisMarketData]:
        """Connect to ``settings.source``; ``exchanges`` (clients by name) fill gaps over REST.

        Leaving the context ends every subscription, acknowledges what was processed and hands
        every stream back to the group (bounded).
        """
        async with (
            open_redis(settings.source, timeouts=settings.timeouts) as redis,
            httpx.AsyncClient(timeout=settings.command_timeout) as http,
        ):
            name: _ConsumerName | None = None
            try:
                async with anyio.create_task_group() as tasks:
                    source = cls(settings, redis, http, tasks, exchanges or {})
                    name = _ConsumerName(source)
                    await name.claim()
                    tasks.start_soon(name.keep)
                    try:
                        yield source
                    finally:
                        tasks.cancel_scope.cancel()
            finally:
                # Once every stream has handed over: released earlier, the name could go to a new
                # engine whose lease (held under the same name) this one's hand-over then deletes.
                if name is not None:
                    await name.release()

    def count_retry(self, error: RedisError) -> None:
        self.redis_retries += 1

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
        """Closed candles of the stream, once this engine owns it (Redis holds closed candles only,
        so ``closed_only`` changes nothing)."""
        key = StreamKey.kline(exchange, symbol, timeframe, self.settings.prefix)
        stream = self._klines.get(key)
        if stream is None:
            stream = self._klines[key] = _KlineStream(self, key)
            self._tasks.start_soon(self._run_stream, self._klines, key, stream)
        return stream.fanout.subscribe(policy, buffer or self.settings.batch, name=name)

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
        key = StreamKey.tick(exchange, symbol, kind, self.settings.prefix)
        stream = self._ticks.get(key)
        if stream is None:
            stream = self._ticks[key] = _TickStream(self, key)
            self._tasks.start_soon(self._run_stream, self._ticks, key, stream)
        return stream.fanout.subscribe(policy, buffer or 16, name=name)

    async def _run_stream(
        self, streams: dict[StreamKey, Any], key: StreamKey, stream: _KlineStream | _TickStream
    ) -> None:
        try:
            await stream.run()
        finally:
            if streams.get(key) is stream:
                del streams[key]

    async def fetch_klines(self, exchange: str, symbol: str, timeframe: str, *, limit: int = 100) -> list[Kline]:
        """The newest ``limit`` candles the group processed, oldest first (strategy warm-up).

        While another engine of the group owns the stream this waits until this one takes it
        over, so the history ends exactly where this engine's live candles begin.
        """
        key = StreamKey.kline(exchange, symbol, timeframe, self.settings.prefix)
        stream = self._klines.get(key)
        end: str | None = "+"
        if stream is not None:
            await stream.resumed.wait()
            end = stream.resume_end
        if end is None:
            return []
        entries = await until_available(
            functools.partial(self.redis.xrevrange, str(key), end, "-", count=limit),
            f"XREVRANGE {key}",
            on_retry=self.count_retry,
        )
        history = []
        for entry_id, fields in map(_entry, reversed(entries)):
            try:
                history.append(decode_kline(fields or {}))
            except EntryError as exc:
                log.error("%s: entry %s skipped in history: %s", key, _text(entry_id), exc)
        return history

    # -- what the engine asks and reports ----------------------------------------------------------

    def should_process(self, kline: Kline) -> bool:
        """False for a copy of a candle this engine handed over (or is handing over) unprocessed:
        another engine, or this engine's fresh copy of it, processes the candle. Copies are told
        apart by identity, so ask with the very object received.

        Ask, process and call :meth:`mark_processed` in one step, with no await in between: a
        hand-over in between would give the candle to two engines. The trading engine asks
        before its coordinator counts the candle as seen.
        """
        stream = self._klines.get(StreamKey.kline(kline.exchange, kline.symbol, kline.timeframe, self.settings.prefix))
        return stream is None or stream.should_process(kline)

    def mark_processed(self, kline: Kline) -> None:
        """The candle was processed: its entry is acknowledged (soon, in the background)."""
        stream = self._klines.get(StreamKey.kline(kline.exchange, kline.symbol, kline.timeframe, self.settings.prefix))
        if stream is not None:
            stream.mark_processed(kline)

    def health(self) -> StreamHealth:
        now = self.hot.current_time()
        streams: list[_KlineStream | _TickStream] = [*self._klines.values(), *self._ticks.values()]
        entries = sum(s.counters.entries for s in streams)
        last = max((s.counters.last_time for s in streams if s.counters.last_time is not None), default=None)
        connection = ConnectionHealth(
            exchange="redis",
            market="",
            url=redacted_url(self.settings.source),
            connection_id=0,
            state="open",
            topics=len(streams),
            messages=entries,
            last_message_age=None if last is None else now - last,
            reconnects=self.redis_retries,
            last_reconnect_age=None,
            use_rest_fallback=False,
            parse_errors={"entry": sum(s.counters.parse_errors for s in streams)},
            error_replies=0,
            recent_errors=(),
        )
        return StreamHealth((connection,), tuple(stream.health(now) for stream in streams))


def _topic_health(key: StreamKey, state: str, counters: _Counters, fanout: FanOut[Any], now: float) -> TopicHealth:
    return TopicHealth(
        exchange=key.exchange,
        topic=key.topic,
        mode="redis",
        state=state,
        messages=counters.entries,
        last_message_age=None if counters.last_time is None else now - counters.last_time,
        reconnects=0,
        parse_errors={
            kind: count
            for kind, count in (("entry", counters.parse_errors), ("group_lost", counters.groups_lost))
            if count
        },
        closed_candles=counters.entries if key.topic.kind is TopicKind.KLINE else 0,
        backfilled_candles=counters.gap_filled,
        stale_updates=0,
        duplicate_updates=counters.duplicates,
        unconfirmed_closes=0,
        rest_errors=counters.rest_errors,
        recent_errors=(),
        subscribers=fanout.health(),
    )


@contextmanager
def _logged(what: str) -> Iterator[None]:
    """Cleanup that Redis may refuse (it may be down): logged, never raised over what ends us; the
    lease and the membership expire by themselves."""
    try:
        with redis_errors(what):
            yield
    except RedisError as exc:
        log.warning("%s; it expires by itself", exc)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _entry(entry: StreamEntry) -> tuple[bytes, dict[bytes, bytes] | None]:
    """An entry's ID and fields (None for a pending entry whose data was trimmed away)."""
    values = entry.field_values
    fields = None if not values else {_bytes(name): _bytes(value) for name, value in values.items()}
    return _bytes(entry.identifier), fields
