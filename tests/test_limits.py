"""PeerLimits: bounded gunzip, the JSON depth guard and the bounded REST GET, at their boundaries.

Each bound is tried where it bites: one byte (or one level) under, at and over the limit, for
every inflation ratio from stored to deflate's 1032:1, and for JSON whose brackets hide in strings
and escapes. The REST GET runs against a real HTTP server on loopback.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import zlib
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import msgspec
import pytest
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_bingx_codec import structure_depth
from test_bingx_rest import RestServer, serve_rest

from tradeloop.exchanges import DEFAULT_LIMITS, ErrorKind, PeerLimits, ProtocolError
from tradeloop.exchanges.limits import MAX_JSON_DEPTH_CEILING, check_json_depth, get_body, gunzip
from tradeloop.sim.faults import BOMB_SIZE, NESTED_DEPTH, Hostile, gzip_bomb, hostile_frame, nested_json

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def kind_of(call: Callable[[], object]) -> ErrorKind | None:
    """The kind of ProtocolError ``call`` raises, None if it returns."""
    try:
        call()
    except ProtocolError as exc:
        return exc.kind
    return None


# --- settings -------------------------------------------------------------------------------------


def test_defaults_and_validation() -> None:
    assert PeerLimits(max_frame_size=1 << 20, max_body_size=8 << 20, max_json_depth=32) == DEFAULT_LIMITS
    assert PeerLimits(max_json_depth=MAX_JSON_DEPTH_CEILING).max_json_depth == MAX_JSON_DEPTH_CEILING
    for bad in ({"max_frame_size": 0}, {"max_body_size": -1}, {"max_json_depth": True}, {"max_frame_size": 1.5}):
        with pytest.raises(ValueError, match=f"PeerLimits.{next(iter(bad))} must be a positive whole number"):
            PeerLimits(**bad)
    with pytest.raises(ValueError, match="at most 64"):
        PeerLimits(max_json_depth=MAX_JSON_DEPTH_CEILING + 1)


# --- gunzip ---------------------------------------------------------------------------------------

payloads = st.one_of(
    st.binary(max_size=3000),  # incompressible: ratio about 1
    st.builds(lambda byte, size: byte * size, st.binary(min_size=1, max_size=1), st.integers(0, 200_000)),  # ~1000:1
    st.builds(lambda text, size: (text * size)[:size], st.binary(min_size=1, max_size=40), st.integers(0, 50_000)),
)


@FUZZ
@given(payload=payloads, excess=st.sampled_from([-1, 0, 1]), level=st.sampled_from([0, 1, 9]))
def test_gunzip_at_the_limit_for_every_ratio(payload: bytes, excess: int, level: int) -> None:
    """A stream inflating to exactly the limit passes; to one byte more, TOO_LARGE."""
    data = zlib.compress(payload, level, wbits=31)
    limit = max(1, len(payload) - excess)
    if len(payload) <= limit:
        assert gunzip(data, limit) == payload
        assert gunzip(data + b"trailing bytes", limit) == payload
    else:
        assert kind_of(lambda: gunzip(data, limit)) is ErrorKind.TOO_LARGE


@FUZZ
@given(payload=payloads, cut=st.integers(min_value=1, max_value=30))
def test_gunzip_refuses_a_truncated_stream(payload: bytes, cut: int) -> None:
    """With room to spare (one ``zlib.decompress`` call) and with none (the bounded inflater)."""
    data = zlib.compress(payload, 9, wbits=31)[:-cut]
    assert kind_of(lambda: gunzip(data, 1 << 30)) is ErrorKind.BAD_GZIP
    assert kind_of(lambda: gunzip(data, max(1, len(payload)))) is ErrorKind.BAD_GZIP


def test_deflate_expands_at_most_1032_to_1() -> None:
    """The bound the one-call path relies on, checked where deflate comes closest to it."""
    for size in (1 << 10, 1 << 16, 1 << 20, 1 << 24):
        compressed = zlib.compress(bytes(size), 9, wbits=-15)
        assert size <= 1032 * len(compressed)


def test_a_gzip_bomb_is_stopped_at_the_limit() -> None:
    bomb = gzip_bomb()
    assert len(bomb) < DEFAULT_LIMITS.max_frame_size  # it passes the transport's message limit
    assert kind_of(lambda: gunzip(bomb, DEFAULT_LIMITS.max_frame_size)) is ErrorKind.TOO_LARGE


def test_the_gzip_bomb_is_a_valid_stream_of_zeros() -> None:
    """Built by repeating one compressed block: checked whole at 12 MiB, and its start at 1 GiB."""
    assert gzip.decompress(gzip_bomb(12 << 20)) == bytes(12 << 20)
    assert zlib.decompressobj(31).decompress(gzip_bomb(), 1 << 20) == bytes(1 << 20)
    assert int.from_bytes(gzip_bomb()[-4:], "little") == BOMB_SIZE % 2**32


def test_not_gzip() -> None:
    assert kind_of(lambda: gunzip(b"Ping", 100)) is ErrorKind.BAD_GZIP
    assert kind_of(lambda: gunzip(b"\x1f\x8b" + bytes(2000), 100)) is ErrorKind.BAD_GZIP


# --- JSON depth -----------------------------------------------------------------------------------

tricky_text = st.text(alphabet='[]{}"\\/ab,:u0', max_size=12)
"""Strings full of what a depth scanner could mistake for structure."""
json_documents = st.recursive(
    st.none() | st.booleans() | st.integers() | tricky_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky_text, inner, max_size=4),
    max_leaves=40,
)


def reference_depth(text: str) -> int:
    """The most arrays and objects a JSON decoder has open, read a character at a time; a
    backslash outside a string is where any decoder stops."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "\\":
            break
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def refused(document: bytes | str, max_depth: int) -> bool:
    return kind_of(lambda: check_json_depth(document, max_depth)) is ErrorKind.TOO_DEEP


@FUZZ
@given(value=json_documents, ascii_only=st.booleans(), spaced=st.booleans(), slack=st.integers(-3, 2))
def test_valid_json_is_refused_exactly_when_it_is_too_deep(
    value: Any, ascii_only: bool, spaced: bool, slack: int
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, indent=1 if spaced else None)
    depth = structure_depth(value)
    limit = max(1, depth + slack)
    assert refused(text, limit) == refused(text.encode(), limit) == (depth > limit)


@FUZZ
@given(text=st.text(alphabet='[]{}"\\ a,:', max_size=300), limit=st.integers(1, 6))
@example(text="[[][[][[]", limit=3)  # a truncated document: no run of 4, its pairs gone it is "[[["
def test_nothing_deeper_than_a_decoder_would_reach_passes(text: str, limit: int) -> None:
    if reference_depth(text) > limit:
        assert refused(text, limit)


@FUZZ
@given(value=json_documents, data=st.data())
def test_truncated_json_deeper_than_the_limit_is_refused(value: Any, data: st.DataObject) -> None:
    """A document cut anywhere (a truncated body) leaves brackets that do not balance."""
    text = json.dumps(value)
    cut = text[: data.draw(st.integers(0, len(text)))]
    limit = data.draw(st.integers(1, max(1, structure_depth(value))))
    if reference_depth(cut) > limit:
        assert refused(cut, limit)


deep = "[" * 5000
hiding_places = st.sampled_from(
    [
        '["' + deep + '"]',  # inside a string: harmless, must pass
        '["\\"' + deep + '"]',  # after an escaped quote, still inside the string
        '["\\\\"' + deep,  # after an escaped backslash: the string has ended
        "[\\" + '"' + deep,  # after a stray backslash: no decoder reads further
        '{"a":' + deep,
        '"unterminated ' + deep,
        deep + "]" * 5000,
    ]
)


@FUZZ
@given(document=hiding_places, prefix=st.text(alphabet='[]{}" a,:', max_size=20), as_bytes=st.booleans())
def test_a_document_the_guard_passes_never_makes_a_decoder_recurse_too_deep(
    document: str, prefix: str, as_bytes: bool
) -> None:
    text: str | bytes = (prefix + document).encode() if as_bytes else prefix + document
    try:
        check_json_depth(text, 32)
    except ProtocolError as exc:
        assert exc.kind is ErrorKind.TOO_DEEP and "nested deeper than the limit of 32 levels" in str(exc)
        return
    for decode in (msgspec.json.decode, json.loads):
        with contextlib.suppress(msgspec.DecodeError, ValueError):  # not JSON is fine; RecursionError is not
            decode(text)


@pytest.mark.parametrize("opening", ["[", '{"k":'])
@pytest.mark.parametrize("as_bytes", [False, True])
def test_check_json_depth_at_the_limit(opening: str, as_bytes: bool) -> None:
    closing = "]" if opening == "[" else "}"
    for depth in (1, 31, 32, 33, 10_000):
        text = opening * depth + "0" + closing * depth
        document: str | bytes = text.encode() if as_bytes else text
        assert refused(document, 32) == (depth > 32)


def test_nested_json_of_the_hostile_peer() -> None:
    assert NESTED_DEPTH > MAX_JSON_DEPTH_CEILING and refused(nested_json(), MAX_JSON_DEPTH_CEILING)
    frame = hostile_frame(Hostile.NESTED)
    assert len(frame) < 1000
    assert kind_of(lambda: check_json_depth(gunzip(frame, 1 << 20), 32)) is ErrorKind.TOO_DEEP


# --- the bounded REST GET -------------------------------------------------------------------------


async def fetch(server: RestServer, body: bytes, max_size: int, *, encoding: str | None = None) -> bytes | ErrorKind:
    """Serve ``body`` as it is (``encoding`` names what it is) and GET it: the content or the error kind."""
    server.replies["/body"] = (200, body)
    server.content_encoding = encoding
    async with httpx.AsyncClient(timeout=10) as http:
        with trio.fail_after(10):
            try:
                reply = await get_body(http, server.url + "body", max_size=max_size)
            except ProtocolError as exc:
                return exc.kind
    assert reply.status == 200
    return reply.content


async def serve_and_fetch(body: bytes, max_size: int, *, encoding: str | None, chunked: bool) -> bytes | ErrorKind:
    async with trio.open_nursery() as nursery:
        result = await fetch(await serve_rest(nursery, chunked=chunked), body, max_size, encoding=encoding)
        nursery.cancel_scope.cancel()
    return result


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=payloads, excess=st.sampled_from([-1, 0, 1]), gzipped=st.booleans(), chunked=st.booleans())
def test_rest_bodies_at_the_limit(payload: bytes, excess: int, gzipped: bool, chunked: bool) -> None:
    """A body of ``max_size`` bytes, received and decoded, passes; a byte more either way is TOO_LARGE."""
    wire = zlib.compress(payload, 6, wbits=31) if gzipped else payload
    limit = max(1, len(payload) - excess)
    run = partial(serve_and_fetch, wire, limit, encoding="gzip" if gzipped else None, chunked=chunked)
    result = trio.run(run)
    if len(payload) <= limit and len(wire) <= limit:
        assert result == payload
    else:
        assert result is ErrorKind.TOO_LARGE


async def test_a_declared_length_over_the_limit_is_refused_before_reading(nursery: trio.Nursery) -> None:
    server = await serve_rest(nursery)
    assert await fetch(server, b"x" * 100, 100) == b"x" * 100
    assert await fetch(server, b"x" * 101, 100) is ErrorKind.TOO_LARGE
    server.chunked = True  # no length declared: read up to the limit, then dropped
    assert await fetch(server, b"x" * 300_000, 100_000) is ErrorKind.TOO_LARGE


async def test_gzip_bodies_bombs_and_other_encodings(nursery: trio.Nursery) -> None:
    server = await serve_rest(nursery)
    payload = b'{"code":0,"data":[]}'
    assert await fetch(server, gzip.compress(payload), 100, encoding="gzip") == payload
    assert await fetch(server, gzip.compress(payload), 100, encoding="GZip") == payload
    assert await fetch(server, gzip_bomb(), 8 << 20, encoding="gzip") is ErrorKind.TOO_LARGE
    assert await fetch(server, gzip.compress(payload)[:-3], 100, encoding="gzip") is ErrorKind.BAD_GZIP
    assert await fetch(server, payload, 100, encoding="gzip") is ErrorKind.BAD_GZIP
    assert await fetch(server, payload, 100, encoding="identity") == payload
    assert await fetch(server, payload, 100, encoding="br") is ErrorKind.BAD_FIELD
