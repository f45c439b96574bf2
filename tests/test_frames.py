"""The server-to-client frame decoder, bytes in and events out (the socket over it: test_transport_loopback.py).

Frames are built here by hand (so malformed ones can be), and valid streams are also built by
wsproto's own server-side framer, an independent encoder to check the decoder against.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol

from tradeloop.streams.frames import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Close,
    FrameDecoder,
    Ping,
    Pong,
    WebSocketProtocolError,
)
from tradeloop.streams.frames import Event as DecodedEvent

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

Chunk = bytes | bytearray | memoryview


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
    length_bits: int | None = None,
) -> bytes:
    """One frame; ``length_bits`` (7, 16 or 64) forces a length form, minimal or not."""
    size = len(payload)
    bits = length_bits or (7 if size < 126 else 16 if size < 65536 else 64)
    mask_bit = 0x80 if mask else 0
    header = bytes([(0x80 if fin else 0) | rsv | opcode])
    if bits == 7:
        header += bytes([mask_bit | size])
    elif bits == 16:
        header += bytes([mask_bit | 126]) + size.to_bytes(2)
    else:
        header += bytes([mask_bit | 127]) + size.to_bytes(8)
    if mask:
        header += mask
        payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return header + payload


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return frame(CLOSE, code.to_bytes(2) + reason)


def decode(*chunks: Chunk, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> list[DecodedEvent]:
    decoder = FrameDecoder(max_message_size)
    for chunk in chunks:
        decoder.feed(chunk)
    return decoder.events()


def protocol_error(*chunks: Chunk, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> WebSocketProtocolError:
    with pytest.raises(WebSocketProtocolError) as error:
        decode(*chunks, max_message_size=max_message_size)
    return error.value


# --- well-formed frames -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70_000])
def test_every_length_form(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    text = "é" * (size // 2)
    assert decode(frame(BINARY, payload)) == [payload]
    assert decode(frame(TEXT, text.encode())) == [text]


def test_several_frames_in_one_feed_keep_their_order() -> None:
    stream = frame(BINARY, b"\x1f\x8b") + frame(TEXT, b"ack") + frame(PING, b"p") + frame(BINARY, b"x" * 300)
    assert decode(stream) == [b"\x1f\x8b", "ack", Ping(b"p"), b"x" * 300]


def test_events_are_handed_over_once() -> None:
    decoder = FrameDecoder()
    decoder.feed(frame(BINARY, b"one") + frame(BINARY, b"tw"))
    assert decoder.events() == [b"one", b"tw"]
    assert decoder.events() == []
    decoder.feed(frame(TEXT, b"three"))
    assert decoder.events() == ["three"]


def test_any_bytes_like_input() -> None:
    data = frame(BINARY, b"abc") + frame(TEXT, b"def")
    assert decode(bytearray(data)) == decode(memoryview(data)) == [b"abc", "def"]
    assert all(type(event) in (bytes, str) for event in decode(bytearray(data)))


def test_fragmented_messages_are_reassembled_with_control_frames_between() -> None:
    snowman = "☃".encode()  # 3 bytes, split across fragments
    stream = (
        frame(TEXT, b"a" + snowman[:1], fin=False)
        + frame(PING, b"1")
        + frame(CONTINUATION, snowman[1:], fin=False)
        + frame(PONG, b"2")
        + frame(CONTINUATION, b"z")
        + frame(BINARY, b"\x00", fin=False)
        + frame(CONTINUATION, b"", fin=False)
        + frame(CONTINUATION, b"\xff" * 200)
    )
    assert decode(stream) == [Ping(b"1"), Pong(b"2"), "a☃z", b"\x00" + b"\xff" * 200]


def test_a_stream_split_at_every_byte_boundary() -> None:
    small = [
        frame(BINARY, b"b" * 130),
        frame(TEXT, "kline ☃".encode()),
        frame(PING, b"ping"),
        frame(TEXT, b"fra", fin=False),
        frame(CONTINUATION, b"gment"),
    ]
    stream = b"".join([*small, frame(BINARY, b"L" * 65536), close_frame(1001, b"going")])
    expected = [b"b" * 130, "kline ☃", Ping(b"ping"), "fragment", b"L" * 65536, Close(1001, "going")]
    for split in range(len(stream) + 1):
        assert decode(stream[:split], stream[split:]) == expected, split
    one_by_one = b"".join(small)
    assert decode(*(one_by_one[i : i + 1] for i in range(len(one_by_one)))) == expected[:4]


def test_a_large_frame_in_many_reads() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    stream = frame(BINARY, payload) + frame(TEXT, b"after")
    decoder = FrameDecoder()
    for start in range(0, len(stream), 1000):
        decoder.feed(stream[start : start + 1000])
        if start + 1000 < len(payload):
            assert decoder.events() == []
    assert decoder.events() == [payload, "after"]


def test_ping_and_pong_keep_their_payload() -> None:
    assert decode(frame(PING), frame(PONG, b"x" * 125)) == [Ping(b""), Pong(b"x" * 125)]


@pytest.mark.parametrize(
    "code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
)
def test_close_codes_a_server_may_send(code: int) -> None:
    assert decode(close_frame(code, "fin ☃".encode())) == [Close(code, "fin ☃")]


def test_close_without_a_status_stands_for_1005() -> None:
    assert decode(frame(CLOSE)) == [Close(1005, "")]


def test_nothing_after_a_close_frame_is_parsed() -> None:
    decoder = FrameDecoder()
    decoder.feed(frame(BINARY, b"before") + close_frame(1000) + frame(BINARY, b"after") + b"\xff\xff")
    assert decoder.closed
    decoder.feed(b"garbage that is never parsed")
    assert decoder.events() == [b"before", Close(1000, "")]


def test_max_message_size_must_be_a_byte_count() -> None:
    with pytest.raises(ValueError, match="-1"):
        FrameDecoder(-1)


# --- protocol errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10, 0x70])
def test_reserved_bits(rsv: int) -> None:
    assert "reserved bits" in str(protocol_error(frame(BINARY, b"x", rsv=rsv)))


def test_a_masked_server_frame() -> None:
    error = protocol_error(frame(BINARY, b"hello", mask=b"\x01\x02\x03\x04"))
    assert "masked" in str(error) and error.code == 1002


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes(opcode: int) -> None:
    assert "reserved" in str(protocol_error(frame(opcode, b"x")))


@pytest.mark.parametrize("opcode", [CLOSE, PING, PONG])
def test_control_frames_are_never_fragmented_nor_long(opcode: int) -> None:
    assert "fragmented control" in str(protocol_error(frame(opcode, b"", fin=False)))
    # Refused from the header alone: the 126 bytes of payload never arrive.
    assert "at most 125" in str(protocol_error(frame(opcode, b"x" * 126)[:4]))


def test_continuation_without_a_message() -> None:
    assert "no message to continue" in str(protocol_error(frame(CONTINUATION, b"x")))
    finished = frame(TEXT, b"a", fin=False) + frame(CONTINUATION, b"b")
    assert "no message to continue" in str(protocol_error(finished + frame(CONTINUATION, b"c")))


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_a_new_message_inside_a_fragmented_one(opcode: int) -> None:
    error = protocol_error(frame(BINARY, b"a", fin=False) + frame(opcode, b"b"))
    assert "fragmented one was finished" in str(error)


def test_lengths_not_in_their_shortest_form() -> None:
    assert "16-bit length form used for 125" in str(protocol_error(frame(BINARY, b"x" * 125, length_bits=16)))
    assert "64-bit length form used for 65535" in str(protocol_error(frame(BINARY, b"x" * 65535, length_bits=64)))
    assert "64-bit length form used for 0" in str(protocol_error(frame(BINARY, b"", length_bits=64)))


def test_a_64_bit_length_with_its_top_bit_set() -> None:
    header = bytes([0x82, 127]) + (1 << 63 | 5).to_bytes(8)
    assert "most significant bit" in str(protocol_error(header + b"12345"))


def test_invalid_utf8_text() -> None:
    error = protocol_error(frame(TEXT, b"ok \xff"))
    assert error.code == 1007 and "text message" in str(error)
    snowman = "☃".encode()
    error = protocol_error(frame(TEXT, snowman[:2], fin=False) + frame(CONTINUATION, b"!"))
    assert error.code == 1007
    # Surrogates are not UTF-8 either.
    assert protocol_error(frame(TEXT, b"\xed\xa0\x80")).code == 1007


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
def test_close_codes_a_server_may_not_send(code: int) -> None:
    error = protocol_error(close_frame(code))
    assert f"invalid code {code}" in str(error) and error.code == 1002


def test_malformed_close_payloads() -> None:
    assert "1-byte payload" in str(protocol_error(frame(CLOSE, b"\x03")))
    error = protocol_error(close_frame(1000, b"\xc3"))
    assert error.code == 1007 and "close reason" in str(error)


def test_a_message_too_big_is_refused_from_its_header() -> None:
    error = protocol_error(frame(BINARY, b"x" * 11)[:2], max_message_size=10)
    assert error.code == 1009 and "limit of 10" in str(error)
    header_only = bytes([0x82, 127]) + (DEFAULT_MAX_MESSAGE_SIZE + 1).to_bytes(8)
    assert protocol_error(header_only).code == 1009
    assert decode(frame(BINARY, b"x" * 10), max_message_size=10) == [b"x" * 10]


def test_a_fragmented_message_too_big() -> None:
    fragments = frame(TEXT, b"x" * 6, fin=False) + frame(CONTINUATION, b"x" * 4, fin=False)
    assert decode(fragments + frame(CONTINUATION, b""), max_message_size=10) == ["x" * 10]
    assert protocol_error(fragments + frame(CONTINUATION, b"x")[:2], max_message_size=10).code == 1009


def test_events_before_an_error_are_kept_and_the_error_sticks() -> None:
    decoder = FrameDecoder()
    with pytest.raises(WebSocketProtocolError, match="masked"):
        decoder.feed(frame(BINARY, b"good") + frame(BINARY, b"bad", mask=b"abcd"))
    assert decoder.events() == [b"good"]
    with pytest.raises(WebSocketProtocolError, match=r"failed earlier.*masked"):
        decoder.feed(frame(BINARY, b"fine"))
    assert decoder.events() == []


# --- properties -------------------------------------------------------------------------------------

messages = st.lists(
    st.tuples(
        st.one_of(st.binary(max_size=300), st.text(max_size=100)),
        st.integers(min_value=1, max_value=4),  # fragments
        st.lists(st.binary(max_size=125), max_size=2),  # pings between its fragments
    ),
    max_size=12,
)


def encoded_stream(spec: list[tuple[bytes | str, int, list[bytes]]]) -> tuple[bytes, list[DecodedEvent]]:
    """Frames from wsproto's server-side framer, and the events they stand for."""
    framer = FrameProtocol(client=False, extensions=[])
    stream = bytearray()
    expected: list[DecodedEvent] = []
    for payload, fragments, pings in spec:
        step = max(1, -(-len(payload) // fragments))
        pieces = [payload[i : i + step] for i in range(0, len(payload), step)] or [payload]
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            stream += framer.send_data(piece, fin=last)
            if not last and index < len(pings):
                stream += framer.ping(pings[index])
                expected.append(Ping(pings[index]))
        expected.append(payload)
    return bytes(stream), expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=messages, data=st.data())
def test_random_splits_of_a_valid_stream_give_the_same_events(
    spec: list[tuple[bytes | str, int, list[bytes]]], data: st.DataObject
) -> None:
    stream, expected = encoded_stream(spec)
    cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=20)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert decode(*chunks) == expected
    assert decode(stream) == expected


@settings(max_examples=500, deadline=None)
@given(
    spec=messages,
    noise=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), max_size=4),
    garbage=st.binary(max_size=64),
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=8),
    max_message_size=st.sampled_from([0, 100, DEFAULT_MAX_MESSAGE_SIZE]),
)
def test_random_bytes_raise_only_the_decoders_error(
    spec: list[tuple[bytes | str, int, list[bytes]]],
    noise: list[tuple[int, int]],
    garbage: bytes,
    cuts: list[int],
    max_message_size: int,
) -> None:
    stream = bytearray(encoded_stream(spec)[0] + garbage)
    for position, value in noise:
        if stream:
            stream[position % len(stream)] = value
    bounds = sorted(c for c in cuts if c < len(stream))
    decoder = FrameDecoder(max_message_size)
    try:
        for a, b in zip([0, *bounds], [*bounds, len(stream)], strict=True):
            decoder.feed(stream[a:b])
    except WebSocketProtocolError as error:
        assert error.code in (1002, 1007, 1009)
    assert all(isinstance(event, bytes | str | Ping | Pong | Close) for event in decoder.events())


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(min_value=0, max_value=70_000),
    excess=st.sampled_from([-2, -1, 0, 1, 2]),
    text=st.booleans(),
    data=st.data(),
)
def test_message_sizes_at_the_limit(limit: int, excess: int, text: bool, data: st.DataObject) -> None:
    """Every length form, whole or fragmented: a message of ``limit`` bytes passes, one byte more is
    refused with 1009 as soon as the header of the frame crossing the limit is in, its payload unsent."""
    size = max(0, limit + excess)
    payload = b"x" * size
    cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=size), max_size=3)))
    pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, size], strict=True)]
    last = len(pieces) - 1
    opcode = TEXT if text else BINARY
    frames = [frame(opcode if i == 0 else CONTINUATION, piece, fin=i == last) for i, piece in enumerate(pieces)]
    decoder = FrameDecoder(limit)
    if size <= limit:
        decoder.feed(b"".join(frames))
        assert decoder.events() == [payload.decode() if text else payload]
        return
    fed = 0
    with pytest.raises(WebSocketProtocolError) as info:
        for piece, encoded in zip(pieces, frames, strict=True):
            decoder.feed(encoded[: len(encoded) - len(piece)])  # the header alone
            decoder.feed(piece)
            fed += len(piece)
    assert info.value.code == 1009
    assert fed <= limit, "the payload of the frame crossing the limit was waited for"


def test_the_default_limit_takes_a_market_data_message_and_refuses_a_huge_one() -> None:
    assert DEFAULT_MAX_MESSAGE_SIZE == 1024 * 1024
    assert decode(frame(BINARY, b"x" * DEFAULT_MAX_MESSAGE_SIZE)) == [b"x" * DEFAULT_MAX_MESSAGE_SIZE]
    announced_300_mb = bytes([0x82, 127]) + (300_000_000).to_bytes(8)
    assert protocol_error(announced_300_mb).code == 1009
