"""Where market data lives in Redis, and how one entry encodes a candle or a tick (pure functions).

Key scheme (every ``<part>`` percent-encoded with :func:`urllib.parse.quote` and no safe
characters, so the ``:`` and ``/`` of ``ccxt:okx`` or ``BTC/USDT:USDT`` never split a key)::

    <prefix>:kline:<exchange>:<symbol>:<timeframe>      closed candles, entry ID <open_time_ms>-0
    <prefix>:<kind>:<exchange>:<symbol>                 ticks (kind: ticker, last_price, mark_price,
                                                         book_ticker), entry ID assigned by Redis
    <prefix>:collector:<name>                           a collector's health (hash, expires)
    <prefix>:lease:<group>:<stream key>                 which engine of a group owns a kline stream
    <prefix>:members:<group>:<stream key>               the group's live engines for that stream
    <prefix>:progress:<group>:<stream key>              the newest open time the group processed

The prefix is ``tradeloop`` unless configured. Each stream entry has the field ``data``: the
candle or tick as JSON (msgspec), prices as decimal strings, so they round-trip exactly. A candle
a collector backfilled when it started also has ``history`` (``1``): it closed before the
collector ran, so a group that has processed nothing yet skips it (acknowledges it untraded):
it is history, not a live candle to trade on prices hours old.

A closed candle's entry ID is its open time, so a candle published twice (a collector restart, a
backfill overlapping live data) is refused by Redis (an XADD ID must exceed the last one) and can
never appear twice in a stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote

import msgspec

from ..errors import InvalidValueError
from ..exchanges import normalize_exchange_name
from ..exchanges.base import Topic, TopicKind, tick_kind
from ..models import Kline, Tick

__all__ = [
    "DEFAULT_PREFIX",
    "EntryError",
    "StreamKey",
    "decode_kline",
    "decode_tick",
    "encode_entry",
    "is_history",
    "kline_entry_id",
    "open_time_of",
]

DEFAULT_PREFIX = "tradeloop"
DATA_FIELD = b"data"
HISTORY_FIELD = b"history"

_kline_decoder = msgspec.json.Decoder(Kline)
_tick_decoder = msgspec.json.Decoder(Tick)
_encoder = msgspec.json.Encoder(decimal_format="string")


class EntryError(InvalidValueError):
    """A stream entry or key that tradeloop did not write (or wrote under another schema)."""


def _part(text: str) -> str:
    return quote(text, safe="")


@dataclass(frozen=True, slots=True)
class StreamKey:
    """One topic of one exchange, as a Redis key and back."""

    exchange: str
    topic: Topic
    prefix: str = DEFAULT_PREFIX

    def __str__(self) -> str:
        parts = [self.prefix, self.topic.kind.value, self.exchange, self.topic.symbol]
        if self.topic.timeframe is not None:
            parts.append(self.topic.timeframe)
        return ":".join(_part(p) for p in parts)

    @classmethod
    def parse(cls, key: str | bytes) -> StreamKey:
        """The inverse of ``str()``; raises :class:`EntryError` for a key not in the scheme."""
        text = key.decode() if isinstance(key, bytes) else key
        parts = [unquote(p) for p in text.split(":")]
        try:
            prefix, kind, exchange, symbol, *rest = parts
            topic_kind = TopicKind(kind)
            topic = Topic(topic_kind, symbol, rest[0] if rest else None)
            if len(rest) > 1:
                raise ValueError("too many parts")
        except ValueError as exc:
            expected = "<prefix>:<kind>:<exchange>:<symbol>[:<timeframe>]"
            raise EntryError(f"invalid stream key {text!r}: expected {expected} ({exc})") from None
        return cls(exchange, topic, prefix)

    def derived(self, role: str, group: str) -> str:
        """The key of this stream's lease or member set within consumer group ``group``."""
        return f"{_part(self.prefix)}:{role}:{_part(group)}:{self}"

    @classmethod
    def kline(cls, exchange: str, symbol: str, timeframe: str, prefix: str = DEFAULT_PREFIX) -> StreamKey:
        return cls(normalize_exchange_name(exchange), Topic(TopicKind.KLINE, symbol, timeframe), prefix)

    @classmethod
    def tick(cls, exchange: str, symbol: str, kind: str, prefix: str = DEFAULT_PREFIX) -> StreamKey:
        topic_kind = tick_kind(kind, for_klines="use StreamKey.kline for kline streams")
        return cls(normalize_exchange_name(exchange), Topic(topic_kind, symbol), prefix)


def collector_key(name: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{_part(prefix)}:collector:{_part(name)}"


def consumer_key(group: str, consumer: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The key naming the running engine that goes by ``consumer`` in ``group``."""
    return f"{_part(prefix)}:consumer:{_part(group)}:{_part(consumer)}"


def kline_entry_id(kline: Kline) -> str:
    """The entry ID of a closed candle: its open time, sequence 0."""
    return f"{kline.open_time}-0"


def open_time_of(entry_id: bytes | str) -> int:
    """The open time a kline entry ID carries."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.partition("-")[0])


def encode_entry(item: Kline | Tick, *, history: bool = False) -> dict[bytes, bytes]:
    """An entry's fields; ``history`` marks a candle backfilled when its collector started."""
    fields = {DATA_FIELD: _encoder.encode(item)}
    if history:
        fields[HISTORY_FIELD] = b"1"
    return fields


def is_history(fields: dict[bytes, bytes]) -> bool:
    return fields.get(HISTORY_FIELD) == b"1"


def _data(fields: dict[bytes, bytes]) -> bytes:
    try:
        return fields[DATA_FIELD]
    except KeyError:
        raise EntryError(f"stream entry has no {DATA_FIELD.decode()!r} field: {sorted(fields)!r}") from None


def decode_kline(fields: dict[bytes, bytes]) -> Kline:
    """A closed candle from an entry's fields; raises :class:`EntryError` if it is not one."""
    try:
        kline = _kline_decoder.decode(_data(fields))
    except msgspec.DecodeError as exc:
        raise EntryError(f"stream entry is not a kline: {exc}") from None
    if not kline.closed:
        raise EntryError(f"stream entry is a candle that is not closed: {kline!r}")
    return kline


def decode_tick(fields: dict[bytes, bytes]) -> Tick:
    try:
        return _tick_decoder.decode(_data(fields))
    except msgspec.DecodeError as exc:
        raise EntryError(f"stream entry is not a tick: {exc}") from None
