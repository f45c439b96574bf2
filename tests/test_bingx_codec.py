"""The BingX WebSocket codec against the documented frames, and fuzzed: it only ever raises ProtocolError."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import bingx_frames as frames
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradeloop.exchanges import DEFAULT_LIMITS, ErrorKind, PeerLimits, ProtocolError
from tradeloop.exchanges.base import (
    ErrorReply,
    Heartbeat,
    KlineBatch,
    SubscriptionAck,
    TickUpdate,
    Topic,
    TopicKind,
)
from tradeloop.exchanges.bingx import BingX, BingXCodec
from tradeloop.models import Kline, Tick
from tradeloop.sim.faults import gzip_bomb
from tradeloop.symbols import TIMEFRAMES, Market

SWAP, SPOT = Market.SWAP, Market.SPOT
SWAP_BTC = "BTC/USDT:USDT"
SPOT_BTC = "BTC/USDT"
EVENT_TYPES = (Heartbeat, SubscriptionAck, ErrorReply, KlineBatch, TickUpdate)


def both_framings(text: str) -> Iterator[bytes | str]:
    """The server's framing (a gzip stream in a binary frame) and a plain text frame."""
    yield gzip.compress(text.encode())
    yield text


def decode_all(market: Market, text: str) -> list[Any]:
    codec = BingXCodec(market)
    return [codec.decode(frame) for frame in both_framings(text)]


def kline_topic(symbol: str, timeframe: str) -> Topic:
    return Topic(TopicKind.KLINE, symbol, timeframe)


# --- verbatim frames ------------------------------------------------------------------------------


def test_swap_kline_push() -> None:
    expected = KlineBatch(
        kline_topic(SWAP_BTC, "1m"),
        (
            Kline(
                "bingx",
                SWAP_BTC,
                "1m",
                1759997460000,
                open=Decimal("121684.1"),
                high=Decimal("121697.7"),
                low=Decimal("121638.7"),
                close=Decimal("121697.7"),
                volume=Decimal("5.8244"),
            ),
        ),
    )
    assert decode_all(SWAP, frames.SWAP_KLINE) == [expected, expected]


def test_spot_kline_push_uses_t_as_open_time_and_keeps_the_literal_text() -> None:
    for batch in decode_all(SPOT, frames.SPOT_KLINE):
        assert batch.topic == kline_topic(SPOT_BTC, "1m")
        (kline,) = batch.klines
        assert kline.open_time == 1760066280000
        assert (kline.open, kline.high, kline.low, kline.close) == (
            Decimal("121137.946"),
            Decimal("121137.946"),
            Decimal("121137.93299999999"),
            Decimal("121137.93299999999"),
        )
        assert str(kline.volume) == "0.025847000000000000"
        assert (kline.exchange, kline.symbol, kline.closed) == ("bingx", SPOT_BTC, False)


def test_swap_ticker_strings_and_event_time() -> None:
    tick = Tick(
        "bingx",
        SWAP_BTC,
        1759998119388,  # E, not C (1759998119403): BINGX.md §6 pitfall 8
        Decimal("121621.7"),
        bid=Decimal("121621.5"),
        ask=Decimal("121621.7"),
        bid_size=Decimal("6.4426"),
        ask_size=Decimal("11.3115"),
        volume_24h=Decimal("17030.6463"),
    )
    expected = TickUpdate(Topic(TopicKind.TICKER, SWAP_BTC), tick)
    assert decode_all(SWAP, frames.SWAP_TICKER) == [expected, expected]


def test_spot_ticker_numbers_are_exact() -> None:
    for update in decode_all(SPOT, frames.SPOT_TICKER):
        tick = update.tick
        assert update.topic == Topic(TopicKind.TICKER, SPOT_BTC)
        assert tick.symbol == SPOT_BTC
        assert tick.time == 1760066441399
        assert tick.last == Decimal("121299.61")
        assert (tick.bid, tick.ask) == (Decimal("121291.64"), Decimal("121300"))
        assert str(tick.ask_size) == "0.00013099999999999999"  # not the float 0.000131
        assert tick.bid_size == Decimal("9.293124")
        assert tick.volume_24h == Decimal("3087.49")


def test_book_ticker_letter_case_is_inverted() -> None:
    tick = Tick(
        "bingx",
        SWAP_BTC,
        1760001840686,
        None,
        bid=Decimal("121584.1"),
        ask=Decimal("121584.3"),
        bid_size=Decimal("18.7084"),
        ask_size=Decimal("4.9602"),
    )
    expected = TickUpdate(Topic(TopicKind.BOOK_TICKER, SWAP_BTC), tick)
    assert decode_all(SWAP, frames.SWAP_BOOK_TICKER) == [expected, expected]
    for update in decode_all(SPOT, frames.SPOT_BOOK_TICKER):
        assert update.tick.bid == Decimal("2996.46")
        assert update.tick.ask_size == Decimal("24.887920")


def test_mark_and_last_price() -> None:
    (mark, _) = decode_all(SWAP, frames.SWAP_MARK_PRICE)
    assert mark == TickUpdate(
        Topic(TopicKind.MARK_PRICE, "ETH/USDT:USDT"), Tick("bingx", "ETH/USDT:USDT", 1714650884021, Decimal("2999.63"))
    )
    (last, _) = decode_all(SWAP, frames.SWAP_LAST_PRICE)
    assert last.tick == Tick("bingx", "ETH/USDT:USDT", 1714650774894, Decimal("2988.90"))


def test_spot_last_price_without_event_time_takes_the_receive_time() -> None:
    codec = BingXCodec(SPOT, now_ms=lambda: 1_714_650_000_123)
    update = codec.decode(gzip.compress(frames.SPOT_LAST_PRICE.encode()))
    assert isinstance(update, TickUpdate)
    assert update.tick == Tick("bingx", SPOT_BTC, 1_714_650_000_123, Decimal("57793.37"))
    # An envelope timestamp, when present, beats the local clock.
    stamped = json.loads(frames.SPOT_LAST_PRICE) | {"timestamp": 1714650000999}
    update = codec.decode(json.dumps(stamped))
    assert isinstance(update, TickUpdate)
    assert update.tick.time == 1714650000999


@pytest.mark.parametrize("market", [SWAP, SPOT])
def test_heartbeats_get_the_reply_text_of_their_dialect(market: Market) -> None:
    assert decode_all(market, frames.SWAP_PING) == [Heartbeat("Pong")] * 2
    assert decode_all(market, frames.SPOT_PING) == [Heartbeat(frames.SPOT_PONG)] * 2


@pytest.mark.parametrize("market", [SWAP, SPOT])
def test_acks_of_both_shapes(market: Market) -> None:
    ack = SubscriptionAck("e745cd6d-d0f6-4a70-8d5a-043e4c741b40")
    assert decode_all(market, frames.SWAP_ACK) == [ack, ack]
    assert decode_all(market, frames.SPOT_ACK) == [ack, ack]


@pytest.mark.parametrize("market", [SWAP, SPOT])
def test_error_replies(market: Market) -> None:
    assert decode_all(market, frames.SWAP_ERROR) == [ErrorReply("", 80014, "invalid params")] * 2
    spot_error = ErrorReply("9cd37d32-da98-440b-bd04-37e7dbcf51ad", 100500, "", transient=True)  # internal error
    assert decode_all(market, frames.SPOT_ERROR) == [spot_error] * 2
    too_many = '{"id":"7","code":80403,"msg":"too many topics","dataType":"","data":null}'
    assert decode_all(market, too_many) == [ErrorReply("7", 80403, "too many topics")] * 2


# --- shapes beyond the single verbatim push -------------------------------------------------------


def test_swap_kline_batches_come_out_oldest_first() -> None:
    first, second = (json.loads(frames.SWAP_KLINE)["data"][0] for _ in range(2))
    second |= {"T": 1759997520000, "c": "121703.0"}
    push = json.loads(frames.SWAP_KLINE) | {"data": [second, first]}
    (batch, _) = decode_all(SWAP, json.dumps(push))
    assert [k.open_time for k in batch.klines] == [1759997460000, 1759997520000]
    assert batch.klines[1].close == Decimal("121703.0")


def test_old_dict_form_swap_kline_is_aligned_to_its_open_time() -> None:
    (batch, _) = decode_all(SWAP, frames.SWAP_KLINE_OLD_DICT)
    (kline,) = batch.klines
    assert kline.open_time == 1649832720000
    assert kline.close == Decimal("41000.5")


def test_spot_ticker_without_data_type_is_routed_by_its_event() -> None:
    push = json.loads(frames.SPOT_TICKER)
    del push["dataType"]
    (update, _) = decode_all(SPOT, json.dumps(push))
    assert update.topic == Topic(TopicKind.TICKER, SPOT_BTC)


def test_pushes_for_topics_not_subscribed_here_still_decode() -> None:
    codec = BingXCodec(SWAP)
    event = codec.decode(frames.SWAP_KLINE.replace("BTC-USDT", "1000PEPE-USDT"))
    assert isinstance(event, KlineBatch)
    assert event.topic == kline_topic("1000PEPE/USDT:USDT", "1m")
    assert event.klines[0].symbol == "1000PEPE/USDT:USDT"


# --- requests -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "data_type"),
    [
        (kline_topic(SWAP_BTC, "1m"), "BTC-USDT@kline_1m"),
        (kline_topic(SWAP_BTC, "1M"), "BTC-USDT@kline_1M"),
        (Topic(TopicKind.TICKER, SWAP_BTC), "BTC-USDT@ticker"),
        (Topic(TopicKind.LAST_PRICE, "ETH/USDT:USDT"), "ETH-USDT@lastPrice"),
        (Topic(TopicKind.MARK_PRICE, SWAP_BTC), "BTC-USDT@markPrice"),
        (Topic(TopicKind.BOOK_TICKER, SWAP_BTC), "BTC-USDT@bookTicker"),
        (kline_topic(SPOT_BTC, "1m"), "BTC-USDT@kline_1min"),
        (kline_topic(SPOT_BTC, "1h"), "BTC-USDT@kline_60min"),
        (kline_topic(SPOT_BTC, "1d"), "BTC-USDT@kline_1day"),
        (Topic(TopicKind.TICKER, SPOT_BTC), "BTC-USDT@ticker"),
    ],
)
def test_requests_are_compact_json_with_the_documented_fields(topic: Topic, data_type: str) -> None:
    codec = BingXCodec(topic.market)
    request_id, text = codec.subscribe(topic)
    assert json.loads(text) == {"id": request_id, "reqType": "sub", "dataType": data_type}
    assert " " not in text
    unsub_id, text = codec.unsubscribe(topic)
    assert json.loads(text) == {"id": unsub_id, "reqType": "unsub", "dataType": data_type}
    assert unsub_id != request_id


def test_requests_match_the_documented_ones() -> None:
    codec = BingXCodec(SWAP)
    for documented, request in [
        (frames.SWAP_SUBSCRIBE, codec.subscribe(kline_topic(SWAP_BTC, "1m"))[1]),
        (frames.SWAP_UNSUBSCRIBE, codec.unsubscribe(Topic(TopicKind.TICKER, SWAP_BTC))[1]),
    ]:
        theirs, ours = json.loads(documented), json.loads(request)
        assert list(ours) == list(theirs)
        assert {k: v for k, v in ours.items() if k != "id"} == {k: v for k, v in theirs.items() if k != "id"}


def test_request_ids_are_unique_across_codecs() -> None:
    topic = Topic(TopicKind.TICKER, SWAP_BTC)
    ids = [codec.subscribe(topic)[0] for codec in (BingXCodec(SWAP), BingXCodec(SWAP)) for _ in range(50)]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("timeframe", list(TIMEFRAMES))
@pytest.mark.parametrize("market", [SWAP, SPOT])
def test_every_timeframe_round_trips_through_its_ws_spelling(market: Market, timeframe: str) -> None:
    symbol = SWAP_BTC if market is SWAP else SPOT_BTC
    topic = kline_topic(symbol, timeframe)
    data_type = json.loads(BingXCodec(market).subscribe(topic)[1])["dataType"]
    push = json.loads(frames.SWAP_KLINE if market is SWAP else frames.SPOT_KLINE) | {"dataType": data_type}
    event = BingXCodec(market).decode(json.dumps(push))  # a fresh codec: parsed from the dataType alone
    assert isinstance(event, KlineBatch)
    assert event.topic == topic


def test_spot_monthly_accepts_both_spellings_seen() -> None:
    push = json.loads(frames.SPOT_KLINE) | {"dataType": "BTC-USDT@kline_1month"}
    event = BingXCodec(SPOT).decode(json.dumps(push))
    assert isinstance(event, KlineBatch)
    assert event.topic.timeframe == "1M"


def test_topics_bingx_cannot_serve_are_value_errors() -> None:
    with pytest.raises(ValueError, match="mark_price"):
        BingXCodec(SPOT).subscribe(Topic(TopicKind.MARK_PRICE, SPOT_BTC))
    with pytest.raises(ValueError, match="mark_price"):
        BingX().check_topic(Topic(TopicKind.MARK_PRICE, SPOT_BTC))
    with pytest.raises(ValueError, match=r"'BTC/USD:BTC'.*coin-margined"):
        BingX().check_topic(Topic(TopicKind.TICKER, "BTC/USD:BTC"))
    with pytest.raises(ValueError, match="spot topic, this socket is swap"):
        BingXCodec(SWAP).subscribe(Topic(TopicKind.TICKER, SPOT_BTC))
    BingX().check_topic(Topic(TopicKind.MARK_PRICE, SWAP_BTC))


# --- malformed frames -----------------------------------------------------------------------------


def assert_protocol_error(market: Market, frame: bytes | str, kind: ErrorKind, topic: str | None = None) -> None:
    with pytest.raises(ProtocolError) as info:
        BingXCodec(market).decode(frame)
    assert info.value.kind is kind, info.value
    assert info.value.topic == topic


def test_bad_gzip() -> None:
    assert_protocol_error(SWAP, b"Ping", ErrorKind.BAD_GZIP)
    assert_protocol_error(SWAP, gzip.compress(frames.SWAP_KLINE.encode())[:-5], ErrorKind.BAD_GZIP)


def test_bad_utf8() -> None:
    assert_protocol_error(SWAP, gzip.compress(b'{"id":"\xff","code":0}'), ErrorKind.BAD_UTF8)
    assert_protocol_error(SWAP, gzip.compress(b"\xfe\xff{}"), ErrorKind.BAD_UTF8)
    assert_protocol_error(SWAP, '{"id":"\ud800","code":0}', ErrorKind.BAD_UTF8)


def test_bad_json() -> None:
    assert_protocol_error(SWAP, gzip.compress(b"Pong!"), ErrorKind.BAD_JSON)
    assert_protocol_error(SPOT, frames.SPOT_KLINE[:-1], ErrorKind.BAD_JSON)


@pytest.mark.parametrize(
    ("market", "data_type"),
    [
        (SWAP, "BTC-USDT@trade"),
        (SWAP, "BTC-USDT@depth5@500ms"),
        (SWAP, "BTC-USDT@kline_1min"),  # spot spelling on the swap socket
        (SPOT, "BTC-USDT@kline_1m"),  # swap spelling on the spot socket
        (SPOT, "BTC-USDT@markPrice"),
        (SWAP, "BTCUSDT@ticker"),
        (SWAP, "btc-usdt@ticker"),
        (SWAP, "BTC-USDT"),
    ],
)
def test_unknown_topics(market: Market, data_type: str) -> None:
    push = json.loads(frames.SWAP_KLINE) | {"dataType": data_type}
    assert_protocol_error(market, json.dumps(push), ErrorKind.UNKNOWN_TOPIC, data_type)


@pytest.mark.parametrize(
    "change",
    [
        {"c": "NaN"},
        {"c": "Infinity"},
        {"c": "-inf"},
        {"c": "sNaN"},
        {"c": "12,5"},
        {"c": ""},
        {"c": None},
        {"c": True},
        {"c": ["1"]},
        {"T": "1759997460000"},
        {"T": 1759997460000.0},
        {"T": -1},
        {"T": 10**20},
        {"T": False},
    ],
)
def test_bad_field_values(change: dict[str, Any]) -> None:
    push = json.loads(frames.SWAP_KLINE)
    push["data"][0] |= change
    assert_protocol_error(SWAP, json.dumps(push), ErrorKind.BAD_FIELD, "BTC-USDT@kline_1m")


@pytest.mark.parametrize(
    "frame",
    [
        frames.SWAP_KLINE.replace('"o":"121684.1",', ""),
        frames.SWAP_KLINE.replace('"T":1759997460000', '"t":1759997460000'),
        '{"code":0,"dataType":"BTC-USDT@kline_1m","data":[]}',
        '{"code":0,"dataType":"BTC-USDT@kline_1m","data":null}',
        '{"code":0,"dataType":"BTC-USDT@kline_1m","data":"x"}',
        '{"code":0,"dataType":"BTC-USDT@kline_1m","data":[1]}',
        '{"code":0,"dataType":"BTC-USDT@kline_1m"}',
    ],
)
def test_missing_or_misshapen_fields(frame: str) -> None:
    assert_protocol_error(SWAP, frame, ErrorKind.BAD_FIELD, "BTC-USDT@kline_1m")


@pytest.mark.parametrize(
    "frame",
    ["[]", "1", '"Ping"', "null", "{}", '{"code":0}', '{"code":0,"id":""}', '{"code":"80014"}', '{"dataType":7}'],
)
def test_unrecognised_messages(frame: str) -> None:
    assert_protocol_error(SWAP, frame, ErrorKind.BAD_FIELD)


# --- fuzzing: nothing but ProtocolError may escape ------------------------------------------------

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["", "NaN", "1e999999", "BTC-USDT@kline_1m", "BTC-USDT@ticker", "Ping", "121.5"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=5),
    max_leaves=12,
)


def decode_or_protocol_error(market: Market, frame: bytes | str) -> None:
    """Decode, accepting a well-formed event or a ProtocolError, and nothing else."""
    try:
        event = BingXCodec(market).decode(frame)
    except ProtocolError as exc:
        assert isinstance(exc.kind, ErrorKind)
        return
    assert isinstance(event, EVENT_TYPES)


@FUZZ
@given(market=st.sampled_from(Market), data=st.binary(max_size=300), gzipped=st.booleans())
def test_fuzz_random_bytes(market: Market, data: bytes, gzipped: bool) -> None:
    decode_or_protocol_error(market, gzip.compress(data) if gzipped else data)


@FUZZ
@given(market=st.sampled_from(Market), text=st.text(st.characters(exclude_categories=()), max_size=300))
def test_fuzz_random_text(market: Market, text: str) -> None:
    decode_or_protocol_error(market, text)  # surrogates included: a str frame need not be valid UTF-8
    decode_or_protocol_error(market, gzip.compress(text.encode("utf-8", "surrogatepass")))


@FUZZ
@given(market=st.sampled_from(Market), value=json_values)
def test_fuzz_random_json(market: Market, value: Any) -> None:
    for frame in both_framings(json.dumps(value)):
        decode_or_protocol_error(market, frame)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a node inside a JSON value (dict keys and list indices)."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield (*prefix, key)
        yield from paths(child, (*prefix, key))


def structure_depth(value: Any) -> int:
    """How many arrays and objects are open at the deepest point of a JSON value."""
    if isinstance(value, list):
        return 1 + max(map(structure_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(structure_depth, value.values()), default=0)
    return 0


def mutate(value: Any, path: tuple[Any, ...], replacement: Any, delete: bool) -> Any:
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return value


@FUZZ
@given(
    market=st.sampled_from(Market),
    name=st.sampled_from(sorted(frames.SERVER_FRAMES)),
    data=st.data(),
)
def test_fuzz_mutated_verbatim_frames(market: Market, name: str, data: st.DataObject) -> None:
    text = frames.SERVER_FRAMES[name]
    if text == "Ping":
        return
    value = json.loads(text)
    path = data.draw(st.sampled_from(list(paths(value))))
    delete = data.draw(st.booleans())
    mutated = json.dumps(mutate(value, path, data.draw(json_values), delete))
    for frame in both_framings(mutated):
        decode_or_protocol_error(market, frame)


@FUZZ
@given(
    market=st.sampled_from(Market),
    name=st.sampled_from(sorted(frames.SERVER_FRAMES)),
    data=st.data(),
)
def test_fuzz_truncated_and_flipped_frames(market: Market, name: str, data: st.DataObject) -> None:
    raw = frames.SERVER_FRAMES[name].encode()
    packed = gzip.compress(raw)
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)))
    decode_or_protocol_error(market, gzip.compress(raw[:cut]))
    decode_or_protocol_error(market, raw[:cut].decode("utf-8", "replace"))
    decode_or_protocol_error(market, packed[: data.draw(st.integers(min_value=0, max_value=len(packed)))])
    for blob in (raw, packed):
        flipped = bytearray(blob)
        flipped[data.draw(st.integers(min_value=0, max_value=len(blob) - 1))] ^= data.draw(
            st.integers(min_value=1, max_value=255)
        )
        decode_or_protocol_error(market, bytes(flipped) if blob is packed else gzip.compress(flipped))


# --- bounds: a hostile server ---------------------------------------------------------------------


def test_a_hostile_server_gets_protocol_errors_not_a_crash() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert_protocol_error(SWAP, deep, ErrorKind.TOO_DEEP)
    assert_protocol_error(SWAP, gzip.compress(deep.encode()), ErrorKind.TOO_DEEP)  # 200 bytes on the wire
    assert_protocol_error(SWAP, '{"code":0,"dataType":' + deep + "}", ErrorKind.TOO_DEEP)
    assert_protocol_error(SWAP, gzip_bomb(), ErrorKind.TOO_LARGE)  # 1 MB inflating to 1 GiB
    assert_protocol_error(SWAP, " " * (DEFAULT_LIMITS.max_frame_size + 1), ErrorKind.TOO_LARGE)


def padded(text: str, size: int, filler: str) -> str:
    """``text`` followed by whitespace (still the same JSON) up to ``size`` characters."""
    return text + (filler * size)[: max(0, size - len(text))]


@FUZZ
@given(
    market=st.sampled_from(Market),
    name=st.sampled_from(sorted(frames.SERVER_FRAMES)),
    limit=st.integers(min_value=600, max_value=20_000),
    excess=st.sampled_from([-1, 0, 1]),
    filler=st.sampled_from([" ", "\n", " \t\r\n", "\t \n  \r\r\t \n\n"]),  # inflation from ~1000:1 down
)
def test_fuzz_inflated_size_at_the_limit(market: Market, name: str, limit: int, excess: int, filler: str) -> None:
    """A frame inflating to the limit decodes as without padding; one byte more is TOO_LARGE."""
    text = frames.SERVER_FRAMES[name]
    if text == "Ping":
        return
    codec = BingXCodec(market, now_ms=lambda: 0, limits=PeerLimits(max_frame_size=limit))
    frame = padded(text, limit + excess, filler)
    for framing in (gzip.compress(frame.encode()), frame):
        if len(frame) > limit:
            with pytest.raises(ProtocolError) as info:
                codec.decode(framing)
            assert info.value.kind is ErrorKind.TOO_LARGE
        else:
            assert outcome(codec, framing) == outcome(BingXCodec(market, now_ms=lambda: 0), text)


def outcome(codec: BingXCodec, frame: bytes | str) -> object:
    """The event, or the kind of ProtocolError, a frame decodes to."""
    try:
        return codec.decode(frame)
    except ProtocolError as exc:
        return exc.kind


@FUZZ
@given(
    market=st.sampled_from(Market),
    name=st.sampled_from(sorted(frames.SERVER_FRAMES)),
    limit=st.integers(min_value=1, max_value=40),
    extra=st.integers(min_value=0, max_value=45),
    data=st.data(),
)
def test_fuzz_nesting_depth_at_the_limit(
    market: Market, name: str, limit: int, extra: int, data: st.DataObject
) -> None:
    """Any node of a documented frame nested ``extra`` levels deeper: TOO_DEEP exactly when the
    frame's depth passes the limit, and the codec's usual answer otherwise."""
    text = frames.SERVER_FRAMES[name]
    if text == "Ping":
        return
    value = json.loads(text)
    path = data.draw(st.sampled_from(list(paths(value))))
    nested: Any = data.draw(json_values.filter(lambda v: not isinstance(v, list | dict)))
    for _ in range(extra):
        nested = data.draw(st.sampled_from([[nested], {"k": nested}]))
    mutated = mutate(value, path, nested, delete=False)
    codec = BingXCodec(market, limits=PeerLimits(max_json_depth=limit))
    for frame in both_framings(json.dumps(mutated)):
        kind = outcome(codec, frame)
        if structure_depth(mutated) > limit:
            assert kind is ErrorKind.TOO_DEEP
        else:
            assert kind is not ErrorKind.TOO_DEEP
            decode_or_protocol_error(market, frame)
