"""The Redis key scheme and entry encoding, and the connection seam, against a real redis-server."""

from __future__ import annotations

import gc
from decimal import Decimal

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from redis_server import RedisServer, password_redis, redis_server  # noqa: F401 (fixtures)

from tradeloop.distributed import RedisError, StreamKey, open_redis
from tradeloop.distributed.keys import EntryError, decode_kline, decode_tick, encode_entry, kline_entry_id
from tradeloop.errors import InvalidValueError
from tradeloop.exchanges.base import TopicKind
from tradeloop.models import Kline, Tick

D = Decimal


@pytest.mark.parametrize(
    ("exchange", "symbol", "timeframe"),
    [("bingx", "BTC/USDT:USDT", "1m"), ("ccxt:okx", "ETH/USDT", "1h"), ("odd%name", "A/B:C", "1d")],
)
def test_kline_keys_round_trip(exchange: str, symbol: str, timeframe: str) -> None:
    key = StreamKey.kline(exchange, symbol, timeframe)
    text = str(key)
    assert text.count(":") == 4  # the parts' own colons are encoded
    assert StreamKey.parse(text) == key
    assert StreamKey.parse(text.encode()) == key


@given(exchange=st.text(min_size=1).filter(str.strip), kind=st.sampled_from(["ticker", "book_ticker"]))
def test_tick_keys_round_trip_any_exchange_name(exchange: str, kind: str) -> None:
    key = StreamKey.tick(exchange, "BTC/USDT:USDT", kind)
    assert StreamKey.parse(str(key)) == key
    assert key.topic.kind is TopicKind(kind)


def test_bad_keys_and_entries_are_clear_errors() -> None:
    with pytest.raises(EntryError, match="invalid stream key"):
        StreamKey.parse("tradeloop:nonsense:bingx:BTC")
    with pytest.raises(InvalidValueError, match="invalid tick kind"):
        StreamKey.tick("bingx", "BTC/USDT:USDT", "trades")
    with pytest.raises(InvalidValueError, match=r"use StreamKey\.kline"):
        StreamKey.tick("bingx", "BTC/USDT:USDT", "kline")
    with pytest.raises(EntryError, match="no 'data' field"):
        decode_kline({b"other": b"1"})
    with pytest.raises(EntryError, match="not a kline"):
        decode_kline({b"data": b"{}"})


def test_entries_round_trip_exactly() -> None:
    prices = (D("1.10"), D("2"), D("0.5"), D("1.5"), D("3"))
    kline = Kline("bingx", "BTC/USDT:USDT", "1m", 1_700_000_040_000, *prices, closed=True)
    assert decode_kline(encode_entry(kline)) == kline
    assert str(decode_kline(encode_entry(kline)).open) == "1.10"
    assert kline_entry_id(kline) == "1700000040000-0"
    tick = Tick("bingx", "BTC/USDT:USDT", 1_700_000_000_123, D("1.5"), bid=D("1.4"))
    assert decode_tick(encode_entry(tick)) == tick
    with pytest.raises(EntryError, match="not closed"):
        decode_kline(encode_entry(Kline("bingx", "BTC/USDT:USDT", "1m", 0, D(1), D(1), D(1), D(1), D(1))))


async def test_connects_and_maps_errors(redis_server: RedisServer) -> None:  # noqa: F811
    async with open_redis(redis_server.url) as redis:
        assert await redis.ping() == b"PONG"
    with pytest.raises(InvalidValueError, match="invalid Redis URL"):
        async with open_redis("http://127.0.0.1:1/0"):
            pass
    port = redis_server.port
    redis_server.stop()
    with pytest.raises(RedisError, match=f"127.0.0.1:{port}"):
        async with open_redis(redis_server.url):
            pass
    # A failed connect used to leave coredis's buffers to the collector, which warned (an error
    # under the suite's -W error): collect now so such a warning fails this test.
    gc.collect()


async def test_password_and_database_come_from_the_url(password_redis: RedisServer) -> None:  # noqa: F811
    db3 = password_redis.url.replace("/0", "/3")
    async with open_redis(db3) as redis:
        await redis.set("where", "db3")
    async with open_redis(password_redis.url) as redis:
        assert await redis.get("where") is None
    with pytest.raises(RedisError, match=r"redis://:\*\*\*@127\.0\.0\.1") as error:
        async with open_redis(password_redis.url.replace("s3cret", "wrong")):
            pass
    assert "wrong" not in str(error.value)
    gc.collect()


@pytest.mark.parametrize("delay", [0.0, 0.0005, 0.001, 0.002])
async def test_cancelled_while_connecting_the_client_still_closes(
    redis_server: RedisServer,  # noqa: F811
    delay: float,
) -> None:
    # The client's connections live in a shielded task; a cancel that lands while it starts must
    # not leave that task waiting for a body that never ran.
    with trio.fail_after(10):
        with trio.move_on_after(delay):
            async with open_redis(redis_server.url) as redis:
                await redis.ping()
                await trio.sleep_forever()
