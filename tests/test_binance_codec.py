"""Binance's WebSocket codec with plain calls: the verbatim messages of BINANCE.md in, events out."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeloop.errors import InvalidValueError
from tradeloop.exchanges import (
    ErrorKind,
    ErrorReply,
    KlineBatch,
    ProtocolError,
    Reconnect,
    SubscriptionAck,
    TickUpdate,
    Topic,
    TopicKind,
)
from tradeloop.exchanges.binance import Binance, BinanceCodec, Socket, socket_of, stream_name
from tradeloop.models import Kline, Tick
from tradeloop.symbols import Market

# --- BINANCE.md, verbatim ---------------------------------------------------------------------------

SPOT_KLINE = '{"e":"kline","E":1631636735735,"s":"BTCUSDT","k":{"t":1631636700000,"T":1631636999999,"s":"BTCUSDT","i":"5m","f":1054217725,"L":1054218306,"o":"46686.15000000","c":"46673.53000000","h":"46686.15000000","l":"46668.45000000","v":"12.26168000","n":582,"x":false,"q":"572337.21655380","V":"3.29093000","Q":"153606.31592330","B":"0"}}'  # noqa: E501
USDM_KLINE = '{"e":"kline","E":1638747660000,"s":"BTCUSDT","k":{"t":1638747660000,"T":1638747719999,"s":"BTCUSDT","i":"1m","f":100,"L":200,"o":"0.0010","c":"0.0020","h":"0.0025","l":"0.0015","v":"1000","n":100,"x":false,"q":"1.0000","V":"500","Q":"0.500","B":"123456"}}'  # noqa: E501
SPOT_TICKER = '{"e":"24hrTicker","E":1672515782136,"s":"BNBBTC","p":"0.0015","P":"250.00","w":"0.0018","x":"0.0009","c":"0.0025","Q":"10","b":"0.0024","B":"10","a":"0.0026","A":"100","o":"0.0010","h":"0.0025","l":"0.0010","v":"10000","q":"18","O":0,"C":86400000,"F":0,"L":18150,"n":18151}'  # noqa: E501
USDM_TICKER = '{"e":"24hrTicker","E":123456789,"s":"BTCUSDT","p":"0.0015","P":"250.00","w":"0.0018","c":"0.0025","Q":"10","o":"0.0010","h":"0.0025","l":"0.0010","v":"10000","q":"18","O":0,"C":86400000,"F":0,"L":18150,"n":18151}'  # noqa: E501
SPOT_BOOK = '{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}'
USDM_BOOK = '{"e":"bookTicker","u":400900217,"E":1568014460893,"T":1568014460891,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}'  # noqa: E501
MARK_PRICE = '{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"11794.15000000","ap":"11794.15000000","i":"11784.62659091","P":"11784.25641265","r":"0.00038167","T":1562306400000}'  # noqa: E501
SHUTDOWN = '{"e": "serverShutdown", "E": 1770123456789}'
SHUTDOWN_COMBINED = '{"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": 1770123456789}}'
ACK = '{"result":null,"id":312}'
LIST_REPLY = '{"result":["btcusdt@aggTrade"],"id":3}'
DOCUMENTED_ERRORS = [
    '{"code": 1, "msg": "Invalid value type: expected Boolean"}',
    '{"code": 2, "msg": "Invalid request: property name must be a string"}',
    '{"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"}',
    '{"code": 2, "msg": "Invalid request: too many parameters"}',
    '{"code":3,"msg":"Invalid JSON: expected value at line %s column %s"}',
]

SPOT, USDM, PUBLIC = Socket.SPOT, Socket.USDM_MARKET, Socket.USDM_PUBLIC


def combined(stream: str, raw: str) -> str:
    return f'{{"stream":"{stream}","data":{raw}}}'


def codec(socket: Socket = SPOT) -> BinanceCodec:
    return BinanceCodec(socket, now_ms=lambda: 42)


def test_the_spot_kline_push_is_an_open_update() -> None:
    event = codec().decode(SPOT_KLINE)
    topic = Topic(TopicKind.KLINE, "BTC/USDT", "5m")
    assert event == KlineBatch(
        topic,
        (
            Kline(
                "binance",
                "BTC/USDT",
                "5m",
                1631636700000,
                Decimal("46686.15000000"),
                Decimal("46686.15000000"),
                Decimal("46668.45000000"),
                Decimal("46673.53000000"),
                Decimal("12.26168000"),
                closed=False,
            ),
        ),
    )


def test_the_closed_flag_marks_the_final_push() -> None:
    final = USDM_KLINE.replace('"x":false', '"x":true')
    event = codec(USDM).decode(final)
    assert isinstance(event, KlineBatch)
    assert event.topic == Topic(TopicKind.KLINE, "BTC/USDT:USDT", "1m")
    (kline,) = event.klines
    assert kline.closed and kline.open_time == 1638747660000 and kline.close == Decimal("0.0020")


def test_a_kline_without_the_unused_field_b_is_fine() -> None:
    event = codec().decode(SPOT_KLINE.replace(',"B":"0"', ""))
    assert isinstance(event, KlineBatch)


def test_combined_and_raw_sockets_decode_alike() -> None:
    raw = codec(USDM).decode(USDM_KLINE)
    assert codec(USDM).decode(combined("btcusdt@kline_1m", USDM_KLINE)) == raw


def test_the_spot_ticker_has_bid_and_ask_and_its_x_is_a_price() -> None:
    event = codec().decode(SPOT_TICKER)
    assert event == TickUpdate(
        Topic(TopicKind.TICKER, "BNB/BTC"),
        Tick(
            "binance",
            "BNB/BTC",
            1672515782136,
            Decimal("0.0025"),
            bid=Decimal("0.0024"),
            ask=Decimal("0.0026"),
            bid_size=Decimal("10"),
            ask_size=Decimal("100"),
            volume_24h=Decimal("10000"),
        ),
    )


def test_the_usdm_ticker_has_no_book() -> None:
    event = codec(USDM).decode(USDM_TICKER)
    assert event == TickUpdate(
        Topic(TopicKind.TICKER, "BTC/USDT:USDT"),
        Tick("binance", "BTC/USDT:USDT", 123456789, Decimal("0.0025"), volume_24h=Decimal("10000")),
    )


def test_the_spot_book_ticker_has_no_time_and_gets_the_receive_time() -> None:
    event = codec().decode(combined("bnbusdt@bookTicker", SPOT_BOOK))
    book = Tick(
        "binance",
        "BNB/USDT",
        42,
        None,
        bid=Decimal("25.35190000"),
        ask=Decimal("25.36520000"),
        bid_size=Decimal("31.21000000"),
        ask_size=Decimal("40.66000000"),
        update_id=400900217,  # which push it is, whenever it was received
    )
    assert event == TickUpdate(Topic(TopicKind.BOOK_TICKER, "BNB/USDT"), book)
    usdm = codec(PUBLIC).decode(USDM_BOOK)
    assert isinstance(usdm, TickUpdate) and usdm.tick.time == 1568014460893
    assert usdm.tick.update_id == 400900217
    with pytest.raises(ProtocolError) as caught:
        codec().decode(combined("bnbusdt@bookTicker", SPOT_BOOK.replace("400900217", '"400900217"')))
    assert caught.value.kind is ErrorKind.BAD_FIELD
    assert usdm.topic == Topic(TopicKind.BOOK_TICKER, "BNB/USDT:USDT")


def test_mark_price_and_mini_ticker() -> None:
    mark = codec(USDM).decode(MARK_PRICE)
    assert mark == TickUpdate(
        Topic(TopicKind.MARK_PRICE, "BTC/USDT:USDT"),
        Tick("binance", "BTC/USDT:USDT", 1562305380000, Decimal("11794.15000000")),
    )
    mini = '{"e":"24hrMiniTicker","E":1672515782136,"s":"BNBBTC","c":"0.0025","o":"0.0010","h":"0.0025","l":"0.0010","v":"10000","q":"18"}'  # noqa: E501
    assert codec().decode(mini) == TickUpdate(
        Topic(TopicKind.LAST_PRICE, "BNB/BTC"),
        Tick("binance", "BNB/BTC", 1672515782136, Decimal("0.0025"), volume_24h=Decimal("10000")),
    )


def test_acks_and_replies_carry_the_request_id() -> None:
    assert codec().decode(ACK) == SubscriptionAck("312")
    assert codec().decode(LIST_REPLY) == SubscriptionAck("3")


@pytest.mark.parametrize("text", DOCUMENTED_ERRORS)
def test_documented_bare_errors(text: str) -> None:
    event = codec().decode(text)
    reply = json.loads(text)
    assert event == ErrorReply("", reply["code"], reply["msg"])


def test_the_nested_error_seen_live() -> None:
    text = '{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":1}'
    assert codec().decode(text) == ErrorReply("1", 2, "Invalid request: invalid stream")
    spot_first_row = '{"code": 0, "msg": "Unknown property","id": 7}'
    assert codec().decode(spot_first_row) == ErrorReply("7", 0, "Unknown property")


@pytest.mark.parametrize("text", [SHUTDOWN, SHUTDOWN_COMBINED])
def test_server_shutdown_asks_for_a_reconnect(text: str) -> None:
    assert isinstance(codec().decode(text), Reconnect)


def test_requests_use_unsigned_ids_and_lower_case_streams() -> None:
    spot = codec()
    request_id, text = spot.subscribe(Topic(TopicKind.KLINE, "BTC/USDT", "1m"))
    assert json.loads(text) == {"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": int(request_id)}
    second_id, text = spot.unsubscribe(Topic(TopicKind.KLINE, "BTC/USDT", "1m"))
    assert json.loads(text) == {"method": "UNSUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": int(second_id)}
    assert int(second_id) > int(request_id) > 0


@pytest.mark.parametrize(
    ("topic", "stream", "socket"),
    [
        (Topic(TopicKind.KLINE, "BTC/USDT:USDT", "1M"), "btcusdt@kline_1M", USDM),
        (Topic(TopicKind.TICKER, "ETH/USDT"), "ethusdt@ticker", SPOT),
        (Topic(TopicKind.LAST_PRICE, "ETH/USDT:USDT"), "ethusdt@miniTicker", USDM),
        (Topic(TopicKind.MARK_PRICE, "ETH/USDT:USDT"), "ethusdt@markPrice@1s", USDM),
        (Topic(TopicKind.BOOK_TICKER, "ETH/USDT:USDT"), "ethusdt@bookTicker", PUBLIC),
        (Topic(TopicKind.BOOK_TICKER, "ETH/USDT"), "ethusdt@bookTicker", SPOT),
    ],
)
def test_streams_and_their_sockets(topic: Topic, stream: str, socket: Socket) -> None:
    assert stream_name(topic) == stream
    assert socket_of(topic) == socket
    assert Binance().socket_key(topic) == socket


def test_a_topic_on_the_wrong_socket_or_market_is_refused() -> None:
    with pytest.raises(InvalidValueError, match="usdm/public"):
        codec(USDM).subscribe(Topic(TopicKind.BOOK_TICKER, "BTC/USDT:USDT"))
    with pytest.raises(InvalidValueError, match="mark_price is a USDⓈ-M feed"):
        stream_name(Topic(TopicKind.MARK_PRICE, "BTC/USDT"))
    with pytest.raises(InvalidValueError, match="COIN-M is not"):
        stream_name(Topic(TopicKind.TICKER, "BTC/USD:BTC"))


def test_a_bare_id_is_ambiguous_and_both_unified_forms_are_named() -> None:
    with pytest.raises(InvalidValueError, match=r"'BTC/USDT' \(spot\) or 'BTC/USDT:USDT' \(USDⓈ-M\)"):
        Binance().normalize_symbol("BTCUSDT")
    with pytest.raises(InvalidValueError, match=r"'ETH/BTC' \(spot\) or 'ETH/BTC:BTC'"):
        Binance().normalize_symbol("ethbtc")
    with pytest.raises(InvalidValueError, match=r"^ambiguous symbol 'BTC-USDT': Binance uses the id 'BTCUSDT'"):
        Binance().normalize_symbol("BTC-USDT")  # BingX's spelling, quoted as the user wrote it
    assert Binance().normalize_symbol("BTC/USDT:USDT") == "BTC/USDT:USDT"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (b"\xff\xfe", ErrorKind.BAD_UTF8),
        ("{not json", ErrorKind.BAD_JSON),
        ("[1, 2]", ErrorKind.BAD_FIELD),
        ('{"e":"aggTrade","s":"BTCUSDT"}', ErrorKind.UNKNOWN_TOPIC),
        (SPOT_KLINE.replace('"i":"5m"', '"i":"1s"'), ErrorKind.UNKNOWN_TOPIC),
        (SPOT_KLINE.replace('"s":"BTCUSDT"', '"s":"BTCXYZ"'), ErrorKind.UNKNOWN_TOPIC),
        (SPOT_KLINE.replace('"x":false', '"x":"no"'), ErrorKind.BAD_FIELD),
        (SPOT_KLINE.replace('"t":1631636700000,', ""), ErrorKind.BAD_FIELD),
        (SPOT_KLINE.replace('"o":"46686.15000000"', '"o":"NaN"'), ErrorKind.BAD_FIELD),
        (USDM_TICKER.replace('"c":"0.0025"', '"c":null'), ErrorKind.BAD_FIELD),
        ('{"result":null,"id":[1]}', ErrorKind.BAD_FIELD),
        ('{"error":{"code":"2"},"id":1}', ErrorKind.BAD_FIELD),
        ('{"hello":"world"}', ErrorKind.BAD_FIELD),
        ("[" * 100_000, ErrorKind.TOO_DEEP),  # refused before the decoder would recurse
        ('{"e":' * 33 + "1" + "}" * 33, ErrorKind.TOO_DEEP),  # valid JSON, one level past the limit
    ],
)
def test_bad_frames_are_protocol_errors_of_their_kind(text: str | bytes, kind: ErrorKind) -> None:
    with pytest.raises(ProtocolError) as caught:
        codec().decode(text)
    assert caught.value.kind is kind


def test_the_socket_of_a_market_defaults_to_where_klines_flow() -> None:
    client = Binance(ws_url="ws://127.0.0.1:9000", rest_url="http://127.0.0.1:9001/")
    assert client.ws_url(Market.SPOT) == "ws://127.0.0.1:9000/stream"
    assert client.ws_url(Market.SWAP) == "ws://127.0.0.1:9000/market/stream"
    assert client.ws_url(Socket.USDM_PUBLIC) == "ws://127.0.0.1:9000/public/stream"
    assert Binance().ws_url(Socket.USDM_MARKET) == "wss://fstream.binance.com/market/stream"
    assert Binance().ws_url(Socket.SPOT) == "wss://stream.binance.com:9443/stream"
    assert client.new_codec(Market.SWAP).socket is Socket.USDM_MARKET


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ws_url": "ws://127.0.0.1:9000/ws"}, "invalid Binance ws_url 'ws://127.0.0.1:9000/ws': expected an origin"),
        ({"ws_url": "http://127.0.0.1:9000"}, "invalid Binance ws_url"),
        ({"rest_url": "ftp://x"}, "invalid Binance rest_url 'ftp://x'"),
    ],
)
def test_urls_must_be_origins(options: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidValueError, match=message):
        Binance(**options)


def test_attributes_the_stream_layer_reads() -> None:
    client = Binance()
    assert client.pushes_closed_flag and client.connection_lifetime == 86_400
    assert client.kline_page_size(Market.SPOT) == 1000 and client.kline_page_size(Market.SWAP) == 1500
    assert client.max_topics_per_socket == 1024 and client.max_subscriptions_per_second == 4  # + a pong = 5


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=5),
    max_leaves=20,
)
_shaped = st.fixed_dictionaries(
    {"e": st.sampled_from(["kline", "24hrTicker", "24hrMiniTicker", "bookTicker", "markPriceUpdate", "x"])},
    optional={
        "s": st.sampled_from(["BTCUSDT", "ETHBTC", "", "btcusdt"]) | _json_values,
        "E": st.integers() | _json_values,
        "k": st.fixed_dictionaries({}, optional={key: _json_values for key in "tiohlcvx"}),
        **{key: st.sampled_from(["1", "0.5", "x"]) | _json_values for key in "cvpbaBA"},
    },
)


@given(st.one_of(st.binary(max_size=64), st.text(max_size=64), _json_values.map(json.dumps), _shaped.map(json.dumps)))
def test_fuzzed_frames_raise_only_protocol_errors(frame: bytes | str) -> None:
    for socket in Socket:
        with contextlib.suppress(ProtocolError):
            BinanceCodec(socket, now_ms=lambda: 0).decode(frame)


@given(_shaped.map(lambda data: json.dumps({"stream": "x", "data": data})))
def test_fuzzed_combined_frames_raise_only_protocol_errors(frame: str) -> None:
    with contextlib.suppress(ProtocolError):
        codec(USDM).decode(frame)
